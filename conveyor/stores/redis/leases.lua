-- Leases: heartbeats, shutdown's hand-back and the recovery of expired leases.

-- Extend each lease still held (A[1]: lease in µs; then per run: id, worker, attempt,
-- progress ("" none), progress message), whatever the job's status. Returns {lost, stop}:
-- stop for runs whose job is no longer processing (cancelled).
OPS.heartbeat = function()
  local lease = tonumber(A[1])
  local lost, stop = {}, {}
  for i = 2, #A, 5 do
    local id, worker, attempt, progress, message = unpack(A, i, i + 4)
    local run = holds(id, worker, attempt)
    if run then
      end_lease(id, NOW + lease)
      if run.status ~= 'processing' then
        stop[#stop + 1] = tonumber(id)
      elseif progress ~= '' then
        redis.call('HSET', jkey(id), 'progress', progress, 'progress_message', message)
      end
    else
      lost[#lost + 1] = tonumber(id)
    end
  end
  return {lost, stop}
end

-- processing → pending with the attempt given back (shutdown), per run (id, worker, attempt
-- from A[2]), fenced. The lease ends now, or at A[1] (µs) when the run may go on until then,
-- which is also the job's run_at; a run whose job is no longer processing only has its
-- lease end then. Returns the ids released.
OPS.release = function()
  local not_before = tonumber(A[1])
  local released = {}
  for i = 2, #A, 3 do
    local id, worker, attempt = A[i], A[i + 1], A[i + 2]
    local run = holds(id, worker, attempt)
    if run then
      end_lease(id, not_before)
      if run.status == 'processing' then
        local run_at = not_before or NOW
        redis.call('HINCRBY', jkey(id), 'attempts', -1)
        redis.call('HSET', jkey(id), 'run_at', run_at, 'updated_at', NOW)
        set_status(id, run.queue, run.ckey, 'processing', 'pending')
        put_pending(id, run.queue, run_at)
        released[#released + 1] = tonumber(id)
      end
    end
  end
  return released
end

-- Jobs whose lease ran out (before now), up to A[1]: a processing one goes back to pending
-- while attempts remain, otherwise fails for good (and settles its dependents); a cancelled
-- run's lease just ends. The old claim's fence no longer matches either way. Workers whose
-- registry row expired are forgotten too. Returns {requeued, failed}.
OPS.recover = function()
  local requeued, failed = {}, {}
  local expired = redis.call('ZRANGEBYSCORE', k('leases'), '-inf', '(' .. int(NOW),
    'LIMIT', 0, tonumber(A[1]))
  for _, id in ipairs(expired) do
    local j = jkey(id)
    local f = redis.call('HMGET', j, 'status', 'queue', 'attempts', 'max_attempts', 'worker',
      'concurrency_key', 'run_at', 'started_at')
    end_lease(id, nil)
    if f[1] == 'processing' then
      local err = 'recovered: lease of worker ' .. f[5] .. ' expired during attempt ' .. f[3] ..
        ' of ' .. f[4] .. ' (the worker died or stalled)'
      redis.call('HSET', j, 'last_error', err, 'updated_at', NOW, 'run_at', NOW)
      if tonumber(f[3]) < tonumber(f[4]) then
        ended_attempt('r', tonumber(f[7]), tonumber(f[8]))
        set_status(id, f[2], f[6], 'processing', 'pending')
        put_pending(id, f[2], NOW)
        requeued[#requeued + 1] = tonumber(id)
      else
        ended_attempt('x', tonumber(f[7]), tonumber(f[8]))
        set_status(id, f[2], f[6], 'processing', 'failed')
        finished(id, 'failed')
        settle(id, 'failed')
        failed[#failed + 1] = tonumber(id)
      end
    end
  end
  local gone = redis.call('ZRANGEBYSCORE', k('worker_expiry'), '-inf', '(' .. int(NOW))
  for _, worker in ipairs(gone) do
    redis.call('HDEL', k('workers'), worker)
    redis.call('ZREM', k('worker_expiry'), worker)
  end
  return {requeued, failed}
end

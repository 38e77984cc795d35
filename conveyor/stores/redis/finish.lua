-- The end of runs, each only while its claim holds the job (A: per run 7 arguments: kind,
-- id, worker, attempt, result, error, retry_at). A processing job takes the outcome; a job no
-- longer processing (cancelled) only loses the run's lease; an `ended` run of a job still
-- processing changes nothing (its lease runs on, and recovery takes it when it expires).
local FINISH_FIELDS = 7

local function outcome(id, run, kind, result, err, retry_at)
  local j = jkey(id)
  end_lease(id, nil)
  local new = 'pending'
  if kind == 'done' then
    new = 'done'
    redis.call('HSET', j, 'result', result)
    ended_attempt('f', run.run_at, run.started_at)
  elseif kind == 'failed' then
    new = 'failed'
    redis.call('HSET', j, 'last_error', err)
    ended_attempt('x', run.run_at, run.started_at)
  elseif kind == 'retry' then
    redis.call('HSET', j, 'last_error', err)
    ended_attempt('r', run.run_at, run.started_at)
  else -- snoozed: the attempt is given back
    redis.call('HINCRBY', j, 'attempts', -1)
  end
  set_status(id, run.queue, run.ckey, 'processing', new)
  redis.call('HSET', j, 'updated_at', NOW)
  if new == 'pending' then
    redis.call('HSET', j, 'run_at', retry_at)
    put_pending(id, run.queue, tonumber(retry_at))
  else
    finished(id, new)
    settle(id, new)
  end
  -- the slot a run frees in a limited queue may be taken by another process's idle worker
  if limited(run.queue) then STATE.wake = true end
  return new
end

-- Returns {id, status} pairs of the outcomes applied.
local function finish_runs(first, last)
  local applied = {}
  for i = first, last, FINISH_FIELDS do
    local kind, id, worker, attempt, result, err, retry_at = unpack(A, i, i + FINISH_FIELDS - 1)
    local run = holds(id, worker, attempt)
    if run then
      if run.status == 'processing' and kind ~= 'ended' then
        applied[#applied + 1] = {tonumber(id), outcome(id, run, kind, result, err, retry_at)}
      elseif run.status ~= 'processing' then
        end_lease(id, nil)
      end
    end
  end
  return applied
end

OPS.finish = function() return finish_runs(1, #A) end

-- finish then claim, one script (A: the number of runs, the runs, then the claim's
-- arguments): a busy worker pays one round trip per batch, and a slot its runs free in a
-- limited queue is taken by this claim first. Returns {applied, claimed ids}.
OPS.finish_and_claim = function()
  local last = 1 + FINISH_FIELDS * tonumber(A[1])
  local applied = finish_runs(2, last)
  return {applied, claim_from(last + 1)}
end

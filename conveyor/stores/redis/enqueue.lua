-- Enqueue: jobs as store.py lays them out, FIELDS arguments each (JOB below).
local FIELDS = 15

-- Insert the job whose fields start at A[i], or return the unfinished job that holds its
-- unique_key: {created (0/1), id}. A job with dependencies comes planned by store.py
-- (conveyor/dependencies.py): its id reserved, its dependencies as text, those it waits
-- for, its depth, and last_error when a dependency already ended badly ("cancel").
local function insert(i)
  local typ, payload, queue, prio, max_att, run_at, ukey, ckey, odf, trace, id, deps, waiting,
    depth, cancelled_by = unpack(A, i, i + FIELDS - 1)
  if ukey ~= '' then
    local holder = redis.call('HGET', k('unique'), ukey)
    if holder then return {0, tonumber(holder)} end
  end
  if id == '' then id = redis.call('INCR', k('seq')) else id = tonumber(id) end
  if run_at == '' then run_at = NOW else run_at = tonumber(run_at) end
  local wait_on = ids_of(waiting)
  local status = 'pending'
  if cancelled_by ~= '' then status = 'cancelled' end
  redis.call('HSET', jkey(id), 'id', id, 'type', typ, 'queue', queue, 'payload', payload,
    'priority', prio, 'status', status, 'attempts', 0, 'max_attempts', max_att,
    'run_at', run_at, 'unique_key', ukey, 'result', 'null', 'last_error', cancelled_by,
    'worker', '', 'created_at', NOW, 'updated_at', NOW, 'started_at', '', 'finished_at', '',
    'lease', '', 'concurrency_key', ckey, 'on_dependency_failure', odf,
    'trace_context', trace, 'depends_on', deps, 'waiting_for', #wait_on, 'depth', depth)
  redis.call('ZADD', k('status', status), id, id)
  redis.call('ZADD', k('all'), id, id)
  redis.call('ZADD', k('queue', queue), id, id)
  redis.call('ZADD', k('type', typ), id, id)
  redis.call('SADD', k('queues'), queue)
  count(queue, status, 1)
  for _, dep in ipairs(ids_of(deps)) do redis.call('ZADD', k('dependents', dep), id, id) end
  if status == 'cancelled' then
    finished(id, 'cancelled')
    return {1, id}
  end
  if ukey ~= '' then redis.call('HSET', k('unique'), ukey, id) end
  if #wait_on > 0 then
    for _, dep in ipairs(wait_on) do redis.call('SADD', k('waiters', dep), id) end
  else
    put_pending(id, queue, run_at)
  end
  return {1, id}
end

-- What store.py planned from still holds: A[2..] are (kind, subject, expected) triples, `s`
-- a job's status class (u unfinished, d done, x failed or cancelled, m missing), `u` the
-- holder of a unique_key ("" none). Returns the index of the first job argument, or nil.
local function planned_from_holds()
  local n = tonumber(A[1])
  for i = 2, 1 + 3 * n, 3 do
    local kind, subject, expected = A[i], A[i + 1], A[i + 2]
    local now
    if kind == 's' then
      local st = redis.call('HGET', jkey(subject), 'status')
      if not st then now = 'm'
      elseif st == 'pending' or st == 'processing' then now = 'u'
      elseif st == 'done' then now = 'd'
      else now = 'x' end
    else
      now = redis.call('HGET', k('unique'), subject) or ''
    end
    if now ~= expected then return nil end
  end
  return 2 + 3 * n
end

-- Insert every job, all or none (one script): A = checks (above), then the jobs. Returns
-- {created, id} per job (SHOW: and the job's hash), or "conflict" when a check failed
-- (store.py plans again).
OPS.enqueue = function()
  local first = planned_from_holds()
  if first == nil then return 'conflict' end
  local out = {}
  for i = first, #A, FIELDS do out[#out + 1] = insert(i) end
  return out
end
SHOW.enqueue = function(reply)
  if type(reply) ~= 'table' then return reply end
  for _, result in ipairs(reply) do result[3] = redis.call('HGETALL', jkey(result[2])) end
  return reply
end

-- Schedules (SPEC §7): per schedule A holds name, schedule, timezone. A new one, or one whose
-- schedule or time zone changed, counts its ticks from now (`since`); last_tick stays.
OPS.register_periodic = function()
  for i = 1, #A, 3 do
    local key = k('periodic', A[i])
    local f = redis.call('HMGET', key, 'schedule', 'timezone')
    if f[1] ~= A[i + 1] or f[2] ~= A[i + 2] then
      redis.call('HSET', key, 'name', A[i], 'schedule', A[i + 1], 'timezone', A[i + 2],
        'since', NOW, 'updated_at', NOW)
      redis.call('SADD', k('periodics'), A[i])
    end
  end
  return 1
end

-- The compare-and-set of one tick (A: name, schedule, timezone, tick, then the tick's job):
-- last_tick moves to the tick only if it is later and not before `since` (a missing row is
-- created from the tick); then the job is inserted and recorded. {-1}: refused.
OPS.enqueue_periodic = function()
  local key, tick = k('periodic', A[1]), tonumber(A[4])
  local f = redis.call('HMGET', key, 'since', 'last_tick')
  if not f[1] then
    redis.call('HSET', key, 'name', A[1], 'schedule', A[2], 'timezone', A[3], 'since', tick)
    redis.call('SADD', k('periodics'), A[1])
  elseif (f[2] and f[2] ~= '' and tonumber(f[2]) >= tick) or tonumber(f[1]) > tick then
    return {-1}
  end
  redis.call('HSET', key, 'last_tick', tick, 'updated_at', NOW)
  local result = insert(5)
  redis.call('HSET', key, 'last_job_id', result[2])
  return result
end

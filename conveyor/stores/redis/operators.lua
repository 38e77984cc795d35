-- Operators' transitions: cancel, retry, prune.

-- pending|processing → cancelled for each of `ids` (only those in status `only` when it is
-- not ""). A running job keeps its lease until its worker has stopped the run, which is
-- told on the `cancelled` channel; a job waiting for dependencies waits no more; its own
-- dependents are settled. Returns the ids cancelled.
local function cancel_ids(only, ids)
  local cancelled = {}
  for _, id in ipairs(ids) do
    local f = redis.call('HMGET', jkey(id), 'status', 'queue', 'lease', 'concurrency_key')
    local st = f[1]
    if (st == 'pending' or st == 'processing') and (only == '' or st == only) then
      if st == 'pending' then
        unpend(id, f[2], f[4])
        stop_waiting(id)
      end
      set_status(id, f[2], f[4], st, 'cancelled')
      finished(id, 'cancelled')
      settle(id, 'cancelled')
      if f[3] and f[3] ~= '' then redis.call('PUBLISH', k('cancelled'), id) end
      cancelled[#cancelled + 1] = tonumber(id)
    end
  end
  return cancelled
end

local function rest(from)
  local out = {}
  for i = from, #A do out[#out + 1] = A[i] end
  return out
end

-- The job A[1] as the transition left it, and whether it applied: {0/1, its hash}, read in
-- the same script (a worker may claim a retried job the moment the script ends).
local function one(transition)
  local applied = #transition('', {A[1]})
  return {applied, redis.call('HGETALL', jkey(A[1]))}
end

OPS.cancel = function() return cancel_ids(A[1], rest(2)) end
OPS.cancel_job = function() return one(cancel_ids) end

-- A dependency that keeps a job with "cancel" from being retried: one still failed or
-- cancelled (retrying the job would only cancel it again). nil when there is none.
local function retry_blocker(id, depends_on, policy)
  if policy ~= 'cancel' then return nil end
  for _, dep in ipairs(ids_of(depends_on)) do
    local st = redis.call('HGET', jkey(dep), 'status')
    if st == 'failed' or st == 'cancelled' then return dep end
  end
  return nil
end

-- A retried job waits again for its dependencies unfinished now, as at its enqueue.
local function wait_again(id, queue, depends_on)
  local waiting = 0
  for _, dep in ipairs(ids_of(depends_on)) do
    local st = redis.call('HGET', jkey(dep), 'status')
    if st == 'pending' or st == 'processing' then
      redis.call('SADD', k('waiters', dep), id)
      waiting = waiting + 1
    end
  end
  redis.call('HSET', jkey(id), 'waiting_for', waiting)
  if waiting == 0 then put_pending(id, queue, NOW) end
end

-- failed|cancelled → pending, runnable now, for each of `ids` (only those in status `only`
-- when it is not ""); attempts kept, max_attempts raised so one more runs. A lease left
-- by a cancelled run stays: the claim waits for it. A job whose unique_key another
-- unfinished job holds, or whose dependency blocks it, is left as it is. Returns the ids.
local function retry_ids(only, ids)
  local retried = {}
  for _, id in ipairs(ids) do
    local j = jkey(id)
    local f = redis.call('HMGET', j, 'status', 'queue', 'unique_key', 'attempts',
      'max_attempts', 'concurrency_key', 'depends_on', 'on_dependency_failure')
    local st = f[1]
    if (st == 'failed' or st == 'cancelled') and (only == '' or st == only)
       and (f[3] == '' or not redis.call('HGET', k('unique'), f[3]))
       and not retry_blocker(id, f[7], f[8]) then
      if f[3] ~= '' then redis.call('HSET', k('unique'), f[3], id) end
      redis.call('ZREM', k('finished', st), id)
      set_status(id, f[2], f[6], st, 'pending')
      local max_att = math.max(tonumber(f[5]), tonumber(f[4]) + 1)
      redis.call('HSET', j, 'run_at', NOW, 'max_attempts', max_att, 'finished_at', '',
        'updated_at', NOW)
      wait_again(id, f[2], f[7])
      retried[#retried + 1] = tonumber(id)
    end
  end
  return retried
end

OPS.retry = function() return retry_ids(A[1], rest(2)) end
OPS.retry_job = function() return one(retry_ids) end

-- The blocker of each of A's ids that retry_blocker names (for the refusal's message):
-- {id, dependency, its status} triples.
OPS.retry_blocked = function()
  local out = {}
  for _, id in ipairs(A) do
    local f = redis.call('HMGET', jkey(id), 'depends_on', 'on_dependency_failure')
    local dep = retry_blocker(id, f[1], f[2])
    if dep then
      out[#out + 1] = {tonumber(id), tonumber(dep), redis.call('HGET', jkey(dep), 'status')}
    end
  end
  return out
end

local function forget(id, status, f)
  redis.call('ZREM', k('finished', status), id)
  redis.call('ZREM', k('status', status), id)
  redis.call('ZREM', k('all'), id)
  redis.call('ZREM', k('queue', f[1]), id)
  redis.call('ZREM', k('type', f[2]), id)
  redis.call('ZREM', k('leases'), id)
  for _, dep in ipairs(ids_of(f[3])) do redis.call('ZREM', k('dependents', dep), id) end
  count(f[1], status, -1)
  redis.call('DEL', jkey(id), k('starts', id), k('dependents', id), k('waiters', id))
end

-- Delete up to A[3] jobs of finished status A[1] whose finished_at is before A[2] (µs), with
-- their index entries; a pruned job takes its dependents' list with it, and leaves those of
-- its dependencies. Returns how many were deleted.
OPS.prune = function()
  local status = A[1]
  local ids = redis.call('ZRANGEBYSCORE', k('finished', status), '-inf', '(' .. A[2],
    'LIMIT', 0, tonumber(A[3]))
  for _, id in ipairs(ids) do
    forget(id, status, redis.call('HMGET', jkey(id), 'queue', 'type', 'depends_on'))
  end
  return #ids
end

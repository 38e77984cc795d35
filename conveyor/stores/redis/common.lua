-- The start of the store's code (scripts.py joins the .lua files, this one first, then
-- main.lua, into one function library, or one script on a Redis without functions): the
-- call's arguments, the store's clock, and the helpers that keep a job's indexes in step
-- with its hash. Every transition is one op, run by one call, so it is atomic.
-- argv[1]: key prefix "{conveyor}:"; argv[2]: now in microseconds ("" for the server's
-- TIME); argv[3]: the op; argv[4]: a reply token ("" none); argv[5..]: the op's arguments (A).
-- P, NOW and A are the current call's, set by begin(); the helpers and OPS are built once,
-- when the library loads.
local P, NOW, A
local OPS = {}
-- Per op, what its reply becomes as it is returned (main.lua).
local SHOW = {}
-- Set by any op that made work claimable; main.lua then publishes one wake-up.
local STATE = {wake = false}

local function begin(argv)
  P = argv[1]
  if argv[2] ~= '' then
    NOW = tonumber(argv[2])
  else
    local t = redis.call('TIME')
    NOW = tonumber(t[1]) * 1000000 + tonumber(t[2])
  end
  A = {}
  for i = 5, #argv do A[#A + 1] = argv[i] end
  STATE.wake = false
end

-- Integers as text: Lua's own number-to-text keeps 14 digits, too few for microseconds.
local function int(n) return string.format('%d', n) end
-- A key: the prefix and up to three parts joined by ':' (plain concatenation: a vararg
-- table per key cost more than most of the commands it names).
local function part(v)
  if type(v) == 'number' then return int(v) end
  return v
end
local function k(a, b, c)
  if b == nil then return P .. a end
  if c == nil then return P .. a .. ':' .. part(b) end
  return P .. a .. ':' .. part(b) .. ':' .. part(c)
end
local function jkey(id) return P .. 'job:' .. part(id) end
-- The jobs' hashes (HGETALL), for the client to read them without a second round trip.
local function hashes(ids)
  local out = {}
  for i, id in ipairs(ids) do out[i] = redis.call('HGETALL', jkey(id)) end
  return out
end
-- Per (queue, concurrency_key) keys: a tab cannot be confused with a queue name's colon.
local function qkey(name, queue, key) return k(name, queue) .. '\t' .. (key or '') end
local function ids_of(text)
  local out = {}
  for id in string.gmatch(text or '', '%d+') do out[#out + 1] = id end
  return out
end
-- A ready job's member: run_at then id, fixed width, so equal priorities sort oldest first.
local function ready_member(run_at, id) return string.format('%016d:%020d', run_at, id) end

local function count(queue, status, by)
  redis.call('HINCRBY', k('counts'), queue .. '\t' .. status, by)
end

-- The status indexes, counts and per-key busy counts follow every change of status.
local function set_status(id, queue, ckey, old, new)
  redis.call('ZREM', k('status', old), id)
  redis.call('ZADD', k('status', new), id, id)
  count(queue, old, -1)
  count(queue, new, 1)
  redis.call('HSET', jkey(id), 'status', new)
  if ckey ~= nil and ckey ~= '' then
    if old == 'processing' then redis.call('HINCRBY', k('keybusy', queue), ckey, -1) end
    if new == 'processing' then redis.call('HINCRBY', k('keybusy', queue), ckey, 1) end
  end
end

local function make_ready(id, queue, ckey, priority, run_at)
  local m = ready_member(run_at, tonumber(id))
  redis.call('ZADD', k('ready', queue), -priority, m)
  redis.call('ZADD', qkey('kready', queue, ckey), -priority, m)
  redis.call('HINCRBY', k('rkeys', queue), ckey or '', 1)
  redis.call('HSET', jkey(id), 'rm', m)
end

-- A claimable pending job: in `pending:<queue>` by run_at (oldest_pending reads it); in the
-- claim's priority order at once when due, else in `scheduled:<queue>` by run_at until a
-- claim finds it due (claim.lua's promote).
local function put_pending(id, queue, run_at)
  redis.call('ZADD', k('pending', queue), run_at, id)
  redis.call('SADD', k('queues'), queue)
  if run_at <= NOW then
    local f = redis.call('HMGET', jkey(id), 'priority', 'concurrency_key')
    make_ready(id, queue, f[2], tonumber(f[1]), run_at)
  else
    redis.call('ZADD', k('scheduled', queue), run_at, id)
  end
  STATE.wake = true
end

local function unpend(id, queue, ckey)
  redis.call('ZREM', k('pending', queue), id)
  redis.call('ZREM', k('scheduled', queue), id)
  local rm = redis.call('HGET', jkey(id), 'rm')
  if rm then
    redis.call('ZREM', k('ready', queue), rm)
    redis.call('ZREM', qkey('kready', queue, ckey), rm)
    if redis.call('HINCRBY', k('rkeys', queue), ckey or '', -1) <= 0 then
      redis.call('HDEL', k('rkeys', queue), ckey or '')
    end
    redis.call('HDEL', jkey(id), 'rm')
  end
end

-- `key`: the job's unique_key (nil: read it).
local function free_unique(id, key)
  if key == nil then key = redis.call('HGET', jkey(id), 'unique_key') end
  if key and key ~= '' and redis.call('HGET', k('unique'), key) == tostring(id) then
    redis.call('HDEL', k('unique'), key)
  end
end

local function finished(id, status)
  redis.call('ZADD', k('finished', status), NOW, id)
  redis.call('HSET', jkey(id), 'finished_at', NOW, 'updated_at', NOW)
  free_unique(id)
  redis.call('PUBLISH', k('finished'), id)
end

local function end_lease(id, until_us)
  if until_us == nil then
    redis.call('HSET', jkey(id), 'lease', '')
    redis.call('ZREM', k('leases'), id)
  else
    redis.call('HSET', jkey(id), 'lease', until_us)
    redis.call('ZADD', k('leases'), until_us, id)
  end
end

-- The fields a fenced transition reads; nil unless the claim that `worker` and `attempt`
-- name still holds the job's lease (fencing).
local HELD = {'worker', 'attempts', 'lease', 'status', 'queue', 'concurrency_key', 'run_at',
  'started_at', 'max_attempts', 'unique_key'}
local function holds(id, worker, attempt)
  local f = redis.call('HMGET', jkey(id), unpack(HELD))
  if f[1] == worker and f[2] == attempt and f[3] and f[3] ~= '' then
    return {worker = f[1], attempts = tonumber(f[2]), status = f[4], queue = f[5],
      ckey = f[6], run_at = tonumber(f[7]), started_at = tonumber(f[8]),
      max_attempts = tonumber(f[9]), unique_key = f[10] or ''}
  end
  return nil
end

-- Per-minute aggregates (SPEC §9) of an attempt that ended: outcome f(inished), x (failed)
-- or r(etried), its queue wait and run time by bucket (BOUNDS_US: scripts.py writes them
-- from conveyor/fleet.py, the one place the buckets are defined).
local function bucket(us)
  local b = 0
  for _, bound in ipairs(BOUNDS_US) do
    if bound <= us then b = b + 1 end
  end
  return b
end
local function attempt_field(outcome, run_at, started_at)
  return bucket(started_at - run_at) .. ':' .. bucket(NOW - started_at) .. ':' .. outcome
end
-- `fields`: aggregate field → attempts (attempt_field).
local function ended_attempts(fields)
  local minute = math.floor(NOW / 60000000)
  local any = false
  for field, n in pairs(fields) do
    redis.call('HINCRBY', k('minute', minute), field, n)
    any = true
  end
  if any then redis.call('ZADD', k('minutes'), minute, minute) end
end
local function ended_attempt(outcome, run_at, started_at)
  ended_attempts({[attempt_field(outcome, run_at, started_at)] = 1})
end

-- A job that waits for dependencies no more: it leaves their waiter sets.
local function stop_waiting(id)
  local f = redis.call('HMGET', jkey(id), 'depends_on', 'waiting_for')
  if tonumber(f[2] or '0') > 0 then
    for _, dep in ipairs(ids_of(f[1])) do redis.call('SREM', k('waiters', dep), id) end
    redis.call('HSET', jkey(id), 'waiting_for', 0)
  end
end

-- A job that ended `status` settles the jobs waiting for it (SPEC §8): a dependent runs once
-- all its dependencies are done (or finished, with "run"); with "cancel", one that ended
-- failed or cancelled cancels it, and in turn its own dependents.
local function settle(id, status)
  local todo = {{id, status}}
  while #todo > 0 do
    local dep, st = unpack(table.remove(todo))
    local waiters = redis.call('SMEMBERS', k('waiters', dep))
    if #waiters > 0 then redis.call('DEL', k('waiters', dep)) end
    for _, w in ipairs(waiters) do
      local f = redis.call('HMGET', jkey(w), 'status', 'waiting_for', 'on_dependency_failure',
        'queue', 'run_at', 'concurrency_key')
      if f[1] == 'pending' and tonumber(f[2] or '0') > 0 then
        if st == 'done' or f[3] == 'run' then
          if redis.call('HINCRBY', jkey(w), 'waiting_for', -1) <= 0 then
            put_pending(w, f[4], tonumber(f[5]))
          end
        else
          stop_waiting(w)
          set_status(w, f[4], f[6], 'pending', 'cancelled')
          redis.call('HSET', jkey(w), 'last_error', 'dependency ' .. dep .. ' ended ' .. st)
          finished(w, 'cancelled')
          todo[#todo + 1] = {w, 'cancelled'}
        end
      end
    end
  end
end

-- Whether a queue's settings limit how many of its jobs run at once (a run ending there
-- frees a slot that idle workers of other processes may take).
local function limited(queue)
  local s = redis.call('HMGET', k('settings', queue), 'concurrency', 'key_concurrency',
    'rate_count')
  return (s[1] and s[1] ~= '') or (s[2] and s[2] ~= '') or (s[3] and s[3] ~= '')
end

-- The claim: due pending jobs → processing under a fresh lease, within each queue's settings.
-- A due job waits in its queue's priority order (`ready:<queue>`, and per concurrency_key
-- `kready:<queue>\t<key>`); a job for later waits in `scheduled:<queue>` by run_at, and the
-- first claim after its run_at moves it into that order. Candidates come from there only.
-- Read at most this many more than a queue may start: a job a cancelled run still holds is
-- passed over. A plain queue reads them a page at a time, only as far as it has to.
local SPARE = 100
local PAGE_SPARE = 4
local PROMOTE_BATCH = 1000

local function promote(queue)
  local due = redis.call('ZRANGEBYSCORE', k('scheduled', queue), '-inf', NOW,
    'WITHSCORES', 'LIMIT', 0, PROMOTE_BATCH)
  for j = 1, #due, 2 do
    local id = due[j]
    local f = redis.call('HMGET', jkey(id), 'priority', 'concurrency_key')
    make_ready(id, queue, f[2], tonumber(f[1]), tonumber(due[j + 1]))
    redis.call('ZREM', k('scheduled', queue), id)
  end
end

-- A queue's settings as the claim needs them; nil while it is paused or held.
local function open_queue(queue, limit)
  local s = redis.call('HMGET', k('settings', queue), 'paused', 'paused_until', 'concurrency',
    'rate_count', 'rate_period', 'key_concurrency', 'fair')
  if s[1] == '1' or (s[2] and s[2] ~= '' and tonumber(s[2]) > NOW) then return nil end
  local q = {name = queue, budget = limit, per_key = tonumber(s[6] or ''), fair = s[7] == '1'}
  local conc = tonumber(s[3] or '')
  if conc then
    local busy = tonumber(redis.call('HGET', k('counts'), queue .. '\tprocessing') or '0')
    q.budget = math.min(q.budget, conc - busy)
  end
  local rate = tonumber(s[4] or '')
  if rate then
    -- a sliding window: the starts of the last period, trimmed as it slides
    q.window = tonumber(s[5]) * 1000000
    redis.call('ZREMRANGEBYSCORE', k('window', queue), '-inf', '(' .. int(NOW - q.window + 1))
    q.budget = math.min(q.budget, rate - redis.call('ZCARD', k('window', queue)))
  end
  return q
end

local function candidate(list, q, member, score, key, turn, draw)
  list[#list + 1] = {prio = tonumber(score), member = member, queue = q, key = key,
    turn = turn, draw = draw}
end

-- A plain queue's candidates, in claim order already (`ready` sorts by priority, then by
-- member: run_at, id), read a page at a time (the jobs taken leave the set only at the
-- claim's end, so each page starts where the last ended).
local function plain_source(q)
  local src = {q = q, list = {}, at = 1, read = 0, more = true}
  function src.head()
    if src.at > #src.list then
      local room = q.budget + SPARE - src.read
      if not src.more or room <= 0 then return nil end
      local want = math.min(room, q.budget + PAGE_SPARE)
      local top = redis.call('ZRANGE', k('ready', q.name), src.read, src.read + want - 1,
        'WITHSCORES')
      src.list, src.at, src.read = {}, 1, src.read + #top / 2
      src.more = #top / 2 == want
      for j = 1, #top, 2 do candidate(src.list, q, top[j], top[j + 1], nil, 0, 0) end
      if #src.list == 0 then return nil end
    end
    return src.list[src.at]
  end
  function src.pop() src.at = src.at + 1 end
  return src
end

-- A keyed queue (key_concurrency or fair): the first jobs of each concurrency_key with
-- work, as many as the key may still start. In a fair queue a job's turn is its key's
-- running jobs plus its place among the key's candidates, and between equal turns the key
-- served longest ago goes first, so claims rotate across keys (priority still first).
local function keyed_candidates(list, q)
  local keys = redis.call('HKEYS', k('rkeys', q.name))
  q.busy = {}
  for _, key in ipairs(keys) do
    local busy = 0
    if key ~= '' then busy = tonumber(redis.call('HGET', k('keybusy', q.name), key) or '0') end
    q.busy[key] = busy
    local room = q.budget
    if q.per_key and key ~= '' then room = math.min(room, q.per_key - busy) end
    if room > 0 then
      local draw = 0
      if q.fair then draw = tonumber(redis.call('HGET', k('served', q.name), key) or '0') end
      local top = redis.call('ZRANGE', qkey('kready', q.name, key), 0, room + SPARE - 1,
        'WITHSCORES')
      for j = 1, #top, 2 do
        local turn = 0
        if q.fair then turn = busy + (j + 1) / 2 end
        candidate(list, q, top[j], top[j + 1], key, turn, draw)
      end
    end
  end
end

local function before(a, b)
  if a.prio ~= b.prio then return a.prio < b.prio end
  if a.turn ~= b.turn then return a.turn < b.turn end
  if a.draw ~= b.draw then return a.draw < b.draw end
  return a.member < b.member
end

-- A keyed queue's candidates, all read at once and sorted.
local function keyed_source(q)
  local src = {q = q, list = {}, at = 1}
  keyed_candidates(src.list, q)
  table.sort(src.list, before)
  function src.head() return src.list[src.at] end
  function src.pop() src.at = src.at + 1 end
  return src
end

-- The fields of a candidate that `startable` and `take` read (one HMGET).
local CANDIDATE = {'lease', 'run_at', 'queue', 'concurrency_key', 'rm', 'attempts'}

-- The index and count changes of the jobs a claim takes, made once per claim (a command
-- per job each cost more than the claim's other work).
local function new_batch() return {queues = {}, ids = {}, leases = {}} end

-- Runs `command key member...` over `members`, a bounded number at a time (Lua's stack).
local CHUNK = 500
local function each_chunk(command, key, members)
  for i = 1, #members, CHUNK do
    redis.call(command, key, unpack(members, i, math.min(i + CHUNK - 1, #members)))
  end
end

local function flush(b)
  for queue, t in pairs(b.queues) do
    each_chunk('ZREM', k('pending', queue), t.ids)
    each_chunk('ZREM', k('ready', queue), t.rms)
    for ckey, rms in pairs(t.keys) do
      each_chunk('ZREM', qkey('kready', queue, ckey), rms)
      if redis.call('HINCRBY', k('rkeys', queue), ckey, -#rms) <= 0 then
        redis.call('HDEL', k('rkeys', queue), ckey)
      end
      if ckey ~= '' then redis.call('HINCRBY', k('keybusy', queue), ckey, #rms) end
    end
    count(queue, 'pending', -#t.ids)
    count(queue, 'processing', #t.ids)
  end
  each_chunk('ZREM', k('status', 'pending'), b.ids)
  local by_id = {}
  for i, id in ipairs(b.ids) do by_id[2 * i - 1], by_id[2 * i] = id, id end
  each_chunk('ZADD', k('status', 'processing'), by_id)
  each_chunk('ZADD', k('leases'), b.leases)
end

-- `f`: the job's CANDIDATE fields. The job leaves the ready order (it is in no
-- `scheduled` set: a job is in one or the other) and starts under a fresh lease; its
-- indexes and counts change in `b`, at the claim's end.
local function take(id, f, q, key, worker, lease, b)
  local j, queue, ckey, rm = jkey(id), f[3], f[4] or '', f[5]
  local t = b.queues[queue]
  if t == nil then
    t = {ids = {}, rms = {}, keys = {}}
    b.queues[queue] = t
  end
  t.ids[#t.ids + 1], t.rms[#t.rms + 1] = id, rm
  local rms = t.keys[ckey]
  if rms == nil then
    rms = {}
    t.keys[ckey] = rms
  end
  rms[#rms + 1] = rm
  b.ids[#b.ids + 1] = id
  b.leases[#b.leases + 1], b.leases[#b.leases + 2] = NOW + lease, id
  redis.call('HDEL', j, 'rm')
  local attempts = tonumber(f[6]) + 1
  redis.call('HSET', j, 'status', 'processing', 'attempts', attempts, 'worker', worker,
    'started_at', NOW, 'updated_at', NOW, 'lease', NOW + lease, 'progress', '',
    'progress_message', '')
  if redis.call('RPUSH', k('starts', id), NOW) > 101 then
    redis.call('LTRIM', k('starts', id), -101, -1)
  end
  if q.window then redis.call('ZADD', k('window', q.name), NOW, id .. ':' .. attempts) end
  if q.fair then redis.call('HSET', k('served', q.name), key or '', NOW) end
end

-- Whether a candidate may start now: due, no live lease (a retried job whose cancelled run
-- may still go on), and within its queue's budget and its key's limit. Returns its
-- CANDIDATE fields when it may.
local function startable(c, id, taken)
  local q = c.queue
  if (taken[q] or 0) >= q.budget then return nil end
  if q.per_key and c.key and c.key ~= '' then
    if q.busy[c.key] + (taken[q.name .. '\t' .. c.key] or 0) >= q.per_key then return nil end
  end
  local f = redis.call('HMGET', jkey(id), unpack(CANDIDATE))
  if f[1] and f[1] ~= '' and tonumber(f[1]) > NOW then return nil end
  if not f[5] or tonumber(f[2]) > NOW then return nil end
  return f
end

-- Up to `limit` jobs for `worker`, highest priority first, then oldest run_at, then id, from
-- `queues` (empty: every queue): each queue's candidates come in that order, and the claim
-- merges them. Returns their ids in claim order.
local function claim_jobs(worker, limit, lease, queues)
  if #queues == 0 then queues = redis.call('SMEMBERS', k('queues')) end
  local sources = {}
  for _, name in ipairs(queues) do
    local q = open_queue(name, limit)
    if q and q.budget > 0 then
      promote(name)
      if q.per_key or q.fair then
        sources[#sources + 1] = keyed_source(q)
      else
        sources[#sources + 1] = plain_source(q)
      end
    end
  end
  local claimed, taken, b = {}, {}, new_batch()
  while #claimed < limit do
    local best, c = nil, nil
    for _, src in ipairs(sources) do
      if (taken[src.q] or 0) < src.q.budget then -- a queue whose budget is spent is done
        local head = src.head()
        if head and (c == nil or before(head, c)) then best, c = src, head end
      end
    end
    if c == nil then break end
    local id = tonumber(string.sub(c.member, 18))
    local f = startable(c, id, taken)
    if f then
      take(id, f, c.queue, c.key, worker, lease, b)
      taken[c.queue] = (taken[c.queue] or 0) + 1
      if c.key then
        local kk = c.queue.name .. '\t' .. c.key
        taken[kk] = (taken[kk] or 0) + 1
      end
      claimed[#claimed + 1] = id
    end
    best.pop()
  end
  flush(b)
  return claimed
end

-- A: worker, limit, lease (µs), then the queues (none: every queue). Returns the claimed
-- ids; SHOW returns the jobs' hashes.
local function claim_from(first)
  local queues = {}
  for i = first + 3, #A do queues[#queues + 1] = A[i] end
  return claim_jobs(A[first], tonumber(A[first + 1]), tonumber(A[first + 2]), queues)
end

OPS.claim = function() return claim_from(1) end
SHOW.claim = hashes

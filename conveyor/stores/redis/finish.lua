-- The end of runs, each only while its claim holds the job (A: per run 7 arguments: kind,
-- id, worker, attempt, result, error, retry_at). A processing job takes the outcome; a job no
-- longer processing (cancelled) only loses the run's lease; an `ended` run of a job still
-- processing changes nothing (its lease runs on, and recovery takes it when it expires).
local FINISH_FIELDS = 7

-- The index, count and aggregate changes of the runs one call ends, made once per call
-- (a command per run each cost more than the rest of its outcome).
local function ended_batch()
  return {leases = {}, moves = {}, counts = {}, finished = {}, minutes = {}, limited = {}}
end

local function add(list, key, value)
  local l = list[key]
  if l == nil then
    l = {}
    list[key] = l
  end
  l[#l + 1] = value
end

local function flush_ended(b)
  each_chunk('ZREM', k('leases'), b.leases)
  for new, ids in pairs(b.moves) do -- every run ended here was processing
    each_chunk('ZREM', k('status', 'processing'), ids)
    local by_id = {}
    for i, id in ipairs(ids) do by_id[2 * i - 1], by_id[2 * i] = id, id end
    each_chunk('ZADD', k('status', new), by_id)
  end
  for field, n in pairs(b.counts) do
    if n ~= 0 then redis.call('HINCRBY', k('counts'), field, n) end
  end
  for status, ids in pairs(b.finished) do
    local at = {}
    for i, id in ipairs(ids) do at[2 * i - 1], at[2 * i] = NOW, id end
    each_chunk('ZADD', k('finished', status), at)
  end
  ended_attempts(b.minutes)
end

local function tally(b, field, by) b.counts[field] = (b.counts[field] or 0) + by end

local function outcome(id, run, kind, result, err, retry_at, b)
  local new, field, fields = 'pending', nil, {'lease', '', 'updated_at', NOW}
  if kind == 'done' then
    new, field = 'done', 'f'
    fields[#fields + 1], fields[#fields + 2] = 'result', result
  elseif kind == 'failed' then
    new, field = 'failed', 'x'
    fields[#fields + 1], fields[#fields + 2] = 'last_error', err
  elseif kind == 'retry' then
    field = 'r'
    fields[#fields + 1], fields[#fields + 2] = 'last_error', err
  else -- snoozed: the attempt is given back
    fields[#fields + 1], fields[#fields + 2] = 'attempts', run.attempts - 1
  end
  if field then
    local f = attempt_field(field, run.run_at, run.started_at)
    b.minutes[f] = (b.minutes[f] or 0) + 1
  end
  if new == 'pending' then
    fields[#fields + 1], fields[#fields + 2] = 'run_at', retry_at
  else
    fields[#fields + 1], fields[#fields + 2] = 'finished_at', NOW
  end
  fields[#fields + 1], fields[#fields + 2] = 'status', new
  redis.call('HSET', jkey(id), unpack(fields))
  b.leases[#b.leases + 1] = id
  add(b.moves, new, id)
  tally(b, run.queue .. '\tprocessing', -1)
  tally(b, run.queue .. '\t' .. new, 1)
  if run.ckey and run.ckey ~= '' then
    redis.call('HINCRBY', k('keybusy', run.queue), run.ckey, -1)
  end
  if new == 'pending' then
    put_pending(id, run.queue, tonumber(retry_at))
  else
    add(b.finished, new, id)
    free_unique(id, run.unique_key)
    redis.call('PUBLISH', k('finished'), id)
    settle(id, new)
  end
  -- the slot a run frees in a limited queue may be taken by another process's idle worker
  if b.limited[run.queue] == nil then b.limited[run.queue] = limited(run.queue) or false end
  if b.limited[run.queue] then STATE.wake = true end
  return new
end

-- Returns {id, status} pairs of the outcomes applied.
local function finish_runs(first, last)
  local applied, b = {}, ended_batch()
  for i = first, last, FINISH_FIELDS do
    local kind, id, worker, attempt, result, err, retry_at = unpack(A, i, i + FINISH_FIELDS - 1)
    local run = holds(id, worker, attempt)
    if run then
      if run.status == 'processing' and kind ~= 'ended' then
        applied[#applied + 1] = {tonumber(id), outcome(id, run, kind, result, err, retry_at, b)}
      elseif run.status ~= 'processing' then
        end_lease(id, nil)
      end
    end
  end
  flush_ended(b)
  return applied
end

OPS.finish = function() return finish_runs(1, #A) end

-- finish then claim, one script (A: the number of runs, the runs, then the claim's
-- arguments): a busy worker pays one round trip per batch, and a slot its runs free in a
-- limited queue is taken by this claim first. Returns {applied, claimed ids} (SHOW: the
-- claimed jobs' hashes).
OPS.finish_and_claim = function()
  local last = 1 + FINISH_FIELDS * tonumber(A[1])
  local applied = finish_runs(2, last)
  return {applied, claim_from(last + 1)}
end
SHOW.finish_and_claim = function(reply) return {reply[1], hashes(reply[2])} end

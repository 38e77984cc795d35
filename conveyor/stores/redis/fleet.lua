-- The fleet's shared state: leadership of chores, queue settings, per-minute aggregates.

-- Take or renew role A[1] for holder A[2] until A[3] µs from now: 1 when it was free,
-- expired or already the holder's, 0 while another holder's lasts.
OPS.lead = function()
  local key = k('leader', A[1])
  local f = redis.call('HMGET', key, 'holder', 'until')
  if f[1] and f[1] ~= A[2] and tonumber(f[2]) > NOW then return 0 end
  redis.call('HSET', key, 'holder', A[2], 'until', NOW + tonumber(A[3]))
  return 1
end

-- Give role A[1] up if holder A[2] holds it.
OPS.resign = function()
  local key = k('leader', A[1])
  if redis.call('HGET', key, 'holder') == A[2] then redis.call('DEL', key) end
  return 1
end

-- Queue A[1]'s settings: A[2] is the change (configure: field/value pairs from A[3], ""
-- clears; pause; resume, which ends a backoff too; hold until A[3] µs, the later deadline
-- kept). Wakes workers; returns {now, the settings' hash}.
OPS.queue = function()
  local key, change = k('settings', A[1]), A[2]
  if change == 'configure' then
    for i = 3, #A, 2 do redis.call('HSET', key, A[i], A[i + 1]) end
  elseif change == 'pause' then
    redis.call('HSET', key, 'paused', '1')
  elseif change == 'resume' then
    redis.call('HSET', key, 'paused', '0', 'paused_until', '')
  else
    local current = tonumber(redis.call('HGET', key, 'paused_until') or '') or 0
    redis.call('HSET', key, 'paused_until', math.max(current, tonumber(A[3])))
  end
  redis.call('HSET', key, 'configured', '1')
  redis.call('SADD', k('queues'), A[1])
  STATE.wake = true
  return {NOW, redis.call('HGETALL', key)}
end

-- Delete the aggregated minutes before minute A[1]; returns the rows (minute, wait bucket,
-- run bucket) deleted.
OPS.compact = function()
  local minutes = redis.call('ZRANGEBYSCORE', k('minutes'), '-inf', '(' .. A[1])
  local rows = 0
  for _, minute in ipairs(minutes) do
    local seen = {}
    for _, field in ipairs(redis.call('HKEYS', k('minute', minute))) do
      local row = string.match(field, '^(%d+:%d+):')
      if not seen[row] then
        seen[row] = true
        rows = rows + 1
      end
    end
    redis.call('DEL', k('minute', minute))
    redis.call('ZREM', k('minutes'), minute)
  end
  return rows
end

-- The end of the store's one script: run the op A names. With a reply token, a call that
-- redis-py could not read the reply of may be sent again: the first run's reply is kept
-- for REPLY_MS and returned instead of running the op twice (enqueue, claim). An op with a
-- SHOW step keeps its reply small (ids) and adds the jobs' hashes as it returns, so a
-- repeat returns the jobs as they are then.
local REPLY_MS = 60000
local token = ARGV[4]
local show = SHOW[ARGV[3]] or function(reply) return reply end
if token ~= '' then
  local kept = redis.call('GET', k('reply', token))
  if kept then return show(cmsgpack.unpack(kept)) end
end
local op = OPS[ARGV[3]]
if op == nil then return redis.error_reply('conveyor: unknown op ' .. ARGV[3]) end
local reply = op()
if token ~= '' and type(reply) == 'table' then
  redis.call('SET', k('reply', token), cmsgpack.pack(reply), 'PX', REPLY_MS)
end
if STATE.wake then redis.call('PUBLISH', k('wake'), '1') end
return show(reply)

-- The end of the store's code: run the op argv[3] names. With a reply token, a call that
-- redis-py could not read the reply of may be sent again: the first run's reply is kept
-- for REPLY_MS and returned instead of running the op twice (enqueue, claim). An op with a
-- SHOW step keeps its reply small (ids) and adds the jobs' hashes as it returns, so a
-- repeat returns the jobs as they are then.
local REPLY_MS = 60000
local function as_is(reply) return reply end

local function run(argv)
  begin(argv)
  local token = argv[4]
  local show = SHOW[argv[3]] or as_is
  if token ~= '' then
    local kept = redis.call('GET', k('reply', token))
    if kept then return show(cmsgpack.unpack(kept)) end
  end
  local op = OPS[argv[3]]
  if op == nil then return redis.error_reply('conveyor: unknown op ' .. argv[3]) end
  local reply = op()
  if token ~= '' and type(reply) == 'table' then
    redis.call('SET', k('reply', token), cmsgpack.pack(reply), 'PX', REPLY_MS)
  end
  if STATE.wake then redis.call('PUBLISH', k('wake'), '1') end
  return show(reply)
end

--[[
  Withdraws an admission that the API could not confirm in the queue (its publish failed or its outcome is unknown),
  before the shopper is told 503: no held units, no pending units, no idempotency key, no queued state and no
  dangling `last` left behind, and the request is marked withdrawn in the decided hash, so a copy of its message
  that reached the queue after all is dropped by decide-6.lua (code 3) instead of becoming an order.
  Idempotent: a request already decided keeps its decision.

  KEYS    as admit-8.lua: sale, held, last, inflight, requests, decided, idempotency key, purchase hash
  ARGV[1] requestId  ARGV[2] userId  ARGV[3] quantity

  Returns {status, decision}:
    1 WITHDRAWN      it was inflight: everything it held is released
    2 MARKED         it was not inflight (Redis was rebuilt since it was admitted): marked withdrawn only
    0 DECIDED        it was decided before: decision = the decision code (3 when it was withdrawn already)
]]
local rcall = redis.call
local requestId, userId, quantity = ARGV[1], ARGV[2], tonumber(ARGV[3])
local before = rcall("HGET", KEYS[6], requestId)
if before then return {0, tonumber(before)} end

local status = 2
if rcall("ZREM", KEYS[4], requestId) == 1 then
  status = 1
  rcall("HDEL", KEYS[5], requestId)
  rcall("HINCRBY", KEYS[1], "pending", -quantity)
  if rcall("HINCRBY", KEYS[2], userId, -quantity) <= 0 then rcall("HDEL", KEYS[2], userId) end
end
if rcall("EXISTS", KEYS[1]) == 1 then rcall("HSET", KEYS[6], requestId, 3) end
if rcall("HGET", KEYS[3], userId) == requestId then rcall("HDEL", KEYS[3], userId) end
local seen = rcall("GET", KEYS[7])
if seen and string.find(seen, "|" .. requestId .. "|", 1, true) then rcall("DEL", KEYS[7]) end
rcall("DEL", KEYS[8])
return {status, 3}

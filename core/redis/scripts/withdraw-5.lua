--[[
  Withdraws an admission whose publish failed, so the shopper's retry is not blocked (no held units, no pending
  units, no idempotency key left behind). Idempotent: only an inflight request is withdrawn, once.

  KEYS[1] sale hash  KEYS[2] held hash  KEYS[3] inflight zset  KEYS[4] requests hash  KEYS[5] idempotency key
  ARGV[1] requestId  ARGV[2] userId  ARGV[3] quantity

  Returns 1 when withdrawn, 0 when the request was not inflight (already decided or withdrawn).
]]
local rcall = redis.call
local requestId, quantity = ARGV[1], tonumber(ARGV[3])
if rcall("ZREM", KEYS[3], requestId) == 0 then return 0 end
rcall("HDEL", KEYS[4], requestId)
rcall("HINCRBY", KEYS[1], "pending", -quantity)
if rcall("HINCRBY", KEYS[2], ARGV[2], -quantity) <= 0 then rcall("HDEL", KEYS[2], ARGV[2]) end
local seen = rcall("GET", KEYS[5])
if seen and string.sub(seen, -#requestId) == requestId then rcall("DEL", KEYS[5]) end
return 1

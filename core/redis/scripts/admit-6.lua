--[[
  Admits a purchase request into the queue, or refuses it, in one atomic step.
  Every key is read before any is written, so a refusal changes nothing.
  Safe to run twice for one requestId (ioredis re-sends in-flight commands after a reconnect).

  KEYS[1] sale hash        stock, remaining, pending, limit, starts (ms), ends (ms, 0 = none), epoch
  KEYS[2] held hash        userId -> units held by the shopper's live requests and active orders
  KEYS[3] last hash        userId -> requestId of the shopper's latest admitted request
  KEYS[4] inflight zset    requestId -> admission time (ms): admitted, not yet decided
  KEYS[5] requests hash    requestId -> "quantity|userId" of each inflight request
  KEYS[6] idempotency key  "bodyHash|requestId", expires after ARGV[6] s
  ARGV[1] requestId  ARGV[2] userId  ARGV[3] quantity  ARGV[4] now (ms)
  ARGV[5] body hash, "" when the request has no Idempotency-Key  ARGV[6] idempotency key TTL (s)

  Returns {code, value}:
    0 ADMITTED               value = the sale's epoch, carried by the message
    1 REPLAYED               value = requestId first admitted with this idempotency key
    2 IDEMPOTENCY_KEY_REUSED
    3 SALE_NOT_LOADED        the sale is not in Redis (unknown, or Redis lost its state)
    4 SALE_NOT_ACTIVE        value = "upcoming" | "ended"
    5 OVER_LIMIT             value = the sale's per-user limit (units)
    6 DUPLICATE              value = requestId of the shopper's latest request
    7 SOLD_OUT               every remaining unit is sold or held by a request in the queue
]]
local rcall = redis.call
local requestId, userId, quantity, now = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local bodyHash = ARGV[5]

local sale = rcall("HMGET", KEYS[1], "remaining", "pending", "limit", "starts", "ends", "epoch")
if not sale[1] then return {3, ""} end
if rcall("ZSCORE", KEYS[4], requestId) then return {0, sale[6]} end

if bodyHash ~= "" then
  local seen = rcall("GET", KEYS[6])
  if seen then
    local sep = string.find(seen, "|", 1, true)
    if string.sub(seen, 1, sep - 1) == bodyHash then return {1, string.sub(seen, sep + 1)} end
    return {2, ""}
  end
end

local remaining, pending, limit = tonumber(sale[1]), tonumber(sale[2]), tonumber(sale[3])
local starts, ends = tonumber(sale[4]), tonumber(sale[5])
if now < starts then return {4, "upcoming"} end
if ends > 0 and now >= ends then return {4, "ended"} end
if quantity > limit then return {5, tostring(limit)} end
local held = tonumber(rcall("HGET", KEYS[2], userId) or "0")
if held + quantity > limit then return {6, rcall("HGET", KEYS[3], userId) or ""} end
if remaining - pending < quantity then return {7, ""} end

rcall("HINCRBY", KEYS[1], "pending", quantity)
rcall("HINCRBY", KEYS[2], userId, quantity)
rcall("HSET", KEYS[3], userId, requestId)
rcall("ZADD", KEYS[4], now, requestId)
rcall("HSET", KEYS[5], requestId, quantity .. "|" .. userId)
if bodyHash ~= "" then rcall("SET", KEYS[6], bodyHash .. "|" .. requestId, "EX", ARGV[6]) end
return {0, sale[6]}

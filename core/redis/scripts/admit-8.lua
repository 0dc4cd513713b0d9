--[[
  Admits a purchase request into the queue, or refuses it, in one atomic step, and stores the request's queued state
  in the same step (one round trip per accept: the state lives in the sale's slot).
  Every key is read before any is written, so a refusal changes nothing (but for forgetting the idempotency key of
  a withdrawn request, which frees nothing anyone holds).
  Safe to run twice for one requestId (ioredis re-sends in-flight commands after a reconnect).

  KEYS[1] sale hash        stock, remaining, pending, limit, starts (ms), ends (ms, 0 = none), epoch
  KEYS[2] held hash        userId -> units held by the shopper's live requests and active orders
  KEYS[3] last hash        userId -> requestId of the shopper's latest admitted request
  KEYS[4] inflight zset    requestId -> admission time (ms): admitted, not yet decided
  KEYS[5] requests hash    requestId -> "quantity|userId" of each inflight request
  KEYS[6] decided hash     requestId -> decision code (see decide-6.lua)
  KEYS[7] idempotency key  "bodyHash|requestId|quantity|epoch|admittedAt", expires after ARGV[6] s
  KEYS[8] purchase hash    version, body: the request's shopper-visible state (see put-state-1.lua)
  ARGV[1] requestId  ARGV[2] userId  ARGV[3] quantity  ARGV[4] now (ms)
  ARGV[5] body hash, "" when the request has no Idempotency-Key  ARGV[6] idempotency key TTL (s)
  ARGV[7] the queued state's body (JSON)  ARGV[8] its version  ARGV[9] its TTL (s)

  Returns {code, value, ...}:
    0 ADMITTED               value = the sale's epoch, carried by the message
    1 REPLAYED               value = requestId first admitted with this idempotency key, then its quantity, the
                             epoch and admission time (ms) it was admitted with, and its decision code ("" when
                             undecided): what the API needs to make sure it is in the queue before answering 202
    2 IDEMPOTENCY_KEY_REUSED
    3 SALE_NOT_LOADED        the sale is not in Redis (unknown, or Redis lost its state)
    4 SALE_NOT_ACTIVE        value = "upcoming" | "ended"
    5 OVER_LIMIT             value = the sale's per-user limit (units)
    6 DUPLICATE              value = requestId of the shopper's latest request ("" when Redis does not know it)
    7 SOLD_OUT               every remaining unit is sold or held by a request in the queue
    8 DECIDED                value = its decision code: the request was withdrawn (its shopper was told 503) or
                             decided, and is never admitted again. A run of this script can come late: ioredis
                             re-sends a command after a reconnect although its caller timed out and withdrew it.
]]
local rcall = redis.call
local requestId, userId, quantity, now = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local bodyHash = ARGV[5]

local sale = rcall("HMGET", KEYS[1], "remaining", "pending", "limit", "starts", "ends", "epoch")
if not sale[1] then return {3, ""} end
if rcall("ZSCORE", KEYS[4], requestId) then return {0, sale[6]} end
local decision = rcall("HGET", KEYS[6], requestId)
if decision then return {8, decision} end

if bodyHash ~= "" then
  local seen = rcall("GET", KEYS[7])
  if seen then
    local f = {}
    for part in string.gmatch(seen, "[^|]+") do f[#f + 1] = part end
    if f[1] ~= bodyHash then return {2, ""} end
    local decided = rcall("HGET", KEYS[6], f[2])
    -- A withdrawn request was never accepted (its shopper was told 503): the key is free again.
    if decided ~= "3" then return {1, f[2], f[3], f[4], f[5], decided or ""} end
    rcall("DEL", KEYS[7])
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
if bodyHash ~= "" then
  rcall("SET", KEYS[7], bodyHash .. "|" .. requestId .. "|" .. quantity .. "|" .. sale[6] .. "|" .. now, "EX", ARGV[6])
end
rcall("HSET", KEYS[8], "version", ARGV[8], "body", ARGV[7])
rcall("EXPIRE", KEYS[8], ARGV[9])
return {0, sale[6]}

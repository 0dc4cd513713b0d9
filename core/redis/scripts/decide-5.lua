--[[
  Decides an admitted purchase: takes its units from stock, or refuses it.
  Idempotent per requestId: a redelivered message, or a command ioredis re-sends after a reconnect, gets the first
  decision back and changes nothing.

  KEYS[1] sale hash  KEYS[2] held hash  KEYS[3] inflight zset  KEYS[4] requests hash  (see admit-6.lua)
  KEYS[5] decided hash     requestId -> decision code
  ARGV[1] requestId  ARGV[2] userId  ARGV[3] quantity  ARGV[4] the sale's epoch when the request was admitted

  Returns {code, replayed}, replayed = 1 when the request was decided before:
    0 SUCCEEDED        the units are the shopper's (reservation pending payment)
    1 SOLD_OUT
    2 OVER_LIMIT       (only for requests admitted before a rebuild) the shopper already holds the limit
    3 WITHDRAWN        the API withdrew the admission (its publish failed and the shopper was told 503): drop it
    4 SALE_NOT_LOADED  rebuild the sale from PostgreSQL, then run again
    5 EXPIRED, 6 FAILED  (only as replays: written by release-3.lua)
]]
local rcall = redis.call
local requestId, userId, quantity = ARGV[1], ARGV[2], tonumber(ARGV[3])

local before = rcall("HGET", KEYS[5], requestId)
if before then return {tonumber(before), 1} end
local sale = rcall("HMGET", KEYS[1], "remaining", "limit", "epoch")
if not sale[1] then return {4, 0} end
local remaining, limit = tonumber(sale[1]), tonumber(sale[2])

local code
if sale[3] == ARGV[4] then
  -- Admitted in this epoch: the admission holds `quantity` in pending and in the shopper's held units.
  if rcall("ZREM", KEYS[3], requestId) == 0 then return {3, 0} end
  rcall("HDEL", KEYS[4], requestId)
  rcall("HINCRBY", KEYS[1], "pending", -quantity)
  if remaining >= quantity then
    code = 0
  else
    code = 1
    if rcall("HINCRBY", KEYS[2], userId, -quantity) <= 0 then rcall("HDEL", KEYS[2], userId) end
  end
else
  -- Admitted before Redis lost its state and the sale was rebuilt: admit and decide in one step.
  local held = tonumber(rcall("HGET", KEYS[2], userId) or "0")
  if held + quantity > limit then
    code = 2
  elseif remaining >= quantity then
    code = 0
    rcall("HINCRBY", KEYS[2], userId, quantity)
  else
    code = 1
  end
end
if code == 0 then rcall("HINCRBY", KEYS[1], "remaining", -quantity) end
rcall("HSET", KEYS[5], requestId, code)
return {code, 0}

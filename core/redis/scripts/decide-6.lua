--[[
  Decides admitted purchases of one sale: takes their units from stock, or refuses them, one after another in one
  atomic call (a worker sends a whole batch at once; all keys share the sale's hash tag).
  Idempotent per requestId: a redelivered message, or a command ioredis re-sends after a reconnect, gets the first
  decision back and changes nothing.

  KEYS[1] sale hash  KEYS[2] held hash  KEYS[3] inflight zset  KEYS[4] requests hash  (see admit-8.lua)
  KEYS[5] decided hash     requestId -> decision code
  KEYS[6] last hash        userId -> the request that holds the shopper's place (what a 409 duplicate-purchase names)
  ARGV    groups of four: requestId, userId, quantity, the sale's epoch when the request was admitted

  Returns a flat array: the sale's epoch (the decisions are valid only under it, see worker/persist.ts), then two
  integers per request in ARGV order: code, replayed (1 when decided before).
    code 0 SUCCEEDED        the units are the shopper's (reservation pending payment)
         1 SOLD_OUT
         2 OVER_LIMIT       (only for requests admitted before a rebuild) the shopper already holds the limit
         3 WITHDRAWN        the API withdrew the admission (its publish failed and the shopper was told 503): drop it
         4 SALE_NOT_LOADED  rebuild the sale from PostgreSQL, then run again
         5 EXPIRED, 6 FAILED  (only as replays: written by release-3.lua)
]]
local rcall = redis.call
local sale = rcall("HMGET", KEYS[1], "remaining", "limit", "epoch")
local out = {sale[3] or "0"}
if not sale[1] then
  for i = 1, #ARGV, 4 do out[#out + 1] = 4; out[#out + 1] = 0 end
  return out
end
local remaining, limit, epoch = tonumber(sale[1]), tonumber(sale[2]), sale[3]

for i = 1, #ARGV, 4 do
  local requestId, userId, quantity = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  local before = rcall("HGET", KEYS[5], requestId)
  local code, replayed = nil, 0
  if before then
    code, replayed = tonumber(before), 1
  elseif epoch == ARGV[i + 3] then
    -- Admitted in this epoch: the admission holds `quantity` in pending and in the shopper's held units.
    if rcall("ZREM", KEYS[3], requestId) == 0 then
      code = 3
    else
      rcall("HDEL", KEYS[4], requestId)
      rcall("HINCRBY", KEYS[1], "pending", -quantity)
      if remaining >= quantity then
        code = 0
      else
        code = 1
        if rcall("HINCRBY", KEYS[2], userId, -quantity) <= 0 then rcall("HDEL", KEYS[2], userId) end
      end
    end
  else
    -- Admitted before Redis lost its state and the sale was rebuilt: admit and decide in one step.
    local held = tonumber(rcall("HGET", KEYS[2], userId) or "0")
    if held + quantity > limit then
      code = 2
    elseif remaining >= quantity then
      code = 0
      rcall("HINCRBY", KEYS[2], userId, quantity)
      rcall("HSET", KEYS[6], userId, requestId)
    else
      code = 1
    end
  end
  if replayed == 0 and code ~= 3 then
    if code == 0 then
      remaining = remaining - quantity
      rcall("HINCRBY", KEYS[1], "remaining", -quantity)
    end
    rcall("HSET", KEYS[5], requestId, code)
  end
  out[#out + 1] = code
  out[#out + 1] = replayed
end
return out

--[[
  Loads a sale into Redis from PostgreSQL: at creation, after Redis lost its state, and when PostgreSQL refused a
  batch decided under an older epoch. Each load carries the epoch PostgreSQL just assigned (a growing integer): a
  sale already loaded with that epoch or a newer one is left alone, so processes racing to rebuild converge on the
  newest. The epoch also tells the decide script which queued requests were admitted before the rebuild.

  KEYS[1] sale hash  KEYS[2] held hash  KEYS[3] last hash  KEYS[4] inflight zset  KEYS[5] requests hash
  KEYS[6] decided hash  (see admit-8.lua)
  ARGV[1] stock  ARGV[2] remaining  ARGV[3] per-user limit  ARGV[4] starts (ms)  ARGV[5] ends (ms, 0 = none)
  ARGV[6] epoch  ARGV[7] number of buyers N, then N triples (userId, units held by active orders, requestId of the
  buyer's latest active order: what a 409 duplicate-purchase names), then pairs (requestId, decision code) of every
  decision PostgreSQL holds, withdrawals included

  Returns 1 when loaded, 0 when the sale was already loaded with this epoch or a newer one.
]]
local rcall = redis.call
local current = rcall("HGET", KEYS[1], "epoch")
if current and tonumber(current) >= tonumber(ARGV[6]) then return 0 end
rcall("DEL", KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6])
rcall("HSET", KEYS[1], "stock", ARGV[1], "remaining", ARGV[2], "pending", 0, "limit", ARGV[3],
  "starts", ARGV[4], "ends", ARGV[5], "epoch", ARGV[6])
local buyersEnd = 8 + 3 * tonumber(ARGV[7])
for i = 8, buyersEnd - 1, 3 do
  rcall("HSET", KEYS[2], ARGV[i], ARGV[i + 1])
  rcall("HSET", KEYS[3], ARGV[i], ARGV[i + 2])
end
for i = buyersEnd, #ARGV, 2 do rcall("HSET", KEYS[6], ARGV[i], ARGV[i + 1]) end
return 1

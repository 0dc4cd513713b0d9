--[[
  Returns the units of a succeeded purchase to stock: its reservation expired unpaid, it failed for good after it
  was decided, or PostgreSQL refused it. Idempotent per requestId: only a SUCCEEDED decision is released, once.

  KEYS[1] sale hash  KEYS[2] held hash  KEYS[3] decided hash  (see admit-8.lua, decide-6.lua)
  ARGV[1] requestId  ARGV[2] userId  ARGV[3] quantity  ARGV[4] the new decision code (1 SOLD_OUT, 5 EXPIRED, 6 FAILED)
  ARGV[5] pub/sub channel announcing returned stock  ARGV[6] the sale id, published on it

  Returns 1 when the units went back to stock (and were announced), 0 when there was nothing to release.
]]
local rcall = redis.call
local quantity = tonumber(ARGV[3])
if rcall("HGET", KEYS[3], ARGV[1]) ~= "0" then return 0 end
if rcall("EXISTS", KEYS[1]) == 0 then return 0 end
rcall("HINCRBY", KEYS[1], "remaining", quantity)
if rcall("HINCRBY", KEYS[2], ARGV[2], -quantity) <= 0 then rcall("HDEL", KEYS[2], ARGV[2]) end
rcall("HSET", KEYS[3], ARGV[1], ARGV[4])
rcall("PUBLISH", ARGV[5], ARGV[6])
return 1

--[[
  Ends a sale at a given time, unless it already ends earlier: admission (admit-8.lua) refuses it from then on.
  Never creates the sale hash: a sale Redis does not hold gets its end from PostgreSQL when it is loaded.
  Safe to run twice.

  KEYS[1] sale hash  (see admit-8.lua)
  ARGV[1] the end (ms since the epoch)

  Returns 1 when the end was set, 0 when the sale is not loaded or already ends at or before ARGV[1].
]]
local rcall = redis.call
if rcall("EXISTS", KEYS[1]) == 0 then return 0 end
local ends = tonumber(rcall("HGET", KEYS[1], "ends") or "0")
local at = tonumber(ARGV[1])
if ends > 0 and ends <= at then return 0 end
rcall("HSET", KEYS[1], "ends", ARGV[1])
return 1

--[[
  Marks shoppers whose waiting-room event streams are open on the calling node as present (so their tickets are
  not dropped as abandoned), and reads their tickets, in one call. A node calls it for each stream about every
  third of the abandon time, and for the streams whose ticket the last announced counter may have moved.

  KEYS[1] queue hash  KEYS[2] tickets hash  KEYS[3] seen zset  KEYS[4] pool zset  (see queue-join-7.lua)
  ARGV[1..] userIds

  Returns {poolServed, ticket1, poolRank1, ticket2, poolRank2, ...}: each ticket as stored ("" when the shopper has
  none), and its 0-based rank in the draw pool (-1 when not in it). poolServed (count of draw-pool tickets served)
  is the base the ranks are counted from.
]]
local rcall = redis.call
local t = rcall("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {tonumber(rcall("HGET", KEYS[1], "poolServed") or "0")}
local pooled = rcall("EXISTS", KEYS[4]) == 1
for i = 1, #ARGV do
  rcall("ZADD", KEYS[3], "XX", now, ARGV[i])
  out[#out + 1] = rcall("HGET", KEYS[2], ARGV[i]) or ""
  out[#out + 1] = pooled and (rcall("ZRANK", KEYS[4], ARGV[i]) or -1) or -1
end
return out

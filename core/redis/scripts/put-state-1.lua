--[[
  Stores a new version of a purchase's shopper-visible state, then announces it: persist first, then push, in one
  atomic step, so a subscriber that reads after subscribing can never miss a version. An older or equal version is
  ignored, so writers may race (the API's "queued" and the worker's result) and redeliveries change nothing.

  KEYS[1] purchase hash   version, body (JSON)
  ARGV[1] version  ARGV[2] body  ARGV[3] TTL (s)  ARGV[4] sharded pub/sub channel (in the purchase's slot)

  Returns 1 when stored and published, 0 when a version as new or newer was there.
]]
local rcall = redis.call
local current = tonumber(rcall("HGET", KEYS[1], "version") or "0")
if current >= tonumber(ARGV[1]) then return 0 end
rcall("HSET", KEYS[1], "version", ARGV[1], "body", ARGV[2])
rcall("EXPIRE", KEYS[1], ARGV[3])
rcall("SPUBLISH", ARGV[4], ARGV[2])
return 1

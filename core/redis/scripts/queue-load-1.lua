--[[
  Loads a sale's waiting-room settings into Redis unless they are there (so it never resets a running queue).

  KEYS[1] queue hash (see queue-join-7.lua)
  ARGV[1] opens (ms)  ARGV[2] starts (ms)  ARGV[3] ends (ms, 0 = none)  ARGV[4] interval between admissions (µs)
  ARGV[5] cap  ARGV[6] session (ms)  ARGV[7] order  ARGV[8] seed

  `loaded` (ms, Redis's clock) tells the announcements of this load from those of an earlier one that Redis lost.

  Returns 1 when loaded, 0 when already there.
]]
local rcall = redis.call
if rcall("EXISTS", KEYS[1]) == 1 then return 0 end
local t = rcall("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
rcall("HSET", KEYS[1], "opens", ARGV[1], "starts", ARGV[2], "ends", ARGV[3], "intervalUs", ARGV[4], "cap", ARGV[5],
  "session", ARGV[6], "order", ARGV[7], "seed", ARGV[8], "shuffled", 0, "tat", 0,
  "serving", 0, "poolServed", 0, "soldOut", 0, "version", 0, "loaded", now, "tickets", 0, "late", 0, "admitted", 0)
return 1

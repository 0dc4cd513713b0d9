--[[
  Gives a shopper a ticket in a sale's waiting room, or answers the ticket they already have. Time is Redis's own
  (TIME), so every API node agrees on what is the pre-queue and what is not.

  KEYS[1] queue hash     opens, starts (ms), intervalUs (µs between admissions), cap, session (ms), order
                         ("fifo" | "random"), seed, tickets (count), late (count of fifo places after the
                         pre-queue), and the counter's own fields (see queue-advance-11.lua)
  KEYS[2] tickets hash   userId -> "ticketNo|place|status|sessionEnd": place 0 = in the pre-queue, not yet
                         shuffled; -1 = in the random draw pool; status w waiting, a admitted, d done, x expired
  KEYS[3] pre list       userIds of the pre-queue in join order (the shuffle's input)
  KEYS[4] order zset     userId -> place: waiting tickets with a place (admitted lowest first)
  KEYS[5] pool zset      userId -> draw: waiting tickets of a random-order sale that joined after the start
  KEYS[6] seen zset      userId -> last poll or stream (ms), for waiting tickets
  KEYS[7] sale hash      remaining, pending (see admit-8.lua)
  ARGV[1] userId  ARGV[2] draw (a random integer, used by random-order sales)

  Returns {code, ticketNo}:
    0 JOINED     a new ticket
    1 EXISTING   the shopper's ticket, unchanged
    2 NOT_LOADED the waiting room is not in Redis
    3 NOT_OPEN   the pre-queue has not opened yet; ticketNo = opens (ms)
    4 SOLD_OUT   nothing remaining and nothing held: the queue is closed
    5 ENDED      the sale has ended
]]
local rcall = redis.call
local t = rcall("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local user = ARGV[1]

local q = rcall("HMGET", KEYS[1], "opens", "starts", "order", "ends")
if not q[1] then return {2, 0} end
local existing = rcall("HGET", KEYS[2], user)
if existing then
  rcall("ZADD", KEYS[6], "XX", now, user)
  return {1, tonumber(string.match(existing, "^(%d+)"))}
end
if now < tonumber(q[1]) then return {3, tonumber(q[1])} end
local ends = tonumber(q[4] or "0")
if ends > 0 and now >= ends then return {5, 0} end
local sale = rcall("HMGET", KEYS[7], "remaining", "pending")
if sale[1] and tonumber(sale[1]) <= 0 and tonumber(sale[2] or "0") <= 0 then return {4, 0} end

local n = rcall("HINCRBY", KEYS[1], "tickets", 1)
if now < tonumber(q[2]) then
  rcall("RPUSH", KEYS[3], user)
  rcall("HSET", KEYS[2], user, n .. "|0|w|0")
elseif q[3] == "random" then
  rcall("ZADD", KEYS[5], tonumber(ARGV[2]), user)
  rcall("HSET", KEYS[2], user, n .. "|-1|w|0")
else
  -- After the pre-queue's places 1..LLEN(pre): the pre-queue is closed once Redis's clock passed the start.
  local place = rcall("LLEN", KEYS[3]) + rcall("HINCRBY", KEYS[1], "late", 1)
  rcall("ZADD", KEYS[4], place, user)
  rcall("HSET", KEYS[2], user, n .. "|" .. place .. "|w|0")
end
rcall("ZADD", KEYS[6], now, user)
return {0, n}

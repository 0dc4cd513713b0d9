--[[
  The serving counter of a sale's waiting room, advanced lazily by whichever API node asks (no scheduler): shuffles
  the pre-queue once the sale has started, frees the places of shoppers whose purchase was decided or whose session
  expired, drops abandoned tickets when they reach the head, and admits at most one shopper per interval while
  fewer than `cap` are inside. Then it reads one shopper's ticket. Time is Redis's (TIME).

  The admission rate is a token bucket of capacity one: a shopper is admitted when `now >= nextAt`, and nextAt
  becomes now + interval, so two admissions are always at least one interval apart (never more than
  floor(W / interval) + 1 over any window W), credit never banks while nobody asks, and nothing is admitted while
  the cap is reached.

  The shuffle is a Fisher-Yates over the pre-queue in join order, driven by the Park-Miller generator
  (x = x * 48271 mod 2^31-1, exact in Lua's doubles) seeded with the recorded seed: core/waiting-room/shuffle.ts
  recomputes it for an audit.

  KEYS[1..6] queue hash, tickets hash, pre list, order zset, pool zset, seen zset (see queue-join-7.lua)
  KEYS[7] inside zset    userId -> session end (ms): admitted shoppers holding a place inside
  KEYS[8] sale hash      remaining, pending (see admit-8.lua)
  KEYS[9] last hash      userId -> latest requestId   KEYS[10] decided hash  requestId -> decision code
  ARGV[1] userId to read ("" for none)  ARGV[2] abandon after (ms without a poll or stream)
  ARGV[3..] userIds whose streams are open on the calling node (marked seen)

  Returns {code, now, serving, waitingPlaced, waitingPool, inside, soldOut, started, interval,
           ticketNo, place, status, sessionEnd, poolRank}:
    code 0 OK, 2 NOT_LOADED. The ticket fields are 0 / "" when the shopper has no ticket; status is one of
    w a d x (see queue-join-7.lua); poolRank is the 0-based rank in the draw pool, -1 when not in it.
]]
local rcall = redis.call
local t = rcall("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local q = rcall("HMGET", KEYS[1], "starts", "interval", "cap", "session", "seed", "shuffled", "nextAt", "serving")
if not q[1] then return {2, now, 0, 0, 0, 0, 0, 0, 0, 0, 0, "", 0, -1} end
local starts, interval, cap, session = tonumber(q[1]), tonumber(q[2]), tonumber(q[3]), tonumber(q[4])
local nextAt, serving = tonumber(q[7] or "0"), tonumber(q[8] or "0")

local function parse(s)
  local n, place, status, ends = string.match(s, "^(%d+)|(%-?%d+)|(%a)|(%d+)$")
  return n, tonumber(place), status, tonumber(ends)
end
local function mark(user, status, ends)
  local s = rcall("HGET", KEYS[2], user)
  if not s then return end
  local n, place = parse(s)
  rcall("HSET", KEYS[2], user, n .. "|" .. place .. "|" .. status .. "|" .. (ends or 0))
end

local started = now >= starts
if started and q[6] ~= "1" then
  local pre = rcall("LRANGE", KEYS[3], 0, -1)
  local x = tonumber(q[5]) % 2147483647
  if x <= 0 then x = x + 2147483646 end
  for i = #pre, 2, -1 do
    x = (x * 48271) % 2147483647
    local j = (x % i) + 1
    pre[i], pre[j] = pre[j], pre[i]
  end
  for i = 1, #pre do
    rcall("ZADD", KEYS[4], i, pre[i])
    local n = string.match(rcall("HGET", KEYS[2], pre[i]), "^(%d+)")
    rcall("HSET", KEYS[2], pre[i], n .. "|" .. i .. "|w|0")
  end
  rcall("HSET", KEYS[1], "shuffled", 1)
end

for i = 3, #ARGV do rcall("ZADD", KEYS[6], "XX", now, ARGV[i]) end
if ARGV[1] ~= "" then rcall("ZADD", KEYS[6], "XX", now, ARGV[1]) end

-- Places inside come free when a session ends or the shopper's purchase is decided.
for _, user in ipairs(rcall("ZRANGEBYSCORE", KEYS[7], "-inf", now)) do mark(user, "x", 0) end
rcall("ZREMRANGEBYSCORE", KEYS[7], "-inf", now)
for _, user in ipairs(rcall("ZRANGE", KEYS[7], 0, 99)) do
  local rid = rcall("HGET", KEYS[9], user)
  if rid and rcall("HEXISTS", KEYS[10], rid) == 1 then
    rcall("ZREM", KEYS[7], user)
    mark(user, "d", 0)
  end
end

local sale = rcall("HMGET", KEYS[8], "remaining", "pending")
local soldOut = (sale[1] and tonumber(sale[1]) <= 0 and tonumber(sale[2] or "0") <= 0) and 1 or 0
local abandonedBefore = now - tonumber(ARGV[2])

if started and soldOut == 0 and now >= nextAt and rcall("ZCARD", KEYS[7]) < cap then
  for _ = 1, 1000 do
    local key, head = KEYS[4], rcall("ZRANGE", KEYS[4], 0, 0, "WITHSCORES")
    if #head == 0 then key, head = KEYS[5], rcall("ZRANGE", KEYS[5], 0, 0, "WITHSCORES") end
    if #head == 0 then break end
    local user = head[1]
    rcall("ZREM", key, user)
    if key == KEYS[4] then
      serving = math.max(serving, tonumber(head[2]))
      rcall("HSET", KEYS[1], "serving", serving)
    end
    local seen = tonumber(rcall("ZSCORE", KEYS[6], user) or "0")
    rcall("ZREM", KEYS[6], user)
    if seen >= abandonedBefore then
      rcall("ZADD", KEYS[7], now + session, user)
      mark(user, "a", now + session)
      rcall("HSET", KEYS[1], "nextAt", now + interval)
      rcall("HINCRBY", KEYS[1], "admitted", 1)
      break
    end
    mark(user, "x", 0)
  end
end

local ticketNo, place, status, ends, poolRank = 0, 0, "", 0, -1
if ARGV[1] ~= "" then
  local s = rcall("HGET", KEYS[2], ARGV[1])
  if s then
    local n
    n, place, status, ends = parse(s)
    ticketNo = tonumber(n)
    if place == -1 then poolRank = rcall("ZRANK", KEYS[5], ARGV[1]) or -1 end
  end
end
return {0, now, serving, rcall("ZCARD", KEYS[4]), rcall("ZCARD", KEYS[5]), rcall("ZCARD", KEYS[7]), soldOut,
        started and 1 or 0, interval, ticketNo, place, status, ends, poolRank}

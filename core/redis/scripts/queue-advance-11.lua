--[[
  The serving counter of a sale's waiting room, advanced lazily by whichever API node asks (no scheduler): shuffles
  the pre-queue once the sale has started (a bounded chunk per call), frees the places of shoppers whose purchase
  was decided or whose session ended, drops abandoned tickets when they reach the head, and admits while the rate
  and the cap allow. Every call that changed the counter announces the new counter with one SPUBLISH on the sale's
  channel, so every node holding streams of the sale learns it from one message. Then it reads one shopper's
  ticket. Time is Redis's (TIME), in µs for the rate.

  The rate is GCRA (the generic cell rate algorithm, ITU-T I.371; a token bucket written as a theoretical arrival
  time `tat`): with the admission interval T = ceil(60e6 / admissionsPerMinute) µs and the burst tolerance
  tau = ARGV[3] ms, a shopper may be admitted at time t when tat - tau <= t, and then tat = max(tat, t) + T. Several
  may be admitted in one call. Guaranteed bound: over ANY window of W (closed, same unit as T), at most
  floor((W + tau) / T) + 1 admissions. (Admissions k..m inside [a, a + W]: tat after k is >= a + T, each later one
  adds T, and the m-th needed tat_{m-1} - tau <= a + W, so (m - k) * T <= W + tau.) Credit never banks beyond tau,
  whoever calls and however rarely, and nothing is admitted while `cap` shoppers are inside, nor while as many are
  inside as the sale has units left (`remaining`: unsold, queued purchases included). The rate is reached
  when, with enough shoppers waiting, some call comes at least every tau: each call leaves tat > now + tau, so the
  next call within tau finds tat ahead of its clock and the schedule never loses a slot.

  The shuffle is a Fisher-Yates over the pre-queue in join order, driven by the Park-Miller generator
  (x = x * 48271 mod 2^31-1, exact in Lua's doubles) seeded with the recorded seed; core/waiting-room/shuffle.ts
  recomputes it for an audit. It runs in chunks across calls (the generator's state and the step are kept in the
  queue hash, the array being shuffled in KEYS[11]): copy the pre-queue into KEYS[11] (COPY_CHUNK a call), then
  SHUFFLE_CHUNK steps a call, step i fixing place i. Nobody is admitted before the last chunk; the reply's `more`
  tells the caller to call again.

  KEYS[1..6] queue hash, tickets hash, pre list, order zset, pool zset, seen zset (see queue-join-7.lua)
  KEYS[7] inside zset    userId -> session end (ms): admitted shoppers holding a place inside
  KEYS[8] sale hash      remaining, pending (see admit-8.lua)
  KEYS[9] last hash      userId -> latest requestId   KEYS[10] decided hash  requestId -> decision code
  KEYS[11] shuffle hash  index -> userId: the pre-queue being shuffled (deleted once done)
  ARGV[1] userId to read ("" for none)  ARGV[2] abandon after (ms without a poll or stream)
  ARGV[3] tau, the burst tolerance (ms)  ARGV[4] the sale's sharded pub/sub channel

  Queue hash fields written here: tat (µs), serving, poolServed (count of draw-pool tickets served), soldOut (0/1),
  version (count of announced changes), checkAt (next index of the decided-purchase check), shuffled (0/1),
  shuffleN, shuffleCopied, shuffleI, shuffleX, admitted (count).

  Message (SPUBLISH): "loaded|version|now|serving|waitingPlaced|waitingPool|inside|soldOut|started|interval (µs)|
  poolServed|sessionEnd", then " userId" for each shopper this call admitted (user ids hold no spaces), whose
  session ends at sessionEnd: a node tells those streams without a read. (loaded and version order the messages:
  see core/waiting-room/scripts.ts.)

  Returns {code, now, serving, waitingPlaced, waitingPool, inside, soldOut, started, interval (µs), loaded, version,
           poolServed, more, ticketNo, place, status, sessionEnd, poolRank}:
    code 0 OK, 2 NOT_LOADED. started = 1 once the sale has started and the shuffle is complete. more = 1 when a
    per-call bound stopped the work (a shuffle chunk, MAX_ADMIT, MAX_DROP): call again. The ticket fields are 0 / ""
    when the shopper has no ticket; status is one of w a d x (see queue-join-7.lua); poolRank is the 0-based rank in
    the draw pool, -1 when not in it.
]]
local rcall = redis.call
local COPY_CHUNK, SHUFFLE_CHUNK = 1000, 500
local MAX_ADMIT, MAX_DROP, MAX_FREE, CHECK_DECIDED = 500, 1000, 500, 100

local t = rcall("TIME")
local nowUs = tonumber(t[1]) * 1000000 + tonumber(t[2])
local now = math.floor(nowUs / 1000)
local q = rcall("HMGET", KEYS[1], "starts", "intervalUs", "cap", "session", "seed", "shuffled", "tat", "serving",
  "soldOut", "version", "poolServed", "checkAt", "loaded")
if not q[1] then return {2, now, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, "", 0, -1} end
local starts, cap, session = tonumber(q[1]), tonumber(q[3]), tonumber(q[4])
local interval = tonumber(q[2])
local tat, serving, poolServed = tonumber(q[7] or "0"), tonumber(q[8] or "0"), tonumber(q[11] or "0")
local version = tonumber(q[10] or "0")
-- Lua formats numbers with 14 digits: µs times need an exact format.
local function exact(n) return string.format("%.0f", n) end

local function parse(s)
  local n, place, status, ends = string.match(s, "^(%d+)|(%-?%d+)|(%a)|(%d+)$")
  return n, tonumber(place), status, tonumber(ends)
end
local function mark(user, status, ends)
  local s = rcall("HGET", KEYS[2], user)
  if not s then return end
  local n, place = parse(s)
  rcall("HSET", KEYS[2], user, n .. "|" .. place .. "|" .. status .. "|" .. ends)
end

-- One chunk of the shuffle. Returns true once it is complete.
local function shuffleChunk()
  local st = rcall("HMGET", KEYS[1], "shuffleN", "shuffleCopied", "shuffleI", "shuffleX")
  local n = tonumber(st[1] or "-1")
  if n < 0 then
    n = rcall("LLEN", KEYS[3])
    local x = tonumber(q[5]) % 2147483647
    if x <= 0 then x = x + 2147483646 end
    rcall("DEL", KEYS[11])
    st = {n, 0, n, x}
  end
  local copied, i, x = tonumber(st[2]), tonumber(st[3]), tonumber(st[4])
  if copied < n then
    local users = rcall("LRANGE", KEYS[3], copied, copied + COPY_CHUNK - 1)
    for k = 1, #users, 500 do
      local args = {}
      for m = k, math.min(k + 499, #users) do
        args[#args + 1] = copied + m
        args[#args + 1] = users[m]
      end
      rcall("HSET", KEYS[11], unpack(args))
    end
    copied = copied + #users
  end
  if copied >= n then
    -- Step i draws j in 1..i and swaps a[i] and a[j]; a[i] is then final: place i.
    local places, fixed = {}, {}
    local stop = math.max(i - SHUFFLE_CHUNK, 1)
    while i > stop do
      x = (x * 48271) % 2147483647
      local j = (x % i) + 1
      local ui = rcall("HGET", KEYS[11], i)
      local uj = ui
      if j ~= i then
        uj = rcall("HGET", KEYS[11], j)
        rcall("HSET", KEYS[11], j, ui)
      end
      rcall("HDEL", KEYS[11], i)
      places[#places + 1] = i
      fixed[#fixed + 1] = uj
      i = i - 1
    end
    if i == 1 then
      places[#places + 1] = 1
      fixed[#fixed + 1] = rcall("HGET", KEYS[11], 1)
      i = 0
    end
    for k = 1, #fixed, 500 do
      local last = math.min(k + 499, #fixed)
      local zargs, hargs = {}, {}
      local numbers = rcall("HMGET", KEYS[2], unpack(fixed, k, last))
      for m = k, last do
        zargs[#zargs + 1] = places[m]
        zargs[#zargs + 1] = fixed[m]
        hargs[#hargs + 1] = fixed[m]
        hargs[#hargs + 1] = string.match(numbers[m - k + 1] or "0", "^(%d+)") .. "|" .. places[m] .. "|w|0"
      end
      rcall("ZADD", KEYS[4], unpack(zargs))
      rcall("HSET", KEYS[2], unpack(hargs))
    end
  end
  if copied >= n and i <= 1 then
    rcall("DEL", KEYS[11])
    rcall("HSET", KEYS[1], "shuffled", 1, "shuffleN", n, "shuffleCopied", copied, "shuffleI", 0, "shuffleX", x)
    return true
  end
  rcall("HSET", KEYS[1], "shuffleN", n, "shuffleCopied", copied, "shuffleI", i, "shuffleX", x)
  return false
end

if ARGV[1] ~= "" then rcall("ZADD", KEYS[6], "XX", now, ARGV[1]) end

local changed, more = false, 0
local shuffled = q[6] == "1"
if not shuffled and now >= starts then
  shuffled = shuffleChunk()
  if shuffled then changed = true else more = 1 end
end

-- Places inside come free when a session ends or the shopper's purchase is decided (a rotating window of the
-- inside set is checked each call, so no shopper who never buys can hide the others' decisions).
local function decided(user)
  local rid = rcall("HGET", KEYS[9], user)
  return rid and rcall("HEXISTS", KEYS[10], rid) == 1
end
local freed = 0
local ended = rcall("ZRANGEBYSCORE", KEYS[7], "-inf", now, "LIMIT", 0, MAX_FREE)
for _, user in ipairs(ended) do
  rcall("ZREM", KEYS[7], user)
  mark(user, decided(user) and "d" or "x", 0)
end
freed = #ended
local checkAt = tonumber(q[12] or "0")
local window = rcall("ZRANGE", KEYS[7], checkAt, checkAt + CHECK_DECIDED - 1)
local gone = 0
for _, user in ipairs(window) do
  if decided(user) then
    rcall("ZREM", KEYS[7], user)
    mark(user, "d", 0)
    gone = gone + 1
  end
end
freed = freed + gone
local nextCheck = #window < CHECK_DECIDED and 0 or checkAt + CHECK_DECIDED - gone
if nextCheck ~= checkAt then rcall("HSET", KEYS[1], "checkAt", nextCheck) end

local sale = rcall("HMGET", KEYS[8], "remaining", "pending")
local soldOut = (sale[1] and tonumber(sale[1]) <= 0 and tonumber(sale[2] or "0") <= 0) and 1 or 0
if tostring(soldOut) ~= (q[9] or "0") then
  rcall("HSET", KEYS[1], "soldOut", soldOut)
  changed = true
end

local admitted, dropped, admittedUsers = 0, 0, {}
if shuffled and soldOut == 0 then
  local tau = tonumber(ARGV[3]) * 1000
  local base = math.max(tat, nowUs)
  local budget = 0
  if tat <= nowUs + tau then budget = 1 + math.floor((nowUs + tau - base) / interval) end
  -- Never more inside than units left (one each): nobody is let in without a unit to buy, so speed inside wins
  -- nothing. remaining counts the units held by queued purchases too; a sale not in Redis bounds nothing here.
  local most = cap
  if sale[1] and tonumber(sale[1]) < most then most = tonumber(sale[1]) end
  local limit = math.min(budget, most - rcall("ZCARD", KEYS[7]), MAX_ADMIT)
  local abandonedBefore = now - tonumber(ARGV[2])
  while admitted < limit and dropped < MAX_DROP do
    local key, popped = KEYS[4], rcall("ZPOPMIN", KEYS[4], limit - admitted)
    if #popped == 0 then key, popped = KEYS[5], rcall("ZPOPMIN", KEYS[5], limit - admitted) end
    if #popped == 0 then break end
    for k = 1, #popped, 2 do
      local user = popped[k]
      if key == KEYS[4] then serving = math.max(serving, tonumber(popped[k + 1])) else poolServed = poolServed + 1 end
      local seen = tonumber(rcall("ZSCORE", KEYS[6], user) or "0")
      rcall("ZREM", KEYS[6], user)
      if seen >= abandonedBefore then
        rcall("ZADD", KEYS[7], now + session, user)
        mark(user, "a", now + session)
        admitted = admitted + 1
        admittedUsers[admitted] = user
      else
        mark(user, "x", 0)
        dropped = dropped + 1
      end
    end
  end
  if admitted > 0 then
    tat = base + admitted * interval
    rcall("HINCRBY", KEYS[1], "admitted", admitted)
  end
  if admitted + dropped > 0 then
    rcall("HSET", KEYS[1], "tat", exact(tat), "serving", serving, "poolServed", poolServed)
    changed = true
  end
  if (admitted == MAX_ADMIT and budget > MAX_ADMIT) or dropped >= MAX_DROP then more = 1 end
end
if freed > 0 then changed = true end

local placed, pool, inside = rcall("ZCARD", KEYS[4]), rcall("ZCARD", KEYS[5]), rcall("ZCARD", KEYS[7])
local started = shuffled and 1 or 0
local loaded = tonumber(q[13] or "0")
if changed then
  version = rcall("HINCRBY", KEYS[1], "version", 1)
  local head = table.concat({loaded, version, now, serving, placed, pool, inside, soldOut, started, interval,
    poolServed, now + session}, "|")
  rcall("SPUBLISH", ARGV[4], #admittedUsers > 0 and head .. " " .. table.concat(admittedUsers, " ") or head)
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
return {0, now, serving, placed, pool, inside, soldOut, started, interval, loaded, version, poolServed, more,
        ticketNo, place, status, ends, poolRank}

--[[
  wrk script of `npm run bench` (see bench/wrk.ts): every request is a purchase POST by the next shopper of its
  thread's token file, so every shopper is distinct, as in a real crowd.

  Environment:
    BENCH_WRK_DIR     folder holding tokens-<thread>.txt (one token a line); ids.txt is written there
    BENCH_WRK_PATH    the purchase path, e.g. /api/sales/<id>/purchases
    BENCH_WRK_EXPECT  accept (202 with a requestId) | sold-out (409 sold-out) | crowd (either) | any-202
    BENCH_WRK_WRAP    1: tokens may repeat (paths where a shopper's history does not matter)
    BENCH_WRK_QUOTA   1: each thread sends each of its tokens once and stops when all are answered

  wrk calls request() once on thread 0 before the run to look at it (script_verify_request) and never sends that
  request: bench/wrk.ts writes thread 0's first token twice, and the first call is not counted. Under a quota, a
  connection whose thread has sent every token waits (delay()) instead of sending; without one, a thread whose
  tokens are used up sends GET /__bench_noop, a 404 on every server that this script tells apart by its body and
  does not count, and reports it, since the run then measured less than it should. done() prints one line, "BENCH_WRK_RESULT <json>", and writes the requestIds of the 202s to ids.txt.
]]
local threads = {}
local created = 0

function setup(thread)
  thread:set("tid", created)
  created = created + 1
  threads[#threads + 1] = thread
end

-- Globals where done() reads them through thread:get, which sees only a thread's globals.
answered, unexpected, noops, exhausted, sent, sample, ids = 0, 0, 0, 0, 0, "", {}
local tokens, count, nextToken = {}, 0, 0
local path, expect, wrap, quota, noop, finished

function init(args)
  if tid == 0 then sent = -1 end
  local dir = os.getenv("BENCH_WRK_DIR")
  for line in io.lines(dir .. "/tokens-" .. tid .. ".txt") do
    count = count + 1
    tokens[count] = line
  end
  path = os.getenv("BENCH_WRK_PATH")
  expect = os.getenv("BENCH_WRK_EXPECT")
  wrap = os.getenv("BENCH_WRK_WRAP") == "1"
  quota = os.getenv("BENCH_WRK_QUOTA") == "1"
  noop = wrk.format("GET", "/__bench_noop")
  if tid == 0 then count = count - 1 end
  -- Defined only under a quota: wrk arms a timer per request once a script has delay().
  if quota then
    function delay()
      return sent >= count and 60000 or 0
    end
  end
end

function request()
  if sent >= count then
    if wrap then
      nextToken, sent = 0, 0
    else
      if not quota then exhausted = 1 end
      return noop
    end
  end
  nextToken = nextToken + 1
  sent = sent + 1
  return wrk.format("POST", path, {
    ["Authorization"] = "Bearer " .. tokens[nextToken],
    ["Content-Type"] = "application/json",
  }, "{}")
end

function response(status, headers, body)
  if status == 404 and string.find(body, "__bench_noop", 1, true) then
    noops = noops + 1
    return
  end
  answered = answered + 1
  local ok
  local soldOut = status == 409 and string.find(body, '"type":"/problems/sold-out"', 1, true) ~= nil
  if expect == "accept" or expect == "crowd" then
    local id = status == 202 and string.match(body, '"requestId":"([0-9a-f%-]+)"')
    if id then ids[#ids + 1] = id end
    ok = (id ~= nil and id ~= false) or (expect == "crowd" and soldOut)
  elseif expect == "sold-out" then
    ok = soldOut
  else
    ok = status == 202
  end
  if not ok then
    unexpected = unexpected + 1
    if sample == "" then sample = status .. " " .. string.sub(body, 1, 300) end
  end
  if quota and answered >= count and not finished then
    -- wrk's main thread sleeps out -d whatever the threads do: bench/wrk.ts ends it with SIGINT on this line.
    finished = true
    io.write("BENCH_WRK_THREAD_DONE\n")
    io.flush()
    wrk.thread:stop()
  end
end

local function q(s)
  return '"' .. string.gsub(s, '[%c"\\]', function(c) return string.format("\\u%04x", string.byte(c)) end) .. '"'
end

function done(summary, latency, requests)
  local sum = { answered = 0, unexpected = 0, noops = 0, exhausted = 0, sent = 0 }
  local samples = ""
  local dir = os.getenv("BENCH_WRK_DIR")
  local out = io.open(dir .. "/ids.txt", "w")
  for _, t in ipairs(threads) do
    sum.answered = sum.answered + t:get("answered")
    sum.unexpected = sum.unexpected + t:get("unexpected")
    sum.noops = sum.noops + t:get("noops")
    sum.exhausted = sum.exhausted + t:get("exhausted")
    sum.sent = sum.sent + t:get("sent")
    if samples == "" then samples = t:get("sample") end
    for _, id in ipairs(t:get("ids")) do out:write(id, "\n") end
  end
  out:close()
  local e = summary.errors
  io.write("BENCH_WRK_RESULT {",
    '"answered":', sum.answered, ',"unexpected":', sum.unexpected, ',"noops":', sum.noops,
    ',"exhausted":', sum.exhausted, ',"sent":', sum.sent, ',"sample":', q(samples),
    ',"durationUs":', summary.duration, ',"requests":', summary.requests,
    ',"errors":', e.connect + e.read + e.write + e.timeout,
    ',"p50Us":', latency:percentile(50), ',"p99Us":', latency:percentile(99),
    ',"p999Us":', latency:percentile(99.9), ',"maxUs":', latency.max, "}\n")
end

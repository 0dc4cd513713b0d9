--[[
  put-state-1.lua for the states of one sale's batch in one call: each new version is stored, then announced (persist
  first, then push, atomically), and an older or equal version is ignored, so writers may race and redeliveries
  change nothing. One call instead of one per state: a worker batch of 500 decisions is one command, not 500.
  Each state's sharded pub/sub channel is its key's own name (see core/redis/keys.ts), so every key is declared.

  KEYS[1..n] purchase hashes   version, body (JSON); all in one sale's slot (its hash tag)
  ARGV[1] TTL (s)  then for state i: ARGV[2i] version, ARGV[2i+1] body

  Returns the count of states stored and published.
]]
local rcall = redis.call
local ttl = ARGV[1]
local stored = 0
for i = 1, #KEYS do
  local version, body = ARGV[2 * i], ARGV[2 * i + 1]
  if tonumber(rcall("HGET", KEYS[i], "version") or "0") < tonumber(version) then
    rcall("HSET", KEYS[i], "version", version, "body", body)
    rcall("EXPIRE", KEYS[i], ttl)
    rcall("SPUBLISH", KEYS[i], body)
    stored = stored + 1
  end
end
return stored

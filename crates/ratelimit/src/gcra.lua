-- fhirgate rate limiting: GCRA over every applicable rule of one request, atomically.
-- Mirrors src/gcra.rs (check_windows / report); keep the two in step.
--
-- KEYS[k]  one hash per (rule, client key); one field per window ("s", "m", "h", "d")
--          holding that window's theoretical arrival time (TAT) in microseconds.
-- ARGV     for each key: cost, window count, then per window: field, interval_us, capacity_us
-- Returns  {allowed, then per key and window: remaining, reset_us, retry_us}
--
-- Time comes from the server (TIME), so replicas with skewed clocks share one timeline.
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])

local checks = {}
local allowed = 1
local a = 1
for k = 1, #KEYS do
  local cost = tonumber(ARGV[a])
  local n = tonumber(ARGV[a + 1])
  a = a + 2
  local fields = {}
  local specs = {}
  for w = 1, n do
    fields[w] = ARGV[a]
    specs[w] = { tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]) }
    a = a + 3
  end
  local stored = redis.call('HMGET', KEYS[k], unpack(fields))
  local windows = {}
  for w = 1, n do
    local interval, capacity = specs[w][1], specs[w][2]
    local tat = tonumber(stored[w]) or now
    if tat < now then tat = now end
    local new_tat = tat + cost * interval
    local retry = new_tat - now - capacity
    if retry > 0 then allowed = 0 else retry = 0 end
    windows[w] = { fields[w], interval, capacity, tat, new_tat, retry }
  end
  checks[k] = windows
end

local out = { allowed }
for k = 1, #KEYS do
  local windows = checks[k]
  local hset = {}
  local ttl = 0
  for w = 1, #windows do
    local x = windows[w]
    local tat = x[4]
    if allowed == 1 then
      tat = x[5]
      hset[#hset + 1] = x[1]
      -- %d: tostring would print 1.7e+15 and lose the microseconds.
      hset[#hset + 1] = string.format('%d', tat)
    end
    local used = tat - now
    if used > ttl then ttl = used end
    local remaining = math.floor((x[3] - used) / x[2])
    if remaining < 0 then remaining = 0 end
    out[#out + 1] = remaining
    out[#out + 1] = used
    out[#out + 1] = x[6]
  end
  if allowed == 1 and #hset > 0 then
    redis.call('HSET', KEYS[k], unpack(hset))
    -- Once every TAT is in the past the key equals a fresh one, so it may vanish.
    redis.call('PEXPIRE', KEYS[k], math.ceil(ttl / 1000) + 1)
  end
end
return out

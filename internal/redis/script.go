package redis

import goredis "github.com/redis/go-redis/v9"

// allowScript checks and consumes every limit of one Allow atomically.
//
// Each limit is a list of event times in ms, oldest first (KEYS[i]); ARGV[1]
// is now in ms, or -1 for Redis's own clock; ARGV[2i], ARGV[2i+1] are limit
// i's Limit and window in ms. Events at or before now-window have left the
// window: they are trimmed (a binary search, then one LTRIM), so a list never
// holds more than the events of its window. Only when every limit has room
// is now appended to every list, whose expiry is then reset to the window.
//
// It returns {allowed, now, then per limit: count, newest, leaving}: the
// events counted before this one, the newest of them, and, when the limit is
// full, the time of the event whose leaving makes room.
var allowScript = goredis.NewScript(`
local now = tonumber(ARGV[1])
if now < 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
-- The clock never runs backwards for a key: a later event already recorded
-- (another replica's clock, a clock step) moves now forward.
for i = 1, #KEYS do
  local newest = redis.call('LINDEX', KEYS[i], -1)
  if newest then
    newest = tonumber(newest)
    if newest > now then now = newest end
  end
end
local allowed = 1
local out = {0, now}
for i = 1, #KEYS do
  local key = KEYS[i]
  local limit = tonumber(ARGV[2 * i])
  local cutoff = now - tonumber(ARGV[2 * i + 1])
  local len = redis.call('LLEN', key)
  if len > 0 and tonumber(redis.call('LINDEX', key, 0)) <= cutoff then
    local lo, hi = 1, len
    while lo < hi do
      local mid = math.floor((lo + hi) / 2)
      if tonumber(redis.call('LINDEX', key, mid)) > cutoff then hi = mid else lo = mid + 1 end
    end
    if lo >= len then
      redis.call('DEL', key)
      len = 0
    else
      redis.call('LTRIM', key, lo, -1)
      len = len - lo
    end
  end
  local newest, leaving = 0, 0
  if len > 0 then newest = tonumber(redis.call('LINDEX', key, -1)) end
  if len >= limit then
    allowed = 0
    leaving = tonumber(redis.call('LINDEX', key, len - limit))
  end
  out[#out + 1] = len
  out[#out + 1] = newest
  out[#out + 1] = leaving
end
if allowed == 1 then
  local stamp = string.format('%d', now)
  for i = 1, #KEYS do
    redis.call('RPUSH', KEYS[i], stamp)
    redis.call('PEXPIRE', KEYS[i], ARGV[2 * i + 1])
  end
end
out[1] = allowed
return out
`)

// acquireScript takes one concurrency slot. KEYS[1] is a sorted set of
// holder tokens scored by their expiry in ms; ARGV is now in ms (or -1 for
// Redis's clock), max, ttl in ms and the new holder's token. Expired holders
// are dropped first; it returns 1 when the slot was taken, else 0.
var acquireScript = goredis.NewScript(`
local now = tonumber(ARGV[1])
if now < 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local ttl = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%d', now))
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], string.format('%d', now + ttl), ARGV[4])
if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
return 1
`)

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

// admitScript admits one run: the caller's concurrency slot and one event of
// each of its quotas, atomically, or nothing; and it checks the cache epoch
// first. It also applies releases and refunds folded into the call (ops).
//
// KEYS[1] is the cache epoch (a hash, see publishScript), KEYS[2] the caller's slots (as acquireScript),
// KEYS[3 .. 2+n] its quota logs (as allowScript), and any further keys are
// those the ops name. ARGV[1] is now in ms or -1 for Redis's clock, ARGV[2]
// the epoch the caller's cached data was read under (0: nothing to check),
// ARGV[3] the slots allowed, ARGV[4] a slot's ttl in ms, ARGV[5] the new
// holder's token, ARGV[6] n, then limit and window in ms per quota, then the
// ops, three values each: 'Z' (ZREM) or 'L' (LREM of one event from the
// tail), the index of the op's key in KEYS, and the member or event.
//
// It returns {status, epoch} when it took nothing before the quotas were
// looked at (status 0: stale, 2: every slot taken), else {status, epoch,
// now, held, then per quota: count, newest, leaving} with status 1
// (admitted: the slot is held and now is appended to every quota) or 3 (a
// quota refused; nothing taken); held is the caller's slots with this one.
var admitScript = goredis.NewScript(`
local n = tonumber(ARGV[6])
local i = 7 + 2 * n
while i <= #ARGV do
  local k = KEYS[tonumber(ARGV[i + 1])]
  if ARGV[i] == 'Z' then redis.call('ZREM', k, ARGV[i + 2]) else redis.call('LREM', k, -1, ARGV[i + 2]) end
  i = i + 3
end
local epoch = tonumber(redis.call('HGET', KEYS[1], 'epoch') or '0')
local want = tonumber(ARGV[2])
if want ~= 0 and want ~= epoch then return {0, epoch} end
local now = tonumber(ARGV[1])
if now < 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', string.format('%d', now))
local held = redis.call('ZCARD', KEYS[2])
if held >= tonumber(ARGV[3]) then return {2, epoch} end
for q = 1, n do
  local newest = redis.call('LINDEX', KEYS[2 + q], -1)
  if newest then
    newest = tonumber(newest)
    if newest > now then now = newest end
  end
end
local allowed = 1
local out = {3, epoch, now, held + 1}
for q = 1, n do
  local key = KEYS[2 + q]
  local limit = tonumber(ARGV[5 + 2 * q])
  local cutoff = now - tonumber(ARGV[6 + 2 * q])
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
  for q = 1, n do
    redis.call('RPUSH', KEYS[2 + q], stamp)
    redis.call('PEXPIRE', KEYS[2 + q], ARGV[6 + 2 * q])
  end
  local ttl = tonumber(ARGV[4])
  redis.call('ZADD', KEYS[2], string.format('%d', now + ttl), ARGV[5])
  if redis.call('PTTL', KEYS[2]) < ttl then redis.call('PEXPIRE', KEYS[2], ttl) end
  out[1] = 1
end
return out
`)

// opsScript applies releases and refunds that no admission carried: ARGV is
// ops as in admitScript, whose key indexes point into KEYS.
var opsScript = goredis.NewScript(`
local i = 1
while i <= #ARGV do
  local k = KEYS[tonumber(ARGV[i + 1])]
  if ARGV[i] == 'Z' then redis.call('ZREM', k, ARGV[i + 2]) else redis.call('LREM', k, -1, ARGV[i + 2]) end
  i = i + 3
end
return 1
`)

// publishScript publishes the database's cache epoch (ARGV[1]) to the
// limiter's epoch (KEYS[1], a hash: db, the database's epoch last published,
// and epoch, what admissions compare): when ARGV[1] differs from db, epoch
// takes a value it never had (Redis's clock in microseconds, or one more
// than before), so that a database restored from a backup, or a Redis that
// lost the key, cannot bring an old epoch back. It returns the epoch.
var publishScript = goredis.NewScript(`
local last = redis.call('HGET', KEYS[1], 'db')
local cur = tonumber(redis.call('HGET', KEYS[1], 'epoch') or '0')
if last == ARGV[1] and cur > 0 then return cur end
local t = redis.call('TIME')
local e = tonumber(t[1]) * 1000000 + tonumber(t[2])
if e <= cur then e = cur + 1 end
redis.call('HSET', KEYS[1], 'db', ARGV[1], 'epoch', string.format('%d', e))
return e
`)

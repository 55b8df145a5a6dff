package redis

import goredis "github.com/redis/go-redis/v9"

// The scripts share their clock, quota and slot logic as Lua functions that
// a script's source starts with, so that Allow and the admission count, trim
// and take quota events and slots the same way.

// luaClock is clock(arg): arg (a time in ms), or Redis's own clock when arg
// is negative; and whether it is Redis's.
const luaClock = `
local function clock(arg)
  local now = tonumber(arg)
  if now >= 0 then return now, false end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000), true
end
`

// luaQuotas is the functions of quota logs. A quota's log is a list of event
// times in ms, oldest first (an event is appended only at or after the
// newest); n quotas are the logs KEYS[k+1 .. k+n], quota q's limit and
// window in ms are ARGV[a+2q] and ARGV[a+2q+1].
//
// notBefore(k, n, now, newest) moves now forward to the newest event of the
// logs, so that the clock never runs backwards for a key (a later event
// already recorded: another replica's clock, a clock step); it sets
// newest[q] to log q's newest event, or false when the log is empty.
//
// window(key, windowMs, now, newest) trims the events at or before
// now-windowMs, which have left the window, so a log never holds more than
// the events of its window, and returns the newest event left, or false.
// newest is the log's newest event from notBefore: now is at or after it,
// so trimming takes either every event (the newest has left) or keeps the
// newest; the first event kept is found galloping from the oldest (about
// 2·log2 of the events that left in reads: one when one left, the common
// case under load), then one LTRIM.
//
// take(k, a, n, now, t, server, newest, out) appends count, newest, leaving
// of each quota to out (the events counted before this one, the newest of
// them, and, when the limit is full, the time of the event whose leaving
// makes room, else 0) and, only when every quota has room, appends now to
// every log and makes the log expire when now leaves its window. It returns
// whether it appended. The append comes first, its reply being the count
// (one LLEN fewer per quota on an admission), and is taken back (RPOP)
// when a quota is full; the quotas after a full one are only counted.
// Expiry on Redis's clock (server; t is its time before notBefore) is at
// now+window, which the log already has when its newest is now and
// notBefore did not move now (now is t): the append that recorded that
// event set the same expiry, unless a limiter on a clock of its own
// (Options.Now: tests) recorded exactly Redis's current millisecond. On a
// caller's clock it is window from Redis's now.
const luaQuotas = `
local function notBefore(k, n, now, newest)
  for q = 1, n do
    local v = redis.call('LINDEX', KEYS[k + q], '-1')
    if v then
      v = tonumber(v)
      if v > now then now = v end
    end
    newest[q] = v or false
  end
  return now
end
local function window(key, windowMs, now, newest)
  if not newest then return false end
  local cutoff = now - tonumber(windowMs)
  if newest <= cutoff then
    redis.call('DEL', key)
    return false
  end
  if tonumber(redis.call('LINDEX', key, '0')) <= cutoff then
    -- The newest stays, so past the end (nil) counts as kept.
    local lo, hi, step = 1, nil, 1
    while not hi or lo < hi do
      local mid
      if hi then mid = math.floor((lo + hi) / 2) else mid, step = lo + step - 1, step * 2 end
      local v = redis.call('LINDEX', key, mid)
      if not v or tonumber(v) > cutoff then hi = mid else lo = mid + 1 end
    end
    redis.call('LTRIM', key, lo, '-1')
  end
  return newest
end
local function take(k, a, n, now, t, server, newest, out)
  local stamp = string.format('%d', now)
  local pushed = 0
  for q = 1, n do
    local key, limit = KEYS[k + q], tonumber(ARGV[a + 2 * q])
    local last = window(key, ARGV[a + 2 * q + 1], now, newest[q])
    local len = 0
    if pushed == q - 1 then
      len = redis.call('RPUSH', key, stamp) - 1
      if len < limit then pushed = q else redis.call('RPOP', key) end
    elseif last then
      len = redis.call('LLEN', key)
    end
    local leaving = 0
    if len >= limit then leaving = tonumber(redis.call('LINDEX', key, len - limit)) end
    out[#out + 1] = len
    out[#out + 1] = last or 0
    out[#out + 1] = leaving
    newest[q] = last
  end
  if pushed < n then
    for q = 1, pushed do redis.call('RPOP', KEYS[k + q]) end
    return false
  end
  for q = 1, n do
    local key, windowMs = KEYS[k + q], ARGV[a + 2 * q + 1]
    if not server then
      redis.call('PEXPIRE', key, windowMs)
    elseif newest[q] ~= now or now ~= t then
      redis.call('PEXPIREAT', key, string.format('%d', now + tonumber(windowMs)))
    end
  end
  return true
end
`

// luaSlots is the functions of concurrency slots: a sorted set of holder
// tokens scored by their expiry in ms. held(key, now) drops the expired
// holders and counts the rest; hold(key, now, ttl, token, n) adds a holder
// until now+ttl and keeps the set at least that long; n is held's count: a
// set that had no holder did not exist, so it has no expiry to compare
// (a caller's only run, the common case, saves the PTTL).
const luaSlots = `
local function held(key, now)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', string.format('%d', now))
  return redis.call('ZCARD', key)
end
local function hold(key, now, ttl, token, n)
  redis.call('ZADD', key, string.format('%d', now + ttl), token)
  if n == 0 or redis.call('PTTL', key) < ttl then redis.call('PEXPIRE', key, ttl) end
end
`

// luaOps is applyOps(i, k): the releases and refunds in ARGV from index i
// on, their keys in KEYS from index k on, in groups:
//   - 'Z', c, then c holder tokens: one ZREM of them from the slots KEYS[k];
//   - 'R', c, token, stamp: a refund: the holder's ZREM from the slots
//     KEYS[k] and, only when that removed it, an LREM of one event stamp
//     from the tail of each of the c logs KEYS[k+1 .. k+c].
//
// A release may reach Redis more than once (every admission of its caller
// in flight carries it); a ZREM is harmless twice, an LREM is not (it would
// take a second event of the same millisecond), hence the check.
const luaOps = `
local function applyOps(i, k)
  while i <= #ARGV do
    local c = tonumber(ARGV[i + 1])
    if ARGV[i] == 'Z' then
      redis.call('ZREM', KEYS[k], unpack(ARGV, i + 2, i + 1 + c))
      i, k = i + 2 + c, k + 1
    else
      if redis.call('ZREM', KEYS[k], ARGV[i + 2]) == 1 then
        for j = 1, c do redis.call('LREM', KEYS[k + j], '-1', ARGV[i + 3]) end
      end
      i, k = i + 4, k + 1 + c
    end
  end
end
`

// allowScript checks and consumes every limit of one Allow atomically.
//
// KEYS[i] is limit i's log (luaQuotas); ARGV[1] is now in ms, or -1 for
// Redis's own clock; ARGV[2i], ARGV[2i+1] are limit i's Limit and window in
// ms. Only when every limit has room is now appended to every log.
//
// It returns {allowed, now, then per limit: count, newest, leaving}: the
// events counted before this one, the newest of them, and, when the limit is
// full, the time of the event whose leaving makes room.
var allowScript = goredis.NewScript(luaClock + luaQuotas + `
local t, server = clock(ARGV[1])
local newest = {}
local now = notBefore(0, #KEYS, t, newest)
local out = {0, now}
if take(0, 0, #KEYS, now, t, server, newest, out) then out[1] = 1 end
return out
`)

// acquireScript takes one concurrency slot. KEYS[1] is the slots
// (luaSlots); ARGV is now in ms (or -1 for Redis's clock), max, ttl in ms
// and the new holder's token. Expired holders are dropped first; it returns
// 1 when the slot was taken, else 0.
var acquireScript = goredis.NewScript(luaClock + luaSlots + `
local now = clock(ARGV[1])
local n = held(KEYS[1], now)
if n >= tonumber(ARGV[2]) then return 0 end
hold(KEYS[1], now, tonumber(ARGV[3]), ARGV[4], n)
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
// ops (luaOps).
//
// It returns {status, epoch} when it took nothing before the quotas were
// looked at (status 0: stale, 2: every slot taken), else {status, epoch,
// now, held, then per quota: count, newest, leaving} with status 1
// (admitted: the slot is held and now is appended to every quota) or 3 (a
// quota refused; nothing taken); held is the caller's slots with this one.
var admitScript = goredis.NewScript(luaClock + luaQuotas + luaSlots + luaOps + `
local n = tonumber(ARGV[6])
applyOps(7 + 2 * n, 3 + n)
local epoch = tonumber(redis.call('HGET', KEYS[1], 'epoch') or '0')
local want = tonumber(ARGV[2])
if want ~= 0 and want ~= epoch then return {0, epoch} end
local t, server = clock(ARGV[1])
local slots = held(KEYS[2], t)
if slots >= tonumber(ARGV[3]) then return {2, epoch} end
local newest = {}
local now = notBefore(2, n, t, newest)
local out = {3, epoch, now, slots + 1}
if take(2, 5, n, now, t, server, newest, out) then
  hold(KEYS[2], now, tonumber(ARGV[4]), ARGV[5], slots)
  out[1] = 1
end
return out
`)

// opsScript applies releases and refunds that no admission carried: KEYS
// and ARGV are ops (luaOps) alone.
var opsScript = goredis.NewScript(luaOps + `
applyOps(1, 1)
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

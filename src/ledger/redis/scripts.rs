//! Read-only Lua scripts: each gathers in one round trip what a step asks of one endpoint.
//! They decide nothing; the decisions run in Rust on what they return. Writes are plain
//! commands queued in the step's MULTI/EXEC.

/// What `admit` asks of one endpoint at `now`: the minute's calls summed, the hour and day
/// summed from minute buckets, the open reservations, the last call, and the endpoint's
/// lifetime totals, cooldown and reports.
///
/// KEYS: calls (zset id→at), call (hash id→"at requests tokens open"), minr, mint (hash
/// minute→count), life, cool, rep (hashes). ARGV: minute window start (exclusive), first
/// minute of the hour window, first minute of the day window, open reservations' start
/// (exclusive).
pub const STANDING: &str = r#"
local function sum_after(ids)
  local r, t = 0, 0
  if #ids > 0 then
    for _, v in ipairs(redis.call('HMGET', KEYS[2], unpack(ids))) do
      if v then
        local _, req, tok = string.match(v, '(%S+) (%S+) (%S+)')
        r = r + tonumber(req); t = t + tonumber(tok)
      end
    end
  end
  return r, t
end
local rm, tm = sum_after(redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[1], '+inf'))
local first_hour, first_day = tonumber(ARGV[2]), tonumber(ARGV[3])
local sums = {0, 0, 0, 0}
for k, key in ipairs({KEYS[3], KEYS[4]}) do
  local flat = redis.call('HGETALL', key)
  for i = 1, #flat, 2 do
    local minute, n = tonumber(flat[i]), tonumber(flat[i + 1])
    if minute >= first_hour then sums[k] = sums[k] + n end
    if minute >= first_day then sums[k + 2] = sums[k + 2] + n end
  end
end
local open = {}
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[4], '+inf')
if #ids > 0 then
  local vals = redis.call('HMGET', KEYS[2], unpack(ids))
  for i, v in ipairs(vals) do
    if v and string.sub(v, -1) == '1' then
      table.insert(open, ids[i]); table.insert(open, v)
    end
  end
end
local last = redis.call('ZREVRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local function cap(x) if x > 9.2e18 then return 9.2e18 end return x end
return {
  {tostring(cap(rm)), tostring(cap(tm)), tostring(cap(sums[1])), tostring(cap(sums[2])),
   tostring(cap(sums[3])), tostring(cap(sums[4]))},
  open,
  last,
  redis.call('HGETALL', KEYS[5]),
  redis.call('HGETALL', KEYS[6]),
  redis.call('HGETALL', KEYS[7]),
}
"#;

/// The usage of one window as it will leave: `(at or minute, amount)` pairs.
///
/// KEYS: calls, call, and the minute bucket hash of the unit. ARGV: "minute" or "buckets",
/// the start (exclusive for the minute window, the first bucket else), 2 for tokens or 1
/// for requests.
pub const DEPARTURES: &str = r#"
local out = {}
if ARGV[1] == 'minute' then
  local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[2], '+inf', 'WITHSCORES')
  for i = 1, #ids, 2 do
    local v = redis.call('HGET', KEYS[2], ids[i])
    if v then
      local _, req, tok = string.match(v, '(%S+) (%S+) (%S+)')
      local n = req
      if ARGV[3] == '2' then n = tok end
      table.insert(out, ids[i + 1]); table.insert(out, n)
    end
  end
else
  local flat = redis.call('HGETALL', KEYS[3])
  for i = 1, #flat, 2 do
    if tonumber(flat[i]) >= tonumber(ARGV[2]) then
      table.insert(out, flat[i]); table.insert(out, flat[i + 1])
    end
  end
end
return out
"#;

/// The tokens of reservations that expired unsettled: they count at their estimate.
///
/// KEYS: calls, call. ARGV: the expiry line (reservations at or before it have expired).
pub const EXPIRED_ESTIMATES: &str = r#"
local t = 0
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if #ids > 0 then
  for _, v in ipairs(redis.call('HMGET', KEYS[2], unpack(ids))) do
    if v and string.sub(v, -1) == '1' then
      local _, _, tok = string.match(v, '(%S+) (%S+) (%S+)')
      t = t + tonumber(tok)
    end
  end
end
if t > 9.2e18 then t = 9.2e18 end
return tostring(t)
"#;

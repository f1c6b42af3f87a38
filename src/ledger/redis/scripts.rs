//! Read-only Lua scripts: each gathers in one round trip what a step asks of one endpoint.
//! They decide nothing; the decisions run in Rust on what they return. Writes are plain
//! commands queued in the step's MULTI/EXEC.

/// Helpers every script shares: a minute bucket is a member of the endpoint's `cum` sorted
/// set, scored by its minute: `"minute requests tokens running_requests running_tokens"`,
/// the running totals counting from the first bucket ever, as in the SQLite ledger.
macro_rules! with_buckets {
    ($body:literal) => {
        concat!(
            r#"
local function bucket(v)
  local m, r, t, cr, ct = string.match(v, '(%S+) (%S+) (%S+) (%S+) (%S+)')
  return tonumber(m), tonumber(r), tonumber(t), tonumber(cr), tonumber(ct)
end
local function member(m, r, t, cr, ct)
  return string.format('%d %.0f %.0f %.0f %.0f', m, r, t, cr, ct)
end
"#,
            $body
        )
    };
}

/// Adds `dr` requests and `dt` tokens to the bucket of one minute and to the running totals
/// of every later bucket. Runs inside the step's MULTI/EXEC.
///
/// KEYS: cum. ARGV: minute, dr, dt.
pub const ADD_TO_MINUTE: &str = with_buckets!(
    r#"
local m, dr, dt = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local here = redis.call('ZRANGEBYSCORE', KEYS[1], m, m)
local r, t, cr, ct
if #here > 0 then
  local _
  _, r, t, cr, ct = bucket(here[1])
  redis.call('ZREM', KEYS[1], here[1])
else
  r, t, cr, ct = 0, 0, 0, 0
  local before = redis.call('ZREVRANGEBYSCORE', KEYS[1], '(' .. m, '-inf', 'LIMIT', 0, 1)
  if #before > 0 then
    local _, _, _, bcr, bct = bucket(before[1])
    cr, ct = bcr, bct
  else
    local after = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. m, '+inf', 'LIMIT', 0, 1)
    if #after > 0 then
      local _, ar, at, acr, act = bucket(after[1])
      cr, ct = acr - ar, act - at
    end
  end
end
redis.call('ZADD', KEYS[1], m, member(m, r + dr, t + dt, cr + dr, ct + dt))
for _, v in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. m, '+inf')) do
  local lm, lr, lt, lcr, lct = bucket(v)
  redis.call('ZREM', KEYS[1], v)
  redis.call('ZADD', KEYS[1], lm, member(lm, lr, lt, lcr + dr, lct + dt))
end
return 1
"#
);

/// What `admit` asks of one endpoint at `now`: the minute's calls summed, the hour and day
/// summed from buckets, the open reservations, the last call, and the endpoint's lifetime
/// totals, cooldown and reports; and, for dating when a full window frees, the minute's
/// calls and the first 16 buckets of the hour and of the day.
///
/// The hour and day windows are two look-ups each in the running totals, however busy the
/// day was.
///
/// KEYS: calls (zset id→at), call (hash id→"at requests tokens open"), cum (the minute
/// buckets), life, cool, rep, open (zset lease→at of the open reservations). ARGV: minute window start (exclusive), first minute of the
/// hour window, first minute of the day window, open reservations' start (exclusive).
pub const STANDING: &str = with_buckets!(
    r#"
local function sum_calls(ids)
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
local latest = redis.call('ZREVRANGE', KEYS[3], 0, 0)
local function since(first)
  if #latest == 0 then return 0, 0 end
  local v = redis.call('ZRANGEBYSCORE', KEYS[3], first, '+inf', 'LIMIT', 0, 1)
  if #v == 0 then return 0, 0 end
  local _, r, t, cr, ct = bucket(v[1])
  local _, _, _, lcr, lct = bucket(latest[1])
  return lcr - (cr - r), lct - (ct - t)
end
local minute_ids = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[1], '+inf')
local rm, tm = sum_calls(minute_ids)
local minute_calls = {}
if #minute_ids > 0 then
  for _, v in ipairs(redis.call('HMGET', KEYS[2], unpack(minute_ids))) do
    if v then table.insert(minute_calls, v) end
  end
end
local function first_buckets(first)
  local out = {}
  for _, v in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], first, '+inf', 'LIMIT', 0, 16)) do
    local m, r, t = bucket(v)
    table.insert(out, string.format('%d %.0f %.0f', m, r, t))
  end
  return out
end
local rh, th = since(tonumber(ARGV[2]))
local rd, td = since(tonumber(ARGV[3]))
local open_count = redis.call('ZCOUNT', KEYS[7], '(' .. ARGV[4], '+inf')
local open = {}
local oldest = redis.call('ZRANGEBYSCORE', KEYS[7], '(' .. ARGV[4], '+inf', 'LIMIT', 0, 1)
if #oldest > 0 then
  local v = redis.call('HGET', KEYS[2], oldest[1])
  if v then open = {oldest[1], v} end
end
local function cap(x) if x > 9.2e18 then return 9.2e18 end return x end
return {
  {tostring(cap(rm)), tostring(cap(tm)), tostring(cap(rh)), tostring(cap(th)),
   tostring(cap(rd)), tostring(cap(td)), tostring(open_count)},
  open,
  redis.call('ZREVRANGE', KEYS[1], 0, 0, 'WITHSCORES'),
  redis.call('HGETALL', KEYS[4]),
  redis.call('HGETALL', KEYS[5]),
  redis.call('HGETALL', KEYS[6]),
  minute_calls,
  first_buckets(tonumber(ARGV[2])),
  first_buckets(tonumber(ARGV[3])),
}
"#
);

/// The usage of one window as it will leave, earliest first, until `enough` has left:
/// `(at, amount)` for the minute window, `(minute, amount)` for buckets.
///
/// KEYS: calls, call, cum. ARGV: "minute" or "buckets", the start (exclusive for the
/// minute window, the first bucket else), 2 for tokens or 1 for requests, enough.
pub const DEPARTURES: &str = with_buckets!(
    r#"
local out = {}
local enough, freed = tonumber(ARGV[4]), 0
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
  return out
end
local offset = 0
while freed < enough do
  local chunk = redis.call('ZRANGEBYSCORE', KEYS[3], ARGV[2], '+inf', 'LIMIT', offset, 60)
  if #chunk == 0 then break end
  for _, v in ipairs(chunk) do
    local m, r, t = bucket(v)
    local n = r
    if ARGV[3] == '2' then n = t end
    if n ~= 0 then
      table.insert(out, tostring(m)); table.insert(out, string.format('%.0f', n))
      freed = freed + n
    end
  end
  offset = offset + 60
end
return out
"#
);

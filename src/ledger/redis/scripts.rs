//! The Lua scripts: each reads (or, for a minute bucket, updates) in one round trip what
//! Rust asks of many endpoints at once. They decide nothing; the rules run in Rust on what
//! they return. Each names its keys through [`lua_names`] from the layout Rust passes them
//! in, and takes its constants as arguments.

use std::sync::LazyLock;

use super::keys::{Of, lua_names};

/// A script and the order of the keys it receives for each endpoint.
pub struct Lua {
    pub layout: &'static [Of],
    pub source: String,
    pub script: redis::Script,
}

impl Lua {
    fn new(layout: &'static [Of], body: &str) -> Lua {
        let source = format!("{}{HELPERS}{body}", lua_names(layout));
        let script = redis::Script::new(&source);
        Lua {
            layout,
            source,
            script,
        }
    }
}

/// Helpers every script shares. A minute bucket is a member of the endpoint's buckets
/// sorted set, scored by its minute: `"minute requests tokens running_requests
/// running_tokens"`, the running totals counting from the first bucket ever. A call's value
/// is `"at requests tokens open"`.
const HELPERS: &str = r#"
local function bucket(v)
  local m, r, t, cr, ct = string.match(v, '(%S+) (%S+) (%S+) (%S+) (%S+)')
  return tonumber(m), tonumber(r), tonumber(t), tonumber(cr), tonumber(ct)
end
local function member(m, r, t, cr, ct)
  return string.format('%d %.0f %.0f %.0f %.0f', m, r, t, cr, ct)
end
local function call(v)
  local at, r, t = string.match(v, '(%S+) (%S+) (%S+)')
  return at, tonumber(r), tonumber(t)
end
local function number(x)
  if x > 9.2e18 then x = 9.2e18 end
  return string.format('%.0f', x)
end
-- The values of many calls, a thousand at a time (unpack has a limit).
local function values(hash, ids)
  local out = {}
  for s = 1, #ids, 1000 do
    local chunk = {}
    for j = s, math.min(s + 999, #ids) do chunk[#chunk + 1] = ids[j] end
    for _, v in ipairs(redis.call('HMGET', hash, unpack(chunk))) do
      if v then out[#out + 1] = v end
    end
  end
  return out
end
local function summed(hash, ids)
  local r, t = 0, 0
  for _, v in ipairs(values(hash, ids)) do
    local _, req, tok = call(v)
    r = r + req; t = t + tok
  end
  return r, t
end
"#;

/// Everything a decision reads of each endpoint: the minute's calls summed, the hour and day
/// summed from the buckets' running totals (two look-ups each, however busy the day), the
/// open reservations (how many, and the oldest), the last call, and the endpoint's counters,
/// cooldown and reports.
///
/// ARGV, four per endpoint: the minute window's start (exclusive), the first minute of the
/// hour and of the day window, the open reservations' start (exclusive).
pub static STANDINGS: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(
        &[
            Of::Calls,
            Of::Call,
            Of::Buckets,
            Of::Open,
            Of::Life,
            Of::Cool,
            Of::Reports,
        ],
        r#"
local out = {}
for i = 1, #KEYS / PER do
  local a = (i - 1) * 4
  local buckets = key(i, 'cum')
  local latest = redis.call('ZREVRANGE', buckets, 0, 0)
  local function since(first)
    if #latest == 0 then return 0, 0 end
    local v = redis.call('ZRANGEBYSCORE', buckets, first, '+inf', 'LIMIT', 0, 1)
    if #v == 0 then return 0, 0 end
    local _, r, t, cr, ct = bucket(v[1])
    local _, _, _, lcr, lct = bucket(latest[1])
    return lcr - (cr - r), lct - (ct - t)
  end
  local rm, tm = summed(key(i, 'call'), redis.call('ZRANGEBYSCORE', key(i, 'calls'), '(' .. ARGV[a + 1], '+inf'))
  local rh, th = since(tonumber(ARGV[a + 2]))
  local rd, td = since(tonumber(ARGV[a + 3]))
  local open = redis.call('ZCOUNT', key(i, 'open'), '(' .. ARGV[a + 4], '+inf')
  local first = redis.call('ZRANGEBYSCORE', key(i, 'open'), '(' .. ARGV[a + 4], '+inf', 'LIMIT', 0, 1)
  local oldest = {}
  if #first > 0 then
    local v = redis.call('HGET', key(i, 'call'), first[1])
    if v then oldest = {first[1], v} end
  end
  out[i] = {
    {number(rm), number(tm), number(rh), number(th), number(rd), number(td), tostring(open)},
    oldest,
    redis.call('ZREVRANGE', key(i, 'calls'), 0, 0, 'WITHSCORES'),
    redis.call('HGETALL', key(i, 'life')),
    redis.call('HGETALL', key(i, 'cool')),
    redis.call('HGETALL', key(i, 'rep')),
  }
end
return out
"#,
    )
});

/// Each endpoint's counters, and the estimated tokens of its reservations still open.
///
/// ARGV, one per endpoint: the open reservations' start (exclusive).
pub static LIFETIMES: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(
        &[Of::Call, Of::Open, Of::Life],
        r#"
local out = {}
for i = 1, #KEYS / PER do
  local open = redis.call('ZRANGEBYSCORE', key(i, 'open'), '(' .. ARGV[i], '+inf')
  local _, tokens = summed(key(i, 'call'), open)
  out[i] = {redis.call('HGETALL', key(i, 'life')), number(tokens)}
end
return out
"#,
    )
});

/// The usage of a window as it will leave, for each question: `(at, amount)` of the calls
/// stamped after an instant, or `(minute, amount)` of the buckets from the first one,
/// earliest first, until `enough` has left.
///
/// ARGV, four per question: `calls` or `buckets`, the start, 1 for requests or 2 for
/// tokens, enough.
pub static DEPARTURES: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(
        &[Of::Calls, Of::Call, Of::Buckets],
        r#"
local out = {}
for i = 1, #KEYS / PER do
  local a = (i - 1) * 4
  local mode, from, tokens, enough = ARGV[a + 1], ARGV[a + 2], ARGV[a + 3] == '2', tonumber(ARGV[a + 4])
  local list, freed = {}, 0
  if mode == 'calls' then
    local ids = redis.call('ZRANGEBYSCORE', key(i, 'calls'), '(' .. from, '+inf')
    for _, v in ipairs(values(key(i, 'call'), ids)) do
      if freed >= enough then break end
      local at, r, t = call(v)
      local n = r
      if tokens then n = t end
      list[#list + 1] = at; list[#list + 1] = number(n)
      freed = freed + n
    end
  else
    local offset = 0
    while freed < enough do
      local chunk = redis.call('ZRANGEBYSCORE', key(i, 'cum'), from, '+inf', 'LIMIT', offset, 60)
      if #chunk == 0 then break end
      for _, v in ipairs(chunk) do
        local m, r, t = bucket(v)
        local n = r
        if tokens then n = t end
        if n ~= 0 then
          list[#list + 1] = tostring(m); list[#list + 1] = number(n)
          freed = freed + n
        end
      end
      offset = offset + 60
    end
  end
  out[i] = list
end
return out
"#,
    )
});

/// Adds `dr` requests and `dt` tokens to the bucket of one minute and to the running totals
/// of every later bucket. Runs inside the step's MULTI/EXEC.
///
/// ARGV: minute, dr, dt.
pub static ADD_TO_MINUTE: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(
        &[Of::Buckets],
        r#"
local buckets = key(1, 'cum')
local m, dr, dt = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local here = redis.call('ZRANGEBYSCORE', buckets, m, m)
local r, t, cr, ct
if #here > 0 then
  local _
  _, r, t, cr, ct = bucket(here[1])
  redis.call('ZREM', buckets, here[1])
else
  r, t, cr, ct = 0, 0, 0, 0
  local before = redis.call('ZREVRANGEBYSCORE', buckets, '(' .. m, '-inf', 'LIMIT', 0, 1)
  if #before > 0 then
    local _, _, _, bcr, bct = bucket(before[1])
    cr, ct = bcr, bct
  else
    local after = redis.call('ZRANGEBYSCORE', buckets, '(' .. m, '+inf', 'LIMIT', 0, 1)
    if #after > 0 then
      local _, ar, at, acr, act = bucket(after[1])
      cr, ct = acr - ar, act - at
    end
  end
end
redis.call('ZADD', buckets, m, member(m, r + dr, t + dt, cr + dr, ct + dt))
for _, v in ipairs(redis.call('ZRANGEBYSCORE', buckets, '(' .. m, '+inf')) do
  local lm, lr, lt, lcr, lct = bucket(v)
  redis.call('ZREM', buckets, v)
  redis.call('ZADD', buckets, lm, member(lm, lr, lt, lcr + dr, lct + dt))
end
return 1
"#,
    )
});

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

/// Helpers every script shares. `M` measures ([`crate::quota::Request::measures`]) are
/// kept of everything. A minute bucket is a member of the endpoint's buckets sorted set,
/// scored by its minute: `"minute a1..aM r1..rM"`, its usage and the running totals from
/// the first bucket ever (layout 1 wrote `"minute requests tokens running_requests
/// running_tokens"`). A call's value is `"at a1..aM open"` (layout 1: `"at requests tokens
/// open"`). What layout 1 wrote reads as requests and input tokens.
const HELPERS: &str = r#"
local M = 5
local function zeros() return {0, 0, 0, 0, 0} end
local function fields(v)
  local f = {}
  for x in string.gmatch(v, '%S+') do f[#f + 1] = x end
  return f
end
local function bucket(v)
  local f = fields(v)
  local a, r = zeros(), zeros()
  if #f == 5 then
    a[1], a[2], r[1], r[2] = tonumber(f[2]), tonumber(f[3]), tonumber(f[4]), tonumber(f[5])
  else
    for k = 1, M do a[k] = tonumber(f[1 + k]) or 0; r[k] = tonumber(f[1 + M + k]) or 0 end
  end
  return tonumber(f[1]), a, r
end
local function member(m, a, r)
  local out = {string.format('%d', m)}
  for k = 1, M do out[#out + 1] = string.format('%.0f', a[k]) end
  for k = 1, M do out[#out + 1] = string.format('%.0f', r[k]) end
  return table.concat(out, ' ')
end
local function call(v)
  local f = fields(v)
  local a = zeros()
  if #f == 4 then
    a[1], a[2] = tonumber(f[2]), tonumber(f[3])
  else
    for k = 1, M do a[k] = tonumber(f[1 + k]) or 0 end
  end
  return f[1], a
end
local function number(x)
  if x > 9.2e18 then x = 9.2e18 end
  return string.format('%.0f', x)
end
local function weighed(a, w)
  local n = 0
  for k = 1, M do n = n + a[k] * w[k] end
  return n
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
-- What the buckets of a sorted set hold from the one scored `first` on: the newest
-- running totals less those before that bucket (two look-ups however many buckets).
local function since(buckets, first)
  local out = zeros()
  if first == math.huge then return out end
  local latest = redis.call('ZREVRANGE', buckets, 0, 0)
  if #latest == 0 then return out end
  local v = redis.call('ZRANGEBYSCORE', buckets, first, '+inf', 'LIMIT', 0, 1)
  if #v == 0 then return out end
  local _, fa, fr = bucket(v[1])
  local _, _, lr = bucket(latest[1])
  for k = 1, M do out[k] = lr[k] - (fr[k] - fa[k]) end
  return out
end
local function summed(hash, ids)
  local s = zeros()
  for _, v in ipairs(values(hash, ids)) do
    local _, a = call(v)
    for k = 1, M do s[k] = s[k] + a[k] end
  end
  return s
end
"#;

/// Everything a decision reads of each endpoint: the minute's calls summed, the hour and day
/// summed from the buckets' running totals (two look-ups each, however busy the day), the
/// month's totals, the open reservations (how many, and the oldest), the last call, and the
/// endpoint's counters, cooldown and reports.
///
/// ARGV, five per endpoint: the minute window's start (exclusive), the first minute of the
/// hour and of the day window, the open reservations' start (exclusive), and the start of
/// the month before (month totals kept under a later start count).
pub static STANDINGS: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(
        &[
            Of::Calls,
            Of::Call,
            Of::Buckets,
            Of::Seconds,
            Of::Months,
            Of::Open,
            Of::Life,
            Of::Cool,
            Of::Reports,
        ],
        r#"
local out = {}
for i = 1, #KEYS / PER do
  local a = (i - 1) * 5
  local sums = {}
  local function put(t) for k = 1, M do sums[#sums + 1] = number(t[k]) end end
  -- The minute: its whole seconds from the second buckets, the calls of the second it
  -- starts in (and of any second up to the first bucket's, which may not hold every call
  -- of its second: the buckets began then) one by one.
  local after = tonumber(ARGV[a + 1])
  local whole = math.floor(after / 1000) + 1
  local first = redis.call('ZRANGE', key(i, 'sec'), 0, 0, 'WITHSCORES')
  if #first == 0 then
    whole = math.huge
  elseif tonumber(first[2]) + 1 > whole then
    whole = tonumber(first[2]) + 1
  end
  local minute = since(key(i, 'sec'), whole)
  local before = '+inf'
  if whole ~= math.huge then before = '(' .. string.format('%d', whole * 1000) end
  local calls = summed(key(i, 'call'), redis.call('ZRANGEBYSCORE', key(i, 'calls'), '(' .. ARGV[a + 1], before))
  for k = 1, M do minute[k] = minute[k] + calls[k] end
  put(minute)
  put(since(key(i, 'cum'), tonumber(ARGV[a + 2])))
  put(since(key(i, 'cum'), tonumber(ARGV[a + 3])))
  local month, after = zeros(), tonumber(ARGV[a + 5])
  local totals = redis.call('HGETALL', key(i, 'mon'))
  for j = 1, #totals, 2 do
    local start, k = string.match(totals[j], '(%S+) (%S+)')
    k = tonumber(k)
    if tonumber(start) > after and k and k >= 1 and k <= M then
      month[k] = month[k] + math.max(tonumber(totals[j + 1]), 0)
    end
  end
  put(month)
  sums[#sums + 1] = tostring(redis.call('ZCOUNT', key(i, 'open'), '(' .. ARGV[a + 4], '+inf'))
  local first = redis.call('ZRANGEBYSCORE', key(i, 'open'), '(' .. ARGV[a + 4], '+inf', 'LIMIT', 0, 1)
  local oldest = {}
  if #first > 0 then
    local v = redis.call('HGET', key(i, 'call'), first[1])
    if v then oldest = {first[1], v} end
  end
  out[i] = {
    sums,
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

/// Each endpoint's counters, and the estimates of its reservations still open.
///
/// ARGV, one per endpoint: the open reservations' start (exclusive).
pub static LIFETIMES: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(
        &[Of::Call, Of::Open, Of::Life],
        r#"
local out = {}
for i = 1, #KEYS / PER do
  local open = redis.call('ZRANGEBYSCORE', key(i, 'open'), '(' .. ARGV[i], '+inf')
  local sums = {}
  for _, n in ipairs(summed(key(i, 'call'), open)) do sums[#sums + 1] = number(n) end
  out[i] = {redis.call('HGETALL', key(i, 'life')), sums}
end
return out
"#,
    )
});

/// The usage of a window as it will leave, for each question: `(at, amount)` of the calls
/// stamped after an instant, or `(minute, amount)` of the buckets from the first one,
/// earliest first, until `enough` has left; an amount is the measures times the weights.
///
/// ARGV, eight per question: `calls` or `buckets`, the start, the weight of each measure,
/// enough.
pub static DEPARTURES: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(
        &[Of::Calls, Of::Call, Of::Buckets],
        r#"
local out = {}
for i = 1, #KEYS / PER do
  local a = (i - 1) * (3 + M)
  local mode, from, enough = ARGV[a + 1], ARGV[a + 2], tonumber(ARGV[a + 3 + M])
  local w = {}
  for k = 1, M do w[k] = tonumber(ARGV[a + 2 + k]) end
  local list, freed = {}, 0
  if mode == 'calls' then
    -- A thousand calls at a time, until enough has left: a busy minute is not read whole.
    local offset = 0
    while freed < enough do
      local ids = redis.call('ZRANGEBYSCORE', key(i, 'calls'), '(' .. from, '+inf', 'LIMIT', offset, 1000)
      if #ids == 0 then break end
      for _, v in ipairs(values(key(i, 'call'), ids)) do
        if freed >= enough then break end
        local at, amounts = call(v)
        local n = weighed(amounts, w)
        list[#list + 1] = at; list[#list + 1] = number(n)
        freed = freed + n
      end
      offset = offset + 1000
    end
  else
    local offset = 0
    while freed < enough do
      local chunk = redis.call('ZRANGEBYSCORE', key(i, 'cum'), from, '+inf', 'LIMIT', offset, 60)
      if #chunk == 0 then break end
      for _, v in ipairs(chunk) do
        local m, amounts = bucket(v)
        local n = weighed(amounts, w)
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

/// Adds a change of each measure to the bucket of one minute and to the running totals of
/// every later bucket. Runs inside the step's MULTI/EXEC. The running totals are doubles,
/// exact below 2^53: when one passes 2^51 (a lifetime of pico-dollars gets there), every
/// bucket's totals are rebased to count from the first bucket kept; windows are
/// differences of totals, so they read the same.
///
/// ARGV: minute, then the change of each measure.
pub static ADD_TO_MINUTE: LazyLock<Lua> =
    LazyLock::new(|| Lua::new(&[Of::Buckets], &ADD_TO_BUCKET.replace("BUCKETS", "cum")));

/// The same for the bucket of one second. The second buckets keep two minutes: a change to
/// a second before their first is left out (its calls are read one by one), and the
/// seconds more than two minutes before the newest are dropped.
///
/// ARGV: second, then the change of each measure.
pub static ADD_TO_SECOND: LazyLock<Lua> = LazyLock::new(|| {
    let body = format!(
        r#"
local oldest = redis.call('ZRANGE', key(1, 'sec'), 0, 0, 'WITHSCORES')
if #oldest > 0 and tonumber(ARGV[1]) < tonumber(oldest[2]) then return 0 end
{}
local newest = redis.call('ZREVRANGE', key(1, 'sec'), 0, 0, 'WITHSCORES')
redis.call('ZREMRANGEBYSCORE', key(1, 'sec'), '-inf', '(' .. (tonumber(newest[2]) - 120))
return 1
"#,
        ADD_TO_BUCKET
            .replace("BUCKETS", "sec")
            .replace("return 1", "")
    );
    Lua::new(&[Of::Seconds], &body)
});

/// Adds ARGV[2..] to the bucket scored ARGV[1] of the sorted set BUCKETS.
const ADD_TO_BUCKET: &str = r#"
local buckets = key(1, 'BUCKETS')
local m = tonumber(ARGV[1])
local d = {}
for k = 1, M do d[k] = tonumber(ARGV[1 + k]) end
local here = redis.call('ZRANGEBYSCORE', buckets, m, m)
local a, r
if #here > 0 then
  local _
  _, a, r = bucket(here[1])
  redis.call('ZREM', buckets, here[1])
else
  a, r = zeros(), zeros()
  local before = redis.call('ZREVRANGEBYSCORE', buckets, '(' .. m, '-inf', 'LIMIT', 0, 1)
  if #before > 0 then
    local _, _, br = bucket(before[1])
    r = br
  else
    local after = redis.call('ZRANGEBYSCORE', buckets, '(' .. m, '+inf', 'LIMIT', 0, 1)
    if #after > 0 then
      local _, aa, ar = bucket(after[1])
      for k = 1, M do r[k] = ar[k] - aa[k] end
    end
  end
end
for k = 1, M do a[k] = a[k] + d[k]; r[k] = r[k] + d[k] end
redis.call('ZADD', buckets, m, member(m, a, r))
for _, v in ipairs(redis.call('ZRANGEBYSCORE', buckets, '(' .. m, '+inf')) do
  local lm, la, lr = bucket(v)
  redis.call('ZREM', buckets, v)
  for k = 1, M do lr[k] = lr[k] + d[k] end
  redis.call('ZADD', buckets, lm, member(lm, la, lr))
end
local _, _, top = bucket(redis.call('ZREVRANGE', buckets, 0, 0)[1])
local large = false
for k = 1, M do if math.abs(top[k]) > 2 ^ 51 then large = true end end
if large then
  local all = redis.call('ZRANGE', buckets, 0, -1)
  local _, fa, fr = bucket(all[1])
  for _, v in ipairs(all) do
    local bm, ba, br = bucket(v)
    redis.call('ZREM', buckets, v)
    for k = 1, M do br[k] = br[k] - (fr[k] - fa[k]) end
    redis.call('ZADD', buckets, bm, member(bm, ba, br))
  end
end
return 1
"#;

/// Forgets the calls of an endpoint made at or before ARGV[1] that no reservation holds
/// open (and their leases, in the hash ARGV[2]), but its newest: the minute window and the
/// departures need a call for a minute, an open lease until it is settled or expires,
/// pacing the last call. Each call is looked at once, from where the last step stopped
/// (`kept` in the endpoint's counters); one settled after that waits for the hourly
/// pruning. Runs inside the step's MULTI/EXEC, once per endpoint a
/// step writes for, so each call is forgotten once: constant work a call.
pub static FORGET_CLOSED: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(
        &[Of::Calls, Of::Call, Of::Open, Of::Life],
        r#"
-- From where the last step stopped: the open reservations before are not looked at again.
local from = redis.call('HGET', key(1, 'life'), 'kept') or '-inf'
if from ~= '-inf' and tonumber(from) >= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', key(1, 'life'), 'kept', ARGV[1])
if from ~= '-inf' then from = '(' .. from end
local ids = redis.call('ZRANGEBYSCORE', key(1, 'calls'), from, ARGV[1])
-- The newest call stays whatever its age: pacing spaces calls from it.
local newest = redis.call('ZREVRANGE', key(1, 'calls'), 0, 0)[1]
local closed = {}
for _, id in ipairs(ids) do
  if id ~= newest and not redis.call('ZSCORE', key(1, 'open'), id) then
    closed[#closed + 1] = id
  end
end
for s = 1, #closed, 1000 do
  local chunk = {}
  for j = s, math.min(s + 999, #closed) do chunk[#chunk + 1] = closed[j] end
  redis.call('HDEL', key(1, 'call'), unpack(chunk))
  redis.call('HDEL', ARGV[2], unpack(chunk))
  redis.call('ZREM', key(1, 'calls'), unpack(chunk))
end
return #closed
"#,
    )
});

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
-- An integer as a command's argument: a Lua number given as such is written as a float,
-- which costs the server more than the look-up it is for.
local function int(x) return string.format('%d', x) end
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
local function summed(hash, ids)
  local s = zeros()
  for _, v in ipairs(values(hash, ids)) do
    local _, a = call(v)
    for k = 1, M do s[k] = s[k] + a[k] end
  end
  return s
end
"#;

/// The keys of an endpoint that its standing reads, in the order a script receives them.
const STANDING_LAYOUT: &[Of] = &[
    Of::Calls,
    Of::Call,
    Of::Buckets,
    Of::Seconds,
    Of::Months,
    Of::Open,
    Of::Life,
    Of::Cool,
    Of::Reports,
];

/// Everything a decision reads of the i-th endpoint, as stored: Rust sums it (see
/// `reply::parse_standing`), since parsing costs a script more than all its look-ups.
/// - the first second bucket (with its second), the newest, and the first from the minute
///   window's first whole second (the second buckets are complete from the second after
///   their first); the calls of the second the window starts in, and of any second before
///   the first bucket's, one by one;
/// - the newest minute bucket, and the first of the hour and of the day window;
/// - the month totals; how many reservations are open, and the oldest (id and call); the
///   last call (id and instant); the endpoint's counters, cooldown and reports.
///
/// Its span: the minute window's start (exclusive), the first minute of the hour and of
/// the day window, the open reservations' start (exclusive).
const STANDING: &str = r#"
local function standing(i, after, hour_from, day_from, open_after)
  local first = redis.call('ZRANGE', key(i, 'sec'), '0', '0', 'WITHSCORES')
  local from, before = {}, '+inf'
  if #first > 0 then
    local whole = math.max(math.floor(after / 1000) + 1, tonumber(first[2]) + 1)
    from = redis.call('ZRANGEBYSCORE', key(i, 'sec'), int(whole), '+inf', 'LIMIT', '0', '1')
    before = '(' .. int(whole * 1000)
  end
  after = '(' .. int(after)
  open_after = '(' .. int(open_after)
  local ids = redis.call('ZRANGEBYSCORE', key(i, 'calls'), after, before)
  local open = redis.call('ZRANGEBYSCORE', key(i, 'open'), open_after, '+inf', 'LIMIT', '0', '1')
  local oldest, opened = {}, 0
  if #open > 0 then
    local v = redis.call('HGET', key(i, 'call'), open[1])
    if v then oldest = {open[1], v} end
    opened = redis.call('ZCOUNT', key(i, 'open'), open_after, '+inf')
  end
  return {
    first,
    redis.call('ZREVRANGE', key(i, 'sec'), '0', '0'),
    from,
    values(key(i, 'call'), ids),
    redis.call('ZREVRANGE', key(i, 'cum'), '0', '0'),
    redis.call('ZRANGEBYSCORE', key(i, 'cum'), int(hour_from), '+inf', 'LIMIT', '0', '1'),
    redis.call('ZRANGEBYSCORE', key(i, 'cum'), int(day_from), '+inf', 'LIMIT', '0', '1'),
    redis.call('HGETALL', key(i, 'mon')),
    opened,
    oldest,
    redis.call('ZREVRANGE', key(i, 'calls'), '0', '0', 'WITHSCORES'),
    redis.call('HGETALL', key(i, 'life')),
    redis.call('HGETALL', key(i, 'cool')),
    redis.call('HGETALL', key(i, 'rep')),
  }
end
"#;

/// Each endpoint's standing (see [`STANDING`]).
///
/// ARGV, four per endpoint: its span.
pub static STANDINGS: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(
        STANDING_LAYOUT,
        &format!(
            r#"{STANDING}
local out = {{}}
for i = 1, #KEYS / PER do
  local a = (i - 1) * 4
  out[i] = standing(i, tonumber(ARGV[a + 1]), ARGV[a + 2], ARGV[a + 3], tonumber(ARGV[a + 4]))
end
return out
"#
        ),
    )
});

/// The first look of every step, one reply: for a step that writes, the namespace's lock
/// (taken if free or held by the same step, whose earlier run lost its writes; `{0}` when
/// another step holds it); then the server's clock, the newest stamp, the layout and when
/// the namespace was last pruned; and the standing of each endpoint the step said it
/// would ask about first, with the span this script took for it. The span is a guess at
/// the one the step will ask (from the time of the step as the step will take it); the
/// step uses a standing only for the very span it asks, so a wrong guess costs a round
/// trip, never a wrong answer.
///
/// Last, for each lease the step said it would look up, its endpoint and call as
/// [`BY_LEASE`] reads them.
///
/// KEYS: each endpoint's (as [`STANDINGS`] takes them), then lock, newest, layout, pruned
/// and the leases hash. ARGV: the step's token (empty for a step that only reads, which
/// takes no lock), how long the lock lasts (ms), the pinned clock (empty for the
/// server's), how far ahead the newest stamp may be and still set the time, the lengths
/// of the minute, hour and day windows and how long a reservation stays open (ms), what
/// the name of an endpoint's calls hash begins with, and the leases.
pub static BEGIN: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(
        STANDING_LAYOUT,
        &format!(
            r#"{STANDING}
local g = #KEYS - 5
if ARGV[1] ~= '' then
  local holder = redis.call('GET', KEYS[g + 1])
  if holder and holder ~= ARGV[1] then return {{0}} end
  redis.call('SET', KEYS[g + 1], ARGV[1], 'PX', ARGV[2])
end
local t = redis.call('TIME')
local newest = redis.call('GET', KEYS[g + 2])
local standings = {{}}
if g > 0 then
  local now = tonumber(ARGV[3]) or (tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
  local n = tonumber(newest)
  if n and n > now and n - now <= tonumber(ARGV[4]) then now = n end
  local function minute(at) return math.floor(at / 60000) end
  local span = {{now - tonumber(ARGV[5]), minute(now - tonumber(ARGV[6]) + 1),
    minute(now - tonumber(ARGV[7]) + 1), now - tonumber(ARGV[8])}}
  for i = 1, g / PER do
    standings[i] = {{span, standing(i, span[1], span[2], span[3], span[4])}}
  end
end
local leases = {{}}
for j = 10, #ARGV do
  local endpoint = redis.call('HGET', KEYS[g + 5], ARGV[j])
  leases[j - 9] = endpoint and {{endpoint, redis.call('HGET', ARGV[9] .. endpoint, ARGV[j])}}
end
return {{1, t[1], t[2], newest, redis.call('GET', KEYS[g + 3]), redis.call('GET', KEYS[g + 4]),
  standings, leases}}
"#
        ),
    )
});

/// A lease's endpoint and its call, in one round trip: `{endpoint, call}`, or nil.
///
/// KEYS: the leases hash. ARGV: the lease, and what the name of an endpoint's calls hash
/// begins with (the endpoint follows).
pub static BY_LEASE: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(
        &[],
        r#"
local endpoint = redis.call('HGET', KEYS[1], ARGV[1])
if not endpoint then return false end
return {endpoint, redis.call('HGET', ARGV[2] .. endpoint, ARGV[1])}
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

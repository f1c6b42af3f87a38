//! Rolling-window admission math. Pure: every function takes `now` (or instants) as an
//! argument and never reads a clock or the database, so the edge rules can be tested with
//! literal instants.

use crate::clock::{HOUR_MS, MINUTE_MS, Millis};

/// A window: rolling (a request made at `t` counts at `now` while `now - len < t`;
/// entries stamped after `now` count too, so a process that judges a little late still sees
/// what the processes ahead of it wrote), or the calendar month, which counts what was
/// stamped since it began.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Window {
    Minute,
    Hour,
    Day,
    Month,
}

impl Window {
    /// The rolling windows.
    pub const ROLLING: [Window; 3] = [Window::Minute, Window::Hour, Window::Day];

    /// The length of a rolling window; a month is as long as the calendar makes it, which
    /// is longer than every rolling window.
    pub fn len_ms(self) -> Millis {
        match self {
            Window::Minute => MINUTE_MS,
            Window::Hour => HOUR_MS,
            Window::Day | Window::Month => 24 * HOUR_MS,
        }
    }

    /// Its place in a ledger's answer ([`crate::ledger::Stored::windows`]).
    pub fn index(self) -> usize {
        self as usize
    }
}

/// The longest rolling window: anything older counts in no rolling window and may be
/// pruned (months are kept apart, as totals).
pub const LONGEST_WINDOW_MS: Millis = 24 * HOUR_MS;

/// What a limit counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Unit {
    Requests,
    /// Input, cached and output tokens (cached ones unless the row reads its cache free).
    Tokens,
    /// Input tokens, and cached ones unless the row reads its cache free.
    Input,
    Output,
    /// Cost, in pico-dollars.
    Dollars,
}

/// Whether a row's cached input tokens count toward its token limits (`cache_reads`); they
/// always count toward money.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum CacheReads {
    #[default]
    Counted,
    Free,
}

/// The measures a ledger keeps of every call, in [`Request::measures`] order.
pub const MEASURES: usize = 5;

impl Unit {
    /// What the unit counts of each measure (requests, input, cached, output, cost): a
    /// ledger sums a window's departures with these weights.
    pub fn weights(self, cache: CacheReads) -> [u64; MEASURES] {
        let cached = u64::from(cache == CacheReads::Counted);
        match self {
            Unit::Requests => [1, 0, 0, 0, 0],
            Unit::Tokens => [0, 1, cached, 1, 0],
            Unit::Input => [0, 1, cached, 0, 0],
            Unit::Output => [0, 0, 0, 1, 0],
            Unit::Dollars => [0, 0, 0, 0, 1],
        }
    }
}

/// One limit of an endpoint: a unit counted over a window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Limit {
    pub unit: Unit,
    pub window: Window,
}

/// Every limit, in the order of every report: the six of old first, then by kind.
const LIMITS: [(Unit, Window, &str, &str); 16] = [
    (Unit::Requests, Window::Minute, "rpm", "pool rpm"),
    (Unit::Tokens, Window::Minute, "tpm", "pool tpm"),
    (Unit::Requests, Window::Hour, "rph", "pool rph"),
    (Unit::Tokens, Window::Hour, "tph", "pool tph"),
    (Unit::Requests, Window::Day, "rpd", "pool rpd"),
    (Unit::Tokens, Window::Day, "tpd", "pool tpd"),
    (Unit::Input, Window::Minute, "itpm", "pool itpm"),
    (Unit::Input, Window::Hour, "itph", "pool itph"),
    (Unit::Input, Window::Day, "itpd", "pool itpd"),
    (Unit::Output, Window::Minute, "otpm", "pool otpm"),
    (Unit::Output, Window::Hour, "otph", "pool otph"),
    (Unit::Output, Window::Day, "otpd", "pool otpd"),
    (Unit::Requests, Window::Month, "rpmo", "pool rpmo"),
    (Unit::Tokens, Window::Month, "tpmo", "pool tpmo"),
    (Unit::Dollars, Window::Day, "usd_pd", "pool usd_pd"),
    (Unit::Dollars, Window::Month, "usd_pmo", "pool usd_pmo"),
];

const COUNT: usize = LIMITS.len();

impl Limit {
    /// In the order of every report.
    pub const ALL: [Limit; COUNT] = {
        let mut all = [Limit::new(Unit::Requests, Window::Minute); COUNT];
        let mut i = 0;
        while i < COUNT {
            all[i] = Limit::new(LIMITS[i].0, LIMITS[i].1);
            i += 1;
        }
        all
    };

    pub const fn new(unit: Unit, window: Window) -> Limit {
        Limit { unit, window }
    }

    /// The column name: `rpm`, `tpm`, ..., `itpm`, `rpmo`, `usd_pd`.
    pub fn name(self) -> &'static str {
        LIMITS[self.index()].2
    }

    /// The name of the pool's limit: `pool rpm`, ...
    pub fn pool_name(self) -> &'static str {
        LIMITS[self.index()].3
    }

    pub fn from_name(name: &str) -> Option<Limit> {
        Limit::ALL.into_iter().find(|l| l.name() == name)
    }

    /// Whether its values are dollars (written with decimals, kept in pico-dollars).
    pub fn is_money(self) -> bool {
        self.unit == Unit::Dollars
    }

    /// Its place in [`LIMITS`] (a limit that is not one of them takes `rpm`'s).
    fn index(self) -> usize {
        use {Unit as U, Window as W};
        match (self.unit, self.window) {
            (U::Requests, W::Minute) => 0,
            (U::Tokens, W::Minute) => 1,
            (U::Requests, W::Hour) => 2,
            (U::Tokens, W::Hour) => 3,
            (U::Requests, W::Day) => 4,
            (U::Tokens, W::Day) => 5,
            (U::Input, W::Minute) => 6,
            (U::Input, W::Hour) => 7,
            (U::Input, W::Day) => 8,
            (U::Output, W::Minute) => 9,
            (U::Output, W::Hour) => 10,
            (U::Output, W::Day) => 11,
            (U::Requests, W::Month) => 12,
            (U::Tokens, W::Month) => 13,
            (U::Dollars, W::Day) => 14,
            (U::Dollars, W::Month) => 15,
            _ => 0,
        }
    }
}

/// One value per limit, indexed by [`Limit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PerLimit<T>([T; COUNT]);

impl<T: Default + Copy> Default for PerLimit<T> {
    fn default() -> Self {
        PerLimit([T::default(); COUNT])
    }
}

impl<T: Copy> PerLimit<T> {
    pub fn get(&self, limit: Limit) -> T {
        self.0[limit.index()]
    }

    pub fn set(&mut self, limit: Limit, value: T) {
        self.0[limit.index()] = value;
    }
}

/// The caps of an endpoint; `None` is no limit, `Some(0)` disables the endpoint.
pub type Limits = PerLimit<Option<u64>>;

impl Limits {
    /// The limits set, in report order.
    pub fn set_ones(&self) -> impl Iterator<Item = (Limit, u64)> + '_ {
        Limit::ALL
            .into_iter()
            .filter_map(|l| Some((l, self.get(l)?)))
    }
}

/// What an endpoint has used in each window at some instant.
pub type Used = PerLimit<u64>;

/// What one call asks of an endpoint, or what calls used: requests, tokens of each kind,
/// and cost in pico-dollars. An estimate has no cached tokens (nothing says in advance
/// what a cache will hold), so what it asks of a limit does not depend on `cache_reads`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Request {
    pub requests: u64,
    pub input: u64,
    pub cached: u64,
    pub output: u64,
    pub cost: u64,
}

impl Request {
    /// One request of `tokens` input tokens, costing nothing.
    pub fn new(tokens: u64) -> Request {
        Request {
            requests: 1,
            input: tokens,
            ..Request::default()
        }
    }

    /// All its tokens.
    pub fn tokens(&self) -> u64 {
        self.input
            .saturating_add(self.cached)
            .saturating_add(self.output)
    }

    /// What it counts toward a limit of `unit`, its cached tokens counted.
    pub fn amount(&self, unit: Unit) -> u64 {
        self.measured(unit, CacheReads::Counted)
    }

    /// What it counts toward a limit of `unit` of a row whose cache reads are `cache`.
    pub fn measured(&self, unit: Unit, cache: CacheReads) -> u64 {
        self.measures()
            .iter()
            .zip(unit.weights(cache))
            .fold(0u64, |sum, (&n, w)| sum.saturating_add(n.saturating_mul(w)))
    }

    pub fn measures(&self) -> [u64; MEASURES] {
        [
            self.requests,
            self.input,
            self.cached,
            self.output,
            self.cost,
        ]
    }

    pub fn from_measures([requests, input, cached, output, cost]: [u64; MEASURES]) -> Request {
        Request {
            requests,
            input,
            cached,
            output,
            cost,
        }
    }

    pub fn plus(self, other: Request) -> Request {
        let (a, b) = (self.measures(), other.measures());
        Request::from_measures(std::array::from_fn(|i| a[i].saturating_add(b[i])))
    }
}

/// Why a request can never be admitted by an endpoint, whatever the ledger holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Never {
    /// A limit of 0 switches the endpoint off.
    Disabled(Limit),
    /// The request alone is larger than the limit.
    TooLarge { limit: Limit, cap: u64 },
    /// A limit of the row's pool is 0 or smaller than the request.
    Pool { limit: Limit, cap: u64 },
}

impl std::fmt::Display for Never {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Never::Disabled(limit) => write!(f, "disabled ({} is 0)", limit.name()),
            Never::TooLarge { limit, cap } => write!(f, "{} is {cap}", limit.name()),
            Never::Pool { limit, cap } => write!(f, "{} is {cap}", limit.pool_name()),
        }
    }
}

pub fn never_fits(limits: &Limits, request: Request) -> Option<Never> {
    if let Some(limit) = Limit::ALL.into_iter().find(|&l| limits.get(l) == Some(0)) {
        return Some(Never::Disabled(limit));
    }
    Limit::ALL.into_iter().find_map(|limit| {
        let cap = limits.get(limit)?;
        (request.amount(limit.unit) > cap).then_some(Never::TooLarge { limit, cap })
    })
}

/// A limit the request would break, and by how much the usage must fall before it fits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shortfall {
    pub limit: Limit,
    pub excess: u64,
}

/// The limits that stop `request` now; empty when it fits. Filling a limit exactly fits.
pub fn shortfalls(limits: &Limits, used: &Used, request: Request) -> Vec<Shortfall> {
    Limit::ALL
        .into_iter()
        .filter_map(|limit| {
            let cap = limits.get(limit)?;
            let after = used.get(limit).saturating_add(request.amount(limit.unit));
            (after > cap).then(|| Shortfall {
                limit,
                excess: after - cap,
            })
        })
        .collect()
}

/// The smallest fraction of any limit left after `request`, in [0, 1]; 1 with no limits.
pub fn headroom(limits: &Limits, used: &Used, request: Request) -> f64 {
    Limit::ALL
        .into_iter()
        .filter_map(|limit| {
            let cap = limits.get(limit)?;
            let after = used.get(limit).saturating_add(request.amount(limit.unit));
            Some(if cap == 0 {
                0.0
            } else {
                cap.saturating_sub(after) as f64 / cap as f64
            })
        })
        .fold(1.0, f64::min)
}

/// The least spacing between calls that keeps every request limit evenly spread: window /
/// limit, the largest over the request limits (rpm 60: 1 s; rph 1800: 2 s).
pub fn pace_spacing(limits: &Limits) -> Option<Millis> {
    Window::ROLLING
        .into_iter()
        .filter_map(|window| {
            let cap = limits.get(Limit::new(Unit::Requests, window))?;
            (cap > 0).then(|| (window.len_ms() as u64).div_ceil(cap) as Millis)
        })
        .max()
}

// Exact windows: one ledger row per request.

/// Rows with `at > counted_after(window, now)` count in the window.
pub fn counted_after(window: Window, now: Millis) -> Millis {
    now - window.len_ms()
}

/// The instant a row made at `at` stops counting in the window.
pub fn row_leaves_at(at: Millis, window: Window) -> Millis {
    at + window.len_ms()
}

// Minute buckets: hour and day windows sum usage per calendar minute, and a bucket counts as
// if all of it happened at its last millisecond, so usage frees up to 60 s late, never early.

pub fn minute_of(at: Millis) -> i64 {
    at.div_euclid(MINUTE_MS)
}

fn bucket_last_ms(minute: i64) -> Millis {
    (minute + 1) * MINUTE_MS - 1
}

/// The oldest minute bucket that still counts in the window at `now`.
pub fn first_counted_minute(window: Window, now: Millis) -> i64 {
    (now - window.len_ms() + 1).div_euclid(MINUTE_MS)
}

pub fn bucket_leaves_at(minute: i64, window: Window) -> Millis {
    bucket_last_ms(minute) + window.len_ms()
}

/// When usage leaving in `departures` (ascending `(leaves_at, amount)`) has shed `excess`;
/// `None` when it never sheds that much.
pub fn freed_by(
    departures: impl IntoIterator<Item = (Millis, u64)>,
    excess: u64,
) -> Option<Millis> {
    let mut freed = 0u64;
    for (leaves_at, amount) in departures {
        freed = freed.saturating_add(amount);
        if freed >= excess {
            return Some(leaves_at);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Millis = 1_767_225_600_000; // 2026-01-01T00:00:00Z

    fn limits(pairs: &[(&str, u64)]) -> Limits {
        let mut limits = Limits::default();
        for &(name, cap) in pairs {
            limits.set(Limit::from_name(name).expect("limit name"), Some(cap));
        }
        limits
    }

    fn used(pairs: &[(&str, u64)]) -> Used {
        let mut used = Used::default();
        for &(name, n) in pairs {
            used.set(Limit::from_name(name).expect("limit name"), n);
        }
        used
    }

    #[test]
    fn names_round_trip_in_column_order() {
        let names: Vec<_> = Limit::ALL.iter().map(|l| l.name()).collect();
        assert_eq!(names[..6], ["rpm", "tpm", "rph", "tph", "rpd", "tpd"]);
        assert_eq!(names.len(), 16);
        for limit in Limit::ALL {
            assert_eq!(Limit::from_name(limit.name()), Some(limit));
        }
        assert_eq!(Limit::from_name("rps"), None);
        for (i, limit) in Limit::ALL.into_iter().enumerate() {
            assert_eq!(limit.index(), i, "{}", limit.name());
        }
    }

    #[test]
    fn filling_a_limit_exactly_fits_and_one_more_does_not() {
        let caps = limits(&[("rpm", 2), ("tpm", 1000)]);
        assert!(
            shortfalls(&caps, &used(&[("rpm", 1), ("tpm", 400)]), Request::new(600)).is_empty()
        );
        let short = shortfalls(&caps, &used(&[("rpm", 1), ("tpm", 400)]), Request::new(601));
        assert_eq!(
            short,
            [Shortfall {
                limit: Limit::from_name("tpm").expect("tpm"),
                excess: 1
            }]
        );
        let short = shortfalls(&caps, &used(&[("rpm", 2)]), Request::new(0));
        assert_eq!(short.len(), 1);
        assert_eq!(short[0].limit.name(), "rpm");
    }

    #[test]
    fn zero_disables_and_oversized_requests_never_fit() {
        assert_eq!(
            never_fits(&limits(&[("rpd", 0)]), Request::new(0)),
            Some(Never::Disabled(Limit::from_name("rpd").expect("rpd")))
        );
        assert_eq!(
            never_fits(&limits(&[("tpm", 100)]), Request::new(101)),
            Some(Never::TooLarge {
                limit: Limit::from_name("tpm").expect("tpm"),
                cap: 100
            })
        );
        assert_eq!(
            never_fits(&limits(&[("tpm", 100)]), Request::new(100)),
            None
        );
        assert_eq!(never_fits(&Limits::default(), Request::new(u64::MAX)), None);
    }

    #[test]
    fn a_row_counts_until_exactly_t_plus_the_window() {
        let at = T0 + 123;
        for window in Window::ROLLING {
            let leaves = row_leaves_at(at, window);
            // counts while now - W < at
            assert!(at > counted_after(window, leaves - 1));
            assert!(at <= counted_after(window, leaves));
        }
        assert_eq!(row_leaves_at(at, Window::Minute), at + 60_000);
    }

    #[test]
    fn a_bucket_frees_late_by_under_a_minute_and_never_early() {
        for offset in [0, 1, 59_999, 30_000] {
            let at = T0 + offset;
            let minute = minute_of(at);
            for window in [Window::Hour, Window::Day] {
                let leaves = bucket_leaves_at(minute, window);
                let exact = row_leaves_at(at, window);
                assert!(leaves >= exact, "never early");
                assert!(leaves - exact < MINUTE_MS, "at most a minute late");
                // the bucket is counted right up to the instant it leaves
                assert!(minute >= first_counted_minute(window, leaves - 1));
                assert!(minute < first_counted_minute(window, leaves));
            }
        }
    }

    #[test]
    fn minutes_before_the_epoch_round_down() {
        assert_eq!(minute_of(-1), -1);
        assert_eq!(minute_of(0), 0);
        assert_eq!(minute_of(59_999), 0);
    }

    #[test]
    fn freed_by_finds_the_departure_that_sheds_enough() {
        let departures = [(10, 2), (20, 0), (30, 5)];
        assert_eq!(freed_by(departures, 1), Some(10));
        assert_eq!(freed_by(departures, 2), Some(10));
        assert_eq!(freed_by(departures, 3), Some(30));
        assert_eq!(freed_by(departures, 8), None);
    }

    #[test]
    fn pacing_takes_the_widest_spacing_of_the_request_limits() {
        assert_eq!(pace_spacing(&limits(&[("rpm", 60)])), Some(1_000));
        assert_eq!(
            pace_spacing(&limits(&[("rpm", 60), ("rph", 1800)])),
            Some(2_000)
        );
        assert_eq!(pace_spacing(&limits(&[("rpm", 7)])), Some(8_572));
        assert_eq!(pace_spacing(&limits(&[("tpm", 7)])), None);
        assert_eq!(pace_spacing(&limits(&[("rpm", 0)])), None);
    }

    #[test]
    fn headroom_is_the_tightest_fraction_left() {
        let caps = limits(&[("rpm", 10), ("tpd", 1000)]);
        let h = headroom(&caps, &used(&[("rpm", 4), ("tpd", 100)]), Request::new(0));
        assert!((h - 0.5).abs() < 1e-9);
        assert_eq!(
            headroom(&Limits::default(), &Used::default(), Request::new(5)),
            1.0
        );
    }
}

//! The names in a Redis namespace: its keys, the fields of its hashes, and the order in
//! which a script receives an endpoint's keys. Rust and the Lua scripts both take them from
//! here, so a key is never a bare string or a position in two places.

/// A key of one endpoint: `PREFIX:KIND:ENDPOINT`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Of {
    /// Sorted set: every call's id, scored by when it was made.
    Calls,
    /// Hash: call id -> `"at requests input cached output cost open"` (layout 1 wrote
    /// `"at requests tokens open"`: input tokens alone).
    Call,
    /// Sorted set: the minute buckets with their running totals, scored by minute.
    Buckets,
    /// Sorted set: the buckets of the last two minutes' seconds, likewise, so that the
    /// minute window reads its whole seconds in two look-ups; complete from the second
    /// after its first.
    Seconds,
    /// Hash: `"start measure"` -> the total of a measure over the month that began at start.
    Months,
    /// Sorted set: `"ms id"` of each successful call, scored by when it was recorded.
    Latencies,
    /// Sorted set: the open reservations' leases, scored by when they were made.
    Open,
    /// Hash of [`Life`] fields.
    Life,
    /// Hash of [`Cool`] fields.
    Cool,
    /// Hash: limit name -> `"remaining cap resets_at"` and the running totals of each
    /// measure then (layout 1: of requests and input tokens).
    Reports,
    /// Hashes: hour -> a measure (the history, kept through resets), in measure order.
    HourRequests,
    HourTokens,
    HourCached,
    HourOutput,
    HourCost,
}

impl Of {
    /// The kinds forgotten by a reset; the history is not.
    pub const FORGOTTEN: [Of; 10] = [
        Of::Calls,
        Of::Call,
        Of::Buckets,
        Of::Seconds,
        Of::Months,
        Of::Latencies,
        Of::Open,
        Of::Life,
        Of::Cool,
        Of::Reports,
    ];

    /// The history's hashes, in measure order ([`crate::quota::Request::measures`]).
    pub const HOURS: [Of; 5] = [
        Of::HourRequests,
        Of::HourTokens,
        Of::HourCached,
        Of::HourOutput,
        Of::HourCost,
    ];

    /// The part of the key name that says what it holds (unchanged since layout 1).
    pub fn kind(self) -> &'static str {
        match self {
            Of::Calls => "calls",
            Of::Call => "call",
            Of::Buckets => "cum",
            Of::Seconds => "sec",
            Of::Months => "mon",
            Of::Latencies => "lat",
            Of::Open => "open",
            Of::Life => "life",
            Of::Cool => "cool",
            Of::Reports => "rep",
            Of::HourRequests => "hourr",
            Of::HourTokens => "hourt",
            Of::HourCached => "hourc",
            Of::HourOutput => "houro",
            Of::HourCost => "hourd",
        }
    }
}

/// A key of the whole namespace: `PREFIX:NAME`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Global {
    /// Bumped by every step that writes; every step WATCHes it.
    Version,
    /// Held by the step that writes (a random token, expiring): one writer at a time.
    Lock,
    /// A list a step that let go of the lock pushes to, waking the first step waiting.
    Wake,
    /// The newest stamp in the ledger.
    Newest,
    /// The layout of the namespace (see `LAYOUT`).
    Layout,
    /// When the namespace was last pruned.
    Pruned,
    /// Set: every endpoint with usage, counters or answers (a reset removes it).
    Endpoints,
    /// Set: every endpoint with history (a reset leaves it).
    History,
    /// Hash: lease -> endpoint.
    Leases,
    /// The endpoint that took the last round-robin turn.
    Turn,
    /// Set: the notes said once.
    Said,
}

impl Global {
    pub fn name(self) -> &'static str {
        match self {
            Global::Version => "version",
            Global::Lock => "lock",
            Global::Wake => "wake",
            Global::Newest => "newest",
            Global::Layout => "layout",
            Global::Pruned => "pruned",
            Global::Endpoints => "endpoints",
            Global::History => "history",
            Global::Leases => "leases",
            Global::Turn => "turn",
            Global::Said => "said",
        }
    }
}

/// The fields of an endpoint's [`Of::Life`] hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Life {
    Requests,
    Tokens,
    Cached,
    Output,
    Cost,
    Pending,
    PendingCached,
    PendingOutput,
    PendingCost,
    RateLimited,
    Failed,
    /// How far the endpoint's calls were looked at for forgetting (the forgetting script
    /// writes it).
    Kept,
}

impl Life {
    /// The usage counted, in measure order.
    pub const COUNTED: [Life; 5] = [
        Life::Requests,
        Life::Tokens,
        Life::Cached,
        Life::Output,
        Life::Cost,
    ];

    /// The estimates pending, in measure order but for requests (never pending).
    pub const PENDING: [Life; 4] = [
        Life::Pending,
        Life::PendingCached,
        Life::PendingOutput,
        Life::PendingCost,
    ];

    pub fn field(self) -> &'static str {
        match self {
            Life::Requests => "req",
            Life::Tokens => "tok",
            Life::Cached => "cac",
            Life::Output => "out",
            Life::Cost => "usd",
            Life::Pending => "pend",
            Life::PendingCached => "pcac",
            Life::PendingOutput => "pout",
            Life::PendingCost => "pusd",
            Life::RateLimited => "rl",
            Life::Failed => "fl",
            Life::Kept => "kept",
        }
    }
}

/// The fields of an endpoint's [`Of::Cool`] hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cool {
    Until,
    Reason,
    Strikes,
    Failures,
    Probe,
}

impl Cool {
    pub fn field(self) -> &'static str {
        match self {
            Cool::Until => "until",
            Cool::Reason => "reason",
            Cool::Strikes => "strikes",
            Cool::Failures => "failures",
            Cool::Probe => "probe",
        }
    }
}

/// The names of a namespace's keys.
pub struct Keys {
    pub prefix: String,
}

impl Keys {
    pub fn global(&self, key: Global) -> String {
        format!("{}:{}", self.prefix, key.name())
    }

    pub fn of(&self, kind: Of, endpoint: &str) -> String {
        format!("{}:{}:{endpoint}", self.prefix, kind.kind())
    }

    /// The keys a script receives for each endpoint, `layout` in order, endpoint after
    /// endpoint.
    pub fn for_script(&self, layout: &[Of], endpoints: &[&str]) -> Vec<String> {
        endpoints
            .iter()
            .flat_map(|e| layout.iter().map(move |&kind| self.of(kind, e)))
            .collect()
    }
}

/// The Lua that names a script's keys: `key(i, 'calls')` is the `calls` key of the i-th
/// endpoint (from 1), in the order [`Keys::for_script`] passes them.
pub fn lua_names(layout: &[Of]) -> String {
    let names: Vec<String> = layout
        .iter()
        .enumerate()
        .map(|(i, kind)| format!("{} = {}", kind.kind(), i + 1))
        .collect();
    format!(
        "local K = {{{}}}\nlocal PER = {}\nlocal function key(i, name) return KEYS[(i - 1) * PER + K[name]] end\n",
        names.join(", "),
        layout.len()
    )
}

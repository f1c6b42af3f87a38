//! The writes of a Redis step, queued for its MULTI/EXEC behind helpers named for what
//! they do.

use redis::Pipeline;

use super::keys::{Global, Keys, Life, Of};
use crate::ledger::{HISTORY_MS, RETENTION_MS};

/// Calls, reservations and minute buckets outlive the longest window by this margin.
const CALLS_TTL_S: i64 = (RETENTION_MS / 1000) + 3_600;
pub const HISTORY_TTL_S: i64 = HISTORY_MS / 1000 + 86_400;
/// Lifetime counters of an endpoint unused for this long are forgotten.
const LIFE_TTL_S: i64 = 400 * 86_400;
pub const ANSWERS_TTL_S: i64 = 7 * 86_400;

/// The step's queued writes, by what they do.
pub struct Journal<'a> {
    pub pipe: &'a mut Pipeline,
    pub keys: &'a Keys,
}

impl Journal<'_> {
    pub fn hincr(&mut self, key: String, field: impl redis::ToRedisArgs, by: i64) {
        if by != 0 {
            self.pipe
                .cmd("HINCRBY")
                .arg(key)
                .arg(field)
                .arg(by)
                .ignore();
        }
    }

    pub fn life(&mut self, endpoint: &str, field: Life, by: i64) {
        self.hincr(self.keys.of(Of::Life, endpoint), field.field(), by);
    }

    pub fn expire(&mut self, key: String, seconds: i64) {
        self.pipe.cmd("EXPIRE").arg(key).arg(seconds).ignore();
    }

    /// Lists `endpoint` in a set of the namespace.
    pub fn list(&mut self, set: Global, endpoint: &str) {
        let set = self.keys.global(set);
        self.pipe.cmd("SADD").arg(set).arg(endpoint).ignore();
    }

    /// Keeps the endpoint's usage and counters while it is used, and lists it.
    pub fn touch(&mut self, endpoint: &str) {
        for kind in [Of::Calls, Of::Call, Of::Buckets, Of::Open] {
            self.expire(self.keys.of(kind, endpoint), CALLS_TTL_S);
        }
        self.expire(self.keys.of(Of::Life, endpoint), LIFE_TTL_S);
        self.list(Global::Endpoints, endpoint);
    }
}

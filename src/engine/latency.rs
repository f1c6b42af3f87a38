//! How fast each endpoint answers: the latency of its successful calls over the last hour,
//! as nearest-rank percentiles, for `state` and `--strategy fastest`.

use anyhow::Result;

use crate::clock::{HOUR_MS, Millis};
use crate::endpoints::Endpoint;
use crate::ledger::Book;

/// The median and 90th percentile of an endpoint's successful calls in the last hour, in
/// milliseconds, and how many calls they are of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Speed {
    pub p50: u64,
    pub p90: u64,
    pub calls: u64,
}

/// The speed of each of `endpoints` at `now`, `None` for one with no successful call in
/// the last hour; one question to the ledger.
pub fn speeds(book: &dyn Book, endpoints: &[&str], now: Millis) -> Result<Vec<Option<Speed>>> {
    let asks: Vec<(&str, Millis)> = endpoints.iter().map(|&id| (id, now - HOUR_MS)).collect();
    Ok(book
        .latencies(&asks)?
        .into_iter()
        .map(|mut ms| {
            ms.sort_unstable();
            Some(Speed {
                p50: nearest_rank(&ms, 50)?,
                p90: nearest_rank(&ms, 90)?,
                calls: ms.len() as u64,
            })
        })
        .collect())
}

/// The median latency of each candidate, for `--strategy fastest`.
pub fn medians(book: &dyn Book, candidates: &[&Endpoint], now: Millis) -> Result<Vec<Option<u64>>> {
    let ids: Vec<&str> = candidates.iter().map(|e| e.id.as_str()).collect();
    Ok(speeds(book, &ids, now)?
        .into_iter()
        .map(|speed| speed.map(|s| s.p50))
        .collect())
}

/// The nearest-rank `percent`-th percentile of `sorted`: the smallest value with at least
/// that share of the values at or below it.
pub fn nearest_rank(sorted: &[u64], percent: u64) -> Option<u64> {
    let n = sorted.len() as u64;
    let rank = (percent * n).div_ceil(100).max(1);
    sorted.get(usize::try_from(rank - 1).ok()?).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_takes_the_smallest_value_covering_the_share() {
        assert_eq!(nearest_rank(&[], 50), None);
        assert_eq!(nearest_rank(&[7], 50), Some(7));
        assert_eq!(nearest_rank(&[7], 90), Some(7));
        let ten: Vec<u64> = (1..=10).collect();
        assert_eq!(nearest_rank(&ten, 50), Some(5));
        assert_eq!(nearest_rank(&ten, 90), Some(9));
        let four = [10, 20, 30, 40];
        assert_eq!(nearest_rank(&four, 50), Some(20));
        assert_eq!(nearest_rank(&four, 90), Some(40));
    }
}

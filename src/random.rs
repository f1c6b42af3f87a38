//! Random numbers for lease ids, the weighted strategy and back-offs. Nothing here needs
//! cryptography, only numbers that no other process repeats: std's per-process random hash
//! keys, which change with every use, mixed with the process id and a count.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};

static DRAWN: AtomicU64 = AtomicU64::new(0);

/// A number that no other draw, in this process or another, is likely to repeat.
pub fn draw() -> u64 {
    let count = DRAWN.fetch_add(1, Ordering::Relaxed);
    std::collections::hash_map::RandomState::new().hash_one((std::process::id(), count))
}

/// A number in `0..n` (0 when `n` is 0).
pub fn below(n: u64) -> u64 {
    if n == 0 { 0 } else { draw() % n }
}

/// An id of 16 hexadecimal characters, unique across processes: leases and calls.
pub fn id() -> String {
    format!("{:016x}", draw())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_do_not_repeat_and_draws_stay_below_their_bound() {
        let ids: std::collections::HashSet<String> = (0..1000).map(|_| id()).collect();
        assert_eq!(ids.len(), 1000);
        assert!(ids.iter().all(|i| i.len() == 16));
        assert!((0..1000).all(|_| below(7) < 7));
        assert_eq!(below(0), 0);
    }
}

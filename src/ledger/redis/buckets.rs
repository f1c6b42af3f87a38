//! Buckets with running totals: the minute buckets (`cum`) and second buckets (`sec`) of an
//! endpoint, each a member of a sorted set scored by its minute or second,
//! `"at a1..aM r1..rM"`: what the bucket added of each measure, and the running totals of
//! every bucket up to it. A window from a bucket on is the newest running totals less those
//! before that bucket: two look-ups however many buckets.
//!
//! The step that holds the lock computes its updates here, from what it read and its own
//! earlier updates, and its journal sends each as a plain ZREM and ZADD: the server parses
//! nothing. Only an update before every bucket the step knows has the server read first
//! (a settle of a call made long ago).

use std::collections::BTreeMap;

use crate::quota::MEASURES;

const M: usize = MEASURES;

/// Running totals are read as doubles by the scripts, exact below 2^53; past 2^51 (a
/// lifetime of pico-dollars gets there), every bucket is rebased to count from the first
/// bucket kept. Windows are differences of totals, so they read the same.
const REBASE_ABOVE: i64 = 1 << 51;

/// The second buckets keep two minutes: those more than this before the newest go.
pub const SECONDS_KEPT: i64 = 120;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bucket {
    pub at: i64,
    pub added: [i64; M],
    pub running: [i64; M],
}

impl Bucket {
    /// A member as written, or as layout 1 wrote it (`at requests tokens running_requests
    /// running_tokens`).
    pub fn parse(member: &str) -> Option<Bucket> {
        let numbers: Vec<i64> = member
            .split(' ')
            .map(|t| t.parse::<f64>().ok().map(|n| n as i64))
            .collect::<Option<_>>()?;
        let mut bucket = Bucket {
            at: *numbers.first()?,
            ..Bucket::default()
        };
        match numbers[1..] {
            [r, t, rr, rt] => {
                bucket.added[..2].copy_from_slice(&[r, t]);
                bucket.running[..2].copy_from_slice(&[rr, rt]);
            }
            ref rest if rest.len() == 2 * M => {
                bucket.added.copy_from_slice(&rest[..M]);
                bucket.running.copy_from_slice(&rest[M..]);
            }
            _ => return None,
        }
        Some(bucket)
    }

    /// A member as [`Bucket::parse`] reads it, or an error that quotes its start: a
    /// namespace another program wrote to may hold anything.
    pub fn read(member: &str) -> anyhow::Result<Bucket> {
        Bucket::parse(member).ok_or_else(|| {
            anyhow::anyhow!(
                "the namespace holds a usage bucket that is not llm-rotate's: {}; is the \
                 prefix used by another program? `reset` the endpoint or use another prefix",
                crate::endpoints::shown(member)
            )
        })
    }

    pub fn member(&self) -> String {
        let mut out = self.at.to_string();
        for n in self.added.iter().chain(&self.running) {
            out.push(' ');
            out.push_str(&n.to_string());
        }
        out
    }

    /// The running totals of every bucket before this one.
    fn before(&self) -> [i64; M] {
        std::array::from_fn(|k| self.running[k] - self.added[k])
    }
}

fn plus(a: [i64; M], b: [i64; M]) -> [i64; M] {
    std::array::from_fn(|k| a[k] + b[k])
}

/// What the buckets from `first` on hold, given the newest bucket.
pub fn since(latest: Option<&Bucket>, first: Option<&Bucket>) -> [i64; M] {
    match (latest, first) {
        (Some(latest), Some(first)) => {
            let before = first.before();
            std::array::from_fn(|k| latest.running[k] - before[k])
        }
        _ => [0; M],
    }
}

/// What a step knows of one sorted set of buckets: every bucket from `from` on (as the
/// step's own updates left them), and, when `below` is known, the newest bucket before
/// `from`; for second buckets, the first kept, when known.
#[derive(Clone, Debug)]
pub struct Known {
    from: i64,
    members: BTreeMap<i64, Bucket>,
    below: Option<Option<Bucket>>,
    first: Option<Option<i64>>,
}

/// The writes an update makes: buckets replaced (the old one, when there was one, and the
/// new), and for seconds the instant before which they go.
#[derive(Debug, Default)]
pub struct Update {
    pub replaced: Vec<(Option<Bucket>, Bucket)>,
    pub drop_before: Option<i64>,
}

/// What the server holds of a sorted set of buckets from an instant on, the newest bucket
/// before it, and the first bucket's instant.
pub struct Read {
    pub from_at: Vec<Bucket>,
    pub below: Option<Bucket>,
    pub first: Option<i64>,
}

impl Known {
    /// Knowing nothing yet.
    pub fn nothing() -> Known {
        Known {
            from: i64::MAX,
            members: BTreeMap::new(),
            below: None,
            first: None,
        }
    }

    /// Knowing the newest bucket (or that there is none) and, for seconds, the first.
    pub fn newest(latest: Option<Bucket>, first: Option<Option<i64>>) -> Known {
        match latest {
            Some(b) => Known {
                from: b.at,
                members: BTreeMap::from([(b.at, b)]),
                below: None,
                first,
            },
            None => Known {
                from: i64::MIN,
                members: BTreeMap::new(),
                below: Some(None),
                first,
            },
        }
    }

    /// Where the server must be read from before adding at `at`, if it must: before
    /// what is known, or to learn the bucket before or the first second.
    pub fn read_from(&self, at: i64, seconds: bool) -> Option<i64> {
        let below_needed = !self.members.contains_key(&at)
            && self.members.range(..at).next().is_none()
            && self.below.is_none();
        (at < self.from || below_needed || (seconds && self.first.is_none()))
            .then(|| at.min(self.from))
    }

    /// Learns what the server holds from `at` (as [`Known::read_from`] said): only the
    /// part before what is known, which the step has not changed.
    pub fn learn(&mut self, at: i64, read: Read) {
        for b in read.from_at {
            if b.at < self.from {
                self.members.insert(b.at, b);
            }
        }
        self.from = at.min(self.from);
        self.below = Some(read.below);
        if self.first.is_none() {
            self.first = Some(read.first);
        }
    }

    /// Adds `change` at `at`: to its bucket (made if new, with the running totals before
    /// it) and to the running totals of every later bucket. Seconds before the first kept
    /// are left out (their calls are read one by one), and those more than two minutes
    /// before the newest go.
    ///
    /// The second buckets are complete from the second after their first, since calls of
    /// the first second may have come before it (a namespace of an older layout). A set of
    /// them begun by a step that knows no call came before its second (`nothing_before`)
    /// begins with an empty bucket for the second before: complete at once, so the
    /// minute window reads no call one by one but those of the second it starts in.
    pub fn add(
        &mut self,
        at: i64,
        change: [i64; M],
        seconds: bool,
        nothing_before: bool,
    ) -> Update {
        let mut update = Update::default();
        if seconds && self.first.flatten().is_some_and(|first| at < first) {
            return update;
        }
        if seconds && nothing_before && self.members.is_empty() && self.first == Some(None) {
            let empty = Bucket {
                at: at - 1,
                ..Bucket::default()
            };
            update.replaced.push((None, empty));
            self.members.insert(empty.at, empty);
            self.first = Some(Some(empty.at));
            self.from = self.from.min(empty.at);
        }
        let old = self.members.get(&at).copied();
        let mut bucket = old.unwrap_or_else(|| {
            let before = match self.members.range(..at).next_back() {
                Some((_, b)) => Some(b.running),
                None => self
                    .below
                    .flatten()
                    .map(|b| b.running)
                    .or_else(|| self.members.range(at..).next().map(|(_, b)| b.before())),
            };
            Bucket {
                at,
                added: [0; M],
                running: before.unwrap_or([0; M]),
            }
        });
        bucket.added = plus(bucket.added, change);
        bucket.running = plus(bucket.running, change);
        update.replaced.push((old, bucket));
        let later: Vec<Bucket> = self.members.range(at + 1..).map(|(_, b)| *b).collect();
        for old in later {
            let new = Bucket {
                running: plus(old.running, change),
                ..old
            };
            update.replaced.push((Some(old), new));
        }
        for (_, new) in &update.replaced {
            self.members.insert(new.at, *new);
        }
        if seconds {
            let newest = self.members.keys().next_back().copied().unwrap_or(at);
            let keep_from = newest - SECONDS_KEPT;
            update.drop_before = Some(keep_from);
            self.members.retain(|&s, _| s >= keep_from);
            let first = self.first.flatten();
            self.first = if self.from <= keep_from {
                Some(self.members.keys().next().copied())
            } else if first.is_some_and(|f| f >= keep_from) {
                Some(first)
            } else {
                // The first is somewhere between `keep_from` and what is known.
                None
            };
            if self.from < keep_from {
                self.from = keep_from;
                self.below = Some(None);
            }
        }
        update
    }

    /// Whether the newest running totals are past what the scripts read exactly: then
    /// every bucket must be rebased, which needs all of them.
    pub fn too_large(&self) -> bool {
        self.members
            .values()
            .next_back()
            .is_some_and(|b| b.running.iter().any(|n| n.abs() > REBASE_ABOVE))
    }

    /// Rebases every bucket (`all` of them as the server holds them, and as this step's
    /// updates left those it knows) to count from the first.
    pub fn rebase(&mut self, all: Vec<Bucket>) -> Update {
        for b in all {
            if b.at < self.from {
                self.members.insert(b.at, b);
            }
        }
        self.from = i64::MIN;
        self.below = Some(None);
        let base = self.members.values().next().map_or([0; M], Bucket::before);
        let mut update = Update::default();
        for old in self.members.values_mut() {
            let new = Bucket {
                running: plus(old.running, base.map(|n| -n)),
                ..*old
            };
            update.replaced.push((Some(*old), new));
            *old = new;
        }
        update
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(at: i64, added: i64, running: i64) -> Bucket {
        Bucket {
            at,
            added: [added, 0, 0, 0, 0],
            running: [running, 0, 0, 0, 0],
        }
    }

    #[test]
    fn members_read_back_and_layout_1_reads_as_requests_and_input() {
        let bucket = Bucket {
            at: 7,
            added: [1, 2, 3, 4, 5],
            running: [6, 7, 8, 9, 10],
        };
        assert_eq!(Bucket::parse(&bucket.member()), Some(bucket));
        let old = Bucket::parse("9 1 20 3 60").expect("layout 1");
        assert_eq!(old.added, [1, 20, 0, 0, 0]);
        assert_eq!(old.running, [3, 60, 0, 0, 0]);
        assert_eq!(Bucket::parse("9 1 x 3 60"), None);
        // What a script wrote with %.0f reads the same.
        assert_eq!(Bucket::parse("9 1 20 3 60.0"), Some(old));
    }

    #[test]
    fn an_update_before_the_newest_moves_every_later_total() {
        let mut known = Known::newest(Some(b(10, 2, 5)), None);
        known.learn(
            4,
            Read {
                from_at: vec![b(6, 1, 3), b(10, 2, 5)],
                below: Some(b(2, 2, 2)),
                first: Some(2),
            },
        );
        let update = known.add(4, [1, 0, 0, 0, 0], false, false);
        assert_eq!(update.replaced.len(), 3);
        assert_eq!(update.replaced[0].0, None);
        let totals: Vec<(i64, i64, i64)> = known
            .members
            .values()
            .map(|b| (b.at, b.added[0], b.running[0]))
            .collect();
        assert_eq!(totals, [(4, 1, 3), (6, 1, 4), (10, 2, 6)]);
        assert_eq!(
            since(Some(&known.members[&10]), Some(&known.members[&6])),
            [3, 0, 0, 0, 0]
        );
    }

    #[test]
    fn seconds_before_the_first_are_left_out_and_two_minutes_are_kept() {
        let one = [1, 0, 0, 0, 0];
        let mut known = Known::newest(Some(b(200, 1, 9)), Some(Some(100)));
        assert!(known.add(99, one, true, false).replaced.is_empty());
        let update = known.add(330, one, true, false);
        assert_eq!(update.replaced, [(None, b(330, 1, 10))]);
        assert_eq!(update.drop_before, Some(210));
        // Every bucket from 200 on was known: the first is now 330.
        assert!(known.add(250, one, true, false).replaced.is_empty());
        // Here the first went, and the next is somewhere the step never read: it reads.
        let mut known = Known::newest(Some(b(330, 1, 9)), Some(Some(100)));
        assert_eq!(known.add(340, one, true, false).drop_before, Some(220));
        assert_eq!(known.read_from(250, true), Some(250));
    }

    #[test]
    fn a_set_of_seconds_begun_after_every_call_is_complete_from_its_first() {
        let one = [1, 0, 0, 0, 0];
        let mut known = Known::newest(None, Some(None));
        let update = known.add(50, one, true, true);
        assert_eq!(update.replaced, [(None, b(49, 0, 0)), (None, b(50, 1, 1))]);
        // Not when a call may have come earlier in the second.
        let mut known = Known::newest(None, Some(None));
        assert_eq!(
            known.add(50, one, true, false).replaced,
            [(None, b(50, 1, 1))]
        );
    }
}

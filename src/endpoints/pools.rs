//! Shared pools: rows that draw on one set of limits, gathered once every row is read.

use std::collections::HashMap;
use std::sync::Arc;

use super::{DayReset, Endpoint, Pool, Report, shown};
use crate::quota::{Limit, Limits};

/// What a row's pool columns say, checked against the other rows once all are read.
#[derive(Default)]
pub(super) struct PoolCells {
    pub(super) name: Option<String>,
    /// (limit, value, the cell as written, its column's name)
    pub(super) limits: Vec<(Limit, u64, String, String)>,
}

/// Gathers each pool's rows and limits onto every row of it. A limit given twice must be
/// one value (`90k` and `90_000` are); a pool limit needs a pool; a pool's rows share one
/// kind of day.
/// Linear in the rows: a pool is found by name, and every row shares one copy of it.
pub(super) fn resolve_pools(endpoints: &mut [Endpoint], cells: &[PoolCells], report: &mut Report) {
    // Each pool, the line of its first row and that row's day.
    let mut pools: Vec<(Pool, usize, DayReset)> = Vec::new();
    let mut by_name: HashMap<String, usize> = HashMap::new();
    // (pool, limit) -> (line, cell) of the first row that gave it
    let mut first: HashMap<(String, &'static str), (usize, &str)> = HashMap::new();
    for (endpoint, cells) in endpoints.iter().zip(cells) {
        let Some(name) = &cells.name else {
            for (_, _, raw, column) in &cells.limits {
                report.cell(
                    endpoint.line,
                    column,
                    raw,
                    "is a pool limit on a row without a pool; fill in its pool column",
                );
            }
            continue;
        };
        let index = *by_name.entry(name.clone()).or_insert_with(|| {
            let pool = Pool {
                name: name.clone(),
                limits: Limits::default(),
                members: Vec::new(),
                caches: Vec::new(),
            };
            pools.push((pool, endpoint.line, endpoint.day_reset.clone()));
            pools.len() - 1
        });
        let (pool, first_row, first_day) = &mut pools[index];
        pool.members.push(endpoint.id.clone());
        pool.caches.push(endpoint.cache_reads);
        if *first_day != endpoint.day_reset {
            report.line(
                endpoint.line,
                format_args!(
                    "column day_reset: differs from line {first_row}; the rows of pool {} \
                     share one day, so give them the same day_reset",
                    shown(name)
                ),
            );
        }
        for (limit, value, raw, column) in &cells.limits {
            match pool.limits.get(*limit) {
                None => {
                    pool.limits.set(*limit, Some(*value));
                    first.insert((name.clone(), limit.name()), (endpoint.line, raw));
                }
                Some(earlier) if earlier == *value => {}
                Some(_) => {
                    let (line, given) = first[&(name.clone(), limit.name())];
                    report.cell(
                        endpoint.line,
                        column,
                        raw,
                        &format!(
                            "differs from {} on line {line} for pool {}",
                            shown(given),
                            shown(name)
                        ),
                    );
                }
            }
        }
    }
    let shared: Vec<Arc<Pool>> = pools
        .into_iter()
        .map(|(pool, _, _)| Arc::new(pool))
        .collect();
    for (endpoint, cells) in endpoints.iter_mut().zip(cells) {
        if let Some(name) = &cells.name {
            endpoint.pool = by_name.get(name).map(|&i| Arc::clone(&shared[i]));
        }
    }
}

//! Shared pools: rows that draw on one set of limits, gathered once every row is read.

use std::collections::HashMap;

use super::{Endpoint, Pool, Report};
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
pub(super) fn resolve_pools(endpoints: &mut [Endpoint], cells: &[PoolCells], report: &mut Report) {
    let mut pools: Vec<(String, Pool, usize)> = Vec::new();
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
        let index = match pools.iter().position(|(n, _, _)| n == name) {
            Some(i) => i,
            None => {
                let pool = Pool {
                    name: name.clone(),
                    limits: Limits::default(),
                    members: Vec::new(),
                };
                pools.push((name.clone(), pool, endpoint.line));
                pools.len() - 1
            }
        };
        let (_, pool, first_row) = &mut pools[index];
        pool.members.push(endpoint.id.clone());
        let anchor_row = endpoints.iter().find(|e| e.line == *first_row);
        if anchor_row.is_some_and(|row| row.day_reset != endpoint.day_reset) {
            report.line(
                endpoint.line,
                format_args!(
                    "column day_reset: differs from line {first_row}; the rows of pool {name:?} \
                     share one day, so give them the same day_reset"
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
                        &format!("differs from {given:?} on line {line} for pool {name:?}"),
                    );
                }
            }
        }
    }
    for (endpoint, cells) in endpoints.iter_mut().zip(cells) {
        if let Some(name) = &cells.name {
            endpoint.pool = pools.iter().find(|p| p.0 == *name).map(|p| p.1.clone());
        }
    }
}

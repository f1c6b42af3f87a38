// TEMPORARY stub until the real parser lands.
use crate::quota::{Limit, Limits};
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub id: String,
    pub provider: String,
    pub model: String,
    pub limits: Limits,
    pub priority: i64,
    pub weight: u32,
    pub concurrency: Option<u64>,
    pub pace: Pace,
    pub day_reset: DayReset,
    pub headers: Option<String>,
    pub key: Option<String>,
    pub props: Vec<(String, String)>,
    pub line: usize,
}
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pace {
    Burst,
    Smooth,
}
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DayReset {
    Rolling,
    At { minute_of_day: u32, zone: String },
}
pub fn load(path: &std::path::Path) -> anyhow::Result<Vec<Endpoint>> {
    let text = std::fs::read_to_string(path)?;
    let mut lines = text.lines();
    let header: Vec<String> = lines
        .next()
        .unwrap_or("")
        .split(',')
        .map(|s| s.trim().to_lowercase())
        .collect();
    let mut out = vec![];
    for (i, line) in lines.enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let cells: Vec<&str> = line.split(',').map(|s| s.trim()).collect();
        let get = |n: &str| {
            header
                .iter()
                .position(|h| h == n)
                .and_then(|p| cells.get(p))
                .map(|s| s.to_string())
                .unwrap_or_default()
        };
        let mut limits = Limits::default();
        for l in Limit::ALL {
            let v = get(l.name());
            if !v.is_empty() {
                limits.set(l, Some(parse_count(&v).map_err(|e| anyhow::anyhow!(e))?));
            }
        }
        let id = if get("id").is_empty() {
            format!("{}/{}", get("provider"), get("model"))
        } else {
            get("id")
        };
        let priority = match get("priority").as_str() {
            "high" => 3,
            "low" => 1,
            "" | "medium" => 2,
            n => n.parse()?,
        };
        out.push(Endpoint {
            id,
            provider: get("provider"),
            model: get("model"),
            limits,
            priority,
            weight: 1,
            concurrency: None,
            pace: Pace::Burst,
            day_reset: DayReset::Rolling,
            headers: None,
            key: None,
            props: vec![],
            line: i + 2,
        });
    }
    Ok(out)
}
pub fn parse_count(text: &str) -> Result<u64, String> {
    text.replace('_', "")
        .parse()
        .map_err(|_| "is not a whole number".to_string())
}

//! `history` (SPEC 11): requests and tokens per endpoint per UTC hour or day, kept 90
//! days, as bars, JSON, CSV and an SVG chart.

use crate::{Env, json};

const TWO: &str = "provider,model,rph,rpd\np,a,4,\np,b,,10\n";

/// Calls of `p/a` at +0 h (1), +1 h (2) and +5 h (3); of `p/b` at +2 h (2); then the clock
/// at +8 h.
fn scenario() -> Env {
    let env = Env::with_endpoints(TWO);
    for (hour, id, tokens) in [
        (0, "p/a", 100),
        (1, "p/a", 10),
        (1, "p/a", 20),
        (2, "p/b", 3000),
        (2, "p/b", 3000),
        (5, "p/a", 1),
        (5, "p/a", 1),
        (5, "p/a", 1),
    ] {
        env.set_time(hour * 3_600_000 + 60_000);
        env.ok(["record", id, "--add", "--tokens", &tokens.to_string()]);
    }
    env.set_time(8 * 3_600_000 + 5);
    env
}

#[test]
fn csv_has_a_row_per_endpoint_and_hour() {
    let env = scenario();
    let text = env.ok(["history", "--since", "9h", "--format", "csv"]);
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("endpoint,period_start,requests,tokens,input,output,cached,cost_usd")
    );
    let rows: Vec<&str> = lines.collect();
    assert_eq!(
        rows.len(),
        2 * 10,
        "9 h back from +8 h: 10 hours each\n{text}"
    );
    for expected in [
        "p/a,2026-01-01T00:00:00Z,1,100,100,0,0,0",
        "p/a,2026-01-01T01:00:00Z,2,30,30,0,0,0",
        "p/a,2026-01-01T05:00:00Z,3,3,3,0,0,0",
        "p/a,2026-01-01T08:00:00Z,0,0,0,0,0,0",
        "p/b,2026-01-01T02:00:00Z,2,6000,6000,0,0,0",
        "p/a,2025-12-31T23:00:00Z,0,0,0,0,0,0",
    ] {
        assert!(rows.contains(&expected), "{expected} in\n{text}");
    }
}

#[test]
fn by_day_sums_the_hours_and_json_carries_the_limit() {
    let env = scenario();
    let days = json(&env.ok([
        "history", "--by", "day", "--since", "2d", "--format", "json",
    ]));
    let b = &days[1];
    assert_eq!(b["endpoint"], "p/b");
    assert_eq!(b["limit"], 10, "rpd by day");
    let periods = b["periods"].as_array().expect("periods");
    assert_eq!(periods.len(), 3);
    assert_eq!(periods[2]["start"], "2026-01-01T00:00:00Z");
    assert_eq!(periods[2]["requests"], 2);
    assert_eq!(periods[2]["tokens"], 6000);
    let hours = json(&env.ok(["history", "--format", "json", "p/a"]));
    assert_eq!(
        hours.as_array().map(Vec::len),
        Some(1),
        "the pattern keeps p/a"
    );
    assert_eq!(hours[0]["limit"], 4, "rph by hour");
    env.fails(["history", "nothing*"], 1)
        .says(&["no endpoint matches"]);
    env.fails(["history", "--by", "week"], 2);
    env.fails(["history", "--since", "soon"], 2);
}

#[test]
fn the_table_draws_a_bar_per_hour_within_80_columns() {
    let env = scenario();
    let text = env.ok(["history", "--since", "8h"]);
    for line in text.lines() {
        assert!(line.chars().count() <= 80, "{line}");
    }
    let bar = |hour: &str| {
        text.lines()
            .find(|l| l.contains(hour))
            .map(|l| l.matches('█').count())
            .unwrap_or_else(|| panic!("no line for {hour}:\n{text}"))
    };
    assert!(text.starts_with("p/a  (rph 4)\n"), "{text}");
    // Scaled to the limit of 4: 3 requests fill three quarters of the bar.
    assert_eq!(bar("2026-01-01 05:00"), 27);
    assert_eq!(bar("2026-01-01 04:00"), 0);
}

/// The requests `history --by day` counts for the first endpoint since `since`.
fn requests_since(env: &Env, since: &str) -> u64 {
    let days = json(&env.ok([
        "history", "--by", "day", "--since", since, "--format", "json",
    ]));
    days[0]["periods"]
        .as_array()
        .expect("periods")
        .iter()
        .map(|p| p["requests"].as_u64().expect("requests"))
        .sum()
}

#[test]
fn the_history_is_kept_90_days_and_no_longer() {
    let env = Env::with_endpoints(TWO);
    env.ok(["record", "p/a", "--add"]);
    env.set_time(89 * 86_400_000);
    env.ok(["record", "p/a", "--add"]);
    assert_eq!(requests_since(&env, "90d"), 2);
    env.set_time(91 * 86_400_000);
    env.ok(["record", "p/a", "--add"]);
    assert_eq!(
        requests_since(&env, "100d"),
        2,
        "the first day's call is pruned"
    );
}

#[test]
fn the_svg_chart_has_a_line_per_endpoint_its_limit_and_labelled_axes() {
    let env = scenario();
    let svg = env.ok(["history", "--since", "8h", "--format", "svg"]);
    let doc = roxmltree::Document::parse(&svg).expect("well-formed SVG");
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "svg");
    assert_eq!(
        root.tag_name().namespace(),
        Some("http://www.w3.org/2000/svg")
    );
    let lines: Vec<_> = doc
        .descendants()
        .filter(|n| n.attribute("class") == Some("series"))
        .collect();
    let names: Vec<&str> = lines
        .iter()
        .filter_map(|n| n.attribute("data-name"))
        .collect();
    assert_eq!(names, ["p/a", "p/b"]);
    let points = lines[0]
        .attribute("points")
        .expect("points")
        .split(' ')
        .count();
    assert_eq!(points, 9, "an hour each from +0 h to +8 h");
    let limits: Vec<&str> = doc
        .descendants()
        .filter(|n| n.attribute("class") == Some("limit"))
        .filter_map(|n| n.attribute("data-name"))
        .collect();
    assert_eq!(limits, ["p/a"], "only p/a has an rph");
    let texts: Vec<&str> = doc.descendants().filter_map(|n| n.text()).collect();
    assert!(texts.contains(&"01-01 00:00"), "time labels: {texts:?}");
    assert!(texts.contains(&"5"), "number labels: {texts:?}");
    assert!(
        texts.iter().any(|t| t.contains("p/a (limit 4)")),
        "legend: {texts:?}"
    );
}

#[test]
fn an_endpoint_gone_from_the_file_keeps_its_history() {
    let env = scenario();
    let other = env.write("other.csv", "provider,model\np,b\n");
    let out = crate::Out::from(
        env.std_command(crate::bin())
            .args([
                "--endpoints",
                other.to_str().expect("utf-8"),
                "history",
                "--format",
                "csv",
            ])
            .output()
            .expect("run history"),
    );
    let text = out.code(0).stdout.clone();
    assert!(text.contains("p/a,2026-01-01T05:00:00Z,3,3"), "{text}");
}

#[test]
fn history_outlives_a_reset_on_every_ledger() {
    // A record of calls that were made: a reset forgets usage and counters, not the hours,
    // also of an endpoint the file no longer lists (listed from the ledger alone).
    let env = scenario();
    let file = env.endpoints_file().to_owned();
    std::fs::write(&file, format!("{TWO}old,gone,,\n")).expect("a row more");
    env.ok(["record", "old/gone", "--add", "--tokens", "7"]);
    std::fs::write(&file, TWO).expect("the row gone");
    env.ok(["reset", "old/gone", "p/a"]);
    let text = env.ok(["history", "--since", "9h", "--format", "csv"]);
    for expected in [
        "p/a,2026-01-01T05:00:00Z,3,3",
        "old/gone,2026-01-01T08:00:00Z,1,7",
    ] {
        assert!(text.contains(expected), "{expected} in\n{text}");
    }
    assert_eq!(
        env.state_of("p/a")["used"]["rpd"],
        0,
        "the reset forgot the usage"
    );
}

#[test]
fn a_span_beyond_the_90_days_kept_reads_what_is_kept_with_a_note() {
    let env = scenario();
    let out = env.run([
        "history", "--since", "100000d", "--by", "day", "--format", "csv",
    ]);
    out.code(0)
        .says(&["note: history is kept 90 days; showing the 90 days kept"]);
    // One header, and a row per day of the 90 kept (91 calendar days touched) per endpoint.
    let rows = out.stdout.lines().count() - 1;
    assert_eq!(rows, 2 * 91, "{}", out.stdout);
    assert!(
        out.stdout.contains("p/b,2026-01-01T00:00:00Z,2,6000"),
        "{}",
        out.stdout
    );
}

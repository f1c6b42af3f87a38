//! `state` (SPEC 4): the numbers agree with what was picked and recorded, in every format.

use std::collections::BTreeMap;

use serde_json::json;

use crate::{Env, assert_json, json, num};

const NEW_LIMITS: [&str; 10] = [
    "itpm", "itph", "itpd", "otpm", "otph", "otpd", "rpmo", "tpmo", "usd_pd", "usd_pmo",
];

const ENDPOINTS: &str = "provider,model,priority,rpm,tpm,rph,rpd\n\
                         a,one,high,2,1000,,\n\
                         b,two,low,,,10,\n\
                         c,three,7,5,,,\n\
                         d,four,,,60k,,\n\
                         e,five,,0,,,\n";

/// At T0 two picks (c/three, of a higher priority, excluded) fill a/one's rpm; at T0 + 10 s calls are recorded for b/two and d/four.
/// The clock is left at T0 + 30 s.
fn scenario() -> Env {
    let env = Env::with_endpoints(ENDPOINTS);
    assert_eq!(env.pick(&["--tokens", "100", "--only", "a/*"]), "a/one");
    assert_eq!(env.pick(&["--tokens", "200", "--only", "a/*"]), "a/one");
    env.set_time(10_000);
    env.ok(["record", "b/two", "--add", "--tokens", "50"]);
    env.ok(["record", "d/four", "--add", "--tokens", "14400"]);
    env.set_time(30_000);
    env
}

#[test]
fn json_numbers_agree_with_what_was_picked_and_recorded() {
    let env = scenario();
    let mut state = env.state();
    assert_eq!(state.len(), 5);
    let disabled = state.pop().expect("e/five");
    assert_eq!(disabled["id"], "e/five");
    assert_eq!(disabled["available"], false, "{disabled}");
    assert_eq!(disabled["limits"]["rpm"], 0, "{disabled}");
    // The limits by kind, month and money are another test's; here none is set or used.
    for row in &mut state {
        let row = row.as_object_mut().expect("an object");
        assert_eq!(
            row.remove("spend_usd"),
            Some(json!({"day": 0.0, "month": 0.0}))
        );
        assert_eq!(row.remove("latency_ms"), Some(serde_json::Value::Null));
        for part in ["limits", "used", "remaining"] {
            let part = row[part].as_object_mut().expect("per limit");
            part.retain(|name, _| {
                ["rpm", "tpm", "rph", "tph", "rpd", "tpd"].contains(&name.as_str())
            });
        }
    }
    assert_json(
        &serde_json::Value::Array(state),
        &json!([
            {
                "id": "a/one", "provider": "a", "model": "one", "priority": 3,
                "available": false, "frees_in_s": 30.0,
                "limits": {"rpm": 2, "tpm": 1000, "rph": null, "tph": null, "rpd": null, "tpd": null},
                "used": {"rpm": 2, "tpm": 300, "rph": 2, "tph": 300, "rpd": 2, "tpd": 300},
                "remaining": {"rpm": 0, "tpm": 700, "rph": null, "tph": null, "rpd": null, "tpd": null},
                "open_reservations": 2,
                "blocked_by": "rpm", "cooldown": null, "pool": null,
            },
            {
                "id": "b/two", "provider": "b", "model": "two", "priority": 1,
                "available": true, "frees_in_s": null,
                "limits": {"rpm": null, "tpm": null, "rph": 10, "tph": null, "rpd": null, "tpd": null},
                "used": {"rpm": 1, "tpm": 50, "rph": 1, "tph": 50, "rpd": 1, "tpd": 50},
                "remaining": {"rpm": null, "tpm": null, "rph": 9, "tph": null, "rpd": null, "tpd": null},
                "open_reservations": 0,
                "blocked_by": null, "cooldown": null, "pool": null,
            },
            {
                "id": "c/three", "provider": "c", "model": "three", "priority": 7,
                "available": true, "frees_in_s": null,
                "limits": {"rpm": 5, "tpm": null, "rph": null, "tph": null, "rpd": null, "tpd": null},
                "used": {"rpm": 0, "tpm": 0, "rph": 0, "tph": 0, "rpd": 0, "tpd": 0},
                "remaining": {"rpm": 5, "tpm": null, "rph": null, "tph": null, "rpd": null, "tpd": null},
                "open_reservations": 0,
                "blocked_by": null, "cooldown": null, "pool": null,
            },
            {
                "id": "d/four", "provider": "d", "model": "four", "priority": 2,
                "available": true, "frees_in_s": null,
                "limits": {"rpm": null, "tpm": 60000, "rph": null, "tph": null, "rpd": null, "tpd": null},
                "used": {"rpm": 1, "tpm": 14400, "rph": 1, "tph": 14400, "rpd": 1, "tpd": 14400},
                "remaining": {"rpm": null, "tpm": 45600, "rph": null, "tph": null, "rpd": null, "tpd": null},
                "open_reservations": 0,
                "blocked_by": null, "cooldown": null, "pool": null,
            },
        ]),
    );

    // A minute after the picks, a/one is available again; the hour still counts them.
    env.set_time(60_000);
    let row = env.state_of("a/one");
    assert_eq!(row["available"], true, "{row}");
    assert!(row["frees_in_s"].is_null(), "{row}");
    assert_eq!(row["used"]["rpm"], 0, "{row}");
    assert_eq!(row["used"]["rph"], 2, "{row}");
    assert_eq!(row["remaining"]["rpm"], 2, "{row}");

    // state reads: it never reserves or prunes.
    env.set_time(30_000);
    assert_eq!(env.state_of("a/one")["used"]["rpm"], 2);
}

#[test]
fn json_frees_in_s_is_the_wait_for_the_fullest_window() {
    let env = Env::with_endpoints("provider,model,rpm,rph\np,m,1,2\n");
    env.pick(&[]);
    env.set_time(20_000);
    let row = env.state_of("p/m");
    assert_eq!(row["available"], false, "{row}");
    assert_eq!(num(&row["frees_in_s"]), 40.0, "{row}");
    env.set_time(60_000);
    env.pick(&[]);
    // rph is full now: it frees an hour after the first pick, or at most a minute later.
    env.set_time(120_000);
    let row = env.state_of("p/m");
    assert_eq!(row["available"], false, "{row}");
    let wait = num(&row["frees_in_s"]);
    assert!(
        (3480.0..=3540.0).contains(&wait),
        "frees_in_s {wait}: {row}"
    );
}

#[test]
fn state_patterns_choose_the_rows_in_file_order() {
    let env = scenario();
    let rows = json(&env.ok(["state", "--format", "json", "d/*", "a/*"]));
    let ids: Vec<&str> = rows
        .as_array()
        .expect("an array")
        .iter()
        .map(|r| r["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, ["a/one", "d/four"]);
}

#[test]
fn csv_has_a_header_and_the_raw_numbers() {
    let env = scenario();
    let text = env.ok(["state", "--format", "csv"]);
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("a header").split(',').collect();
    assert_eq!(
        header,
        [
            "at",
            "id",
            "provider",
            "model",
            "priority",
            "available",
            "frees_in_s",
            "rpm_used",
            "rpm_limit",
            "tpm_used",
            "tpm_limit",
            "rph_used",
            "rph_limit",
            "tph_used",
            "tph_limit",
            "rpd_used",
            "rpd_limit",
            "tpd_used",
            "tpd_limit",
            "open_reservations",
            "blocked_by",
            "cooldown_ends_in_s",
            "pool",
            "pool_rpm_used",
            "pool_rpm_limit",
            "pool_tpm_used",
            "pool_tpm_limit",
            "pool_rph_used",
            "pool_rph_limit",
            "pool_tph_used",
            "pool_tph_limit",
            "pool_rpd_used",
            "pool_rpd_limit",
            "pool_tpd_used",
            "pool_tpd_limit",
        ]
        .into_iter()
        .map(String::from)
        .chain(
            // The limits by kind, month and money come after every column of old.
            ["", "pool_"].into_iter().flat_map(|pool| {
                NEW_LIMITS.into_iter().flat_map(move |limit| {
                    [
                        format!("{pool}{limit}_used"),
                        format!("{pool}{limit}_limit"),
                    ]
                })
            })
        )
        .collect::<Vec<_>>()
    );
    let rows: Vec<BTreeMap<&str, &str>> = lines
        .map(|line| header.iter().copied().zip(line.split(',')).collect())
        .collect();
    assert_eq!(rows.len(), 5, "{text}");
    let ids: Vec<&str> = rows.iter().map(|r| r["id"]).collect();
    assert_eq!(ids, ["a/one", "b/two", "c/three", "d/four", "e/five"]);

    let a = &rows[0];
    let expected = [
        ("at", "2026-01-01T00:00:30.000Z"),
        ("provider", "a"),
        ("model", "one"),
        ("priority", "3"),
        ("available", "false"),
        ("rpm_used", "2"),
        ("rpm_limit", "2"),
        ("tpm_used", "300"),
        ("tpm_limit", "1000"),
        ("rph_used", "2"),
        ("rph_limit", ""),
        ("tph_used", "300"),
        ("tph_limit", ""),
        ("rpd_used", "2"),
        ("rpd_limit", ""),
        ("tpd_used", "300"),
        ("tpd_limit", ""),
        ("open_reservations", "2"),
        ("blocked_by", "rpm"),
        ("cooldown_ends_in_s", ""),
    ];
    for (column, value) in expected {
        assert_eq!(a[column], value, "a/one column {column}\n{text}");
    }
    let frees: f64 = a["frees_in_s"].parse().expect("a number");
    assert_eq!(frees, 30.0, "{text}");

    let b = &rows[1];
    for (column, value) in [
        ("priority", "1"),
        ("available", "true"),
        ("frees_in_s", ""),
        ("rpm_limit", ""),
        ("rph_used", "1"),
        ("rph_limit", "10"),
        ("tpd_used", "50"),
        ("open_reservations", "0"),
    ] {
        assert_eq!(b[column], value, "b/two column {column}\n{text}");
    }
    assert_eq!(rows[3]["tpm_limit"], "60000", "{text}");
    assert_eq!(rows[3]["tpm_used"], "14400", "{text}");
}

#[test]
fn the_table_for_people() {
    let env = scenario();
    let table = env.ok(["state"]);
    assert!(
        !table.contains('\u{1b}'),
        "no colour with NO_COLOR or off a terminal"
    );
    snapshot("state__the_table_for_people", &table);
}

#[test]
fn the_help_text() {
    snapshot("state__the_help_text", &Env::new().ok(["--help"]));
}

/// A snapshot both test binaries (SQLite and Redis) compare against the same file.
fn snapshot(name: &str, text: &str) {
    insta::with_settings!({ prepend_module_to_snapshot => false }, {
        insta::assert_snapshot!(name, text);
    });
}

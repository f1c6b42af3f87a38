//! `GET /`: a page of what `state` shows and the last 48 hours of `history`, read live,
//! that refreshes itself. It brings everything it shows: no script, style sheet, font or
//! image from elsewhere.

use anyhow::Result;

use crate::cli::{HistoryArgs, HistoryFormat, Metric, Period, StateFormat};
use crate::clock::HOUR_MS;
use crate::endpoints::Endpoint;
use crate::ledger::Ledger;

/// How often the page reloads itself, in seconds.
const REFRESH_S: u32 = 10;

pub fn render(endpoints: &[Endpoint], ledger: &mut dyn Ledger) -> Result<String> {
    let shown = super::super::state::Shown {
        header: true,
        colour: false,
    };
    let state = super::super::state::render(endpoints, ledger, &[], StateFormat::Table, shown)?;
    let chart = |metric| HistoryArgs {
        patterns: Vec::new(),
        since: Some(48 * HOUR_MS),
        by: Period::Hour,
        metric,
        format: HistoryFormat::Svg,
        json: false,
    };
    let requests = super::super::history::render(endpoints, ledger, &chart(Metric::Requests))?;
    let tokens = super::super::history::render(endpoints, ledger, &chart(Metric::Tokens))?;
    Ok(format!(
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="refresh" content="{REFRESH_S}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>llm-rotate</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5rem; color: #222; }}
pre {{ font-size: 13px; overflow-x: auto; }}
figure {{ margin: 1rem 0; max-width: 960px; }}
svg {{ width: 100%; height: auto; }}
</style>
</head>
<body>
<h1>llm-rotate</h1>
<p>What each endpoint has left now, and what was used in the last 48 hours. This page reloads every {REFRESH_S} seconds.</p>
<h2>State</h2>
<pre id="state">{state}</pre>
<h2>History</h2>
<figure id="requests">{requests}</figure>
<figure id="tokens">{tokens}</figure>
</body>
</html>
"#,
        state = escape(&state),
        requests = without_declaration(&requests),
        tokens = without_declaration(&tokens),
    ))
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// An SVG document's `<?xml ...?>` line has no place inside HTML.
fn without_declaration(svg: &str) -> &str {
    match svg.trim_start().strip_prefix("<?xml") {
        Some(rest) => rest
            .split_once("?>")
            .map_or(svg, |(_, after)| after.trim_start()),
        None => svg,
    }
}

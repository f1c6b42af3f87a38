//! A line chart as SVG, written by hand: a few polylines, dashed limit lines, axes with
//! times and numbers, and a legend, in a file a browser shows as it is. (A chart crate
//! would bring a drawing backend and dozens of dependencies for what is a page of text.)

use std::fmt::Write as _;

/// One line of the chart.
pub struct Series {
    pub name: String,
    /// `(x, y)` points, x ascending.
    pub points: Vec<(i64, u64)>,
    /// Drawn across the whole chart, dashed, in the series' colour.
    pub limit: Option<u64>,
}

pub struct Chart<'a> {
    pub title: &'a str,
    pub y_label: &'a str,
    /// The first and last x.
    pub x_range: (i64, i64),
    /// Where to mark the x axis, and with what.
    pub x_ticks: Vec<(i64, String)>,
    pub series: Vec<Series>,
    /// How a value of the y axis is written.
    pub shown: fn(u64) -> String,
}

const WIDTH: f64 = 960.0;
const HEIGHT: f64 = 480.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 230.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 60.0;
const PALETTE: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

impl Chart<'_> {
    pub fn svg(&self) -> String {
        let (x0, x1) = self.x_range;
        let x_span = (x1 - x0).max(1) as f64;
        let top = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1).chain(s.limit))
            .max()
            .unwrap_or(0);
        let y_max = nice_ceiling(top.max(1));
        let plot_w = WIDTH - LEFT - RIGHT;
        let plot_h = HEIGHT - TOP - BOTTOM;
        let x_at = |x: i64| LEFT + (x - x0) as f64 / x_span * plot_w;
        let y_at = |y: u64| TOP + plot_h - y as f64 / y_max as f64 * plot_h;

        let mut svg = String::new();
        let _ = writeln!(
            svg,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
        let _ = writeln!(
            svg,
            r#"<text x="{LEFT}" y="24" font-size="16">{}</text>"#,
            escape(self.title)
        );
        // The y axis: five steps from 0 to a round maximum, with grid lines.
        for step in 0..=5 {
            let value = y_max * step / 5;
            let y = y_at(value);
            let _ = writeln!(
                svg,
                r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
                LEFT + plot_w,
                LEFT - 6.0,
                y + 4.0,
                (self.shown)(value)
            );
        }
        let _ = writeln!(
            svg,
            r#"<text transform="translate(16 {:.1}) rotate(-90)" text-anchor="middle">{}</text>"#,
            TOP + plot_h / 2.0,
            escape(self.y_label)
        );
        for (x, label) in &self.x_ticks {
            let px = x_at(*x);
            let _ = writeln!(
                svg,
                r##"<line x1="{px:.1}" y1="{:.1}" x2="{px:.1}" y2="{:.1}" stroke="#999"/><text x="{px:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
                TOP + plot_h,
                TOP + plot_h + 5.0,
                TOP + plot_h + 20.0,
                escape(label)
            );
        }
        let _ = writeln!(
            svg,
            r##"<polyline points="{LEFT},{TOP} {LEFT},{:.1} {:.1},{:.1}" fill="none" stroke="#333"/>"##,
            TOP + plot_h,
            LEFT + plot_w,
            TOP + plot_h
        );
        for (i, series) in self.series.iter().enumerate() {
            let colour = PALETTE[i % PALETTE.len()];
            let points: Vec<String> = series
                .points
                .iter()
                .map(|&(x, y)| format!("{:.1},{:.1}", x_at(x), y_at(y)))
                .collect();
            let _ = writeln!(
                svg,
                r#"<polyline class="series" data-name="{}" points="{}" fill="none" stroke="{colour}" stroke-width="2"/>"#,
                escape(&series.name),
                points.join(" ")
            );
            if let Some(limit) = series.limit {
                let y = y_at(limit);
                let _ = writeln!(
                    svg,
                    r#"<line class="limit" data-name="{}" x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="{colour}" stroke-dasharray="6 4"/>"#,
                    escape(&series.name),
                    LEFT + plot_w
                );
            }
            let ly = TOP + 10.0 + i as f64 * 18.0;
            let lx = WIDTH - RIGHT + 16.0;
            let label = match series.limit {
                Some(limit) => format!("{} (limit {})", series.name, (self.shown)(limit)),
                None => series.name.clone(),
            };
            let _ = writeln!(
                svg,
                r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{colour}" stroke-width="2"/><text x="{}" y="{}">{}</text>"#,
                lx + 18.0,
                lx + 24.0,
                ly + 4.0,
                escape(&label)
            );
        }
        svg.push_str("</svg>\n");
        svg
    }
}

/// The first of 5, 10, 20, 50, 100, 200, ... that is at least `n`: five grid steps of a
/// round size.
fn nice_ceiling(n: u64) -> u64 {
    let mut scale = 1u64;
    loop {
        for step in [5u64, 10, 20] {
            let candidate = step.saturating_mul(scale);
            if candidate >= n {
                return candidate;
            }
        }
        if scale > u64::MAX / 100 {
            return n;
        }
        scale *= 10;
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::nice_ceiling;

    #[test]
    fn the_y_axis_ends_on_a_round_number_that_divides_by_five() {
        for (n, ceiling) in [
            (1, 5),
            (5, 5),
            (6, 10),
            (11, 20),
            (21, 50),
            (51, 100),
            (901, 1000),
        ] {
            assert_eq!(nice_ceiling(n), ceiling, "{n}");
        }
    }
}

//! Charts rendered on the server as inline SVG: a line chart with several
//! series (gaps where a value is missing) and a grouped bar chart, both over
//! time buckets. Pure functions of the data: no IO, no scripts, no `style=`
//! attributes (colours come from classes in app.css), so they
//! pass the dashboard's CSP. Each chart carries an accessible name, a `<title>`
//! and a visually hidden data table for screen readers.

use std::fmt::Write as _;

use crate::dashboard::layout;
use crate::money::MICROS_PER_CREDIT;

/// The drawing area, in SVG user units (the SVG scales to its container).
const WIDTH: f64 = 520.0;
const HEIGHT: f64 = 210.0;
const MARGIN_LEFT: f64 = 52.0;
const MARGIN_RIGHT: f64 = 12.0;
const MARGIN_TOP: f64 = 12.0;
const MARGIN_BOTTOM: f64 = 28.0;
/// How many y-axis intervals a chart aims for.
const TARGET_TICKS: usize = 4;
/// At most this many time labels under the x axis.
const MAX_TIME_LABELS: usize = 7;
const HOUR_MS: i64 = 3_600_000;
use crate::domain::DAY_MS;

/// What the values measure; decides tick steps and how values read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Requests, errors, tokens: whole numbers.
    Count,
    /// Credits, given in micro-dollars.
    Credits,
    /// Milliseconds: whole numbers.
    Millis,
}

impl Unit {
    fn integer(self) -> bool {
        matches!(self, Unit::Count | Unit::Millis)
    }

    /// A value as read in the data table and the summary.
    fn exact(self, value: f64) -> String {
        match self {
            Unit::Count => layout::count(value.round() as i64),
            Unit::Credits => layout::credits(value.round() as i64),
            Unit::Millis => layout::latency(value.round() as i64, 1),
        }
    }

    /// A tick value on the y axis (compact).
    fn axis(self, value: f64, step: f64) -> String {
        match self {
            Unit::Count => compact(value),
            Unit::Millis if value >= 1000.0 => {
                format!("{} s", trim_decimals(value / 1000.0, step / 1000.0))
            }
            Unit::Millis => format!("{} ms", value.round() as i64),
            Unit::Credits => {
                let credits = value / MICROS_PER_CREDIT as f64;
                trim_decimals(credits, step / MICROS_PER_CREDIT as f64)
            }
        }
    }
}

/// Which colour a series is drawn in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    Primary,
    Secondary,
    Tertiary,
    Danger,
}

impl Tone {
    fn line_class(self) -> &'static str {
        match self {
            Tone::Primary => "series-0",
            Tone::Secondary => "series-1",
            Tone::Tertiary => "series-2",
            Tone::Danger => "series-danger",
        }
    }

    fn bar_class(self) -> &'static str {
        match self {
            Tone::Primary => "bar",
            Tone::Secondary => "bar bar-1",
            Tone::Tertiary => "bar bar-2",
            Tone::Danger => "bar bar-error",
        }
    }

    fn dot_class(self) -> &'static str {
        match self {
            Tone::Primary => "dot dot-0",
            Tone::Secondary => "dot dot-1",
            Tone::Tertiary => "dot dot-2",
            Tone::Danger => "dot dot-danger",
        }
    }

    fn legend_class(self) -> &'static str {
        match self {
            Tone::Primary => "legend-swatch",
            Tone::Secondary => "legend-swatch legend-1",
            Tone::Tertiary => "legend-swatch legend-2",
            Tone::Danger => "legend-swatch legend-error",
        }
    }
}

/// One named series; `None` is a missing value (a gap in a line, no bar).
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub tone: Tone,
    pub values: Vec<Option<f64>>,
}

impl Series {
    /// A series with a value in every bucket.
    pub fn dense(name: &str, tone: Tone, values: impl IntoIterator<Item = f64>) -> Self {
        Self {
            name: name.to_owned(),
            tone,
            values: values.into_iter().map(Some).collect(),
        }
    }

    fn total(&self) -> f64 {
        self.values.iter().flatten().sum()
    }

    fn peak(&self) -> Option<(usize, f64)> {
        self.values
            .iter()
            .enumerate()
            .filter_map(|(index, value)| value.map(|value| (index, value)))
            .fold(None, |best, (index, value)| match best {
                Some((_, top)) if top >= value => best,
                _ => Some((index, value)),
            })
    }
}

/// The time buckets a chart is drawn over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeAxis {
    /// Start of the first bucket (epoch ms).
    pub start_ms: i64,
    pub bucket_ms: i64,
    pub buckets: usize,
}

impl TimeAxis {
    fn bucket_start(&self, index: usize) -> i64 {
        self.start_ms + self.bucket_ms * index as i64
    }
}

/// What a chart shows.
#[derive(Debug, Clone)]
pub struct Chart {
    /// Unique among the page's charts (element ids).
    pub id: String,
    pub title: String,
    pub unit: Unit,
    pub axis: TimeAxis,
    pub series: Vec<Series>,
    /// Shown inside the plot when there is nothing to draw.
    pub empty_text: String,
}

/// Evenly spaced "nice" ticks (steps of 1, 2 or 5 × 10ⁿ) from 0 to at least
/// `max`; `[0, 1]` when there is nothing above zero. Integer units never get
/// a step below 1.
pub fn nice_ticks(max: f64, target: usize, integer: bool) -> Vec<f64> {
    if !max.is_finite() || max <= 0.0 {
        return vec![0.0, 1.0];
    }
    let raw = max / target.max(1) as f64;
    let magnitude = 10_f64.powf(raw.log10().floor());
    let residual = raw / magnitude;
    let nice = if residual <= 1.0 {
        1.0
    } else if residual <= 2.0 {
        2.0
    } else if residual <= 5.0 {
        5.0
    } else {
        10.0
    };
    let mut step = nice * magnitude;
    if integer {
        step = step.round().max(1.0);
    }
    let intervals = ((max / step) - 1e-9).ceil().max(1.0) as usize;
    (0..=intervals).map(|index| index as f64 * step).collect()
}

/// The short label of a bucket under the x axis: `14:00` for buckets of an
/// hour or less, `Mar 3` for longer ones (UTC; buckets of a few hours are
/// labelled only where a day starts).
pub fn time_label(ms: i64, bucket_ms: i64) -> String {
    let Some(at) = utc(ms) else {
        return String::new();
    };
    let month = MONTHS[usize::from(u8::from(at.month())) - 1];
    if bucket_ms > HOUR_MS {
        format!("{month} {}", at.day())
    } else {
        format!("{:02}:{:02}", at.hour(), at.minute())
    }
}

/// The full label of a bucket in the data table (`2026-03-03 14:00 UTC`).
pub fn full_time_label(ms: i64) -> String {
    utc(ms).map_or_else(String::new, |at| {
        format!(
            "{}-{:02}-{:02} {:02}:{:02} UTC",
            at.year(),
            u8::from(at.month()),
            at.day(),
            at.hour(),
            at.minute()
        )
    })
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

fn utc(ms: i64) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
}

/// A line chart: one polyline per series, broken where a value is missing,
/// with a dot on every point so single points show.
pub fn line_chart(chart: &Chart) -> String {
    render(chart, Kind::Line)
}

/// A bar chart: one group per bucket, one bar per series.
pub fn bar_chart(chart: &Chart) -> String {
    render(chart, Kind::Bar)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Line,
    Bar,
}

/// Maps values and bucket indexes to SVG coordinates.
struct Scale {
    top: f64,
    band: f64,
}

impl Scale {
    fn new(chart: &Chart, ticks: &[f64]) -> Self {
        Self {
            top: ticks.last().copied().unwrap_or(1.0).max(f64::MIN_POSITIVE),
            band: plot_width() / chart.axis.buckets.max(1) as f64,
        }
    }

    fn y(&self, value: f64) -> f64 {
        let clamped = value.clamp(0.0, self.top);
        MARGIN_TOP + plot_height() * (1.0 - clamped / self.top)
    }

    fn x_center(&self, index: usize) -> f64 {
        MARGIN_LEFT + self.band * (index as f64 + 0.5)
    }
}

fn plot_width() -> f64 {
    WIDTH - MARGIN_LEFT - MARGIN_RIGHT
}

fn plot_height() -> f64 {
    HEIGHT - MARGIN_TOP - MARGIN_BOTTOM
}

fn render(chart: &Chart, kind: Kind) -> String {
    let max = chart
        .series
        .iter()
        .flat_map(|series| series.values.iter().flatten())
        .fold(0.0_f64, |top, value| top.max(*value));
    let has_data = chart
        .series
        .iter()
        .any(|series| series.values.iter().flatten().any(|value| *value > 0.0));
    let ticks = nice_ticks(max, TARGET_TICKS, chart.unit.integer());
    let step = ticks.get(1).copied().unwrap_or(1.0);
    let scale = Scale::new(chart, &ticks);
    let id = escape(&chart.id);
    let summary = summary(chart, has_data);
    let total = chart.series.first().map_or(0.0, Series::total);

    let mut out = String::with_capacity(8 * 1024);
    let _ = write!(
        out,
        "<figure class=\"chart-figure\" id=\"{id}\" data-total=\"{}\">\
         <figcaption class=\"chart-title\">{}</figcaption>\
         <svg class=\"chart\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" aria-label=\"{}\" \
         xmlns=\"http://www.w3.org/2000/svg\" preserveAspectRatio=\"xMidYMid meet\">\
         <title>{}</title>",
        total.round() as i64,
        escape(&chart.title),
        escape(&summary),
        escape(&chart.title),
    );
    // Grid lines and y labels.
    for tick in &ticks {
        let y = scale.y(*tick);
        let _ = write!(
            out,
            "<line class=\"grid\" x1=\"{MARGIN_LEFT}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\"/>\
             <text class=\"label\" x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            WIDTH - MARGIN_RIGHT,
            MARGIN_LEFT - 6.0,
            y + 4.0,
            escape(&chart.unit.axis(*tick, step)),
        );
    }
    // Axes.
    let baseline = scale.y(0.0);
    let _ = write!(
        out,
        "<line class=\"axis\" x1=\"{MARGIN_LEFT}\" x2=\"{}\" y1=\"{baseline:.1}\" y2=\"{baseline:.1}\"/>",
        WIDTH - MARGIN_RIGHT
    );
    // Time labels: evenly thinned, or at the start of each day for buckets of a few hours.
    let every = chart.axis.buckets.div_ceil(MAX_TIME_LABELS).max(1);
    let bucket_ms = chart.axis.bucket_ms;
    let labelled = |index: usize| {
        if bucket_ms > HOUR_MS && bucket_ms < DAY_MS {
            chart.axis.bucket_start(index).rem_euclid(DAY_MS) < bucket_ms
        } else {
            index % every == 0
        }
    };
    for index in (0..chart.axis.buckets).filter(|index| labelled(*index)) {
        let _ = write!(
            out,
            "<text class=\"label\" x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            scale.x_center(index),
            HEIGHT - 8.0,
            escape(&time_label(
                chart.axis.bucket_start(index),
                chart.axis.bucket_ms
            )),
        );
    }
    if has_data {
        match kind {
            Kind::Line => draw_lines(&mut out, chart, &scale),
            Kind::Bar => draw_bars(&mut out, chart, &scale),
        }
    } else {
        let _ = write!(
            out,
            "<text class=\"label empty-label\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            MARGIN_LEFT + plot_width() / 2.0,
            MARGIN_TOP + plot_height() / 2.0,
            escape(&chart.empty_text),
        );
    }
    out.push_str("</svg>");
    legend(&mut out, chart);
    data_table(&mut out, chart);
    out.push_str("</figure>");
    out
}

fn draw_lines(out: &mut String, chart: &Chart, scale: &Scale) {
    for series in &chart.series {
        let mut path = String::new();
        let mut pen_down = false;
        for (index, value) in series.values.iter().enumerate() {
            match value {
                Some(value) => {
                    let command = if pen_down { 'L' } else { 'M' };
                    let _ = write!(
                        path,
                        "{command}{:.1} {:.1} ",
                        scale.x_center(index),
                        scale.y(*value)
                    );
                    pen_down = true;
                }
                None => pen_down = false,
            }
        }
        if !path.is_empty() {
            let _ = write!(
                out,
                "<path class=\"{}\" d=\"{}\" fill=\"none\"/>",
                series.tone.line_class(),
                path.trim_end()
            );
        }
        for (index, value) in series.values.iter().enumerate() {
            if let Some(value) = value {
                let _ = write!(
                    out,
                    "<circle class=\"{}\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"2.5\"/>",
                    series.tone.dot_class(),
                    scale.x_center(index),
                    scale.y(*value)
                );
            }
        }
    }
}

fn draw_bars(out: &mut String, chart: &Chart, scale: &Scale) {
    let groups = chart.series.len().max(1) as f64;
    let group_width = scale.band * 0.78;
    let bar_width = (group_width / groups).max(1.0);
    let baseline = scale.y(0.0);
    for (position, series) in chart.series.iter().enumerate() {
        for (index, value) in series.values.iter().enumerate() {
            let Some(value) = value.filter(|value| *value > 0.0) else {
                continue;
            };
            let x = scale.x_center(index) - group_width / 2.0 + bar_width * position as f64;
            let y = scale.y(value);
            // At least one unit high, so a small value stays visible.
            let height = (baseline - y).max(1.0);
            let _ = write!(
                out,
                "<rect class=\"{}\" x=\"{x:.1}\" y=\"{:.1}\" width=\"{bar_width:.1}\" height=\"{height:.1}\" rx=\"1.5\"/>",
                series.tone.bar_class(),
                baseline - height,
            );
        }
    }
}

fn legend(out: &mut String, chart: &Chart) {
    out.push_str("<div class=\"legend\" aria-hidden=\"true\">");
    for series in &chart.series {
        let _ = write!(
            out,
            "<span><span class=\"{}\"></span>{} <span class=\"legend-total\">{}</span></span>",
            series.tone.legend_class(),
            escape(&series.name),
            escape(&legend_figure(chart.unit, series)),
        );
    }
    out.push_str("</div>");
}

/// The figure next to a series' name: its total for sums, its peak for latency.
fn legend_figure(unit: Unit, series: &Series) -> String {
    match unit {
        Unit::Millis => series.peak().map_or_else(
            || "—".to_owned(),
            |(_, peak)| format!("max {}", unit.exact(peak)),
        ),
        Unit::Count | Unit::Credits => unit.exact(series.total()),
    }
}

fn data_table(out: &mut String, chart: &Chart) {
    let _ = write!(
        out,
        "<div class=\"sr-only\"><table><caption>{}</caption><thead><tr><th scope=\"col\">Period starting</th>",
        escape(&chart.title)
    );
    for series in &chart.series {
        let _ = write!(out, "<th scope=\"col\">{}</th>", escape(&series.name));
    }
    out.push_str("</tr></thead><tbody>");
    for index in 0..chart.axis.buckets {
        let _ = write!(
            out,
            "<tr><th scope=\"row\">{}</th>",
            escape(&full_time_label(chart.axis.bucket_start(index)))
        );
        for series in &chart.series {
            let cell = series
                .values
                .get(index)
                .copied()
                .flatten()
                .map_or_else(|| "no data".to_owned(), |value| chart.unit.exact(value));
            let _ = write!(out, "<td>{}</td>", escape(&cell));
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table></div>");
}

/// The chart's accessible name: totals (or peaks, for latency) per series.
fn summary(chart: &Chart, has_data: bool) -> String {
    if !has_data {
        return format!("{}: {}", chart.title, chart.empty_text);
    }
    let parts: Vec<String> = chart
        .series
        .iter()
        .map(|series| {
            let peak = series.peak().map(|(index, value)| {
                format!(
                    "peak {} at {}",
                    chart.unit.exact(value),
                    full_time_label(chart.axis.bucket_start(index))
                )
            });
            match chart.unit {
                Unit::Millis => format!(
                    "{} {}",
                    series.name,
                    peak.unwrap_or_else(|| "no data".to_owned())
                ),
                Unit::Count | Unit::Credits => format!(
                    "{} total {}{}",
                    series.name,
                    chart.unit.exact(series.total()),
                    peak.map(|peak| format!(", {peak}")).unwrap_or_default()
                ),
            }
        })
        .collect();
    format!("{}: {}", chart.title, parts.join("; "))
}

/// `12k`, `1.5M`, `950` (y-axis ticks of counts).
fn compact(value: f64) -> String {
    let abs = value.abs();
    if abs >= 1_000_000.0 {
        format!("{}M", trim(value / 1_000_000.0, 1))
    } else if abs >= 10_000.0 {
        format!("{}k", trim(value / 1000.0, 1))
    } else {
        layout::count(value.round() as i64)
    }
}

/// `value` with as many decimals as `step` needs (at most 4), without trailing zeros.
fn trim_decimals(value: f64, step: f64) -> String {
    let decimals = if step > 0.0 && step < 1.0 {
        (-step.log10().floor()).clamp(0.0, 4.0) as usize
    } else {
        0
    };
    trim(value, decimals)
}

fn trim(value: f64, decimals: usize) -> String {
    let text = format!("{value:.decimals$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    }
}

/// Escapes text for HTML and SVG content and attributes.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000;

    fn axis(buckets: usize) -> TimeAxis {
        TimeAxis {
            // 2026-03-03T00:00:00Z
            start_ms: 1_772_496_000_000,
            bucket_ms: HOUR,
            buckets,
        }
    }

    fn chart(unit: Unit, series: Vec<Series>) -> Chart {
        Chart {
            id: "c1".to_owned(),
            title: "Requests & errors".to_owned(),
            unit,
            axis: axis(series.first().map_or(0, |s| s.values.len())),
            series,
            empty_text: "No requests in this period".to_owned(),
        }
    }

    #[test]
    fn ticks_are_nice_and_cover_the_maximum() {
        assert_eq!(nice_ticks(0.0, 4, true), vec![0.0, 1.0]);
        assert_eq!(nice_ticks(f64::NAN, 4, false), vec![0.0, 1.0]);
        assert_eq!(nice_ticks(3.0, 4, true), vec![0.0, 1.0, 2.0, 3.0]);
        assert_eq!(nice_ticks(7.0, 4, true), vec![0.0, 2.0, 4.0, 6.0, 8.0]);
        assert_eq!(nice_ticks(95.0, 4, true), vec![0.0, 50.0, 100.0]);
        assert_eq!(
            nice_ticks(1234.0, 4, true),
            vec![0.0, 500.0, 1000.0, 1500.0]
        );
        // Whole-number units never step by less than one.
        assert_eq!(nice_ticks(1.0, 4, true), vec![0.0, 1.0]);
        let fractional = nice_ticks(0.37, 4, false);
        assert_eq!(fractional.len(), 5);
        assert!((fractional[1] - 0.1).abs() < 1e-12);
        for max in [1.0, 9.0, 10.0, 11.0, 99.0, 101.0, 123_456.0, 0.003] {
            let ticks = nice_ticks(max, 4, false);
            assert!(*ticks.last().unwrap() >= max - 1e-9, "{max}: {ticks:?}");
            assert!(ticks.len() <= 6, "{max}: {ticks:?}");
        }
    }

    #[test]
    fn time_labels_follow_the_bucket_size() {
        let at = 1_772_496_000_000 + 14 * HOUR;
        assert_eq!(time_label(at, HOUR), "14:00");
        assert_eq!(time_label(at, 6 * HOUR), "Mar 3");
        assert_eq!(time_label(at, 24 * HOUR), "Mar 3");
        assert_eq!(full_time_label(at), "2026-03-03 14:00 UTC");
    }

    #[test]
    fn values_scale_between_baseline_and_top() {
        let series = vec![Series::dense("Requests", Tone::Primary, [0.0, 4.0, 8.0])];
        let chart = chart(Unit::Count, series);
        let ticks = nice_ticks(8.0, TARGET_TICKS, true);
        let scale = Scale::new(&chart, &ticks);
        assert_eq!(scale.y(0.0), MARGIN_TOP + plot_height());
        assert_eq!(scale.y(8.0), MARGIN_TOP);
        assert_eq!(scale.y(4.0), MARGIN_TOP + plot_height() / 2.0);
        // Out-of-range values are clamped into the plot.
        assert_eq!(scale.y(-5.0), scale.y(0.0));
        assert_eq!(scale.y(99.0), MARGIN_TOP);
        assert!(scale.x_center(0) > MARGIN_LEFT);
        assert!(scale.x_center(2) < WIDTH - MARGIN_RIGHT);
    }

    #[test]
    fn bars_are_accessible_and_carry_the_total() {
        let svg = bar_chart(&chart(
            Unit::Count,
            vec![
                Series::dense("Requests", Tone::Primary, [1.0, 0.0, 2.0]),
                Series::dense("Errors", Tone::Danger, [0.0, 0.0, 1.0]),
            ],
        ));
        assert!(svg.contains("role=\"img\""));
        assert!(svg.contains("<title>Requests &amp; errors</title>"));
        assert!(svg.contains("aria-label=\"Requests &amp; errors: Requests total 3, peak 2"));
        assert!(svg.contains("data-total=\"3\""));
        assert_eq!(svg.matches("<rect class=\"bar\"").count(), 2);
        assert_eq!(svg.matches("bar bar-error").count(), 1);
        assert!(svg.contains("<div class=\"sr-only\"><table>"));
        assert_eq!(svg.matches("<tr><th scope=\"row\">").count(), 3);
        assert!(!svg.contains("style="));
        assert!(!svg.contains("No requests"));
    }

    #[test]
    fn empty_data_still_draws_axes_and_says_so() {
        let svg = bar_chart(&chart(
            Unit::Count,
            vec![Series::dense("Requests", Tone::Primary, [0.0; 24])],
        ));
        assert!(svg.contains("No requests in this period"));
        assert!(svg.contains("data-total=\"0\""));
        assert!(!svg.contains("<rect"));
        assert!(svg.contains("class=\"axis\""));
        // 24 hourly buckets get at most seven time labels.
        assert!(svg.matches("text-anchor=\"middle\">").count() <= MAX_TIME_LABELS + 1);

        let none = line_chart(&chart(Unit::Millis, Vec::new()));
        assert!(none.contains("No requests in this period"));
    }

    #[test]
    fn six_hour_buckets_are_labelled_per_day() {
        let mut chart = chart(
            Unit::Count,
            vec![Series::dense("Requests", Tone::Primary, [0.0; 28])],
        );
        chart.axis = TimeAxis {
            start_ms: 1_772_496_000_000 + 6 * HOUR,
            bucket_ms: 6 * HOUR,
            buckets: 28,
        };
        let svg = bar_chart(&chart);
        // 28 buckets of 6 h from Mar 3 06:00: the days from Mar 4 to Mar 10 start in it.
        assert_eq!(svg.matches(">Mar ").count(), 7, "{svg}");
        assert!(svg.contains(">Mar 4<") && !svg.contains(">Mar 3<"));
    }

    #[test]
    fn lines_break_at_missing_values() {
        let svg = line_chart(&chart(
            Unit::Millis,
            vec![Series {
                name: "p50".to_owned(),
                tone: Tone::Primary,
                values: vec![Some(10.0), Some(20.0), None, Some(30.0)],
            }],
        ));
        let path = svg
            .split(" d=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        assert_eq!(path.matches('M').count(), 2, "{path}");
        assert_eq!(path.matches('L').count(), 1, "{path}");
        assert_eq!(svg.matches("<circle").count(), 3);
        assert!(svg.contains("<td>no data</td>"));
        assert!(svg.contains("max 30 ms"));
    }

    #[test]
    fn axis_values_read_well() {
        assert_eq!(Unit::Count.axis(12_000.0, 4000.0), "12k");
        assert_eq!(Unit::Count.axis(1_500_000.0, 500_000.0), "1.5M");
        assert_eq!(Unit::Count.axis(950.0, 50.0), "950");
        assert_eq!(Unit::Millis.axis(250.0, 50.0), "250 ms");
        assert_eq!(Unit::Millis.axis(1500.0, 500.0), "1.5 s");
        // 0.05 credits in micro-dollars.
        assert_eq!(Unit::Credits.axis(500.0, 500.0), "0.05");
        assert_eq!(Unit::Credits.axis(20_000.0, 10_000.0), "2");
    }

    #[test]
    fn text_is_escaped() {
        let mut chart = chart(
            Unit::Count,
            vec![Series::dense("<b>", Tone::Primary, [1.0])],
        );
        chart.id = "x\"y".to_owned();
        let svg = bar_chart(&chart);
        assert!(!svg.contains("<b>"));
        assert!(svg.contains("&lt;b&gt;"));
        assert!(svg.contains("id=\"x&quot;y\""));
    }
}

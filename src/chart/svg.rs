//! The canvas every chart is drawn on: the frame, scales, ticks (numbers and calendar times),
//! escaping, and the SVG writer with its title, description, legend and axes.

use std::fmt::Write as _;

use chrono::{Datelike, NaiveDate, TimeZone, Utc};

use super::*;

/// The plot area inside the chart.
#[derive(Clone, Copy, Debug)]
pub(super) struct Frame {
    pub(super) left: f64,
    pub(super) top: f64,
    pub(super) width: f64,
    pub(super) height: f64,
}

impl Frame {
    pub(super) fn new(legend_rows: usize, bottom: f64) -> Frame {
        let top = 52.0 + 18.0 * legend_rows as f64;
        let left = 72.0;
        Frame { left, top, width: WIDTH - left - 24.0, height: HEIGHT - top - bottom }
    }
    pub(super) fn right(&self) -> f64 {
        self.left + self.width
    }
    pub(super) fn bottom(&self) -> f64 {
        self.top + self.height
    }
}

/// A linear map from a data range to a pixel range.
#[derive(Clone, Copy, Debug)]
pub(super) struct Scale {
    pub(super) d0: f64,
    pub(super) d1: f64,
    pub(super) p0: f64,
    pub(super) p1: f64,
}

impl Scale {
    pub(super) fn map(&self, v: f64) -> f64 {
        let span = self.d1 - self.d0;
        if span == 0.0 { (self.p0 + self.p1) / 2.0 } else { self.p0 + (v - self.d0) / span * (self.p1 - self.p0) }
    }
}

/// Axis ticks: positions in data units and their labels.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Ticks {
    pub values: Vec<f64>,
    pub labels: Vec<String>,
    /// The axis range (rounded out to whole steps for numbers).
    pub lo: f64,
    pub hi: f64,
}

/// "Nice" ticks for `[lo, hi]`: steps of 1, 2 or 5 × 10ⁿ, about `target` of them, with the range
/// rounded out to whole steps. A degenerate range is widened around its value.
pub(super) fn nice_ticks(lo: f64, hi: f64, target: usize) -> Ticks {
    let (mut lo, mut hi) = if lo.is_finite() && hi.is_finite() { (lo.min(hi), lo.max(hi)) } else { (0.0, 1.0) };
    if hi - lo < f64::EPSILON * hi.abs().max(1.0) {
        let pad = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
        lo -= pad;
        hi += pad;
    }
    let raw = (hi - lo) / target.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step =
        [1.0, 2.0, 5.0, 10.0].into_iter().map(|m| m * mag).find(|s| *s >= raw * (1.0 - 1e-9)).unwrap_or(10.0 * mag);
    let start = (lo / step + 1e-9).floor() * step;
    let end = (hi / step - 1e-9).ceil() * step;
    let n = ((end - start) / step).round() as usize;
    let values: Vec<f64> = (0..=n).map(|i| clean_zero(start + i as f64 * step)).collect();
    let labels = number_labels(&values, step);
    Ticks { lo: start, hi: end, values, labels }
}

pub(super) fn clean_zero(v: f64) -> f64 {
    if v.abs() < 1e-12 { 0.0 } else { v }
}

/// Labels for evenly spaced `values`: `k`/`M`/`B`/`T` suffixes for large magnitudes and just
/// enough decimals to tell neighbours apart.
pub(super) fn number_labels(values: &[f64], step: f64) -> Vec<String> {
    let biggest = values.iter().fold(0f64, |m, v| m.max(v.abs()));
    let (unit, suffix) = [(1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")]
        .into_iter()
        .find(|(u, _)| biggest >= 1e4 && biggest >= *u)
        .unwrap_or((1.0, ""));
    let decimals = (-(step / unit).log10().floor()).clamp(0.0, 6.0) as usize;
    values
        .iter()
        .map(|v| if *v == 0.0 { "0".to_string() } else { format!("{:.*}{suffix}", decimals, v / unit) })
        .collect()
}

/// A number for a tooltip: grouped thousands, at most 4 decimals.
pub(super) fn value_text(v: f64) -> String {
    let s = if v.fract() == 0.0 && v.abs() < 1e15 { format!("{v:.0}") } else { format!("{v:.4}") };
    let s = if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_string() } else { s };
    let (sign, rest) = s.strip_prefix('-').map(|r| ("-", r)).unwrap_or(("", &s));
    let (int, frac) = rest.split_once('.').map(|(i, f)| (i, Some(f))).unwrap_or((rest, None));
    let mut grouped = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    match frac {
        Some(f) => format!("{sign}{grouped}.{f}"),
        None => format!("{sign}{grouped}"),
    }
}

pub(super) const DAY: f64 = 86_400.0;

/// Ticks on a time axis (seconds since the epoch, UTC): whole seconds, minutes, hours, days,
/// weeks (Mondays), months or years, about `target` of them, labelled to the step's precision;
/// at least a day apart for `dates_only` data.
pub(super) fn time_ticks(lo: f64, hi: f64, target: usize, dates_only: bool) -> Ticks {
    let (lo, hi) = if hi - lo < 1.0 { (lo - DAY, hi + DAY) } else { (lo, hi) };
    let span = hi - lo;
    let target = target.max(2) as f64;
    const SECS: [f64; 20] = [
        1.0,
        2.0,
        5.0,
        10.0,
        15.0,
        30.0,
        60.0,
        120.0,
        300.0,
        600.0,
        900.0,
        1800.0,
        3600.0,
        7200.0,
        10800.0,
        21600.0,
        43200.0,
        DAY,
        2.0 * DAY,
        7.0 * DAY,
    ];
    let min_step = if dates_only { DAY } else { 1.0 };
    if let Some(step) = SECS.into_iter().find(|s| *s >= min_step && span / s <= target) {
        // Weeks start on Monday (1970-01-05 was one).
        let offset = if step == 7.0 * DAY { 4.0 * DAY } else { 0.0 };
        let first = ((lo - offset) / step).ceil() * step + offset;
        let values: Vec<f64> = (0..).map(|i| first + i as f64 * step).take_while(|v| *v <= hi).collect();
        let format = if step >= DAY {
            "%Y-%m-%d"
        } else if step >= 60.0 {
            if span > DAY { "%m-%d %H:%M" } else { "%H:%M" }
        } else {
            "%H:%M:%S"
        };
        let labels = values.iter().map(|v| format_time(*v, format)).collect();
        return Ticks { values, labels, lo, hi };
    }
    const MONTH: f64 = 30.44 * DAY;
    let months = [1u32, 2, 3, 6, 12, 24, 60, 120, 240, 600, 1200, 6000]
        .into_iter()
        .find(|m| span / (*m as f64 * MONTH) <= target)
        .unwrap_or(12_000);
    let Some(start) = Utc.timestamp_opt(lo.floor() as i64, 0).single() else {
        return Ticks { values: vec![], labels: vec![], lo, hi };
    };
    let mut index = start.year() as i64 * 12 + start.month0() as i64;
    index = index.div_euclid(months as i64) * months as i64;
    let mut values = Vec::new();
    loop {
        let (y, m) = (index.div_euclid(12), index.rem_euclid(12) as u32 + 1);
        let Some(t) = NaiveDate::from_ymd_opt(y as i32, m, 1).and_then(|d| d.and_hms_opt(0, 0, 0)) else { break };
        let v = t.and_utc().timestamp() as f64;
        if v > hi || values.len() > 1000 {
            break;
        }
        if v >= lo {
            values.push(v);
        }
        index += months as i64;
    }
    let format = if months >= 12 { "%Y" } else { "%Y-%m" };
    let labels = values.iter().map(|v| format_time(*v, format)).collect();
    Ticks { values, labels, lo, hi }
}

pub(super) fn format_time(secs: f64, format: &str) -> String {
    Utc.timestamp_opt(secs.floor() as i64, 0).single().map(|t| t.format(format).to_string()).unwrap_or_default()
}

/// Text safe inside an SVG element or attribute: XML-escaped, without characters XML 1.0
/// forbids, cut to `max` characters with an ellipsis.
pub(super) fn escape(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max * 2));
    let count = s.chars().filter(|c| allowed_in_xml(*c)).count();
    for (i, c) in s.chars().filter(|c| allowed_in_xml(*c)).enumerate() {
        if count > max && i + 1 == max {
            out.push('…');
            break;
        }
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' | '\r' | '\t' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

pub(super) fn allowed_in_xml(c: char) -> bool {
    (!c.is_control() || matches!(c, '\n' | '\r' | '\t')) && !matches!(c, '\u{FFFE}' | '\u{FFFF}')
}

/// A pixel coordinate, one decimal.
pub(super) fn px(v: f64) -> String {
    let r = (v * 10.0).round() / 10.0;
    if r.fract() == 0.0 { format!("{r:.0}") } else { format!("{r:.1}") }
}

/// The SVG being written.
pub(super) struct Svg {
    pub(super) out: String,
}

impl Svg {
    /// Starts a chart titled `title`; `desc` (for screen readers) names its kind, axes and
    /// series.
    pub(super) fn new(title: &str, desc: &str) -> Svg {
        let mut out = String::with_capacity(16 * 1024);
        let title = escape(title, MAX_TITLE_CHARS);
        let desc = escape(desc, 1000);
        let _ = write!(
            out,
            r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" aria-label="{title}" font-family="system-ui, -apple-system, Segoe UI, Roboto, Helvetica, Arial, sans-serif" font-size="12"><title>{title}</title><desc>{desc}</desc><rect width="{w}" height="{h}" fill="#ffffff"/><text x="16" y="24" font-size="15" font-weight="600" fill="#222">{title}</text>"##,
            w = WIDTH,
            h = HEIGHT,
        );
        Svg { out }
    }

    pub(super) fn subtitle(&mut self, text: &str) {
        let _ = write!(self.out, r##"<text x="16" y="42" fill="#666">{}</text>"##, escape(text, 120));
    }

    /// Legend entries laid out in rows across the chart; returns the number of rows.
    pub(super) fn legend_rows(names: &[String]) -> usize {
        if names.len() < 2 {
            return 0;
        }
        let mut rows = 1;
        let mut x = 16.0;
        for n in names {
            let w = 24.0 + CHAR_W * n.chars().count().min(MAX_LABEL_CHARS) as f64;
            if x + w > WIDTH - 16.0 && x > 16.0 {
                rows += 1;
                x = 16.0;
            }
            x += w;
        }
        rows
    }

    pub(super) fn legend(&mut self, names: &[String]) {
        if names.len() < 2 {
            return;
        }
        self.out.push_str(r#"<g class="legend">"#);
        let (mut x, mut y) = (16.0, 56.0);
        for (i, n) in names.iter().enumerate() {
            let w = 24.0 + CHAR_W * n.chars().count().min(MAX_LABEL_CHARS) as f64;
            if x + w > WIDTH - 16.0 && x > 16.0 {
                x = 16.0;
                y += 18.0;
            }
            let _ = write!(
                self.out,
                r##"<rect x="{}" y="{}" width="10" height="10" fill="{}"/><text x="{}" y="{}" fill="#333">{}</text>"##,
                px(x),
                px(y - 9.0),
                PALETTE[i % PALETTE.len()],
                px(x + 14.0),
                px(y),
                escape(n, MAX_LABEL_CHARS)
            );
            x += w;
        }
        self.out.push_str("</g>");
    }

    /// Horizontal grid lines with y labels, and the y axis title.
    pub(super) fn y_axis(&mut self, f: &Frame, ticks: &Ticks, scale: &Scale, title: Option<&str>) {
        self.out.push_str(r#"<g class="y-axis">"#);
        for (v, label) in ticks.values.iter().zip(&ticks.labels) {
            let y = px(scale.map(*v));
            let _ = write!(
                self.out,
                r##"<line x1="{}" y1="{y}" x2="{}" y2="{y}" stroke="#e5e5e5"/><text x="{}" y="{y}" dy="4" text-anchor="end" fill="#555">{}</text>"##,
                px(f.left),
                px(f.right()),
                px(f.left - 6.0),
                escape(label, MAX_LABEL_CHARS)
            );
        }
        if let Some(t) = title {
            let (x, y) = (14.0, f.top + f.height / 2.0);
            let _ = write!(
                self.out,
                r##"<text x="{}" y="{}" transform="rotate(-90 {} {})" text-anchor="middle" fill="#444">{}</text>"##,
                px(x),
                px(y),
                px(x),
                px(y),
                escape(t, MAX_LABEL_CHARS * 2)
            );
        }
        self.out.push_str("</g>");
    }

    /// The x axis line, its tick labels (rotated when crowded) and its title.
    pub(super) fn x_axis(&mut self, f: &Frame, ticks: &[(f64, String)], rotate: bool, title: &str) {
        let _ = write!(
            self.out,
            r##"<g class="x-axis"><line x1="{}" y1="{b}" x2="{}" y2="{b}" stroke="#999"/>"##,
            px(f.left),
            px(f.right()),
            b = px(f.bottom())
        );
        for (x, label) in ticks {
            let (x, y) = (px(*x), px(f.bottom() + 16.0));
            if rotate {
                let _ = write!(
                    self.out,
                    r##"<text x="{x}" y="{y}" transform="rotate(-40 {x} {y})" text-anchor="end" fill="#555">{}</text>"##,
                    escape(label, MAX_LABEL_CHARS)
                );
            } else {
                // Labels at the edges are anchored inside the chart rather than cut off.
                let half = CHAR_W * label.chars().count().min(MAX_LABEL_CHARS) as f64 / 2.0;
                let at: f64 = x.parse().unwrap_or(0.0);
                let anchor = if at - half < 2.0 {
                    "start"
                } else if at + half > WIDTH - 2.0 {
                    "end"
                } else {
                    "middle"
                };
                let _ = write!(
                    self.out,
                    r##"<line x1="{x}" y1="{}" x2="{x}" y2="{}" stroke="#999"/><text x="{x}" y="{y}" text-anchor="{anchor}" fill="#555">{}</text>"##,
                    px(f.bottom()),
                    px(f.bottom() + 4.0),
                    escape(label, MAX_LABEL_CHARS)
                );
            }
        }
        let _ = write!(
            self.out,
            r##"<text x="{}" y="{}" text-anchor="middle" fill="#444">{}</text></g>"##,
            px(f.left + f.width / 2.0),
            px(HEIGHT - 10.0),
            escape(title, MAX_LABEL_CHARS * 2)
        );
    }

    pub(super) fn finish(mut self) -> String {
        self.out.push_str("</svg>\n");
        self.out
    }
}

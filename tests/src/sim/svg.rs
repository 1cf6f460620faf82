//! Dependency-free SVG plots for `docs/`: empirical CDFs ([`cdf`]) and share curves
//! ([`lines`]).

use std::fmt::Write as _;

/// One curve: a label and its samples.
#[derive(Clone, Debug)]
pub struct Series {
    /// Legend text.
    pub label: String,
    /// Samples (any order).
    pub values: Vec<f64>,
}

const COLORS: [&str; 6] = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"];

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// A "nice" tick step for a range of `span` aiming at about 8 ticks.
fn tick_step(span: f64) -> f64 {
    let raw = span / 8.0;
    let mag = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * mag).find(|s| *s >= raw).unwrap_or(10.0 * mag)
}

/// The plot area of one figure: where data coordinates land in the SVG.
struct Frame {
    left: f64,
    top: f64,
    pw: f64,
    ph: f64,
    x_max: f64,
}

impl Frame {
    fn x(&self, v: f64) -> f64 {
        self.left + v / self.x_max * self.pw
    }

    fn y(&self, p: f64) -> f64 {
        self.top + (1.0 - p.clamp(0.0, 1.0)) * self.ph
    }

    /// Starts a figure with `rows` legend rows: the title, the grid with x ticks up to
    /// `x_max` (rounded up to a tick) and y ticks from 0 to 1, and both axis labels.
    fn open(title: &str, x_label: &str, y_label: &str, x_max: f64, rows: usize) -> (Frame, String) {
        // The legend gets one row per curve below the x axis label, clear of every curve.
        let legend = 18.0 * rows as f64 + 8.0;
        let (w, h) = (760.0, 440.0 + legend);
        let (left, right, top, bottom) = (60.0, 20.0, 40.0, 50.0 + legend);
        let (pw, ph) = (w - left - right, h - top - bottom);
        let step = tick_step(x_max);
        let f = Frame { left, top, pw, ph, x_max: (x_max / step).ceil() * step };
        let mut out = String::new();
        let _ = writeln!(
            out,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(out, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
        let _ = writeln!(
            out,
            r#"<text x="{}" y="22" text-anchor="middle" font-size="15">{}</text>"#,
            w / 2.0,
            escape(title)
        );
        let mut t = 0.0;
        while t <= f.x_max + 1e-9 {
            let _ = writeln!(
                out,
                r##"<line x1="{0:.1}" y1="{1}" x2="{0:.1}" y2="{2}" stroke="#ddd"/><text x="{0:.1}" y="{3}" text-anchor="middle">{4}</text>"##,
                f.x(t),
                top,
                top + ph,
                top + ph + 16.0,
                t
            );
            t += step;
        }
        for i in 0..=10 {
            let p = f64::from(i) / 10.0;
            let _ = writeln!(
                out,
                r##"<line x1="{0}" y1="{1:.1}" x2="{2}" y2="{1:.1}" stroke="#ddd"/><text x="{3}" y="{4:.1}" text-anchor="end">{5:.1}</text>"##,
                left,
                f.y(p),
                left + pw,
                left - 6.0,
                f.y(p) + 4.0,
                p
            );
        }
        let _ = writeln!(out, r#"<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="black"/>"#);
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
            left + pw / 2.0,
            top + ph + 38.0,
            escape(x_label)
        );
        let _ = writeln!(
            out,
            r#"<text x="16" y="{}" text-anchor="middle" transform="rotate(-90 16 {})">{}</text>"#,
            top + ph / 2.0,
            top + ph / 2.0,
            escape(y_label)
        );
        (f, out)
    }

    /// Draws curve number `n` (its path data) and its legend row.
    fn curve(&self, out: &mut String, n: usize, label: &str, path: &str) {
        let color = COLORS[n % COLORS.len()];
        let _ = writeln!(out, r#"<path d="{path}" fill="none" stroke="{color}" stroke-width="2"/>"#);
        let ly = self.top + self.ph + 62.0 + 18.0 * n as f64;
        let _ = writeln!(
            out,
            r#"<line x1="{0}" y1="{ly}" x2="{1}" y2="{ly}" stroke="{color}" stroke-width="3"/><text x="{2}" y="{3}">{4}</text>"#,
            self.left,
            self.left + 24.0,
            self.left + 30.0,
            ly + 4.0,
            escape(label)
        );
    }
}

/// The empirical CDFs of `series` as a step plot: x from 0 to the largest sample, y from 0 to 1.
pub fn cdf(title: &str, x_label: &str, series: &[Series]) -> String {
    let x_max = series.iter().flat_map(|s| s.values.iter().copied()).fold(1.0f64, f64::max);
    let (f, mut out) = Frame::open(title, x_label, "share of lookups", x_max, series.len());
    for (n, s) in series.iter().enumerate() {
        let mut v = s.values.clone();
        v.sort_by(f64::total_cmp);
        let count = v.len().max(1) as f64;
        let mut path = format!("M{:.1},{:.1}", f.x(0.0), f.y(0.0));
        // One step per distinct value, and at most ~300 steps: the file stays small.
        let stride = v.len().div_ceil(300).max(1);
        let mut i = 0;
        while i < v.len() {
            let value = v[i];
            let mut j = i + 1;
            while j < v.len() && (v[j] == value || (j - i) < stride) {
                j += 1;
            }
            let _ = write!(
                path,
                " L{:.1},{:.1} L{:.1},{:.1}",
                f.x(value),
                f.y(i as f64 / count),
                f.x(value),
                f.y(j as f64 / count)
            );
            i = j;
        }
        let _ = write!(path, " L{:.1},{:.1}", f.x(f.x_max), f.y(1.0));
        f.curve(&mut out, n, &s.label, &path);
    }
    out.push_str("</svg>\n");
    out
}

/// One curve of a line plot: a label and its points, in x order.
#[derive(Clone, Debug)]
pub struct Curve {
    /// Legend text.
    pub label: String,
    /// `(x, y)` points.
    pub points: Vec<(f64, f64)>,
}

/// Line plot of `curves`: x from 0 to the largest x, y from 0 to 1 (a share).
pub fn lines(title: &str, x_label: &str, y_label: &str, curves: &[Curve]) -> String {
    let x_max = curves.iter().flat_map(|c| c.points.iter().map(|p| p.0)).fold(1.0f64, f64::max);
    let (f, mut out) = Frame::open(title, x_label, y_label, x_max, curves.len());
    for (n, c) in curves.iter().enumerate() {
        // At most ~400 points per curve: the file stays small.
        let stride = c.points.len().div_ceil(400).max(1);
        let mut path = String::new();
        for (i, &(px, py)) in c.points.iter().enumerate() {
            if i % stride != 0 && i + 1 != c.points.len() {
                continue;
            }
            let _ = write!(path, "{}{:.1},{:.1}", if path.is_empty() { "M" } else { " L" }, f.x(px), f.y(py));
        }
        f.curve(&mut out, n, &c.label, &path);
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cdf_plot_is_one_svg_document_with_a_path_per_series() {
        let s = cdf(
            "t",
            "queries",
            &[
                Series { label: "a <b>".into(), values: vec![3.0, 1.0, 2.0] },
                Series { label: "c".into(), values: vec![10.0] },
            ],
        );
        assert!(s.starts_with("<svg"));
        assert!(s.trim_end().ends_with("</svg>"));
        assert_eq!(s.matches("<path").count(), 2);
        assert!(s.contains("a &lt;b&gt;"));
    }

    #[test]
    fn a_line_plot_has_a_path_per_curve_from_its_first_point() {
        let curve = |label: &str| Curve { label: label.into(), points: vec![(0.0, 0.0), (50.0, 0.5), (100.0, 1.0)] };
        let s = lines("t", "queries", "share", &[curve("a"), curve("b & c")]);
        assert!(s.starts_with("<svg") && s.trim_end().ends_with("</svg>"));
        assert_eq!(s.matches("<path d=\"M").count(), 2);
        assert!(s.contains("b &amp; c"));
    }
}

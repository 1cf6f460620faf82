//! Summaries of measured lookups: percentiles, a human table, one JSON object.

use std::fmt::Write as _;

use super::LookupRecord;

/// The `p`-quantile (0..=1) of sorted values, by the nearest-rank method; 0 when empty.
pub fn quantile<T: Copy + Default>(sorted: &[T], p: f64) -> T {
    if sorted.is_empty() {
        return T::default();
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The figures of a batch of lookups.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Summary {
    /// Lookups started.
    pub lookups: usize,
    /// Lookups that finished (any outcome).
    pub finished: usize,
    /// Median queries per lookup.
    pub queries_median: u32,
    /// 90th percentile of queries per lookup.
    pub queries_p90: u32,
    /// Mean queries per lookup.
    pub queries_mean: f64,
    /// Median rounds.
    pub rounds_median: u32,
    /// 90th percentile of rounds.
    pub rounds_p90: u32,
    /// Median virtual time of a finished lookup, in milliseconds.
    pub time_median_ms: f64,
    /// 90th percentile of that time.
    pub time_p90_ms: f64,
    /// 99th percentile of that time.
    pub time_p99_ms: f64,
    /// Median time until the first `values` (runs with holders; 0 otherwise), of the lookups
    /// that got them.
    pub values_time_median_ms: f64,
    /// 90th percentile of that time.
    pub values_time_p90_ms: f64,
    /// 99th percentile of that time.
    pub values_time_p99_ms: f64,
    /// Mean recall of the true k closest live nodes (unfinished lookups count 0).
    pub recall_mean: f64,
    /// Mean recall of the true 8 closest live nodes.
    pub recall8_mean: f64,
    /// Share of lookups that found all of the true k closest.
    pub exact_rate: f64,
    /// Share of lookups that succeeded (see [`LookupRecord::success`]).
    pub success_rate: f64,
}

impl Summary {
    /// Summarises `records`.
    pub fn of(records: &[LookupRecord]) -> Summary {
        let n = records.len();
        if n == 0 {
            return Summary::default();
        }
        let mut queries: Vec<u32> = records.iter().map(|r| r.queries).collect();
        let mut rounds: Vec<u32> = records.iter().map(|r| r.rounds).collect();
        let mut times: Vec<f64> = records.iter().filter_map(|r| r.duration).map(|d| d.as_secs_f64() * 1e3).collect();
        let mut values_times: Vec<f64> =
            records.iter().filter_map(|r| r.values_after).map(|d| d.as_secs_f64() * 1e3).collect();
        values_times.sort_by(f64::total_cmp);
        queries.sort_unstable();
        rounds.sort_unstable();
        times.sort_by(f64::total_cmp);
        Summary {
            lookups: n,
            finished: records.iter().filter(|r| r.outcome.is_some()).count(),
            queries_median: quantile(&queries, 0.5),
            queries_p90: quantile(&queries, 0.9),
            queries_mean: queries.iter().map(|&q| f64::from(q)).sum::<f64>() / n as f64,
            rounds_median: quantile(&rounds, 0.5),
            rounds_p90: quantile(&rounds, 0.9),
            time_median_ms: quantile(&times, 0.5),
            time_p90_ms: quantile(&times, 0.9),
            time_p99_ms: quantile(&times, 0.99),
            values_time_median_ms: quantile(&values_times, 0.5),
            values_time_p90_ms: quantile(&values_times, 0.9),
            values_time_p99_ms: quantile(&values_times, 0.99),
            recall_mean: records.iter().map(LookupRecord::recall).sum::<f64>() / n as f64,
            recall8_mean: records.iter().map(LookupRecord::recall8).sum::<f64>() / n as f64,
            exact_rate: records.iter().filter(|r| r.found == r.k).count() as f64 / n as f64,
            success_rate: records.iter().filter(|r| r.success()).count() as f64 / n as f64,
        }
    }
}

/// One row of output: the summary plus what describes the run.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// `(name, value)` pairs describing the run, printed first, in order.
    pub header: Vec<(String, String)>,
    /// The lookups' figures.
    pub summary: Summary,
    /// `(name, value)` pairs printed after the figures (memory, wall time, counters).
    pub footer: Vec<(String, String)>,
}

fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A value as JSON: numbers as they are, `true`/`false`/`null` as they are, anything else as a
/// string.
fn json_value(v: &str) -> String {
    let numeric = v.parse::<f64>().is_ok_and(f64::is_finite) && !v.starts_with('+') && !v.ends_with('.');
    if numeric || matches!(v, "true" | "false" | "null") { v.to_string() } else { json_string(v) }
}

impl Report {
    fn figures(&self) -> Vec<(&'static str, String)> {
        let s = &self.summary;
        vec![
            ("lookups", s.lookups.to_string()),
            ("finished", s.finished.to_string()),
            ("queries_median", s.queries_median.to_string()),
            ("queries_p90", s.queries_p90.to_string()),
            ("queries_mean", format!("{:.2}", s.queries_mean)),
            ("rounds_median", s.rounds_median.to_string()),
            ("rounds_p90", s.rounds_p90.to_string()),
            ("time_median_ms", format!("{:.0}", s.time_median_ms)),
            ("time_p90_ms", format!("{:.0}", s.time_p90_ms)),
            ("time_p99_ms", format!("{:.0}", s.time_p99_ms)),
            ("values_time_median_ms", format!("{:.0}", s.values_time_median_ms)),
            ("values_time_p90_ms", format!("{:.0}", s.values_time_p90_ms)),
            ("values_time_p99_ms", format!("{:.0}", s.values_time_p99_ms)),
            ("recall_mean", format!("{:.4}", s.recall_mean)),
            ("recall8_mean", format!("{:.4}", s.recall8_mean)),
            ("exact_rate", format!("{:.4}", s.exact_rate)),
            ("success_rate", format!("{:.4}", s.success_rate)),
        ]
    }

    /// A two-column human table.
    pub fn table(&self) -> String {
        let rows: Vec<(String, String)> = self
            .header
            .iter()
            .cloned()
            .chain(self.figures().into_iter().map(|(k, v)| (k.to_string(), v)))
            .chain(self.footer.iter().cloned())
            .collect();
        let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        let mut out = String::new();
        for (k, v) in rows {
            let _ = writeln!(out, "{k:<width$}  {v}");
        }
        out
    }

    /// One JSON object with every field.
    pub fn json(&self) -> String {
        let mut parts = Vec::new();
        for (k, v) in &self.header {
            parts.push(format!("{}:{}", json_string(k), json_value(v)));
        }
        for (k, v) in self.figures() {
            parts.push(format!("{}:{}", json_string(k), json_value(&v)));
        }
        for (k, v) in &self.footer {
            parts.push(format!("{}:{}", json_string(k), json_value(v)));
        }
        format!("{{{}}}", parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_quantiles_pick_an_observed_value() {
        let v = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
        assert_eq!(quantile(&v, 0.5), 5);
        assert_eq!(quantile(&v, 0.9), 9);
        assert_eq!(quantile(&v, 1.0), 10);
        assert_eq!(quantile(&v, 0.0), 1);
        assert_eq!(quantile::<u32>(&[], 0.5), 0);
    }

    #[test]
    fn the_json_form_quotes_text_and_leaves_numbers_bare() {
        let r = Report {
            header: vec![("build".into(), "preseed".into()), ("nodes".into(), "100".into())],
            summary: Summary::default(),
            footer: vec![("note".into(), "a \"b\"".into())],
        };
        let j = r.json();
        assert!(j.starts_with("{\"build\":\"preseed\",\"nodes\":100,"), "{j}");
        assert!(j.contains("\"recall_mean\":0.0000"));
        assert!(j.ends_with("\"note\":\"a \\\"b\\\"\"}"), "{j}");
    }
}

//! The result tables: median [min–max] spreads over repetitions, ratios of medians, verdicts
//! against targets, padded columns, and the header line every table ends its header with.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// Median, minimum and maximum of some figures.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Spread {
    /// The median.
    pub(crate) median: f64,
    /// The smallest.
    pub(crate) min: f64,
    /// The largest.
    pub(crate) max: f64,
}

impl Spread {
    /// The spread of `values` (NaNs left out; all NaN if none is left).
    pub(crate) fn of(mut values: Vec<f64>) -> Self {
        values.retain(|v| v.is_finite());
        if values.is_empty() {
            return Self {
                median: f64::NAN,
                min: f64::NAN,
                max: f64::NAN,
            };
        }
        values.sort_by(f64::total_cmp);
        let mid = values.len() / 2;
        let median = if values.len() % 2 == 1 {
            values[mid]
        } else {
            (values[mid - 1] + values[mid]) / 2.0
        };
        Self {
            median,
            min: values[0],
            max: values[values.len() - 1],
        }
    }

    /// The spread of one figure of each report.
    pub(crate) fn of_each<'a, R: 'a>(
        reports: impl IntoIterator<Item = &'a R>,
        figure: impl Fn(&R) -> f64,
    ) -> Self {
        Self::of(reports.into_iter().map(figure).collect())
    }

    /// `median [min–max]`, or just the value when they are all equal.
    pub(crate) fn show(&self, decimals: usize) -> String {
        if self.min == self.max {
            format!("{:.*}", decimals, self.median)
        } else {
            format!(
                "{:.*} [{:.*}–{:.*}]",
                decimals, self.median, decimals, self.min, decimals, self.max
            )
        }
    }

    /// The ratio of this median to `reference`'s, with two decimals.
    pub(crate) fn ratio_to(&self, reference: &Self) -> String {
        format!("{:.2}", self.median / reference.median)
    }
}

/// One figure of a report as a table row: its name, its decimals, whether a ratio between two
/// servers or codecs means something, and how to read it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Metric<R> {
    /// The row's name.
    pub(crate) name: &'static str,
    /// Decimals shown.
    pub(crate) decimals: usize,
    /// Whether the table shows a ratio for it.
    pub(crate) ratio: bool,
    /// Reads the figure from a report.
    pub(crate) value: fn(&R) -> f64,
}

impl<R> Metric<R> {
    /// A metric.
    pub(crate) const fn new(
        name: &'static str,
        decimals: usize,
        ratio: bool,
        value: fn(&R) -> f64,
    ) -> Self {
        Self {
            name,
            decimals,
            ratio,
            value,
        }
    }

    /// The spread of this figure over `reports`.
    pub(crate) fn spread<'a>(&self, reports: impl IntoIterator<Item = &'a R>) -> Spread
    where
        R: 'a,
    {
        Spread::of_each(reports, self.value)
    }
}

/// PASS or FAIL.
pub(crate) fn verdict(pass: bool) -> &'static str {
    if pass {
        "PASS"
    } else {
        "FAIL"
    }
}

/// Left-aligns `text` in `width` characters (counting chars, not bytes, for µ and ×).
pub(crate) fn pad(text: &str, width: usize) -> String {
    let len = text.chars().count();
    format!("{text}{}", " ".repeat(width.saturating_sub(len)))
}

/// Rows of cells, the first one the header: each column as wide as its widest cell, columns
/// two spaces apart, a rule of dashes under the header as wide as the table.
#[derive(Debug, Default)]
pub(crate) struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with this header row.
    pub(crate) fn new(header: Vec<String>) -> Self {
        Self { rows: vec![header] }
    }

    /// Appends a row (as many cells as the header).
    pub(crate) fn push(&mut self, row: Vec<String>) {
        self.rows.push(row);
    }

    /// The last row whose first cell is `label`.
    pub(crate) fn row_mut(&mut self, label: &str) -> Option<&mut Vec<String>> {
        self.rows.iter_mut().rev().find(|row| row[0] == label)
    }

    /// Writes the table to `out`.
    pub(crate) fn render(&self, out: &mut String) {
        let columns = self.rows[0].len();
        let widths: Vec<usize> = (0..columns)
            .map(|c| {
                self.rows
                    .iter()
                    .map(|row| row[c].chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        for (i, row) in self.rows.iter().enumerate() {
            let cells: Vec<String> = row
                .iter()
                .zip(&widths)
                .map(|(cell, &width)| pad(cell, width))
                .collect();
            let _ = writeln!(out, "{}", cells.join("  ").trim_end());
            if i == 0 {
                let total = widths.iter().sum::<usize>() + 2 * (columns - 1);
                let _ = writeln!(out, "{}", "-".repeat(total));
            }
        }
    }
}

/// The wall time of a run and the machine's load averages before and after it.
#[derive(Debug)]
pub(crate) struct Stopwatch {
    started: Instant,
    load_before: String,
}

impl Stopwatch {
    /// Starts timing now.
    pub(crate) fn start() -> Self {
        Self {
            started: Instant::now(),
            load_before: load_average(),
        }
    }

    /// Time since the start.
    pub(crate) fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// `loadavg before: …; after: …; wall time N s` as of now.
    pub(crate) fn summary(&self) -> String {
        format!(
            "loadavg before: {}; after: {}; wall time {:.0} s",
            self.load_before,
            load_average(),
            self.elapsed().as_secs_f64()
        )
    }
}

/// `/proc/loadavg`, trimmed (empty if unreadable).
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .trim()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreads() {
        let spread = Spread::of(vec![3.0, f64::NAN, 1.0, 2.0]);
        assert_eq!((spread.median, spread.min, spread.max), (2.0, 1.0, 3.0));
        assert_eq!(spread.show(1), "2.0 [1.0–3.0]");
        assert_eq!(Spread::of(vec![4.0, 6.0]).median, 5.0);
        assert_eq!(Spread::of(vec![7.0]).show(0), "7");
        assert!(Spread::of(vec![f64::NAN]).median.is_nan());
        assert_eq!(
            Spread::of(vec![3.0]).ratio_to(&Spread::of(vec![2.0])),
            "1.50"
        );
    }

    #[test]
    fn tables_pad_columns_and_trim_lines() {
        let mut table = Table::new(vec!["metric".into(), "a".into(), "target".into()]);
        table.push(vec!["µs/msg".into(), "1234".into(), String::new()]);
        table.push(vec!["x".into(), "5".into(), "≥ 2×".into()]);
        let mut out = String::new();
        table.render(&mut out);
        assert_eq!(
            out,
            "metric  a     target\n--------------------\nµs/msg  1234\nx       5     ≥ 2×\n"
        );
    }
}

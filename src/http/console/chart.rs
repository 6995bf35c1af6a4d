//! The console's charts as geometry: pure functions from numbers to what an SVG draws, so the
//! drawing is tested without a browser. A chart is a column of rows, one per value: a label
//! line, a bar, and for the funnel a note line. Bars are measured in percent of the chart's
//! width and rows in pixels, so the SVG fills any width (down to a phone's) while its text keeps
//! its size.

use crate::analytics::metrics::FunnelStep;

/// Height of a bar, px.
pub const BAR_HEIGHT: u32 = 18;
/// Smallest drawn width of a bar whose value is not zero, percent: still visible.
const MIN_VISIBLE: f64 = 0.5;

/// One row of a chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Baseline of the label line, px from the top.
    pub label_y: u32,
    pub label: String,
    /// Top of the bar, px.
    pub bar_y: u32,
    /// The bar's width, percent of the chart's width.
    pub width: f64,
    /// What was lost since the row before, drawn right after the bar, percent (funnel only).
    pub lost: f64,
    /// Baseline of the note line, px (0: no note).
    pub note_y: u32,
    pub note: String,
}

impl Row {
    /// Where the lost part starts, percent.
    pub fn lost_x(&self) -> f64 {
        self.width
    }
}

/// A chart: its rows and its height, px.
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    pub height: u32,
    pub rows: Vec<Row>,
}

/// `value` as a percentage of `max`, to two decimals; 0 when `max` is not positive, and at
/// least [`MIN_VISIBLE`] for a value above zero.
pub fn scale(value: i64, max: i64) -> f64 {
    if max <= 0 || value <= 0 {
        return 0.0;
    }
    let pct = (value.min(max) as f64 * 100.0 / max as f64 * 100.0).round() / 100.0;
    pct.max(MIN_VISIBLE)
}

/// `signed_up` → `Signed up`: a step's code as a label.
pub fn humanize(code: &str) -> String {
    let words = code.replace('_', " ");
    let mut chars = words.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Lays out rows of (label, value, note) from the top, scaled to the largest value; `lost`
/// gives each row's drop since the row before, in the same units.
fn rows(items: Vec<(String, i64, i64, String)>) -> Chart {
    const LABEL: u32 = 16;
    const GAP: u32 = 14;
    let max = items.iter().map(|i| i.1).max().unwrap_or(0);
    let mut y = 0;
    let mut out = Vec::with_capacity(items.len());
    for (label, value, lost, note) in items {
        let label_y = y + LABEL - 3;
        let bar_y = y + LABEL + 2;
        let mut next = bar_y + BAR_HEIGHT;
        let note_y = if note.is_empty() {
            0
        } else {
            next += 16;
            next - 3
        };
        let width = scale(value, max);
        // The lost part spans from this bar to where the previous one ended.
        let lost = if lost > 0 {
            ((scale(value + lost, max) - width) * 100.0).round() / 100.0
        } else {
            0.0
        };
        out.push(Row {
            label_y,
            label,
            bar_y,
            width,
            lost: lost.max(0.0),
            note_y,
            note,
        });
        y = next + GAP;
    }
    Chart {
        height: y.saturating_sub(GAP),
        rows: out,
    }
}

/// The funnel: a row per step, whatever steps there are, each with its tenants, its
/// conversion from the step before and how many dropped there (drawn after the bar).
pub fn funnel(steps: &[FunnelStep]) -> Chart {
    rows(
        steps
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let note = if i == 0 {
                    "where the funnel starts".to_string()
                } else {
                    format!(
                        "{}% of the step before · {} dropped",
                        s.step_conversion, s.dropped
                    )
                };
                let label = format!("{} · {}", humanize(s.step), s.tenants);
                (label, s.tenants, s.dropped, note)
            })
            .collect(),
    )
}

/// A histogram: a row per (bucket label, count).
pub fn histogram(buckets: &[(&str, i64)]) -> Chart {
    rows(
        buckets
            .iter()
            .map(|(label, n)| {
                let tenants = if *n == 1 { "tenant" } else { "tenants" };
                (format!("{label} · {n} {tenants}"), *n, 0, String::new())
            })
            .collect(),
    )
}

/// The heat class of a percentage (0–100) for the cohorts' table: five steps, `heat-0` (none)
/// to `heat-4` (75 % and more).
pub fn heat(pct: f64) -> &'static str {
    match pct {
        p if p >= 75.0 => "heat-4",
        p if p >= 50.0 => "heat-3",
        p if p >= 25.0 => "heat-2",
        p if p > 0.0 => "heat-1",
        _ => "heat-0",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analytics::metrics::funnel as counts_to_funnel;

    #[test]
    fn values_scale_to_the_largest_and_small_ones_stay_visible() {
        assert_eq!(scale(50, 200), 25.0);
        assert_eq!(scale(1, 3), 33.33);
        assert_eq!(scale(200, 200), 100.0);
        assert_eq!(
            scale(1, 100_000),
            MIN_VISIBLE,
            "one tenant of many is still drawn"
        );
        assert_eq!(scale(0, 10), 0.0);
        assert_eq!(scale(5, 0), 0.0, "nothing to scale to");
        assert_eq!(scale(300, 200), 100.0, "never wider than the chart");
    }

    #[test]
    fn the_funnel_draws_every_step_with_its_drop_after_the_bar() {
        let steps = counts_to_funnel(&[
            ("signed_up", 200),
            ("paid", 150),
            ("first_login", 60),
            ("teammate_invited", 0),
        ]);
        let chart = funnel(&steps);
        assert_eq!(chart.rows.len(), 4, "a step added later is drawn too");
        let widths: Vec<f64> = chart.rows.iter().map(|r| r.width).collect();
        assert_eq!(widths, [100.0, 75.0, 30.0, 0.0]);
        let lost: Vec<f64> = chart.rows.iter().map(|r| r.lost).collect();
        assert_eq!(lost, [0.0, 25.0, 45.0, 30.0]);
        for (row, prev) in chart.rows.iter().skip(1).zip(&chart.rows) {
            assert_eq!(
                row.lost_x() + row.lost,
                prev.width,
                "the drop fills the gap to the bar above"
            );
        }
        assert_eq!(chart.rows[0].label, "Signed up · 200");
        assert_eq!(chart.rows[1].note, "75% of the step before · 50 dropped");
        assert_eq!(chart.rows[3].label, "Teammate invited · 0");
    }

    #[test]
    fn rows_stack_downwards_without_overlapping() {
        let chart = histogram(&[("< 5 min", 3), ("5–15 min", 1), ("≥ 7 days", 0)]);
        let mut bottom = 0;
        for r in &chart.rows {
            assert!(r.label_y > bottom, "the label starts below the row before");
            assert!(r.bar_y > r.label_y, "the bar is under its label");
            assert_eq!(r.note_y, 0, "a histogram has no notes");
            bottom = r.bar_y + BAR_HEIGHT;
        }
        assert_eq!(chart.height, bottom, "the chart ends with its last bar");
        assert_eq!(chart.rows[1].label, "5–15 min · 1 tenant");
        assert_eq!(chart.rows[0].width, 100.0);
        assert_eq!(chart.rows[1].width, 33.33);
        let funnel_chart = funnel(&counts_to_funnel(&[("signed_up", 1)]));
        let r = &funnel_chart.rows[0];
        assert!(r.note_y > r.bar_y + BAR_HEIGHT, "the note is under the bar");
        assert_eq!(funnel_chart.height, r.note_y + 3);
    }

    #[test]
    fn an_empty_chart_has_no_height() {
        assert_eq!(
            histogram(&[]),
            Chart {
                height: 0,
                rows: vec![]
            }
        );
        let zero = histogram(&[("< 5 min", 0)]);
        assert_eq!(zero.rows[0].width, 0.0);
    }

    #[test]
    fn the_heat_scale_has_five_steps() {
        let classes: Vec<&str> = [0.0, 0.1, 24.9, 25.0, 50.0, 74.9, 75.0, 100.0]
            .into_iter()
            .map(heat)
            .collect();
        assert_eq!(
            classes,
            [
                "heat-0", "heat-1", "heat-1", "heat-2", "heat-3", "heat-3", "heat-4", "heat-4"
            ]
        );
    }

    #[test]
    fn codes_read_as_labels() {
        assert_eq!(humanize("first_document"), "First document");
        assert_eq!(humanize(""), "");
    }
}

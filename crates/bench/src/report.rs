//! One result row, as markdown or JSON.

use serde_json::json;

/// A target a row is checked against: always a ratio of two rates measured side by side in
/// one run, never an absolute rate or latency (the machine's speed moves 2× within a day, so
/// an absolute target would read a slow machine as a regression and hide a regression behind
/// a fast one). Rows without a ratio are plain figures.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Target {
    /// The ratio must be at most this.
    RatioAtMost(f64),
    /// The ratio must be at least this.
    RatioAtLeast(f64),
}

#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub(crate) scenario: String,
    pub(crate) ops: u64,
    pub(crate) ops_per_sec: f64,
    pub(crate) p50_us: Option<f64>,
    pub(crate) p99_us: Option<f64>,
    /// The ratio and what it is a ratio of.
    pub(crate) ratio: Option<(f64, String)>,
    pub(crate) target: Option<Target>,
    /// An approximate answer's recall@10 and the least its target allows: the row's target is
    /// met only at that recall too.
    pub(crate) recall: Option<(f64, f64)>,
    pub(crate) note: Option<String>,
}

impl Row {
    pub(crate) fn new(scenario: impl Into<String>, ops: u64, ops_per_sec: f64) -> Self {
        Self {
            scenario: scenario.into(),
            ops,
            ops_per_sec,
            p50_us: None,
            p99_us: None,
            ratio: None,
            target: None,
            recall: None,
            note: None,
        }
    }

    pub(crate) fn skipped(scenario: impl Into<String>, why: impl Into<String>) -> Self {
        Self { note: Some(why.into()), ..Self::new(scenario, 0, 0.0) }
    }

    pub(crate) fn latency(mut self, p50_us: f64, p99_us: f64) -> Self {
        self.p50_us = Some(p50_us);
        self.p99_us = Some(p99_us);
        self
    }

    pub(crate) fn ratio(mut self, ratio: f64, of: impl Into<String>) -> Self {
        self.ratio = Some((ratio, of.into()));
        self
    }

    pub(crate) fn target(mut self, target: Target) -> Self {
        self.target = Some(target);
        self
    }

    /// The row's recall@10, which its target requires to be at least `least`.
    pub(crate) fn recall(mut self, recall: f64, least: f64) -> Self {
        self.recall = Some((recall, least));
        self
    }

    pub(crate) fn note(mut self, note: impl Into<String>) -> Self {
        self.note = Some(note.into());
        self
    }

    /// Whether the target is met (`None` without a target or when skipped).
    pub(crate) fn met(&self) -> Option<bool> {
        if self.ops == 0 {
            return None;
        }
        let ratio = self.ratio.as_ref().map(|(r, _)| *r);
        let recalled = self.recall.is_none_or(|(recall, least)| recall >= least);
        Some(
            recalled
                && match self.target? {
                    Target::RatioAtMost(limit) => ratio? <= limit,
                    Target::RatioAtLeast(limit) => ratio? >= limit,
                },
        )
    }

    fn target_text(&self) -> String {
        let recall = self.recall.map(|(_, least)| format!(" at recall@10 ≥ {least}")).unwrap_or_default();
        match self.target {
            None => String::new(),
            Some(Target::RatioAtMost(x)) => format!("ratio ≤ {x}{recall}"),
            Some(Target::RatioAtLeast(x)) => format!("ratio ≥ {x}{recall}"),
        }
    }

    pub(crate) fn json(&self) -> String {
        json!({
            "scenario": self.scenario,
            "ops": self.ops,
            "ops_per_sec": (self.ops_per_sec * 10.0).round() / 10.0,
            "p50_us": self.p50_us.map(|v| (v * 10.0).round() / 10.0),
            "p99_us": self.p99_us.map(|v| (v * 10.0).round() / 10.0),
            "ratio": self.ratio.as_ref().map(|(r, _)| (r * 1000.0).round() / 1000.0),
            "ratio_of": self.ratio.as_ref().map(|(_, of)| of.clone()),
            "target": self.target.map(|_| self.target_text()),
            "recall_at_10": self.recall.map(|(recall, _)| (recall * 1000.0).round() / 1000.0),
            "met": self.met(),
            "note": self.note,
        })
        .to_string()
    }
}

pub(crate) fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| scenario | ops | ops/s | p50 µs | p99 µs | ratio | ratio of | target | status |\n|---|---:|---:|---:|---:|---:|---|---|---|\n",
    );
    let num = |v: Option<f64>| v.map(|v| format!("{v:.1}")).unwrap_or_default();
    for row in rows {
        let note = row.note.as_deref().map(|note| format!(" ({note})")).unwrap_or_default();
        let status = match row.met() {
            Some(true) => format!("met{note}"),
            Some(false) => format!("**missed**{note}"),
            None => row.note.clone().unwrap_or_default(),
        };
        let (ratio, of) = match &row.ratio {
            Some((r, of)) => (format!("{r:.3}"), of.clone()),
            None => (String::new(), String::new()),
        };
        out.push_str(&format!(
            "| {} | {} | {:.0} | {} | {} | {} | {} | {} | {} |\n",
            row.scenario,
            row.ops,
            row.ops_per_sec,
            num(row.p50_us),
            num(row.p99_us),
            ratio,
            of,
            row.target_text(),
            status
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_with_a_recall_is_met_only_at_that_recall() {
        let fast = || Row::new("approximate", 10, 1.0).ratio(0.1, "p50").target(Target::RatioAtMost(0.2));
        assert_eq!(fast().met(), Some(true));
        assert_eq!(fast().recall(0.96, 0.95).met(), Some(true));
        assert_eq!(fast().recall(0.76, 0.95).met(), Some(false));
        assert_eq!(fast().recall(0.76, 0.95).target_text(), "ratio ≤ 0.2 at recall@10 ≥ 0.95");
        assert!(table(&[fast().recall(0.76, 0.95)]).contains("**missed**"));
    }
}

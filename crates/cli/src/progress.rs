//! Progress of long work (export, import, copy, prune) on stderr: a live counter when stderr is
//! a terminal, a plain line every 1000 items and at the end otherwise (logs, CI).

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::error::note;

/// How many items between two plain progress lines.
const EVERY: u64 = 1000;

/// A counter of items done, shown on stderr.
pub(crate) struct Progress {
    bar: Option<ProgressBar>,
    label: &'static str,
    count: u64,
    next_line: u64,
}

impl Progress {
    /// A counter of `label` (e.g. `"messages exported"`), starting at zero.
    pub(crate) fn new(label: &'static str) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new_spinner();
            let style = ProgressStyle::with_template("{spinner} {msg}: {pos} ({per_sec}, {elapsed})")
                .unwrap_or_else(|_| ProgressStyle::default_spinner());
            bar.set_style(style);
            bar.set_message(label);
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Self { bar, label, count: 0, next_line: EVERY }
    }

    /// Counts `n` more items.
    pub(crate) fn add(&mut self, n: u64) {
        self.count += n;
        match &self.bar {
            Some(bar) => bar.set_position(self.count),
            None if self.count >= self.next_line => {
                note(format!("{}: {}", self.label, self.count));
                self.next_line = (self.count / EVERY + 1) * EVERY;
            }
            None => {}
        }
    }

    /// Clears the live counter and prints the final count.
    pub(crate) fn finish(mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        note(format!("{}: {}", self.label, self.count));
    }
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Progress").field("label", &self.label).field("count", &self.count).finish_non_exhaustive()
    }
}

/// Work that stopped early (an error, Ctrl-C) clears the live counter and leaves the count.
impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
            note(format!("{}: {} (stopped)", self.label, self.count));
        }
    }
}

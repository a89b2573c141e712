//! [`FeedRetention`]: how long a feed keeps its events.

use std::time::Duration;

use crate::model::Timestamp;

/// How long a feed keeps its events: an event goes when it is older than `max_age` or when
/// more than `max_events` newer ones follow it, whichever comes first. The newest event always
/// stays, however old: it holds the head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct FeedRetention {
    /// Events older than this go (`None`: no age limit).
    pub max_age: Option<Duration>,
    /// At most this many events are kept, at least one (`None`: no count limit).
    pub max_events: Option<u64>,
}

impl Default for FeedRetention {
    /// Seven days, and at most a million events.
    fn default() -> Self {
        Self { max_age: Some(Duration::from_secs(7 * 24 * 3600)), max_events: Some(1_000_000) }
    }
}

impl FeedRetention {
    /// Keeps everything (until the host trims the store itself).
    pub fn forever() -> Self {
        Self { max_age: None, max_events: None }
    }

    /// Sets [`max_age`](Self::max_age).
    pub fn with_max_age(mut self, max_age: Option<Duration>) -> Self {
        self.max_age = max_age;
        self
    }

    /// Sets [`max_events`](Self::max_events).
    pub fn with_max_events(mut self, max_events: Option<u64>) -> Self {
        self.max_events = max_events;
        self
    }

    /// The newest position to remove from a feed whose head is `head`, by count alone (the
    /// newest event is always kept, even with `max_events` 0).
    pub fn count_cutoff(&self, head: u64) -> u64 {
        self.max_events.map_or(0, |keep| head.saturating_sub(keep.max(1)))
    }

    /// The time before which events go, by age alone.
    pub fn age_cutoff(&self, now: Timestamp) -> Option<Timestamp> {
        let age = self.max_age?;
        let micros = i64::try_from(age.as_micros()).unwrap_or(i64::MAX);
        Some(Timestamp::from_micros(now.as_micros().saturating_sub(micros)))
    }
}

//! [`FeedRetention`]: how long a feed keeps its events.

use std::time::Duration;

use crate::model::Timestamp;

/// How long a feed keeps its events: an event goes when it is older than `max_age` or when
/// more than `max_events` newer ones follow it, whichever comes first. The newest event always
/// stays, however old: it holds the head.
///
/// The [deltas](crate::feed::Change::delta) of streamed replies (one event per token) go
/// sooner, after `max_delta_age`: they serve followers of a reply while it streams and a
/// reconnect soon after, and the message's final content is the truth. The event stays
/// without its delta, which tells a follower to read the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct FeedRetention {
    /// Events older than this go (`None`: no age limit).
    pub max_age: Option<Duration>,
    /// At most this many events are kept, at least one (`None`: no count limit).
    pub max_events: Option<u64>,
    /// Deltas older than this are dropped from their events (`None`: kept as long as their
    /// events).
    pub max_delta_age: Option<Duration>,
}

impl Default for FeedRetention {
    /// Seven days, and at most a million events; deltas for an hour.
    fn default() -> Self {
        Self {
            max_age: Some(Duration::from_secs(7 * 24 * 3600)),
            max_events: Some(1_000_000),
            max_delta_age: Some(Duration::from_secs(3600)),
        }
    }
}

impl FeedRetention {
    /// Keeps everything (until the host trims the store itself).
    pub fn forever() -> Self {
        Self { max_age: None, max_events: None, max_delta_age: None }
    }

    field_setters! {
        max_age: Option<Duration> => with_max_age,
        max_events: Option<u64> => with_max_events,
        max_delta_age: Option<Duration> => with_max_delta_age,
    }

    /// The newest position to remove from a feed whose head is `head`, by count alone (the
    /// newest event is always kept, even with `max_events` 0).
    pub fn count_cutoff(&self, head: u64) -> u64 {
        self.max_events.map_or(0, |keep| head.saturating_sub(keep.max(1)))
    }

    /// The time before which events go, by age alone.
    pub fn age_cutoff(&self, now: Timestamp) -> Option<Timestamp> {
        Some(before(now, self.max_age?))
    }

    /// The time before which events lose their deltas.
    pub fn delta_cutoff(&self, now: Timestamp) -> Option<Timestamp> {
        Some(before(now, self.max_delta_age?))
    }
}

/// `age` before `now`.
fn before(now: Timestamp, age: Duration) -> Timestamp {
    let micros = i64::try_from(age.as_micros()).unwrap_or(i64::MAX);
    Timestamp::from_micros(now.as_micros().saturating_sub(micros))
}

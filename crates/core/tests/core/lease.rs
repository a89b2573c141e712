//! Leases: one holder at a time.

use std::time::Duration;

use persist_core::lease::{HeldBy, Lease};
use persist_core::{ThreadId, Timestamp};

#[test]
fn one_holder_at_a_time_until_it_expires_or_gives_up() {
    let thread = ThreadId::new("t").unwrap();
    let ttl = Duration::from_secs(10);
    let now = Timestamp::from_micros(1_000_000_000);
    let a = Lease::take(thread.clone(), "n", "a", ttl).unwrap();
    let b = Lease::take(thread.clone(), "n", "b", ttl).unwrap();
    let (held, write) = a.decide(None, now);
    assert!(write && held.is_held_by("a"));
    let (still_a, write) = b.decide(held.clone(), now);
    assert!(!write && still_a.is_held_by("a"));
    let later = now.saturating_add(Duration::from_secs(11));
    let (now_b, write) = b.decide(held.clone(), later);
    assert!(write && now_b.is_held_by("b"));
    let (_, write) = Lease::give_up(thread.clone(), "n", "b").unwrap().decide(held.clone(), now);
    assert!(!write, "b cannot end a's lease");
    let (gone, write) = Lease::give_up(thread, "n", "a").unwrap().decide(held, now);
    assert!(write && gone.is_none());
}

#[test]
fn bad_names_and_durations_are_refused() {
    let thread = ThreadId::new("t").unwrap();
    assert!(Lease::take(thread.clone(), "", "a", Duration::from_secs(1)).is_err());
    assert!(Lease::take(thread.clone(), "n", "a\n", Duration::from_secs(1)).is_err());
    assert!(Lease::take(thread.clone(), "n", "a", Duration::ZERO).is_err());
    assert!(Lease::take(thread, "n", "a", Duration::from_secs(90_000)).is_err());
}

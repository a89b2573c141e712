//! Summaries: ranges, repeats and where a summary is read.

use persist_core::summary::{Summarize, on_runs};
use persist_core::{Content, PersistError, ThreadId, Timestamp};

fn thread() -> ThreadId {
    ThreadId::new("t").unwrap()
}

#[test]
fn a_range_is_checked_before_any_store() {
    let ok = Summarize::new(thread(), 3, Content::text("s"));
    assert!(ok.validate().is_ok());
    assert!(ok.clone().from_seq(4).validate().is_err());
    assert!(ok.clone().from_seq(0).validate().is_err());
    assert!(Summarize::new(thread(), 0, Content::text("s")).validate().is_err());
    assert!(Summarize::new(thread(), 3, Content::placeholder()).validate().is_err());
    assert!(Summarize::new(thread(), 3, Content::text("a\0b")).validate().is_err());
}

#[test]
fn the_same_range_is_one_summary_and_another_ending_there_is_refused() {
    let first = Summarize::new(thread(), 3, Content::text("one"));
    let stored = first.to_summary(Timestamp::now());
    let again = Summarize::new(thread(), 3, Content::text("other words"));
    assert!(again.against_stored(stored.clone()).unwrap().deduplicated);
    let window = Summarize::new(thread(), 3, Content::text("w")).from_seq(2);
    assert!(matches!(window.against_stored(stored), Err(PersistError::InvalidInput { .. })));
}

#[test]
fn a_summary_is_read_where_its_last_message_is_on_the_branch() {
    let runs = [(1, 2), (5, 6)];
    assert!(on_runs(2, &runs) && on_runs(6, &runs));
    assert!(!on_runs(3, &runs) && !on_runs(7, &runs));
}

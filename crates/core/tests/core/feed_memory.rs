//! `MemoryFeed`: retention and reads.

use std::time::Duration;

use persist_core::feed::{Change, FeedRetention, MemoryFeed, ReadFeed};
use persist_core::{Context, MessageId, PersistError, PersistOp, TenantId, ThreadId, Timestamp};

fn change(n: u64) -> Change {
    let thread = ThreadId::new("t").unwrap();
    Change::message(None, thread, PersistOp::Add, MessageId::new(format!("m{n}")).unwrap(), n, 1)
}

#[test]
fn deltas_go_when_their_age_passes_and_their_events_stay() {
    use persist_core::Content;
    let mut feed = MemoryFeed::new(FeedRetention::default().with_max_delta_age(Some(Duration::from_secs(60))));
    let old = Timestamp::now().saturating_sub(Duration::from_secs(120));
    for (n, at) in [(1, old), (2, old), (3, Timestamp::now())] {
        feed.record(change(n).with_delta(Some(Content::text("token"))), at);
    }
    let events = feed.read(&ReadFeed::tenant()).unwrap().events;
    let kept: Vec<_> = events.iter().map(|e| (e.position, e.change.delta.is_some())).collect();
    assert_eq!(kept, [(1, false), (2, false), (3, true)]);
}

#[test]
fn a_thread_reads_its_own_kept_events_among_others() {
    let mut feed = MemoryFeed::new(FeedRetention::forever().with_max_events(Some(5)));
    let (a, b) = (ThreadId::new("a").unwrap(), ThreadId::new("b").unwrap());
    for n in 1..=9 {
        let thread = if n % 3 == 0 { a.clone() } else { b.clone() };
        let id = MessageId::new(format!("m{n}")).unwrap();
        feed.record(Change::message(None, thread, PersistOp::Add, id, n, 1), Timestamp::now());
    }
    // Kept: 5 to 9. Thread a's are 6 and 9; 3 went with retention.
    let read = |query: ReadFeed| feed.read(&query).unwrap().events.iter().map(|e| e.position).collect::<Vec<_>>();
    assert_eq!(read(ReadFeed::thread(a.clone()).after(4)), [6, 9]);
    assert_eq!(read(ReadFeed::thread(a.clone()).after(6)), [9]);
    assert_eq!(read(ReadFeed::thread(b.clone()).after(4).with_limit(2)), [5, 7]);
    let page = feed.read(&ReadFeed::thread(b).after(4).with_limit(2)).unwrap();
    assert!(page.has_more);
    let acme = Context::new().with_tenant(TenantId::new("acme").unwrap());
    assert!(read(ReadFeed::thread(a).after(4).with_context(acme)).is_empty(), "another tenant's thread a");
}

#[test]
fn the_strictest_retention_keeps_the_newest_event_and_answers_a_gap_before_it() {
    for retention in
        [FeedRetention::forever().with_max_events(Some(0)), FeedRetention::forever().with_max_age(Some(Duration::ZERO))]
    {
        let mut feed = MemoryFeed::new(retention);
        // A millisecond apart: two events of one microsecond are equally old (and neither
        // older than the other by a zero age).
        for n in 1..=3 {
            assert_eq!(feed.record(change(n), Timestamp::from_micros(1_000 * n as i64)), n);
        }
        let page = feed.read(&ReadFeed::across_tenants().after(2)).unwrap();
        assert_eq!(page.events.iter().map(|e| e.position).collect::<Vec<_>>(), [3]);
        assert!(matches!(
            feed.read(&ReadFeed::across_tenants().after(1)),
            Err(PersistError::FeedGap { after: 1, trimmed: 2 })
        ));
    }
}

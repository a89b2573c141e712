//! Capturing `tracing` events in a test: [`prepare_capture`].

use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Event, Metadata, Subscriber};

/// Readies this process for tests that capture events with `tracing::subscriber::set_default`:
/// sets, once, a global subscriber that records nothing but is interested in every callsite
/// "sometimes".
///
/// `tracing` caches each callsite's interest for the whole process, from what the subscribers
/// registered at that moment say. Without a global subscriber, a test thread that reaches a
/// callsite while no capturing subscriber is registered can cache "never", and a test that
/// captures on another thread then misses that callsite's events (an access log came back
/// empty at four test threads). "Sometimes" makes every event ask the thread's own subscriber.
/// Call it first in every such test.
pub fn prepare_capture() {
    static SET: std::sync::Once = std::sync::Once::new();
    SET.call_once(|| {
        // Another global subscriber (a test binary's own) is as good: it is never "never" for
        // the callsites a test captures.
        let _ = tracing::subscriber::set_global_default(Inert);
    });
}

/// Interested "sometimes" in every callsite, enabled for nothing.
struct Inert;

impl Subscriber for Inert {
    fn register_callsite(&self, _: &'static Metadata<'static>) -> Interest {
        Interest::sometimes()
    }

    fn enabled(&self, _: &Metadata<'_>) -> bool {
        false
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, _: &Event<'_>) {}

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

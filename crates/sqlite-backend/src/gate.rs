//! The gate: which of a handle's two write connections (the writer task's, the lane's) may
//! hold a transaction, so neither waits on SQLite's lock for the other.

use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;

/// Which of the handle's two write connections may hold a transaction: the writer task's or
/// the lane's, never both, so neither waits on SQLite's lock for the other (a wait there is a
/// sleep of a millisecond or more).
#[derive(Debug, Default)]
pub(crate) struct Gate {
    held: AtomicBool,
    released: Notify,
}

impl Gate {
    /// Takes the gate if nobody holds it.
    pub(crate) fn try_take(&self) -> bool {
        self.held.compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire).is_ok()
    }

    /// Takes the gate, waiting for whoever holds it: the lane's write under way (one insert),
    /// the writer's group, or the checkpointer copying the last frames of the log back.
    pub(crate) async fn take(&self) {
        while !self.try_take() {
            // A release between the failed take and this wait leaves a permit: no wake-up lost.
            // Each release wakes one waiter (of two at most: the writer and the checkpointer),
            // which, holding the gate in turn, wakes the other when it gives it back.
            self.released.notified().await;
        }
    }

    /// Whether somebody holds the gate now.
    pub(crate) fn is_held(&self) -> bool {
        self.held.load(Ordering::Acquire)
    }

    pub(crate) fn give_back(&self) {
        self.held.store(false, Ordering::Release);
        self.released.notify_one();
    }
}

/// The gate, taken by the lane for one write.
pub(crate) struct Held<'a>(pub(crate) &'a Gate);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.give_back();
    }
}

//! Retry writes that failed with a temporary error, on tower's retry machinery.
//!
//! [`RetryPolicy`] is a `tower::retry::Policy`: it retries only errors whose
//! [`is_temporary`](persist_core::PersistError::is_temporary) is true (a busy database, a lock
//! time-out, a timed-out attempt), at most `max_attempts` times in all, waiting an exponential
//! backoff with jitter (tower's `ExponentialBackoff`) between attempts. It never retries
//! `AlreadyExists`, `VersionConflict`, `NotFound`, `ThreadDeleted` or `InvalidInput`: a retry
//! would fail the same way. Reads are retried like writes. `invalidate_session` is never
//! retried: it is compare-and-set, and repeated after an attempt that took effect it would
//! answer `false` for the invalidation that happened. Nor is an appending `update_content`
//! without an expected version: repeated after an attempt that took effect, it would add its
//! text twice (give it an expected version to have it retried).
//!
//! A write can fail *after* it committed (a lost connection, a time-out after the backend
//! acted). The layer gives every `add` and `reserve` without an id a fixed one before the first
//! attempt, so a retry repeats the very same write and the backend answers it with the first
//! copy instead of writing a second one. Idempotency keys do the same across independent
//! retries by the host (a resubmitted request, a restarted process).
//!
//! The answer says what the caller's request did: when an attempt committed and a retry found
//! its copy, the message is the one this request wrote, answered `deduplicated: false` (an
//! indexer that skips duplicates still indexes it). `deduplicated: true` means another request
//! wrote it (the same idempotency key used earlier). With an id the caller chose, the layer
//! cannot tell its own earlier attempt from another request that used that id, and passes the
//! backend's answer on as it is.
//!
//! # Order
//!
//! Put `Retry` **outside** `Timeout` (`.layer(retry).layer(timeout)`): each attempt gets its
//! own time limit and a timed-out attempt is retried. The other way round, one limit covers
//! every attempt and the backoff.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use persist::{args::Add, layer::{RetryLayer, RetryPolicy}, Content, IdempotencyKey, Pipeline, Role, ThreadId};
//! use persist::memory::MemoryBackend;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let policy = RetryPolicy::new().max_attempts(5).backoff(Duration::from_millis(10), Duration::from_secs(1))?;
//! let pipeline = Pipeline::builder().layer(RetryLayer::new(policy)).build(MemoryBackend::new());
//! let add = Add::new(ThreadId::new("t1")?, Role::User, Content::text("hi"))
//!     .with_idempotency_key(IdempotencyKey::new("turn-1")?);
//! pipeline.add(add).await?;
//! # Ok::<_, persist::PersistError>(())
//! # }).unwrap();
//! ```

mod future;
mod layer;

use std::task::{Context, Poll};
use std::time::Duration;

use tower::Service;
use tower::retry::backoff::{Backoff, ExponentialBackoff, ExponentialBackoffMaker, MakeBackoff};
use tower::util::rng::HasherRng;

pub use self::future::ResponseFuture;
pub use self::layer::RetryLayer;
use persist_core::{MessageId, PersistArgs, PersistError, PersistOp, PersistResult};

/// The service of [`RetryLayer`]: tower's `Retry` with a [`RetryPolicy`], after fixing the id
/// of every `add` and `reserve` that has none.
///
/// A backend generates a missing id on each attempt; if an attempt committed and then failed
/// (a time-out, a lost connection), the retry would write a second message under a new id.
/// With the id fixed before the first attempt, every attempt repeats the same write and the
/// backend answers the repeat with the first copy.
#[derive(Debug, Clone)]
pub struct Retry<S> {
    inner: tower::retry::Retry<RetryPolicy, S>,
}

impl<S> Service<PersistArgs> for Retry<S>
where
    S: Service<PersistArgs, Response = PersistResult, Error = PersistError> + Clone,
{
    type Response = PersistResult;
    type Error = PersistError;
    type Future = ResponseFuture<tower::retry::future::ResponseFuture<RetryPolicy, S, PersistArgs>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), PersistError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut args: PersistArgs) -> Self::Future {
        if let PersistArgs::AppendTurn(turn) = &mut args {
            // Each message without an id gets one, so a retry repeats the turn by its ids.
            let mut minted = None;
            for message in turn.messages.iter_mut().filter(|m| m.message_id.is_none()) {
                let id = message.message_id.insert(MessageId::generate());
                minted.get_or_insert_with(|| id.clone());
            }
            return ResponseFuture::new(self.inner.call(args), minted);
        }
        let slot = match &mut args {
            PersistArgs::Add(add) => &mut add.message_id,
            PersistArgs::Reserve(reserve) => &mut reserve.message_id,
            _ => return ResponseFuture::new(self.inner.call(args), None),
        };
        let minted = match slot {
            Some(_) => None,
            None => Some(slot.insert(MessageId::generate()).clone()),
        };
        ResponseFuture::new(self.inner.call(args), minted)
    }
}

/// Which failures to retry, how often, and how long to wait; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    max_attempts: u32,
    min_backoff: Duration,
    max_backoff: Duration,
    jitter: f64,
    attempts: u32,
    backoff: Option<ExponentialBackoff<HasherRng>>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            min_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_secs(2),
            jitter: 1.0,
            attempts: 1,
            backoff: None,
        }
    }
}

impl RetryPolicy {
    /// 3 attempts in all, backoff from 20 ms doubling to at most 2 s, full jitter.
    pub fn new() -> Self {
        Self::default()
    }

    /// Attempts in all, the first included (at least 1).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// The first wait and the cap; each retry doubles the wait.
    ///
    /// # Errors
    ///
    /// `InvalidInput` when `max` is zero or below `min`.
    pub fn backoff(mut self, min: Duration, max: Duration) -> Result<Self, PersistError> {
        self.min_backoff = min;
        self.max_backoff = max;
        self.checked()
    }

    /// How much random extra wait to add, as a fraction of the base wait (0 to 100; default 1).
    ///
    /// # Errors
    ///
    /// `InvalidInput` when out of range.
    pub fn jitter(mut self, jitter: f64) -> Result<Self, PersistError> {
        self.jitter = jitter;
        self.checked()
    }

    fn maker(&self) -> Result<ExponentialBackoffMaker<HasherRng>, PersistError> {
        // A fresh random source per request, so concurrent retriers do not wait in lockstep.
        ExponentialBackoffMaker::new(self.min_backoff, self.max_backoff, self.jitter, HasherRng::new())
            .map_err(|e| PersistError::invalid("retry backoff", e.to_string()))
    }

    fn checked(self) -> Result<Self, PersistError> {
        self.maker()?;
        Ok(self)
    }
}

impl tower::retry::Policy<PersistArgs, PersistResult, PersistError> for RetryPolicy {
    type Future = tokio::time::Sleep;

    fn retry(
        &mut self,
        args: &mut PersistArgs,
        result: &mut Result<PersistResult, PersistError>,
    ) -> Option<Self::Future> {
        match result {
            // Compare-and-set: repeated after an attempt that took effect, it would answer
            // `false` for the invalidation that happened.
            Err(_) if args.op() == PersistOp::InvalidateSession => None,
            // An append without an expected version, repeated after an attempt that took
            // effect, would add its text twice.
            Err(_) if matches!(args, PersistArgs::UpdateContent(u) if u.append && u.expected_version.is_none()) => None,
            Err(error) if error.is_temporary() && self.attempts < self.max_attempts => {
                self.attempts += 1;
                if self.backoff.is_none() {
                    self.backoff = Some(self.maker().ok()?.make_backoff());
                }
                self.backoff.as_mut().map(Backoff::next_backoff)
            }
            _ => None,
        }
    }

    fn clone_request(&mut self, args: &PersistArgs) -> Option<PersistArgs> {
        (self.attempts < self.max_attempts).then(|| args.clone())
    }
}

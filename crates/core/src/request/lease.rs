//! [`Lease`]: a named, expiring claim on a thread that every instance sharing a store sees, so
//! work on a thread (compacting it) runs in one place at a time, and resumes elsewhere when the
//! instance holding the claim dies (the lease expires).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::context::{Context, context_setter};
use crate::model::Timestamp;
use crate::model::error::{PersistError, Result};
use crate::model::id::ThreadId;

/// The longest name or holder of a [`Lease`], in bytes.
pub const MAX_LEASE_NAME_BYTES: usize = 255;

/// Takes, renews or gives up the lease `name` on a thread, for `holder`.
///
/// Taking it succeeds when nobody holds it, when its holder's time ran out, or when `holder`
/// holds it already (a renewal, pushing the expiry to `ttl` from now); otherwise the answer
/// names who holds it and until when. Giving it up ends it only when `holder` holds it. Of
/// takers racing, one gets it. The thread need not exist, and the lease writes nothing of it
/// (no version, no feed event). Leases are per tenant, like threads.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use persist::{lease::{HeldBy, Lease}, Pipeline, ThreadId};
/// use persist::memory::MemoryBackend;
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let store = Pipeline::new(MemoryBackend::new());
/// let thread = ThreadId::new("t1")?;
/// let minute = Duration::from_secs(60);
/// let mine = store.lease(Lease::take(thread.clone(), "compaction", "instance-a", minute)?).await?;
/// assert!(mine.is_held_by("instance-a"));
/// let theirs = store.lease(Lease::take(thread.clone(), "compaction", "instance-b", minute)?).await?;
/// assert!(theirs.is_held_by("instance-a")); // b waits for a
/// store.lease(Lease::give_up(thread.clone(), "compaction", "instance-a")?).await?;
/// let now_b = store.lease(Lease::take(thread, "compaction", "instance-b", minute)?).await?;
/// assert!(now_b.is_held_by("instance-b"));
/// # Ok::<_, persist::PersistError>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Lease {
    /// The thread.
    pub thread_id: ThreadId,
    /// The lease's name (what the work is): 1 to [`MAX_LEASE_NAME_BYTES`] bytes.
    pub name: String,
    /// Who takes or gives it up (an instance's id): 1 to [`MAX_LEASE_NAME_BYTES`] bytes.
    pub holder: String,
    /// How long a taken lease lasts; `None` gives it up.
    pub ttl: Option<Duration>,
    /// Request context: its tenant names the thread's tenant.
    #[serde(default)]
    pub context: Context,
}

impl Lease {
    /// Takes (or renews) `name` on `thread_id` for `holder`, for `ttl`.
    ///
    /// # Errors
    ///
    /// `InvalidInput` per [`validate`](Self::validate).
    pub fn take(
        thread_id: ThreadId,
        name: impl Into<String>,
        holder: impl Into<String>,
        ttl: Duration,
    ) -> Result<Self> {
        let lease =
            Self { thread_id, name: name.into(), holder: holder.into(), ttl: Some(ttl), context: Context::new() };
        lease.validate()?;
        Ok(lease)
    }

    /// Gives up `name` on `thread_id`, if `holder` holds it.
    ///
    /// # Errors
    ///
    /// `InvalidInput` per [`validate`](Self::validate).
    pub fn give_up(thread_id: ThreadId, name: impl Into<String>, holder: impl Into<String>) -> Result<Self> {
        let lease = Self { thread_id, name: name.into(), holder: holder.into(), ttl: None, context: Context::new() };
        lease.validate()?;
        Ok(lease)
    }

    context_setter!(tenant);

    /// Checks the name, the holder and the duration; backends call this first.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for an empty name or holder, one over [`MAX_LEASE_NAME_BYTES`] or
    /// holding a control character, or a duration of zero or over a day.
    pub fn validate(&self) -> Result<()> {
        for (field, value) in [("name", &self.name), ("holder", &self.holder)] {
            if value.is_empty() || value.len() > MAX_LEASE_NAME_BYTES || value.chars().any(char::is_control) {
                return Err(PersistError::invalid(
                    field,
                    format!("must be 1 to {MAX_LEASE_NAME_BYTES} bytes without control characters"),
                ));
            }
        }
        if let Some(ttl) = self.ttl
            && (ttl.is_zero() || ttl > Duration::from_secs(86_400))
        {
            return Err(PersistError::invalid("ttl", "must be more than zero and at most a day"));
        }
        Ok(())
    }

    /// What a store holding `current` (holder, expiry) answers at `now`, and whether it writes
    /// the answer (`true`: store it, or with `None` remove the lease). The rule every backend
    /// applies inside its write.
    pub fn decide(&self, current: Option<Leased>, now: Timestamp) -> (Option<Leased>, bool) {
        let live = current.filter(|held| held.expires_at > now);
        match self.ttl {
            Some(ttl) => match live {
                Some(held) if held.holder != self.holder => (Some(held), false),
                _ => (Some(Leased { holder: self.holder.clone(), expires_at: now.saturating_add(ttl) }), true),
            },
            None => match live {
                Some(held) if held.holder != self.holder => (Some(held), false),
                _ => (None, true),
            },
        }
    }
}

/// Who holds a lease and until when (the answer to a [`Lease`]: `None` when nobody does).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Leased {
    /// The holder.
    pub holder: String,
    /// When the lease ends unless renewed.
    pub expires_at: Timestamp,
}

impl Leased {
    /// `holder`'s lease until `expires_at`.
    pub fn new(holder: impl Into<String>, expires_at: Timestamp) -> Self {
        Self { holder: holder.into(), expires_at }
    }
}

/// Whether a lease answer says `holder` holds it.
pub trait HeldBy {
    /// Whether `holder` holds the lease.
    fn is_held_by(&self, holder: &str) -> bool;
}

impl HeldBy for Option<Leased> {
    fn is_held_by(&self, holder: &str) -> bool {
        self.as_ref().is_some_and(|held| held.holder == holder)
    }
}

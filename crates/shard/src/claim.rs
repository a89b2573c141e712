//! The mover's claim on a tenant's move: a lease on the tenant's placement record, so one mover
//! of a tenant works at a time, renewed beside the move's steps and checked between them.

use std::time::{Duration, Instant};

use persist_core::lease::Lease;
use persist_core::{Context, PersistError, Pipeline, Result, TenantId, ThreadId, Timestamp};

use super::directory::{Directory, record_id};

/// The mover's lease on the tenant's record: one mover of a tenant at a time.
pub(super) struct Claim<'a> {
    directory: &'a Pipeline,
    thread: ThreadId,
    context: Context,
    holder: String,
    ttl: Duration,
    renewed: std::sync::Mutex<Instant>,
}

impl<'a> Claim<'a> {
    /// Takes the claim, waiting for another mover's to run out.
    pub(super) async fn take(
        directory: &'a Directory,
        tenant: Option<&TenantId>,
        holder: String,
        ttl: Duration,
    ) -> Result<Self> {
        let claim = Self {
            directory: directory.store(),
            thread: record_id(tenant),
            context: directory.context(),
            holder,
            ttl,
            renewed: std::sync::Mutex::new(Instant::now()),
        };
        loop {
            let lease = Lease::take(claim.thread.clone(), "move", &claim.holder, claim.ttl)?;
            let held = claim.directory.lease(lease.with_context(claim.context.renewed())).await?;
            match held {
                Some(held) if held.holder != claim.holder => {
                    let left = held.expires_at.as_micros().saturating_sub(Timestamp::now().as_micros()).max(1_000);
                    tracing::info!(holder = %held.holder, "another mover holds the tenant's move: waiting for its claim");
                    tokio::time::sleep(Duration::from_micros(left as u64)).await;
                }
                _ => {
                    // Held from now: a wait for another mover's claim is not time this one
                    // went without renewing (its first renewal failed after a wait longer
                    // than its own claim).
                    *claim.renewed.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Instant::now();
                    return Ok(claim);
                }
            }
        }
    }

    /// Keeps the claim beside the move: renews it every third of its TTL, however long the
    /// move's steps take (a step slower than the claim lost it when renewals came only between
    /// steps). Runs until the claim is lost, and answers why: a renewal failed, found another
    /// mover holding the tenant, or came back after the claim could have run out (another
    /// mover may have worked meanwhile). The move is then stopped where it is, as a kill would
    /// stop it, and finishes when run again.
    pub(super) async fn keep(&self) -> PersistError {
        loop {
            tokio::time::sleep_until((self.renewed() + self.ttl / 3).into()).await;
            if let Err(lost) = self.renew_now().await {
                return lost;
            }
        }
    }

    /// Between two steps: fails if the claim ran out (its renewals beside the move stalled or
    /// came too late), so that no step begins without it.
    pub(super) fn check(&self) -> Result<()> {
        let elapsed = self.renewed().elapsed();
        if elapsed >= self.ttl { Err(ran_out(elapsed)) } else { Ok(()) }
    }

    /// When the claim was last renewed: when the renewal was asked for (the lease runs from a
    /// moment between the asking and the answer, so counting from the asking never counts too
    /// long a claim).
    fn renewed(&self) -> Instant {
        *self.renewed.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn renew_now(&self) -> Result<()> {
        let (asked, previous) = (Instant::now(), self.renewed());
        if asked.duration_since(previous) >= self.ttl {
            return Err(ran_out(asked.duration_since(previous)));
        }
        let lease = Lease::take(self.thread.clone(), "move", &self.holder, self.ttl)?;
        match self.directory.lease(lease.with_context(self.context.renewed())).await? {
            Some(held) if held.holder != self.holder => Err(PersistError::Backend {
                message: format!("another mover ({}) took over the move", held.holder).into(),
                source: None,
            }),
            // Answered after the claim could have run out: the renewal may have come too late.
            _ if previous.elapsed() >= self.ttl => Err(ran_out(previous.elapsed())),
            _ => {
                let mut renewed = self.renewed.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                *renewed = (*renewed).max(asked);
                Ok(())
            }
        }
    }

    pub(super) async fn give_up(&self) {
        if let Ok(lease) = Lease::give_up(self.thread.clone(), "move", &self.holder) {
            // The claim runs out by itself otherwise.
            let _ = self.directory.lease(lease.with_context(self.context.renewed())).await;
        }
    }
}

fn ran_out(elapsed: Duration) -> PersistError {
    PersistError::temporary(format!("this mover's claim ran out ({elapsed:?} without renewing it): run the move again"))
}

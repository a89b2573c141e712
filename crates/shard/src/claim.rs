//! The mover's claim on a tenant's move: a lease on the tenant's placement record, so one mover
//! of a tenant works at a time, renewed between the steps of the copy.

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

    /// Renews the claim once a third of it has passed; fails if it ran out meanwhile (another
    /// mover may have worked since) or another mover holds it.
    pub(super) async fn renew(&self) -> Result<()> {
        let elapsed = self.renewed.lock().unwrap_or_else(std::sync::PoisonError::into_inner).elapsed();
        if elapsed >= self.ttl {
            return Err(PersistError::temporary(format!(
                "this mover's claim ran out ({elapsed:?} without renewing it): run the move again"
            )));
        }
        if elapsed < self.ttl / 3 {
            return Ok(());
        }
        let lease = Lease::take(self.thread.clone(), "move", &self.holder, self.ttl)?;
        match self.directory.lease(lease.with_context(self.context.renewed())).await? {
            Some(held) if held.holder != self.holder => Err(PersistError::Backend {
                message: format!("another mover ({}) took over the move", held.holder).into(),
                source: None,
            }),
            _ => {
                *self.renewed.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Instant::now();
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

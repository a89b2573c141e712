//! Moving a tenant from one shard to another: [`Shards::move_tenant`].

use std::time::{Duration, Instant};

use persist_core::Pipeline;
use persist_core::TenantId;
use persist_core::Timestamp;
use persist_core::{PersistError, Result};

use super::Shards;
use super::claim::Claim;
use super::copying;
use super::directory::{Move, MoveState, record_id};

/// How [`Shards::move_tenant`] runs.
#[derive(Debug, Clone)]
#[must_use]
pub struct MoveOptions {
    max_switch: Duration,
    claim_ttl: Duration,
    holder: String,
}

impl Default for MoveOptions {
    fn default() -> Self {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        Self {
            max_switch: Duration::from_secs(5),
            claim_ttl: Duration::from_secs(10),
            holder: format!("mover-{}-{nanos:x}", std::process::id()),
        }
    }
}

impl MoveOptions {
    /// The defaults: writes refused for at most 5 s, a claim of 10 s.
    pub fn new() -> Self {
        Self::default()
    }

    /// The longest time writes of the tenant are refused (default 5 s): the switch copies what
    /// changed since the last pass in it, after waiting one placement TTL, or gives up and
    /// tries again. At least three placement TTLs and a little.
    pub fn max_switch(mut self, max: Duration) -> Self {
        self.max_switch = max;
        self
    }

    /// How long the mover's claim on the move lasts without being renewed (default 10 s): a
    /// second mover of the same tenant waits for it, so a run that was killed is resumed once
    /// its claim ran out. Longer than two placement TTLs and a little. The mover renews it every
    /// third of it, beside its steps however long they take, and stops (resumable) if a
    /// renewal fails or comes back too late.
    pub fn claim_ttl(mut self, ttl: Duration) -> Self {
        self.claim_ttl = ttl;
        self
    }
}

/// What [`Shards::move_tenant`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Moved {
    /// The shard the tenant left.
    pub from: String,
    /// The shard the tenant is on.
    pub to: String,
    /// The tenant was on `to` already, with no move in progress: nothing was done.
    pub already: bool,
    /// Threads written to the new shard by the copying passes and the switch (a thread changed
    /// between passes counts once per pass that copied it).
    pub copied: u64,
    /// Copying passes run (in this call).
    pub passes: u32,
    /// Switches tried (in this call): more than one when one did not end within `max_switch`
    /// (writes resumed on the old shard in between).
    pub switches: u32,
    /// How long writes were refused by the switch that placed the tenant (in this call).
    pub refused_for: Option<Duration>,
    /// Threads of the old shard changed after the switch began, carried to the new one.
    pub carried: u64,
    /// Threads erased from the old shard (each leaves a tombstone there).
    pub erased: u64,
}

/// The most copying passes before a switch.
const MAX_PASSES: u32 = 3;

/// The most switches tried by one call.
const MAX_SWITCHES: u32 = 3;

impl Shards {
    /// Moves `tenant` (`None`: the threads without a tenant) to the shard named `to`: copies
    /// its threads, switches its placement refusing its writes for at most
    /// [`max_switch`](MoveOptions::max_switch), checks and erases what the old shard held.
    /// Idempotent: called again after any interruption, it goes on from the step its record
    /// tells; a tenant already on `to` answers [`Moved::already`].
    ///
    /// The steps, each recorded in the tenant's placement record (its metadata `move`, changed with
    /// compare-and-set on the record's version) before it runs, so a move stopped anywhere (a
    /// crash, a kill, a lost connection) is finished by calling it again:
    ///
    /// 1. **Copying.** Every thread of the tenant is copied from the old shard to the new one
    ///    (messages of every branch with their ids, seqs, versions and times, their vectors as
    ///    stored, so recall finds on the new shard what it found on the old, and each model's
    ///    first vector fixes its dimensions there, session bindings, summaries), then read back
    ///    and compared, and every working memory document the new
    ///    shard does not hold as the old one does is written there, at its version; a thread that differs in the new shard (changed
    ///    since an earlier pass) is erased there and copied again, one the old shard no longer
    ///    lists is erased from the new one. Passes repeat (at most three) until one finds nothing
    ///    changed. The tenant is read and written on the old shard meanwhile.
    /// 2. **Switching.** The record says writes are refused until `max_switch` from now, and the
    ///    directory's epoch moves; the mover waits one placement TTL for every instance to see it
    ///    (an instance sees a switch within its TTL, and once seen, reads the record again at each
    ///    write), then copies what changed once more and checks each thread. If that ended in time,
    ///    the record places the tenant on the new shard; otherwise writes resume on the old shard
    ///    and the switch is tried again (three times, then the move fails, resumable).
    /// 3. **Cleaning.** After another TTL (every instance now reads and writes the new shard), each
    ///    thread the old shard still holds is compared with the new shard's: what was written to
    ///    the old one late (a write already on its way when the switch began: past what the
    ///    switch recorded it copied) is carried over, then the old copy is purged (refused if
    ///    the thread, one of its summaries or one of its session bindings changed since it was
    ///    read: it is checked again, and what came late is carried), leaving a tombstone, so
    ///    that a write that still reaches the old shard is refused (`ThreadDeleted`), never
    ///    taken and lost. What the switch copied and the new shard deleted since stays deleted. A
    ///    late change that collides with a change made on the new shard since (the same message
    ///    changed on both) stops the move before that thread is erased: the error names it, and
    ///    both copies stay for an operator.
    ///
    /// Writes refused while switching answer [`PersistError::Temporary`], which a retry layer
    /// retries; reads are never refused.
    ///
    /// The instances' clocks must agree to well within a TTL (writers compare the switch's end
    /// with their own clock). Every instance must read placements with a TTL no longer than this one's
    /// ([`placement_ttl`](super::ShardsBuilder::placement_ttl)): the move waits this
    /// instance's TTL for the others to see each step. The shards' stores should read from
    /// their primaries (a standby may not have the last writes yet). Tombstones of threads
    /// deleted before the move are not carried (no listing reaches them), nor leases, nor the
    /// dimensions of a model none of the tenant's vectors uses any more (its next vector fixes
    /// them on the new shard); a shard that keeps no vectors cannot take a tenant that has some
    /// (`Unsupported`); the old
    /// shard keeps a tombstone of each thread moved (a later move back erases them) and its copy
    /// of the working memory documents, unreachable once the tenant is placed; its change
    /// feed tells of the erasures, and the tenant's feed positions are the new shard's.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for an unknown shard, the directory's tenant, `max_switch` shorter than
    /// two TTLs, or a move of the tenant to another shard in progress; `Temporary` when three
    /// switches in a row did not end within `max_switch`; `Backend` naming a thread that does
    /// not read back as written or whose late changes collide with the new shard's; any error
    /// of the stores. Each leaves the move resumable.
    pub async fn move_tenant(&self, tenant: Option<&TenantId>, to: &str, options: MoveOptions) -> Result<Moved> {
        self.refuse_hidden(tenant)?;
        let target = self
            .shard(to)
            .ok_or_else(|| PersistError::invalid("to", format!("this instance has no shard named {to:?}")))?;
        let ttl = self.inner.directory.ttl();
        if options.max_switch < ttl * 3 + settle(ttl) {
            let least = ttl * 3 + settle(ttl);
            return Err(PersistError::invalid(
                "max_switch",
                format!("must be at least {least:?}: three placement TTLs and a little"),
            ));
        }
        if options.claim_ttl <= (ttl + settle(ttl)) * 2 {
            let least = (ttl + settle(ttl)) * 2;
            return Err(PersistError::invalid(
                "claim_ttl",
                format!("must be longer than {least:?}: two placement TTLs and a little"),
            ));
        }
        let claim = Claim::take(&self.inner.directory, tenant, options.holder.clone(), options.claim_ttl).await?;
        // Renewed beside the move's steps: a lost claim stops the move where it is.
        let moved = tokio::select! {
            moved = self.run_move(tenant, to, target, &options, &claim) => moved,
            lost = claim.keep() => Err(lost),
        };
        claim.give_up().await;
        moved
    }

    /// [`move_tenant`](Self::move_tenant) once the claim is held.
    async fn run_move(
        &self,
        tenant: Option<&TenantId>,
        to: &str,
        target: &Pipeline,
        options: &MoveOptions,
        claim: &Claim<'_>,
    ) -> Result<Moved> {
        let (directory, ttl) = (&self.inner.directory, self.inner.directory.ttl());
        let (mut record, mut placement) = match directory.record(tenant).await? {
            Some(found) => found,
            None => {
                directory.place(tenant, self.hashed(tenant)).await?;
                directory.record(tenant).await?.ok_or_else(|| gone(tenant))?
            }
        };
        let mut moved = Moved {
            from: placement.moving.as_ref().map_or_else(|| placement.shard.clone(), |m| m.from.clone()),
            to: to.to_owned(),
            already: false,
            copied: 0,
            passes: 0,
            switches: 0,
            refused_for: None,
            carried: 0,
            erased: 0,
        };
        // A step found in the record, not set by this call, is redone from its start (its
        // epoch move may not have happened: the mover may have stopped between the two).
        let mut resumed = true;
        loop {
            claim.check()?;
            let Some(moving) = placement.moving.clone() else {
                if placement.shard == to {
                    moved.already = true;
                    return Ok(moved);
                }
                let from = placement.shard.clone();
                self.store(&from)?;
                let step = Move { from: from.clone(), to: to.to_owned(), state: MoveState::Copying };
                record = directory.change(tenant, record.version, &from, Some(&step)).await?;
                placement = directory.placement_of(&record)?;
                moved.from = from;
                resumed = false;
                continue;
            };
            if moving.to != to {
                return Err(PersistError::invalid(
                    "to",
                    format!(
                        "a move to shard {:?} is in progress: finish it first (move to {:?})",
                        moving.to, moving.to
                    ),
                ));
            }
            let source = self.store(&moving.from)?;
            let (next, shard) = match moving.state {
                MoveState::Copying => {
                    loop {
                        moved.passes += 1;
                        let synced = copying::sync(source, target, tenant, false, claim).await?;
                        moved.copied += synced.copied;
                        if (synced.copied == 0 && synced.unsettled == 0) || moved.passes >= MAX_PASSES {
                            break;
                        }
                    }
                    (switching(options.max_switch), &moving.from)
                }
                // Resumed with too little of its time left (or none): a switch anew.
                MoveState::Switching { until, .. }
                    if resumed && Timestamp::now().saturating_add(ttl * 2 + settle(ttl)) >= until =>
                {
                    (switching(options.max_switch), &moving.from)
                }
                MoveState::Switching { since, until } => {
                    if resumed {
                        // The stopped mover may not have moved the epoch after the record.
                        directory.bump(tenant, "switching", &moving.from).await?;
                    }
                    moved.switches += 1;
                    let began = Instant::now();
                    tokio::time::sleep(ttl + settle(ttl)).await;
                    let synced = copying::sync(source, target, tenant, true, claim).await?;
                    moved.copied += synced.copied;
                    let settled = synced.unsettled == 0;
                    if settled {
                        directory.save_copied(tenant, since, &synced.threads).await?;
                    }
                    if settled && Timestamp::now().saturating_add(ttl) < until {
                        moved.refused_for = Some(began.elapsed());
                        (MoveState::Cleaning { since }, &moving.to)
                    } else if moved.switches >= MAX_SWITCHES {
                        let step = Move { state: MoveState::Copying, ..moving.clone() };
                        directory.change(tenant, record.version, &moving.from, Some(&step)).await?;
                        return Err(PersistError::temporary(format!(
                            "{MAX_SWITCHES} switches in a row did not end within max_switch ({:?}): the tenant is \
                             written too much to switch in that time; run the move again, or give it a longer max_switch",
                            options.max_switch
                        )));
                    } else {
                        (MoveState::Copying, &moving.from)
                    }
                }
                MoveState::Cleaning { since } => {
                    if resumed {
                        directory.bump(tenant, "cleaning", to).await?;
                    }
                    tokio::time::sleep(ttl + settle(ttl)).await;
                    let cleaned = copying::clean(source, target, tenant, claim, directory, since).await?;
                    moved.carried += cleaned.carried;
                    moved.erased += cleaned.erased;
                    directory.change(tenant, record.version, to, None).await?;
                    directory.forget_copied(tenant).await?;
                    return Ok(moved);
                }
            };
            let step = Move { state: next, ..moving.clone() };
            record = directory.change(tenant, record.version, shard, Some(&step)).await?;
            placement = directory.placement_of(&record)?;
            resumed = false;
        }
    }
}

/// A switch beginning now, ending at the latest `max` from now.
fn switching(max: Duration) -> MoveState {
    let since = Timestamp::now();
    MoveState::Switching { since, until: since.saturating_add(max) }
}

/// How long past a TTL the mover waits for requests already on their way.
fn settle(ttl: Duration) -> Duration {
    (ttl / 4).max(Duration::from_millis(20))
}

fn gone(tenant: Option<&TenantId>) -> PersistError {
    PersistError::Backend {
        message: format!("the placement record {} was written and is gone", record_id(tenant)).into(),
        source: None,
    }
}

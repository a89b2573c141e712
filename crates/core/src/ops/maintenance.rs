//! Cleaning up stranded reservations: [`Pipeline::cleanup_stranded`], a find and writes
//! (interruptions or deletes) sent through the whole stack.

use crate::args::UpdateContent;
use crate::maintenance::{CleanupReport, CleanupStranded, Maintenance, RefusedCleanup, Stranding};
use crate::model::error::{PersistError, Result};
use crate::model::{Message, Timestamp};
use crate::pipeline::Pipeline;
use crate::read::{FindStranded, Stranded};
use crate::request::write::Delete;

impl Pipeline {
    /// Marks interrupted (or deletes) reservations stranded by streams that never finished,
    /// **through the pipeline**.
    ///
    /// Finds `Reserved` messages nobody wrote to for the given age (a stream still sending
    /// content updates is active) with a `find_stranded` sent through the whole stack (a route
    /// asks every store it reaches), then cleans each with a write sent through the whole stack
    /// too, so the layer that redirected the `reserve` redirects the cleanup to the same store,
    /// and observers see it:
    ///
    /// - by default ([`Stranding::Interrupt`]) an [`UpdateContent::interrupted`]: the reply
    ///   becomes [`Interrupted`](crate::Status::Interrupted) with the text its stream wrote,
    ///   and reads list it; a reservation its stream wrote nothing to
    ///   ([`Content::is_blank`](crate::Content::is_blank): its generator died before the first
    ///   token) is deleted instead, as nothing the user saw is lost and a model provider would
    ///   refuse an empty reply (reported in [`CleanupReport::deleted`]);
    /// - with [`CleanupStranded::deleting`], a `delete`, its text lost.
    ///
    /// Each write expects the version found, so a reservation written to in the meantime is
    /// kept as it is (counted as skipped). Each names the tenant of the reservation's thread.
    /// The find and the writes carry a [`Maintenance`] extension in their context.
    ///
    /// A cleanup reaches every tenant's threads unless it is confined to one with
    /// [`CleanupStranded::only_tenant`].
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// use persist::args::{Reserve, UpdateContent};
    /// use persist::{maintenance::CleanupStranded, Content, Pipeline, Role, Status, ThreadId};
    /// use persist::memory::MemoryBackend;
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let pipeline = Pipeline::new(MemoryBackend::new());
    /// let thread = ThreadId::new("t1")?;
    /// let reply = pipeline.reserve(Reserve::new(thread.clone(), Role::Assistant)).await?.message;
    /// let token = UpdateContent::appending(thread, reply.id, Content::text("Half an ans"));
    /// pipeline.update_content(token).await?;
    /// // The generator dies here; nothing writes to the reply again.
    /// tokio::time::sleep(Duration::from_millis(5)).await;
    /// let report = pipeline.cleanup_stranded(CleanupStranded::new(Duration::from_millis(1))).await?;
    /// let kept = &report.interrupted[0].message;
    /// assert_eq!((kept.status, &kept.content), (Status::Interrupted, &Content::text("Half an ans")));
    /// # Ok::<_, persist::PersistError>(())
    /// # }).unwrap();
    /// ```
    ///
    /// A reservation a layer refuses to clean (`Rejected`, `Unreadable`) is kept and reported in
    /// [`CleanupReport::refused`]; the cleanup goes on with the others.
    ///
    /// # Errors
    ///
    /// The first error of a find, or of a write other than a version conflict, a reservation
    /// gone or finished meanwhile, or a layer's refusal of one reservation.
    pub async fn cleanup_stranded(&self, cleanup: CleanupStranded) -> Result<CleanupReport> {
        let context = cleanup.context.consistent().with_extension(Maintenance);
        let query = FindStranded::new(Timestamp::now().saturating_sub(cleanup.older_than))
            .with_limit(cleanup.limit)
            .across_tenants(cleanup.across_tenants)
            .with_context(context.clone());
        let found = self.find_stranded(query).await?;
        let mut report = CleanupReport::default();
        for stranded in found {
            let context = context.renewed().for_tenant(stranded.tenant.clone());
            match self.settle_stranded(&stranded.message, cleanup.stranding, context).await {
                Ok(Settled::Interrupted(written)) => {
                    report.interrupted.push(Stranded::new(stranded.tenant.clone(), written));
                }
                Ok(Settled::Deleted) => report.deleted.push(stranded),
                // Gone meanwhile (another cleanup, a delete): nothing of ours to report.
                Ok(Settled::Gone) => {}
                // Written to, finished or gone meanwhile: kept as it is.
                Err(error) if error.is_changed_or_gone() => report.skipped += 1,
                // This reservation's own refusal (its tenant's keys destroyed, a policy): one
                // reservation must not keep every other one stranded.
                Err(error @ (PersistError::Rejected { .. } | PersistError::Unreadable { .. })) => {
                    report.refused.push(RefusedCleanup { stranded, reason: error.to_string() });
                }
                Err(error) => return Err(error),
            }
        }
        Ok(report)
    }
}

/// What [`Pipeline::settle_stranded`] did with one reservation.
#[derive(Debug)]
pub(crate) enum Settled {
    /// Marked interrupted: the message as written.
    Interrupted(Message),
    /// Deleted by this call.
    Deleted,
    /// Deleted already (another cleanup, a delete).
    Gone,
}

impl Pipeline {
    /// Settles one stranded reservation `message` (found at its version) through the whole
    /// stack, in `context` (its thread's tenant): marked interrupted, or deleted when `stranding`
    /// says so or when its stream wrote nothing ([`Content::is_blank`](crate::Content::is_blank):
    /// nothing the user saw is lost, and a provider would refuse the empty reply). The write
    /// expects the version found: one written to meanwhile is kept (a `VersionConflict`).
    pub(crate) async fn settle_stranded(
        &self,
        message: &Message,
        stranding: Stranding,
        context: crate::Context,
    ) -> Result<Settled> {
        if stranding == Stranding::Interrupt && !message.content.is_blank() {
            let interrupt = UpdateContent::interrupted(message.thread_id.clone(), message.id.clone())
                .with_expected_version(message.version)
                .with_context(context);
            return Ok(Settled::Interrupted(self.update_content(interrupt).await?.message));
        }
        let delete = Delete::message(message.thread_id.clone(), message.id.clone())
            .with_expected_version(message.version)
            .with_context(context);
        let deleted = self.delete(delete).await?;
        Ok(if deleted.message_ids.contains(&message.id) { Settled::Deleted } else { Settled::Gone })
    }
}

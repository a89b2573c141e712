//! Cleaning up stranded reservations: [`PipelineExt::cleanup_stranded`](crate::PipelineExt::cleanup_stranded), a find and writes
//! (interruptions or deletes) sent through the whole stack.

use crate::maintenance::{CleanupReport, CleanupStranded, Maintenance, RefusedCleanup, Stranding};
use persist_core::Pipeline;
use persist_core::args::Delete;
use persist_core::args::UpdateContent;
use persist_core::read::{FindStranded, Stranded};
use persist_core::{Message, Timestamp};
use persist_core::{PersistError, Result};

/// See [`PipelineExt::cleanup_stranded`](crate::PipelineExt::cleanup_stranded).
pub(crate) async fn cleanup_stranded(pipeline: &Pipeline, cleanup: CleanupStranded) -> Result<CleanupReport> {
    let context = cleanup.context.consistent().with_extension(Maintenance);
    let query = FindStranded::new(Timestamp::now().saturating_sub(cleanup.older_than))
        .with_limit(cleanup.limit)
        .across_tenants(cleanup.across_tenants)
        .with_context(context.clone());
    let found = pipeline.find_stranded(query).await?;
    let mut report = CleanupReport::default();
    for stranded in found {
        let context = context.renewed().for_tenant(stranded.tenant.clone());
        match settle_stranded(pipeline, &stranded.message, cleanup.stranding, context).await {
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

/// Settles one stranded reservation `message` (found at its version) through the whole
/// stack, in `context` (its thread's tenant): marked interrupted, or deleted when `stranding`
/// says so or when its stream wrote nothing ([`Content::is_blank`](persist_core::Content::is_blank):
/// nothing the user saw is lost, and a provider would refuse the empty reply). The write
/// expects the version found: one written to meanwhile is kept (a `VersionConflict`).
pub(crate) async fn settle_stranded(
    pipeline: &Pipeline,
    message: &Message,
    stranding: Stranding,
    context: persist_core::Context,
) -> Result<Settled> {
    if stranding == Stranding::Interrupt && !message.content.is_blank() {
        let interrupt = UpdateContent::interrupted(message.thread_id.clone(), message.id.clone())
            .with_expected_version(message.version)
            .with_context(context);
        return Ok(Settled::Interrupted(pipeline.update_content(interrupt).await?.message));
    }
    let delete = Delete::message(message.thread_id.clone(), message.id.clone())
        .with_expected_version(message.version)
        .with_context(context);
    let deleted = pipeline.delete(delete).await?;
    Ok(if deleted.message_ids.contains(&message.id) { Settled::Deleted } else { Settled::Gone })
}

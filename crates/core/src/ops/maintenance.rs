//! Cleaning up stranded reservations: [`Pipeline::cleanup_stranded`], a find and deletes
//! sent through the whole stack.

use crate::maintenance::{CleanupReport, CleanupStranded, Maintenance};
use crate::model::Timestamp;
use crate::model::error::{PersistError, Result};
use crate::pipeline::Pipeline;
use crate::read::FindStranded;
use crate::request::write::Delete;

impl Pipeline {
    /// Deletes reservations stranded by streams that never finished, **through the pipeline**.
    ///
    /// Finds `Reserved` messages nobody wrote to for the given age (a stream still sending
    /// content updates is active) with a `find_stranded` sent through the whole stack (a route
    /// asks every store it reaches), then deletes each with a `delete` sent through the whole
    /// stack too, so the layer that redirected the `reserve` redirects the cleanup to the same
    /// store, and observers see it. Each delete expects the version found, so a reservation
    /// filled in the meantime is kept (counted as skipped). Each delete names the tenant of
    /// the reservation's thread. The find and the deletes carry a [`Maintenance`] extension in
    /// their context.
    ///
    /// A cleanup reaches every tenant's threads unless it is confined to one with
    /// [`CleanupStranded::only_tenant`].
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// use persist::{args::Reserve, maintenance::CleanupStranded, Pipeline, Role, ThreadId};
    /// use persist::memory::MemoryBackend;
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let pipeline = Pipeline::new(MemoryBackend::new());
    /// pipeline.reserve(Reserve::new(ThreadId::new("t1")?, Role::Assistant)).await?;
    /// tokio::time::sleep(Duration::from_millis(5)).await;
    /// let report = pipeline.cleanup_stranded(CleanupStranded::new(Duration::from_millis(1))).await?;
    /// assert_eq!(report.deleted.len(), 1);
    /// # Ok::<_, persist::PersistError>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// The first error of a find or a delete other than a version conflict.
    pub async fn cleanup_stranded(&self, cleanup: CleanupStranded) -> Result<CleanupReport> {
        let context = cleanup.context.with_extension(Maintenance);
        let query = FindStranded::new(Timestamp::now().saturating_sub(cleanup.older_than))
            .with_limit(cleanup.limit)
            .across_tenants(cleanup.across_tenants)
            .with_context(context.clone());
        let found = self.find_stranded(query).await?;
        let mut report = CleanupReport::default();
        for stranded in found {
            let message = &stranded.message;
            let delete = Delete::message(message.thread_id.clone(), message.id.clone())
                .with_expected_version(message.version)
                .with_context(context.renewed().for_tenant(stranded.tenant.clone()));
            match self.delete(delete).await {
                Ok(deleted) if deleted.message_ids.contains(&message.id) => report.deleted.push(stranded),
                // Gone meanwhile (another cleanup, a delete): nothing of ours to report.
                Ok(_) => {}
                Err(PersistError::VersionConflict { .. }) => report.skipped += 1,
                Err(error) => return Err(error),
            }
        }
        Ok(report)
    }
}

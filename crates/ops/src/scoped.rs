//! [`PipelineExt`] for a [`Scoped`] handle: each operation sent with the handle's context.

use std::future::Future;

use persist_core::raw::{across_tenants_refused, scoped_pipeline};
use persist_core::{MessageId, Result, Scoped, ThreadId};

use crate::PipelineExt;
use crate::compaction::{Compaction, Compactor, Outcome};
use crate::lifecycle::{BranchFromTurn, Fork, ForkReport, Pop, Popped, Prune, PruneReport};
use crate::live::{
    AppendReply, FinishReply, FollowParts, FollowReply, PartStream, RenewReply, ReplyStarted, ReplyStream,
    ReplyWritten, StartReply, StopReply, StopSignal, StopState,
};
use crate::maintenance::{CleanupReport, CleanupStranded};

impl PipelineExt for Scoped {
    fn fork(&self, fork: Fork) -> impl Future<Output = Result<ForkReport>> + Send {
        scoped_pipeline(self).fork(fork.with_context(self.context().renewed()))
    }

    fn prune(&self, prune: Prune) -> impl Future<Output = Result<PruneReport>> + Send {
        let tenant = self.context().tenant().cloned();
        let refused = !prune.across_tenants && prune.context.tenant() != tenant.as_ref();
        let prune = prune.with_context(self.context().renewed()).only_tenant(tenant);
        let pipeline = scoped_pipeline(self);
        async move {
            if refused {
                return Err(across_tenants_refused());
            }
            pipeline.prune(prune).await
        }
    }

    fn pop(&self, pop: Pop) -> impl Future<Output = Result<Popped>> + Send {
        scoped_pipeline(self).pop(pop.with_context(self.context().renewed()))
    }

    fn branch_from_turn(&self, request: BranchFromTurn) -> impl Future<Output = Result<Option<MessageId>>> + Send {
        scoped_pipeline(self).branch_from_turn(request.with_context(self.context().renewed()))
    }

    fn cleanup_stranded(&self, cleanup: CleanupStranded) -> impl Future<Output = Result<CleanupReport>> + Send {
        let tenant = self.context().tenant().cloned();
        let refused = !cleanup.across_tenants && cleanup.context.tenant() != tenant.as_ref();
        let cleanup = cleanup.with_context(self.context().renewed()).only_tenant(tenant);
        let pipeline = scoped_pipeline(self);
        async move {
            if refused {
                return Err(across_tenants_refused());
            }
            pipeline.cleanup_stranded(cleanup).await
        }
    }

    fn follow_reply(&self, request: FollowReply) -> impl Future<Output = Result<ReplyStream>> + Send {
        scoped_pipeline(self).follow_reply(request.with_context(self.context().renewed()))
    }

    fn follow_parts(&self, request: FollowParts) -> impl Future<Output = Result<PartStream>> + Send {
        scoped_pipeline(self).follow_parts(request.with_context(self.context().renewed()))
    }

    fn stop_reply(&self, request: StopReply) -> impl Future<Output = Result<StopState>> + Send {
        scoped_pipeline(self).stop_reply(request.with_context(self.context().renewed()))
    }

    fn watch_stop(&self, request: StopReply) -> impl Future<Output = Result<StopSignal>> + Send {
        scoped_pipeline(self).watch_stop(request.with_context(self.context().renewed()))
    }

    fn start_reply(&self, request: StartReply) -> impl Future<Output = Result<ReplyStarted>> + Send {
        scoped_pipeline(self).start_reply(request.with_context(self.context().renewed()))
    }

    fn append_reply(&self, request: AppendReply) -> impl Future<Output = Result<ReplyWritten>> + Send {
        scoped_pipeline(self).append_reply(request.with_context(self.context().renewed()))
    }

    fn renew_reply(&self, request: RenewReply) -> impl Future<Output = Result<ReplyWritten>> + Send {
        scoped_pipeline(self).renew_reply(request.with_context(self.context().renewed()))
    }

    fn finish_reply(&self, request: FinishReply) -> impl Future<Output = Result<ReplyWritten>> + Send {
        scoped_pipeline(self).finish_reply(request.with_context(self.context().renewed()))
    }

    fn compact<C: Compactor>(
        &self,
        compaction: &Compaction<C>,
        thread: ThreadId,
    ) -> impl Future<Output = Result<Outcome>> + Send {
        compaction.compact(scoped_pipeline(self), thread, self.context().renewed())
    }
}

//! [`Scoped`]: a pipeline handle that stamps one [`Context`] (a tenant) on every call.

use std::future::Future;

use crate::args::{Add, AppendTurn, Context, Delete, PersistArgs, Reserve, Restore, Update, UpdateContent};
use crate::branch::{Branches, ListBranches};
use crate::feed::{FeedPage, FeedScope, ReadFeed, Subscription};
use crate::model::error::{PersistError, Result};
use crate::model::{Message, Thread};
use crate::pipeline::Capabilities;
use crate::pipeline::Pipeline;
use crate::read::{FindStranded, GetMessage, GetThread, ListMessages, ListThreads, Page, Ping, Stranded, ThreadCursor};
use crate::request::result::Restored;
use crate::request::result::{Added, ContentUpdated, Deleted, PersistResult, Reserved, TurnAppended, Updated};
use crate::session::{
    Bind, InvalidateSession, ListBindings, ResetSession, Resolution, Resolve, SessionBinding, StoredBinding,
};

/// A [`Pipeline`] handle scoped to a [`Context`]: every write and read it sends carries that
/// context (its tenant, principal and extensions, with a request id of its own per call),
/// whatever context the request was built with, and one [`Consistency`](crate::Consistency)
/// (the context's, or one of the handle's own): its reads see its writes even when a copy of
/// the store that lags answers them (replicas). It offers no way to send an unscoped call, so
/// a request handler given a `Scoped` for the caller's tenant cannot forget the tenant.
///
/// Nothing across tenants goes through it: a listing of threads, a search for stranded
/// reservations or a change-feed read that asks `across_tenants` is refused (`Rejected`) before
/// any layer sees it.
///
/// # Example
///
/// ```
/// use persist::{args::Add, read::GetThread, Content, Context, Pipeline, Role, TenantId, ThreadId};
/// use persist::memory::MemoryBackend;
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let pipeline = Pipeline::new(MemoryBackend::new());
/// let acme = pipeline.scoped(Context::new().with_tenant(TenantId::new("acme")?));
/// let globex = pipeline.scoped(Context::new().with_tenant(TenantId::new("globex")?));
/// let thread = ThreadId::new("general")?;
/// acme.add(Add::new(thread.clone(), Role::User, Content::text("hi"))).await?;
/// assert!(acme.get_thread(GetThread::new(thread.clone())).await?.is_some());
/// assert!(globex.get_thread(GetThread::new(thread)).await?.is_none()); // not globex's
/// # Ok::<_, persist::PersistError>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct Scoped {
    pipeline: Pipeline,
    context: Context,
}

macro_rules! scoped_call {
    ($(#[$doc:meta])* $name:ident, $args:ty => $out:ty) => {
        $(#[$doc])*
        ///
        /// # Errors
        ///
        /// As the pipeline's method of the same name.
        pub async fn $name(&self, request: $args) -> Result<$out> {
            self.pipeline.$name(request.with_context(self.context.renewed())).await
        }
    };
}

impl Scoped {
    pub(crate) fn new(pipeline: Pipeline, context: Context) -> Self {
        // The handle's calls see each other's writes, whichever copy of the store answers.
        Self { pipeline, context: context.consistent() }
    }

    pub(crate) fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    /// The context every call carries (each with a request id of its own).
    pub fn context(&self) -> &Context {
        &self.context
    }

    scoped_call!(/** Appends a complete message. */ add, Add => Added);
    scoped_call!(/** Appends a placeholder. */ reserve, Reserve => Reserved);
    scoped_call!(/** Appends a whole turn in one transaction (see [`AppendTurn`]). */ append_turn, AppendTurn => TurnAppended);
    scoped_call!(/** Writes a message's content (see [`UpdateContent`]). */ update_content, UpdateContent => ContentUpdated);
    scoped_call!(/** Patches a message or a thread. */ update, Update => Updated);
    scoped_call!(/** Deletes a message or a thread. */ delete, Delete => Deleted);
    scoped_call!(/** Reads one message. */ get, GetMessage => Option<Message>);
    scoped_call!(/** Reads one thread. */ get_thread, GetThread => Option<Thread>);
    scoped_call!(/** Lists a page of a thread's messages. */ list, ListMessages => Page<Message>);
    scoped_call!(/** Lists a message's siblings or a thread's leaves; see [`Pipeline::branches`]. */ branches, ListBranches => Branches);
    scoped_call!(/** Writes a message's embedding; see [`Pipeline::embed`]. */ embed, crate::vector::Embed => crate::vector::Embedded);
    scoped_call!(/** Finds the scope's messages nearest a vector; see [`Pipeline::nearest`]. */ nearest, crate::vector::Nearest => Vec<crate::vector::Neighbour>);
    scoped_call!(/** Lists a page of the vectors stored for a thread's messages; see [`Pipeline::embeddings`]. */ embeddings, crate::vector::ListEmbeddings => Page<crate::vector::StoredEmbedding, crate::vector::EmbeddingCursor>);
    scoped_call!(/** Reads the tenant's working memory document of a resource; see [`Pipeline::read_memory`]. */ read_memory, crate::working::ReadMemory => Option<crate::working::WorkingMemory>);
    scoped_call!(/** Patches or replaces the tenant's working memory document of a resource; see [`Pipeline::write_memory`]. */ write_memory, crate::working::WriteMemory => crate::working::WorkingMemory);
    /// Lists a page of the scope's threads.
    ///
    /// # Errors
    ///
    /// `Rejected` for a listing [across tenants](ListThreads::across_tenants); otherwise as
    /// [`Pipeline::threads`].
    pub async fn threads(&self, request: ListThreads) -> Result<Page<Thread, ThreadCursor>> {
        if request.across_tenants {
            return Err(across_tenants());
        }
        self.pipeline.threads(request.with_context(self.context.renewed())).await
    }

    /// Searches the text of the scope's messages (one of its threads, or all of them); see
    /// [`search`](crate::search).
    ///
    /// # Errors
    ///
    /// `Rejected` for a search [across tenants](crate::search::SearchScope::AcrossTenants);
    /// otherwise as [`Pipeline::search`].
    pub async fn search(
        &self,
        request: crate::search::Search,
    ) -> Result<Page<crate::search::SearchHit, crate::search::SearchCursor>> {
        if request.is_across_tenants() {
            return Err(across_tenants());
        }
        self.pipeline.search(request.with_context(self.context.renewed())).await
    }

    /// Lists the tenant's working memory documents; see [`Pipeline::memories`].
    ///
    /// # Errors
    ///
    /// `Rejected` for a listing [across tenants](crate::working::ListMemories::across_tenants);
    /// otherwise as [`Pipeline::memories`].
    pub async fn memories(
        &self,
        request: crate::working::ListMemories,
    ) -> Result<Page<crate::working::WorkingMemory, crate::working::MemoryCursor>> {
        if request.across_tenants {
            return Err(across_tenants());
        }
        self.pipeline.memories(request.with_context(self.context.renewed())).await
    }

    /// Finds the scope's reservations nobody wrote to since a cutoff.
    ///
    /// # Errors
    ///
    /// `Rejected` for a search [across tenants](FindStranded::across_tenants); otherwise as
    /// [`Pipeline::find_stranded`].
    pub async fn find_stranded(&self, request: FindStranded) -> Result<Vec<Stranded>> {
        if request.across_tenants {
            return Err(across_tenants());
        }
        self.pipeline.find_stranded(request.with_context(self.context.renewed())).await
    }

    /// Reads the change-feed events of one of the scope's threads or working memory documents
    /// ([`ReadFeed::memory`]), or of all of them ([`ReadFeed::tenant`]).
    ///
    /// # Errors
    ///
    /// `Rejected` for a read [across tenants](ReadFeed::across_tenants); otherwise as
    /// [`Pipeline::read_feed`].
    pub async fn read_feed(&self, query: ReadFeed) -> Result<FeedPage> {
        if !within_tenant(&query) {
            return Err(across_tenants());
        }
        self.pipeline.read_feed(query.with_context(self.context.renewed())).await
    }

    /// The feed's newest position in one of the scope's threads or documents, or all of them; see
    /// [`Pipeline::feed_head`].
    ///
    /// # Errors
    ///
    /// `Rejected` for a read [across tenants](ReadFeed::across_tenants); otherwise as
    /// [`Pipeline::feed_head`].
    pub async fn feed_head(&self, query: ReadFeed) -> Result<u64> {
        if !within_tenant(&query) {
            return Err(across_tenants());
        }
        self.pipeline.feed_head(query.with_context(self.context.renewed())).await
    }

    /// Follows one of the scope's threads or documents, or all of them ([`ReadFeed::tenant`]); every read
    /// the subscription makes carries the scope's context. See [`Pipeline::subscribe`].
    ///
    /// # Errors
    ///
    /// `Rejected` for a subscription [across tenants](ReadFeed::across_tenants); otherwise as
    /// [`Pipeline::subscribe`].
    pub async fn subscribe(&self, query: ReadFeed) -> Result<Subscription> {
        if !within_tenant(&query) {
            return Err(across_tenants());
        }
        self.pipeline.subscribe(query.with_context(self.context.renewed())).await
    }

    scoped_call!(/** Records a confirmed provider session. */ bind, Bind => SessionBinding);
    scoped_call!(/** Whether a provider session can be resumed. */ resolve, Resolve => Resolution);
    scoped_call!(/** Resets a session binding. */ reset_session, ResetSession => bool);
    scoped_call!(/** Invalidates a session binding (compare-and-set). */ invalidate_session, InvalidateSession => bool);
    scoped_call!(/** Stores a value under a name once, in the handle's tenant. */ set_once, crate::once::SetOnce => String);
    scoped_call!(/** Writes a summary of a range of a thread; see [`Pipeline::summarize`]. */ summarize, crate::summary::Summarize => crate::summary::Summarized);
    scoped_call!(/** Lists a page of a thread's summaries; see [`Pipeline::summaries`]. */ summaries, crate::summary::ListSummaries => Page<crate::summary::Summary>);
    scoped_call!(/** Reads a thread compacted; see [`Pipeline::compacted`]. */ compacted, crate::summary::ReadCompacted => crate::summary::Compacted);
    scoped_call!(/** Takes, renews or gives up a lease on a thread; see [`Pipeline::lease`]. */ lease, crate::lease::Lease => Option<crate::lease::Leased>);
    scoped_call!(/** Lists a thread's session bindings. */ bindings, ListBindings => Vec<StoredBinding>);
    scoped_call!(
        /** Writes one of the scope's threads exactly as another store held it; a thread of
        another tenant is refused (`InvalidInput` naming `tenant`). */
        restore, Restore => Restored
    );
    /// What the store behind the pipeline can do; see [`Pipeline::capabilities`].
    pub fn capabilities(&self) -> Capabilities {
        self.pipeline.capabilities()
    }

    /// A health check, through the layers, in the scope's context.
    ///
    /// # Errors
    ///
    /// As [`Pipeline::ping`].
    pub async fn ping(&self) -> Result<()> {
        match self.pipeline.execute(Ping::new().with_context(self.context.renewed())).await? {
            PersistResult::Pong => Ok(()),
            other => Err(PersistError::MismatchedResult { op: crate::PersistOp::Ping, got: other.op() }),
        }
    }

    /// Sends any request in the scope's context.
    ///
    /// # Errors
    ///
    /// `Rejected` for a request across tenants; otherwise whatever the layers or the backend
    /// answer.
    pub fn execute(
        &self,
        args: impl Into<PersistArgs>,
    ) -> impl Future<Output = Result<PersistResult>> + Send + 'static {
        let mut args = args.into();
        let refused = match &args {
            PersistArgs::Threads(query) => query.across_tenants,
            PersistArgs::Search(query) => query.is_across_tenants(),
            PersistArgs::FindStranded(query) => query.across_tenants,
            PersistArgs::Memories(query) => query.across_tenants,
            PersistArgs::ReadFeed(query) => !within_tenant(query),
            _ => false,
        };
        *args.context_mut() = self.context.renewed();
        let call = self.pipeline.execute(args);
        async move {
            if refused {
                return Err(across_tenants());
            }
            call.await
        }
    }
}

/// Whether a feed read stays in its context's tenant (one of its threads or documents, or all
/// of them).
fn within_tenant(query: &ReadFeed) -> bool {
    matches!(query.scope, FeedScope::Thread(_) | FeedScope::Memory(_) | FeedScope::Tenant)
}

pub(crate) fn across_tenants() -> PersistError {
    PersistError::rejected("a request across tenants is for operators: not through a scoped handle")
}

impl Pipeline {
    /// A handle that sends every call in `context` (its tenant confines them); see [`Scoped`].
    pub fn scoped(&self, context: Context) -> Scoped {
        Scoped::new(self.clone(), context)
    }
}

//! The typed calls, listed once: `calls!(callback)` calls `callback! { … }` with each call's
//! description, name, request and answer types, the [`PersistResult`](crate::PersistResult)
//! variant that answers it, how a [`Scoped`](crate::Scoped) handle offers it (`scoped`: as it
//! is; `(unless Variant |request| …)`: refused when the request, `PersistArgs::Variant`, reaches
//! across tenants, by its typed method and by `Scoped::execute` alike), and, for a
//! request a backend answers by a method of its own, that method and the `PersistArgs` variant.
//! The pipeline's methods, the `Scoped` handle's, the pipeline's and `Arc`'s `Backend` methods
//! and the terminal's dispatch are made of it: a call is added here.

macro_rules! calls {
    ($callback:ident) => {
        $callback! {
            /// Appends a complete message.
            add(crate::args::Add) -> crate::Added = Added, scoped;
            /// Appends a placeholder to be filled by [`update_content`](Self::update_content).
            reserve(crate::args::Reserve) -> crate::Reserved = Reserved, scoped;
            /// Writes a message's content (see [`UpdateContent`](crate::args::UpdateContent));
            /// answers the message as stored, or, for an update a `CoalesceLayer` (persist-layer)
            /// held back, as last written ([`ContentUpdated::coalesced`](crate::ContentUpdated::coalesced)).
            update_content(crate::args::UpdateContent) -> crate::ContentUpdated = ContentUpdated, scoped;
            /// Patches a message or a thread.
            update(crate::args::Update) -> crate::Updated = Updated, scoped;
            /// Deletes a message or a thread; answers every id removed.
            delete(crate::args::Delete) -> crate::Deleted = Deleted, scoped;
            /// Appends a whole turn (several messages, and maybe the reservation of the reply that
            /// follows) in one transaction: all of it or none, consecutive `seq`s, idempotent as
            /// a whole. See [`AppendTurn`](crate::args::AppendTurn).
            append_turn(crate::args::AppendTurn) -> crate::TurnAppended = TurnAppended, scoped;
            /// Writes a thread and its messages exactly as another store held them (import, copy);
            /// idempotent. See [`Restore`](crate::args::Restore). Through a `Scoped` handle, a
            /// thread of another tenant is refused (`InvalidInput` naming `tenant`).
            restore(crate::args::Restore) -> crate::Restored = Restored, scoped;
            /// Reads one message of the request's tenant; `Ok(None)` when it does not exist.
            get(crate::read::GetMessage) -> Option<crate::Message> = Message, scoped, get(Get);
            /// Reads one thread of the request's tenant (a tombstone too); `Ok(None)` when it does
            /// not exist.
            get_thread(crate::read::GetThread) -> Option<crate::Thread> = Thread, scoped, get_thread(GetThread);
            /// Lists a page of a thread's messages.
            list(crate::read::ListMessages) -> crate::Page<crate::Message> = Messages, scoped, list(List);
            /// Lists a message's siblings (the alternatives at its point of the thread's tree) or
            /// the thread's leaves, saying which is on the active branch; see
            /// [`branch`](crate::branch).
            branches(crate::branch::ListBranches) -> crate::branch::Branches = Branches, scoped, branches(Branches);
            /// Writes a summary of a range of a thread (see [`summary`](crate::summary)): the same
            /// range again answers the stored one, `deduplicated`.
            summarize(crate::summary::Summarize) -> crate::summary::Summarized = Summarized, scoped;
            /// Lists a page of a thread's summaries, by the seq of their last message.
            summaries(crate::summary::ListSummaries) -> crate::Page<crate::summary::Summary> = Summaries, scoped,
                summaries(Summaries);
            /// Reads a thread compacted: the latest summary of a branch (the active one by default)
            /// and the messages after it, as a model would be given them; see
            /// [`ReadCompacted`](crate::summary::ReadCompacted).
            compacted(crate::summary::ReadCompacted) -> crate::summary::Compacted = Compacted, scoped,
                compacted(Compacted);
            /// Takes, renews or gives up a lease on a thread; answers who holds it now (see
            /// [`Lease`](crate::lease::Lease)).
            lease(crate::lease::Lease) -> Option<crate::lease::Leased> = Lease, scoped, lease(Lease);
            /// Lists a page of the request's tenant's threads (or every tenant's, when it asks
            /// [`across_tenants`](crate::read::ListThreads::across_tenants)), most recently
            /// updated first.
            threads(crate::read::ListThreads) -> crate::Page<crate::Thread, crate::read::ThreadCursor> = Threads,
                (unless Threads |request| request.across_tenants), threads(Threads);
            /// Searches the text of the request's tenant's messages (one thread's, or every
            /// tenant's for operators), newest first; see [`search`](crate::search).
            search(crate::search::Search)
                -> crate::Page<crate::search::SearchHit, crate::search::SearchCursor> = Search,
                (unless Search |request| request.is_across_tenants()), search(Search);
            /// Writes a message's embedding (its vector and model); see [`vector`](crate::vector).
            embed(crate::vector::Embed) -> crate::vector::Embedded = Embedded, scoped;
            /// Finds the request's tenant's messages whose embeddings are nearest its vector, most
            /// similar first; see [`vector`](crate::vector).
            nearest(crate::vector::Nearest) -> Vec<crate::vector::Neighbour> = Nearest, scoped, nearest(Nearest);
            /// Lists a page of the vectors stored for a thread's messages, as stored (what a copy
            /// carries); see [`ListEmbeddings`](crate::vector::ListEmbeddings).
            embeddings(crate::vector::ListEmbeddings)
                -> crate::Page<crate::vector::StoredEmbedding, crate::vector::EmbeddingCursor> = Embeddings, scoped,
                embeddings(Embeddings);
            /// Reads the request's tenant's working memory document of a resource (`None`: never
            /// written); see [`working`](crate::working).
            read_memory(crate::working::ReadMemory) -> Option<crate::working::WorkingMemory> = Memory, scoped,
                read_memory(ReadMemory);
            /// Patches or replaces the request's tenant's working memory document of a resource,
            /// inside the store's write; see [`working`](crate::working).
            write_memory(crate::working::WriteMemory) -> crate::working::WorkingMemory = MemoryWritten, scoped;
            /// Lists a page of working memory documents (the request's tenant's, or every tenant's
            /// for operators); see [`ListMemories`](crate::working::ListMemories).
            memories(crate::working::ListMemories)
                -> crate::Page<crate::working::WorkingMemory, crate::working::MemoryCursor> = Memories,
                (unless Memories |request| request.across_tenants),
                memories(Memories);
            /// Finds reservations nobody wrote to since a cutoff, in the request's tenant or
            /// [`across_tenants`](crate::read::FindStranded::across_tenants) (maintenance;
            /// `cleanup_stranded`, in `persist-ops`, marks them interrupted).
            find_stranded(crate::read::FindStranded) -> Vec<crate::read::Stranded> = Stranded,
                (unless FindStranded |request| request.across_tenants),
                stranded(FindStranded);
            /// Records a session the provider **confirmed** for (agent, thread); see
            /// [`session`](crate::session).
            bind(crate::session::Bind) -> crate::session::SessionBinding = Bound, scoped, bind(Bind);
            /// Whether (agent, thread) can resume its session, and if not, why.
            resolve(crate::session::Resolve) -> crate::session::Resolution = Resolved, scoped, resolve(Resolve);
            /// Resets (agent, thread): the next `resolve` starts fresh until a new `bind`. Answers
            /// whether there was a binding.
            reset_session(crate::session::ResetSession) -> bool = SessionReset, scoped, reset_session(ResetSession);
            /// Invalidates a session for (agent, thread) if the binding still points at it
            /// (compare-and-set). Answers whether it did.
            invalidate_session(crate::session::InvalidateSession) -> bool = SessionInvalidated, scoped,
                invalidate_session(InvalidateSession);
            /// Lists a thread's session bindings (every agent's, in any state), by agent id.
            bindings(crate::session::ListBindings) -> Vec<crate::session::StoredBinding> = Bindings, scoped,
                bindings(Bindings);
            /// Reads the change-feed events after a position, through the layers; see
            /// [`feed`](crate::feed). `FeedGap` when the feed no longer holds them all.
            read_feed(crate::feed::ReadFeed) -> crate::feed::FeedPage = Feed,
                (unless ReadFeed |request| !scoped::within_tenant(&request));
            /// Stores a value under a name once, answering the value stored; see
            /// [`SetOnce`](crate::once::SetOnce).
            set_once(crate::once::SetOnce) -> String = Value, scoped;
        }
    };
}

/// A [`Scoped`](crate::Scoped) handle's method of a call: the pipeline's, in the handle's
/// context; for a call `calls!` marks `(unless |request| …)`, refused (`Rejected`) when the
/// request reaches across tenants.
macro_rules! scoped_call {
    (scoped $(#[$doc:meta])* $name:ident($args:ty) -> $out:ty) => {
        $(#[$doc])*
        ///
        /// In the handle's context.
        ///
        /// # Errors
        ///
        /// As the pipeline's method of the same name.
        pub async fn $name(&self, request: $args) -> Result<$out> {
            self.pipeline().$name(request.with_context(self.context().renewed())).await
        }
    };
    ((unless $variant:ident |$request:ident| $across:expr) $(#[$doc:meta])* $name:ident($args:ty) -> $out:ty) => {
        $(#[$doc])*
        ///
        /// In the handle's context, which confines it to the handle's tenant.
        ///
        /// # Errors
        ///
        /// `Rejected` for a request across tenants (for operators, never through a handle);
        /// otherwise as the pipeline's method of the same name.
        pub async fn $name(&self, $request: $args) -> Result<$out> {
            if $across {
                return Err(scoped::across_tenants());
            }
            self.pipeline().$name($request.with_context(self.context().renewed())).await
        }
    };
}

/// `Some(whether args reaches across tenants)` when `args` is the request of a call marked
/// `(unless Variant |request| …)`; `None` for any other.
macro_rules! across {
    (scoped, $args:ident) => {
        None
    };
    ((unless $variant:ident |$request:ident| $across:expr), $args:ident) => {
        match $args {
            PersistArgs::$variant($request) => Some($across),
            _ => None,
        }
    };
}

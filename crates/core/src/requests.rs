//! The one list of requests. Every request persist knows is a line of `requests!` and, when an
//! app calls it by name, a line of `calls!`, both below; the rest of the contract is made of
//! them:
//!
//! - `requests!`: each request's [`PersistOp`](crate::PersistOp) (its description and label),
//!   its kind (`write`: a message write, `read`, or `other`), its `PersistArgs` variant (with its
//!   attributes) and request type, and the `PersistResult` variant that answers it. Made of it:
//!   `PersistOp` (`model/op.rs`), `PersistArgs` with `op`, `context` and `From` (`request/args`),
//!   `PersistResult::op` (`request/result.rs`).
//! - `calls!`: each typed call's description, name, request and answer types, the
//!   `PersistResult` variant that answers it, how a [`Scoped`](crate::Scoped) handle offers it
//!   (`scoped`: as it is; `(unless Variant |request| …)`: refused when the request reaches
//!   across tenants, by its typed method and by `Scoped::execute` alike), and, for a request a
//!   backend answers by a method of its own, that method and the `PersistArgs` variant. Made of
//!   it: `Pipeline`'s and `Scoped`'s typed methods (`pipeline.append_turn(…)`: generated in
//!   `pipeline/mod.rs`, so search for a call's name here), the `Backend` methods of `Pipeline`
//!   and of `Arc<B>` (`pipeline/backend.rs`), and the terminal's dispatch
//!   (`pipeline/terminal.rs`).
//!
//! What else a new request needs, in order (`docs/adding-a-request.md` has each step's files
//! and what fails when it is forgotten):
//!
//! 1. its request type, in its family's module under `request/` (a `context`, `with_context`,
//!    a `validate()` if it has rules), and its answer;
//! 2. its `PersistResult` variant (`request/result.rs`), and there `rows()` and `thread_id()`;
//! 3. its line in `requests!` below, at the end (the order is `PersistOp::ALL`'s), then the
//!    count in `PersistOp`'s doctest and the contract test that builds one request of each kind;
//! 4. the matches in `request/args`: `thread_id()`, `validate()`, the accessors and the
//!    capabilities it uses (`uses_…`, and the terminal's guard);
//! 5. its line in `calls!` below, when an app calls it by name;
//! 6. the `Backend` method, when `calls!` names one (`pipeline/backend.rs`, its rules under
//!    `# Behavior`, a default answering `Unsupported` if backends may lack it);
//! 7. each backend's handler (memory, SQLite, PostgreSQL, shards) and its migrations;
//! 8. the layers that match on requests: tenancy, routing, encryption, tracing, retries;
//! 9. a conformance check (`persist-conformance`), listed where the suite lists its checks;
//! 10. the composed operations, servers and bindings that offer it (`persist-ops`,
//!     `persist-serve`, `persist-mcp`, the Python package, the command line), and the
//!     changelog.
//!
//! Only the contract fails to compile when a step is forgotten: `PersistArgs`, `PersistResult`
//! and `PersistOp` are `#[non_exhaustive]`, so every other crate's matches end in a catch-all.
//! The conformance suite is what finds the rest.
//!
//! Both lists are `macro_rules!` macros taking a callback (`requests!(define_ops)`), so this
//! module holds no code and imports nothing; the architecture test lets it name the types of
//! every module after it, as a table of contents does.

/// Every request: `requests!(callback)` calls `callback! { … }` with the lines below.
macro_rules! requests {
    ($callback:ident) => {
        $callback! {
            /// Append a complete message.
            Add = "add", write: Add(Add) -> Added;
            /// Append a placeholder to be filled by `update_content`.
            Reserve = "reserve", write: Reserve(Reserve) -> Reserved;
            /// Replace a message's content, finalizing a placeholder.
            UpdateContent = "update_content", write: UpdateContent(UpdateContent) -> ContentUpdated;
            /// Patch a message's or a thread's metadata, role or title.
            Update = "update", write: Update(Update) -> Updated;
            /// Delete a message or a whole thread.
            Delete = "delete", write: Delete(Delete) -> Deleted;
            /// Write a thread's messages exactly as another store held them (import, copy).
            Restore = "restore", write: Restore(Restore) -> Restored;
            /// Append a whole turn (several messages, maybe a reservation) in one transaction.
            AppendTurn = "append_turn", write: AppendTurn(AppendTurn) -> TurnAppended;
            /// Read one message.
            Get = "get", read: #[serde(skip)] Get(GetMessage) -> Message;
            /// Read one thread.
            GetThread = "get_thread", read: #[serde(skip)] GetThread(GetThread) -> Thread;
            /// List a thread's messages.
            List = "list", read: #[serde(skip)] List(ListMessages) -> Messages;
            /// List threads.
            Threads = "threads", read: #[serde(skip)] Threads(ListThreads) -> Threads;
            /// List a message's siblings or a thread's leaves (its branches).
            Branches = "branches", read: #[serde(skip)] Branches(ListBranches) -> Branches;
            /// Find reservations stranded by streams that never finished.
            FindStranded = "find_stranded", read: #[serde(skip)] FindStranded(FindStranded) -> Stranded;
            /// Ask whether an (agent, thread) can resume its provider session.
            Resolve = "resolve", read: Resolve(Resolve) -> Resolved;
            /// Record a confirmed provider session.
            Bind = "bind", other: Bind(Bind) -> Bound;
            /// Reset a session binding.
            ResetSession = "reset_session", other: ResetSession(ResetSession) -> SessionReset;
            /// Invalidate a session binding (compare-and-set).
            InvalidateSession = "invalidate_session", other: InvalidateSession(InvalidateSession) -> SessionInvalidated;
            /// List a thread's session bindings.
            Bindings = "bindings", read: #[serde(skip)] Bindings(ListBindings) -> Bindings;
            /// A health check.
            Ping = "ping", read: #[serde(skip)] Ping(Ping) -> Pong;
            /// Read the change feed.
            ReadFeed = "read_feed", read: #[serde(skip)] ReadFeed(ReadFeed) -> Feed;
            /// Store a value under a name once.
            SetOnce = "set_once", other: SetOnce(SetOnce) -> Value;
            /// Write a summary of a range of a thread (see [`summary`](crate::summary)).
            Summarize = "summarize", write: Summarize(Summarize) -> Summarized;
            /// List a thread's summaries.
            Summaries = "summaries", read: #[serde(skip)] Summaries(ListSummaries) -> Summaries;
            /// Read a thread compacted: its latest summary and what follows it.
            Compacted = "compacted", read: #[serde(skip)] Compacted(ReadCompacted) -> Compacted;
            /// Take, renew or give up a lease on a thread (see [`lease`](crate::lease)).
            Lease = "lease", other: Lease(Lease) -> Lease;
            /// Search messages' text (see [`search`](crate::search)).
            Search = "search", read: #[serde(skip)] Search(Search) -> Search;
            /// Write a message's embedding (see [`vector`](crate::vector)).
            Embed = "embed", other: Embed(Embed) -> Embedded;
            /// Find the messages nearest a vector (see [`vector`](crate::vector)).
            Nearest = "nearest", read: #[serde(skip)] Nearest(Nearest) -> Nearest;
            /// Read a working memory document (see [`working`](crate::working)).
            ReadMemory = "read_memory", read: #[serde(skip)] ReadMemory(ReadMemory) -> Memory;
            /// Change a working memory document (see [`working`](crate::working)).
            WriteMemory = "write_memory", other: WriteMemory(WriteMemory) -> MemoryWritten;
            /// List working memory documents (see [`working`](crate::working)).
            ListMemories = "list_memories", read: #[serde(skip)] Memories(ListMemories) -> Memories;
            /// List the vectors stored for a thread's messages (see [`vector`](crate::vector)).
            ListEmbeddings = "list_embeddings", read: #[serde(skip)] Embeddings(ListEmbeddings) -> Embeddings;
            /// Write, touch or delete records (see [`records`](crate::records)).
            WriteRecords = "write_records", other: WriteRecords(WriteRecords) -> RecordsWritten;
            /// Read a page of records (see [`records`](crate::records)).
            ReadRecords = "read_records", read: #[serde(skip)] ReadRecords(ReadRecords) -> Records;
        }
    };
}

/// Every typed call: `calls!(callback)` calls `callback! { … }` with the lines below.
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
            /// Writes, touches or deletes the request's tenant's records, all in one transaction;
            /// see [`records`](crate::records).
            write_records(crate::records::WriteRecords) -> crate::records::RecordsWritten = RecordsWritten, scoped;
            /// Reads a page of the request's tenant's records, by key then space, expired ones
            /// never; see [`ReadRecords`](crate::records::ReadRecords).
            read_records(crate::records::ReadRecords)
                -> crate::Page<crate::records::Record, crate::records::RecordCursor> = Records, scoped,
                records(ReadRecords);
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

//! [`Capabilities`]: what a backend can do beyond the required contract.

/// What a backend can do beyond the required contract; the conformance suite gates its
/// optional checks on these.
///
/// # Example
///
/// ```
/// use persist::Capabilities;
///
/// let caps = Capabilities::new().with_durable(true).with_shared_storage(true);
/// assert!(caps.durable && caps.shared_storage);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Capabilities {
    /// Acknowledged writes survive dropping every handle and opening the storage again.
    pub durable: bool,
    /// Independently opened handles (other pools, other processes) may share one storage and
    /// race each other; the backend keeps the contract across them.
    pub shared_storage: bool,
    /// The session-binding methods ([`Backend::bind`](crate::Backend::bind), …, [`Backend::bindings`](crate::Backend::bindings)) are
    /// implemented.
    pub sessions: bool,
    /// [`Restore`](crate::args::Restore) is applied (import, copy between stores).
    pub restore: bool,
    /// A change feed is kept: [`Backend::read_feed`](crate::Backend::read_feed) answers and [`Backend::feed_hub`](crate::Backend::feed_hub) wakes
    /// subscribers (see [`feed`](crate::feed)).
    pub feed: bool,
    /// Threads are trees (see [`branch`](crate::branch)): messages are written where their
    /// [`Parent`](crate::branch::Parent) says and carry it, threads carry their active leaf and
    /// switch it, [`list`](crate::Backend::list) follows a branch and [`Backend::branches`](crate::Backend::branches) answers.
    /// Without it, a request that names a parent, a switch or a branch is `Unsupported`
    /// (nothing is written).
    pub branches: bool,
    /// Summaries and leases are kept (see [`summary`](crate::summary) and
    /// [`lease`](crate::lease)): a `summarize` write is applied, [`Backend::summaries`](crate::Backend::summaries),
    /// [`Backend::compacted`](crate::Backend::compacted) and [`Backend::lease`](crate::Backend::lease) answer. Without it, those requests are
    /// `Unsupported`.
    pub summaries: bool,
    /// [`Backend::search`](crate::Backend::search) answers (see [`search`](crate::search)). A backend whose index can
    /// be turned off declares it only while it is on.
    pub search: bool,
    /// Stores embeddings and answers [`Nearest`](crate::vector::Nearest) and
    /// [`ListEmbeddings`](crate::vector::ListEmbeddings) (see [`vector`](crate::vector)).
    pub vectors: bool,
    /// Keeps working memory documents (see [`working`](crate::working)).
    pub working_memory: bool,
    /// Keeps records (see [`records`](crate::records)).
    pub records: bool,
}

impl Capabilities {
    /// No optional capability.
    pub fn new() -> Self {
        Self::default()
    }

    field_setters! {
        durable: bool => with_durable,
        shared_storage: bool => with_shared_storage,
        sessions: bool => with_sessions,
        restore: bool => with_restore,
        feed: bool => with_feed,
        branches: bool => with_branches,
        summaries: bool => with_summaries,
        search: bool => with_search,
        vectors: bool => with_vectors,
        working_memory: bool => with_working_memory,
        records: bool => with_records,
    }

    /// What both can do: for a store made of others, each request going to one of them.
    ///
    /// ```
    /// use persist::Capabilities;
    ///
    /// let both = Capabilities::new().with_durable(true).with_search(true).and(Capabilities::new().with_durable(true));
    /// assert!(both.durable && !both.search);
    /// ```
    pub fn and(self, other: Self) -> Self {
        Self {
            durable: self.durable && other.durable,
            shared_storage: self.shared_storage && other.shared_storage,
            sessions: self.sessions && other.sessions,
            restore: self.restore && other.restore,
            feed: self.feed && other.feed,
            branches: self.branches && other.branches,
            summaries: self.summaries && other.summaries,
            search: self.search && other.search,
            vectors: self.vectors && other.vectors,
            working_memory: self.working_memory && other.working_memory,
            records: self.records && other.records,
        }
    }
}

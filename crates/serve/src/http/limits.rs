//! [`Limits`]: what a server holds every request and connection to.

use std::time::Duration;

/// The limits a server holds every request and connection to.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Limits {
    /// The largest request body, in bytes; a larger one is 413, refused before it is read whole
    /// (by its `Content-Length` when it has one). 16 MiB by default.
    pub max_body_bytes: usize,
    /// The most items one `items.create` writes (a conversation's create takes 20, as the API
    /// does). 256 by default, persist's turn limit.
    pub max_items: usize,
    /// How long a request waits for the store before answering 503 (with `retry-after`). 10 s
    /// by default.
    pub store_timeout: Duration,
    /// The most requests answered at once; more are 429 (with `retry-after`). 512 by default.
    /// A request counts once its body is read: a client slow to send one holds no slot.
    pub max_concurrent_requests: usize,
    /// How long [`Server::serve`](crate::Server::serve) waits for a request's headers, from
    /// the connection's opening or the end of its previous answer; then it closes the
    /// connection, so a client that sends nothing, or its headers a byte at a time, holds it no
    /// longer, and neither does an idle keep-alive connection. 10 s by default.
    pub header_timeout: Duration,
    /// How long a request's body may take to arrive, from the end of its headers: a later one
    /// is 408 and its connection closed, holding no request slot meanwhile. 30 s by default.
    pub body_timeout: Duration,
    /// The most connections [`Server::serve`](crate::Server::serve) holds open: further ones
    /// wait, unaccepted (in the listener's backlog), until one closes. 1024 by default.
    pub max_connections: usize,
    /// How long [`Server::serve`](crate::Server::serve) lets the requests in flight finish once
    /// shut down: event streams end at once, the connections still busy after it are closed.
    /// 10 s by default.
    pub shutdown_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 16 * 1024 * 1024,
            max_items: persist_core::args::MAX_TURN_MESSAGES,
            store_timeout: Duration::from_secs(10),
            max_concurrent_requests: 512,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_connections: 1024,
            shutdown_timeout: Duration::from_secs(10),
        }
    }
}

impl Limits {
    /// Sets [`max_body_bytes`](Self::max_body_bytes).
    pub fn with_max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = bytes;
        self
    }

    /// Sets [`max_items`](Self::max_items) (at most persist's turn limit, 256).
    pub fn with_max_items(mut self, items: usize) -> Self {
        self.max_items = items.clamp(1, persist_core::args::MAX_TURN_MESSAGES);
        self
    }

    /// Sets [`store_timeout`](Self::store_timeout).
    pub fn with_store_timeout(mut self, timeout: Duration) -> Self {
        self.store_timeout = timeout;
        self
    }

    /// Sets [`max_concurrent_requests`](Self::max_concurrent_requests).
    pub fn with_max_concurrent_requests(mut self, requests: usize) -> Self {
        self.max_concurrent_requests = requests.max(1);
        self
    }

    /// Sets [`header_timeout`](Self::header_timeout) (at least 1 ms).
    pub fn with_header_timeout(mut self, timeout: Duration) -> Self {
        self.header_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// Sets [`body_timeout`](Self::body_timeout) (at least 1 ms).
    pub fn with_body_timeout(mut self, timeout: Duration) -> Self {
        self.body_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// Sets [`max_connections`](Self::max_connections) (at least 1).
    pub fn with_max_connections(mut self, connections: usize) -> Self {
        self.max_connections = connections.max(1);
        self
    }

    /// Sets [`shutdown_timeout`](Self::shutdown_timeout) (zero: connections are closed at
    /// once).
    pub fn with_shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }
}

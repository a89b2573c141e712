//! Metrics in the Prometheus text format: a [`metrics`] recorder of its own ([`Prometheus`]),
//! with no exporter crate, no background task and no listener unless asked for one.
//!
//! The server records through the `metrics` facade, to whichever recorder is installed (none:
//! nothing is recorded, at the cost of a no-op call):
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `persist_serve_requests_total` | counter | `method`, `route` (the route's template, `/v1/conversations/{id}/items`; `unmatched` for a path the API does not have), `status` |
//! | `persist_serve_request_duration_seconds` | histogram | `method`, `route`: from the request's arrival to its answer's head (an event stream's head, not its end) |
//! | `persist_serve_requests_in_flight` | gauge | requests holding a request slot |
//!
//! The probes (`/health`, `/ready`) are not counted. A pipeline with `persist::layer::MetricsLayer`
//! stacked adds the store's calls (`persist_ops_total` by `op` and `outcome`, an error's code
//! for a failed call; `persist_op_duration_seconds`, `persist_read_rows`,
//! `persist_content_bytes`), and a PostgreSQL backend with standbys its
//! `persist_replica_reads_total`. Connection pools and the change feed's lag are not measured.
//!
//! [`Prometheus`] renders counters and gauges as they are, and histograms with fixed buckets
//! (`…_seconds`: 0.5 ms to 10 s; `…_bytes`: 256 B to 16 MiB; any other: 1 to 10 000), each
//! from its first observation on.
//!
//! # Example
//!
//! A host serving [`Server::router`](crate::Server::router) in its own app installs the recorder
//! before it builds its pipeline (a layer registers its metrics when it is built), and serves
//! [`Prometheus::router`] where only its scraper reaches it:
//!
//! ```no_run
//! use persist::layer::MetricsLayer;
//! use persist::memory::MemoryBackend;
//! use persist::Pipeline;
//! use persist_serve::metrics::Prometheus;
//! use persist_serve::{Auth, Server};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let prometheus = Prometheus::new();
//! prometheus.install()?;
//! let pipeline = Pipeline::builder().layer(MetricsLayer::new()).build(MemoryBackend::new());
//! let api = Server::new(pipeline, Auth::Open(None)).router();
//! // `GET /metrics` on an address of its own, never the API's, and without a key.
//! let metrics = tokio::net::TcpListener::bind("127.0.0.1:9464").await?;
//! tokio::spawn(prometheus.serve(metrics, std::future::pending()));
//! # let _ = api;
//! # Ok(())
//! # }
//! ```

mod text;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{Method, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics::atomics::AtomicU64;
use metrics::{Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString, Unit};

use super::limits::Limits;

/// The `route` of a request whose path the API does not have.
pub(crate) const UNMATCHED: &str = "unmatched";

const REQUESTS: &str = "persist_serve_requests_total";
const DURATION: &str = "persist_serve_request_duration_seconds";
const IN_FLIGHT: &str = "persist_serve_requests_in_flight";

/// Records a request answered with `status` after `elapsed`.
pub(crate) fn answered(method: &Method, route: Option<&str>, status: u16, elapsed: Duration) {
    let method = known_method(method);
    let route: SharedString = route.map_or(SharedString::const_str(UNMATCHED), |route| route.to_owned().into());
    metrics::counter!(REQUESTS, "method" => method, "route" => route.clone(), "status" => status.to_string())
        .increment(1);
    metrics::histogram!(DURATION, "method" => method, "route" => route).record(elapsed.as_secs_f64());
}

/// The method as a label: one of HTTP's, else `other` (a client cannot add series at will).
fn known_method(method: &Method) -> &'static str {
    const KNOWN: [Method; 7] =
        [Method::GET, Method::POST, Method::DELETE, Method::PUT, Method::PATCH, Method::HEAD, Method::OPTIONS];
    const NAMES: [&str; 7] = ["GET", "POST", "DELETE", "PUT", "PATCH", "HEAD", "OPTIONS"];
    KNOWN.iter().position(|known| known == method).map_or("other", |at| NAMES[at])
}

/// A request holding a slot, counted in `persist_serve_requests_in_flight` until it is dropped
/// (answered, or given up by its client).
pub(crate) struct InFlight(Gauge);

impl InFlight {
    pub(crate) fn start() -> Self {
        let gauge = metrics::gauge!(IN_FLIGHT);
        gauge.increment(1.0);
        Self(gauge)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

/// A [`metrics`] recorder that answers what it recorded in the Prometheus text format
/// (version 0.0.4): [`install`](Self::install) it, then serve [`router`](Self::router) (or
/// [`serve`](Self::serve) it on a listener of its own), or [`render`](Self::render) it yourself.
///
/// Clones share what is recorded. Without [`install`](Self::install) it records what is
/// registered through it only, as with [`metrics::with_local_recorder`].
#[derive(Debug, Clone, Default)]
pub struct Prometheus {
    registry: Arc<Registry>,
}

#[derive(Debug, Default)]
struct Registry {
    counters: RwLock<HashMap<Key, Arc<AtomicU64>>>,
    gauges: RwLock<HashMap<Key, Arc<AtomicU64>>>,
    histograms: RwLock<HashMap<Key, Arc<Buckets>>>,
    help: RwLock<HashMap<String, String>>,
    /// The vector index whose figures each render reads ([`Prometheus::with_vector_index`]).
    index: std::sync::OnceLock<persist_recall::VectorIndex>,
}

/// [`Prometheus::install`] was refused: a recorder is installed already (the `metrics` facade
/// takes one per process).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlreadyInstalled;

impl std::fmt::Display for AlreadyInstalled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a metrics recorder is installed already (the process takes one)")
    }
}

impl std::error::Error for AlreadyInstalled {}

impl Prometheus {
    /// A recorder with nothing recorded, describing the server's and the store layers' metrics.
    pub fn new() -> Self {
        let prometheus = Self::default();
        {
            let mut help = prometheus.registry.help.write().unwrap_or_else(PoisonError::into_inner);
            for (name, text) in text::HELP {
                help.insert((*name).to_owned(), (*text).to_owned());
            }
        }
        prometheus
    }

    /// Makes it the process's recorder (`metrics::set_global_recorder`), before anything that
    /// registers metrics is built (a pipeline's `MetricsLayer`).
    ///
    /// # Errors
    ///
    /// [`AlreadyInstalled`] when the process has a recorder already.
    pub fn install(&self) -> Result<(), AlreadyInstalled> {
        metrics::set_global_recorder(self.clone()).map_err(|_| AlreadyInstalled)
    }

    /// Renders what `index` holds and has done with everything else (read at each render):
    /// `persist_vector_index_budget_bytes`, `persist_vector_index_resident_bytes`,
    /// `persist_vector_index_tenants`, `persist_vector_index_vectors` and
    /// `persist_vector_index_clustered_vectors` (gauges), and
    /// `persist_vector_index_queries_total` by `answered` (`index` or `store`),
    /// `persist_vector_index_builds_total`, `persist_vector_index_restored_total`,
    /// `persist_vector_index_saves_total` and `persist_vector_index_evictions_total` (counters). One index per recorder: a second is ignored.
    pub fn with_vector_index(self, index: persist_recall::VectorIndex) -> Self {
        let _ = self.registry.index.set(index);
        self
    }

    /// Copies the vector index's figures into the registry.
    fn read_vector_index(&self) {
        let Some(index) = self.registry.index.get() else { return };
        let stats = index.stats();
        let set = |name: &'static str, value: usize| {
            let cell = handle(&self.registry.gauges, &Key::from_static_name(name), || AtomicU64::new(0));
            cell.store((value as f64).to_bits(), std::sync::atomic::Ordering::Relaxed);
        };
        set("persist_vector_index_budget_bytes", stats.budget);
        set("persist_vector_index_resident_bytes", stats.resident_bytes);
        set("persist_vector_index_tenants", stats.tenants);
        set("persist_vector_index_vectors", stats.vectors);
        set("persist_vector_index_clustered_vectors", stats.clustered);
        let count = |key: Key, value: u64| {
            let cell = handle(&self.registry.counters, &key, || AtomicU64::new(0));
            cell.store(value, std::sync::atomic::Ordering::Relaxed);
        };
        let queries = "persist_vector_index_queries_total";
        count(Key::from_parts(queries, vec![metrics::Label::new("answered", "index")]), stats.answered);
        count(Key::from_parts(queries, vec![metrics::Label::new("answered", "store")]), stats.fallbacks);
        count(Key::from_static_name("persist_vector_index_builds_total"), stats.builds);
        count(Key::from_static_name("persist_vector_index_restored_total"), stats.restored);
        count(Key::from_static_name("persist_vector_index_saves_total"), stats.saves);
        count(Key::from_static_name("persist_vector_index_evictions_total"), stats.evictions);
    }

    /// Everything recorded, in the Prometheus text format.
    pub fn render(&self) -> String {
        self.read_vector_index();
        let read = |map: &RwLock<HashMap<Key, Arc<AtomicU64>>>| -> Vec<(Key, u64)> {
            let map = map.read().unwrap_or_else(PoisonError::into_inner);
            map.iter().map(|(key, value)| (key.clone(), value.load(std::sync::atomic::Ordering::Relaxed))).collect()
        };
        let counters = read(&self.registry.counters);
        let gauges = read(&self.registry.gauges);
        let histograms: Vec<(Key, text::Snapshot)> = {
            let map = self.registry.histograms.read().unwrap_or_else(PoisonError::into_inner);
            map.iter().map(|(key, buckets)| (key.clone(), buckets.snapshot())).collect()
        };
        let help = self.registry.help.read().unwrap_or_else(PoisonError::into_inner);
        text::render(&counters, &gauges, &histograms, &help)
    }

    /// `GET /metrics`, answering [`render`](Self::render) (`text/plain; version=0.0.4`): for a
    /// listener of its own, or behind the host's own authentication (it takes no key).
    pub fn router(&self) -> Router {
        Router::new().route("/metrics", get(scrape)).with_state(self.clone())
    }

    /// Serves [`router`](Self::router) on `listener` until `shutdown` completes (with the
    /// header deadline of [`Server::serve`](crate::Server::serve), at most 64 connections).
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let limits = Limits::default().with_max_connections(64).with_shutdown_timeout(Duration::from_secs(1));
        // Its own shutdown is not logged: the server's is.
        super::listen::serve(self.router(), listener, limits, super::listen::Closing::new(), shutdown).await;
        Ok(())
    }

    fn describe(&self, name: KeyName, description: SharedString) {
        let mut help = self.registry.help.write().unwrap_or_else(PoisonError::into_inner);
        help.entry(name.into_inner().into_owned()).or_insert_with(|| description.into_owned());
    }
}

async fn scrape(State(prometheus): State<Prometheus>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], prometheus.render()).into_response()
}

/// The handle of `key` in `map`, made on its first registration.
fn handle<T>(map: &RwLock<HashMap<Key, Arc<T>>>, key: &Key, make: impl FnOnce() -> T) -> Arc<T> {
    if let Some(found) = map.read().unwrap_or_else(PoisonError::into_inner).get(key) {
        return Arc::clone(found);
    }
    let mut map = map.write().unwrap_or_else(PoisonError::into_inner);
    Arc::clone(map.entry(key.clone()).or_insert_with(|| Arc::new(make())))
}

impl Recorder for Prometheus {
    fn describe_counter(&self, name: KeyName, _: Option<Unit>, description: SharedString) {
        self.describe(name, description);
    }

    fn describe_gauge(&self, name: KeyName, _: Option<Unit>, description: SharedString) {
        self.describe(name, description);
    }

    fn describe_histogram(&self, name: KeyName, _: Option<Unit>, description: SharedString) {
        self.describe(name, description);
    }

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(handle(&self.registry.counters, key, || AtomicU64::new(0)))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(handle(&self.registry.gauges, key, || AtomicU64::new(0.0_f64.to_bits())))
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(handle(&self.registry.histograms, key, || Buckets::new(text::bounds(key.name()))))
    }
}

/// A histogram: a count per bucket (not cumulative), the count and the sum of every value.
#[derive(Debug)]
struct Buckets {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    count: AtomicU64,
    /// An `f64`'s bits.
    sum: AtomicU64,
}

impl Buckets {
    fn new(bounds: &'static [f64]) -> Self {
        let counts = bounds.iter().map(|_| AtomicU64::new(0)).collect();
        Self { bounds, counts, count: AtomicU64::new(0), sum: AtomicU64::new(0.0_f64.to_bits()) }
    }

    fn snapshot(&self) -> text::Snapshot {
        use std::sync::atomic::Ordering::Relaxed;
        let counts = self.counts.iter().map(|count| count.load(Relaxed)).collect();
        let (count, sum) = (self.count.load(Relaxed), f64::from_bits(self.sum.load(Relaxed)));
        text::Snapshot { bounds: self.bounds, counts, count, sum }
    }
}

impl HistogramFn for Buckets {
    fn record(&self, value: f64) {
        use std::sync::atomic::Ordering::Relaxed;
        if value.is_nan() {
            return;
        }
        // The first bucket whose upper bound is at least the value; past the last one, `+Inf`.
        let at = self.bounds.partition_point(|bound| *bound < value);
        if let Some(bucket) = self.counts.get(at) {
            bucket.fetch_add(1, Relaxed);
        }
        self.count.fetch_add(1, Relaxed);
        let _ = self.sum.fetch_update(Relaxed, Relaxed, |sum| Some((f64::from_bits(sum) + value).to_bits()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_outside_http_s_are_one_label() {
        assert_eq!(known_method(&Method::GET), "GET");
        assert_eq!(known_method(&Method::from_bytes(b"BREW").unwrap()), "other");
    }

    #[test]
    fn a_value_counts_in_the_first_bucket_that_holds_it() {
        let buckets = Buckets::new(&[1.0, 2.0, 5.0]);
        for value in [0.5, 1.0, 1.5, 5.0, 7.0, f64::NAN] {
            buckets.record(value);
        }
        let snapshot = buckets.snapshot();
        assert_eq!((snapshot.counts, snapshot.count, snapshot.sum), (vec![2, 1, 1], 5, 15.0));
    }
}

//! `metrics` counters and histograms for every call: writes, reads, session requests, pings.
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `persist_ops_total` | counter | `op` (any [`PersistOp`] label), `outcome` (`ok`, `deduplicated`, or the error's [`code`](persist_core::PersistError::code)) |
//! | `persist_op_duration_seconds` | histogram | `op` |
//! | `persist_content_bytes` | histogram | `op` (`add`, `update_content`): size of the content as JSON |
//! | `persist_read_rows` | histogram | `op` (`get`, `get_thread`, `list`, `threads`, `find_stranded`): messages or threads a read answered |
//!
//! Beside these, the PostgreSQL backend with read replicas counts how its reads were answered,
//! through the same `metrics` facade (so the same recorder), whether or not this layer is
//! stacked: `persist_replica_reads_total` (counter; `outcome`: `replica`, `waited`, `lagging`,
//! `down`).
//!
//! The handles are registered once, when the layer is created: install your recorder
//! (`metrics::set_global_recorder`, an exporter) **before** building the pipeline. Without a
//! recorder every handle is a no-op, and a write's duration is not timed at all: the layer
//! reads the clock only for ops whose duration histogram records (it asks each one, when it is
//! built, to record a value zero times: the one call a recorder sees from the check).
//!
//! # Example
//!
//! ```
//! use persist::{args::Add, layer::MetricsLayer, Content, Pipeline, Role, ThreadId};
//! use persist::memory::MemoryBackend;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let pipeline = Pipeline::builder().layer(MetricsLayer::new()).build(MemoryBackend::new());
//! pipeline.add(Add::new(ThreadId::new("t1")?, Role::User, Content::text("hi"))).await?;
//! # Ok::<_, persist::PersistError>(())
//! # }).unwrap();
//! ```

mod future;
mod layer;

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use metrics::{Counter, Histogram};
use tower::Service;

pub use self::future::ResponseFuture;
pub use self::layer::MetricsLayer;
use persist_core::{PersistArgs, PersistError, PersistOp, PersistResult};

/// Outcomes besides the error codes.
const OUTCOMES: usize = 2 + PersistError::CODES.len();

/// Every handle, registered once.
#[derive(Debug)]
pub(crate) struct Handles {
    ops: Vec<Counter>,
    durations: Vec<Histogram>,
    content_bytes: Vec<Histogram>,
    read_rows: Vec<Histogram>,
    /// Per op: whether its duration histogram records, so a write reads the clock at its start
    /// only when the duration will be kept.
    timed: Vec<bool>,
}

impl Handles {
    pub(crate) fn register() -> Self {
        let mut ops = Vec::with_capacity(PersistOp::ALL.len() * OUTCOMES);
        for op in PersistOp::ALL {
            for outcome in ["ok", "deduplicated"].into_iter().chain(PersistError::CODES) {
                ops.push(metrics::counter!("persist_ops_total", "op" => op.as_str(), "outcome" => outcome));
            }
        }
        let per_op = |name: &'static str| -> Vec<Histogram> {
            PersistOp::ALL.iter().map(|op| metrics::histogram!(name, "op" => op.as_str())).collect()
        };
        let durations = per_op("persist_op_duration_seconds");
        let timed = durations.iter().map(records).collect();
        Self {
            ops,
            durations,
            content_bytes: per_op("persist_content_bytes"),
            read_rows: per_op("persist_read_rows"),
            timed,
        }
    }

    /// The clock reading a write of `op` starts with, if its duration is recorded.
    fn start(&self, op: PersistOp) -> Option<Instant> {
        self.timed[op.index()].then(Instant::now)
    }

    fn record(&self, op: PersistOp, output: &Result<PersistResult, PersistError>, start: Option<Instant>) {
        let outcome = match output {
            Ok(result) if result.is_deduplicated() => 1,
            Ok(_) => 0,
            Err(error) => 2 + error.code_index(),
        };
        self.ops[op.index() * OUTCOMES + outcome].increment(1);
        if let Ok(rows) = output.as_ref().map(PersistResult::rows)
            && let Some(rows) = rows
        {
            self.read_rows[op.index()].record(rows as f64);
        }
        if let Some(start) = start {
            self.durations[op.index()].record(start.elapsed().as_secs_f64());
        }
    }
}

/// Whether `histogram` records anything: a handle of a live recorder converts the value it is
/// given, a no-op handle (no recorder installed, or a metric the recorder filters out) never
/// does. The probe asks for its value to be recorded **zero times** (`record_many(0.0, 0)`,
/// once per op when the layer is built): `HistogramFn::record_many`'s default records
/// nothing, and a recorder that overrides it should do the same for a count of zero.
fn records(histogram: &Histogram) -> bool {
    struct Probe<'a>(&'a std::cell::Cell<bool>);
    impl metrics::IntoF64 for Probe<'_> {
        fn into_f64(self) -> f64 {
            self.0.set(true);
            0.0
        }
    }
    let converted = std::cell::Cell::new(false);
    histogram.record_many(Probe(&converted), 0);
    converted.get()
}

/// A content's size as JSON, measured only by a histogram that records it (a no-op handle
/// never asks, so content that is not JSON text yet is not walked for nothing).
struct JsonLen<'a>(&'a persist_core::Content);

impl metrics::IntoF64 for JsonLen<'_> {
    fn into_f64(self) -> f64 {
        self.0.json_len() as f64
    }
}

/// The service of [`MetricsLayer`].
#[derive(Debug, Clone)]
pub struct Metrics<S> {
    inner: S,
    handles: Arc<Handles>,
}

impl<S> Service<PersistArgs> for Metrics<S>
where
    S: Service<PersistArgs, Response = PersistResult, Error = PersistError>,
{
    type Response = PersistResult;
    type Error = PersistError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), PersistError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, args: PersistArgs) -> Self::Future {
        let op = args.op();
        if let Some(content) = args.content() {
            self.handles.content_bytes[op.index()].record(JsonLen(content));
        }
        let start = self.handles.start(op);
        ResponseFuture::new(self.inner.call(args), op, start, Arc::clone(&self.handles))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use metrics::{Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString, Unit};

    use super::Handles;

    /// Live histograms that count the samples they get; counters and gauges are no-ops.
    #[derive(Default)]
    struct Samples(Arc<AtomicUsize>);

    impl HistogramFn for Samples {
        fn record(&self, _: f64) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    impl Recorder for Samples {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn register_counter(&self, _: &Key, _: &Metadata<'_>) -> Counter {
            Counter::noop()
        }
        fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
            Gauge::noop()
        }
        fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
            Histogram::from_arc(Arc::new(Samples(Arc::clone(&self.0))))
        }
    }

    #[test]
    fn only_ops_whose_duration_histogram_records_are_timed() {
        assert!(Handles::register().timed.iter().all(|timed| !timed), "no recorder: nothing is timed");
        let recorder = Samples::default();
        let handles = metrics::with_local_recorder(&recorder, Handles::register);
        assert!(handles.timed.iter().all(|timed| *timed), "every duration histogram records");
        assert_eq!(recorder.0.load(Ordering::SeqCst), 0, "asking a histogram records no sample");
    }
}

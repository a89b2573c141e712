//! Memory backend: the pipeline's cost over a direct backend call, adds per second, and
//! resident memory per stored message.

use std::ops::ControlFlow;
use std::time::Duration;

use persist::args::Add;
use persist::layer::route::{RouteLayer, thread_prefix};
use persist::layer::{Decision, InterceptLayer, MetricsLayer, ObserveLayer, TraceLayer};
use persist::memory::MemoryBackend;
use persist::read::ListMessages;
use persist::{Backend, Content, MessageId, Order, PersistArgs, Pipeline, Role, ThreadId};
use tower::{Service, ServiceExt};

use crate::Options;
use crate::measure::{median, rate, resident_bytes, timed};
use crate::report::{Row, Target};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime")
}

/// Adds `from..from + n` with explicit ids over 100 threads, built before they are timed.
fn prebuilt(threads: &[ThreadId], from: usize, n: usize) -> Vec<PersistArgs> {
    (from..from + n)
        .map(|i| {
            Add::new(threads[i % threads.len()].clone(), Role::User, Content::text("a short benchmark message"))
                .with_id(MessageId::new(format!("m{i}")).unwrap())
                .into()
        })
        .collect()
}

/// The five reference layers of the target: observe, route (no match), intercept (passes),
/// trace (no subscriber), metrics (no recorder).
macro_rules! reference_stack {
    () => {
        Pipeline::builder()
            .layer(ObserveLayer::new().on_args(|args: &PersistArgs| {
                std::hint::black_box(args.op());
            }))
            .layer(
                RouteLayer::builder()
                    .route("elsewhere", thread_prefix("never-matches:"), Pipeline::new(MemoryBackend::new()))
                    .build()
                    .expect("a valid route"),
            )
            .layer(InterceptLayer::new(|args: PersistArgs| -> Decision { ControlFlow::Continue(args) }))
            .layer(TraceLayer::new())
            .layer(MetricsLayer::new())
    };
}

/// The least any tower layer can be: a service that forwards the call and a future that
/// forwards the poll (no boxing, no clock, no shared state). Five of them through the same
/// [`Pipeline`] are the floor under the reference stack: what tower's composition and the
/// pipeline's erasure cost before any layer does its work.
#[derive(Clone, Copy, Debug)]
struct PassLayer;

impl<S> tower::Layer<S> for PassLayer {
    type Service = Pass<S>;

    fn layer(&self, inner: S) -> Pass<S> {
        Pass(inner)
    }
}

#[derive(Clone, Debug)]
struct Pass<S>(S);

impl<S: Service<PersistArgs>> Service<PersistArgs> for Pass<S>
where
    S::Future: Unpin,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Forward<S::Future>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, args: PersistArgs) -> Self::Future {
        Forward(self.0.call(args))
    }
}

/// [`Pass`]'s future. The terminal's future is `Unpin`, so no pin projection is needed.
#[derive(Debug)]
struct Forward<F>(F);

impl<F: std::future::Future + Unpin> std::future::Future for Forward<F> {
    type Output = F::Output;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<F::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx)
    }
}

fn floor(backend: MemoryBackend) -> Pipeline {
    let builder = Pipeline::builder().layer(PassLayer).layer(PassLayer).layer(PassLayer);
    builder.layer(PassLayer).layer(PassLayer).build(backend)
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Variant {
    Direct,
    Pipeline,
    Stack,
    Bare,
    Floor,
    /// The reference stack called through `Pipeline::execute` (a `'static` future) instead of
    /// `Backend::apply` (a future that borrows the pipeline).
    Execute,
    /// The direct call on a store that keeps no change feed.
    DirectFeedOff,
    Only(&'static str),
}

/// A pipeline with just one of the reference layers, to see what each costs.
fn single_layer(name: &str, backend: MemoryBackend) -> Pipeline {
    let builder = Pipeline::builder();
    match name {
        "observe" => builder
            .layer(ObserveLayer::new().on_args(|args: &PersistArgs| {
                std::hint::black_box(args.op());
            }))
            .build(backend),
        "route" => builder
            .layer(
                RouteLayer::builder()
                    .route("elsewhere", thread_prefix("never-matches:"), Pipeline::new(MemoryBackend::new()))
                    .build()
                    .expect("a valid route"),
            )
            .build(backend),
        "intercept" => builder
            .layer(InterceptLayer::new(|args: PersistArgs| -> Decision { ControlFlow::Continue(args) }))
            .build(backend),
        "trace" => builder.layer(TraceLayer::new()).build(backend),
        _ => builder.layer(MetricsLayer::new()).build(backend),
    }
}

/// Runs one chunk of adds and says how long it took.
type Runner = Box<dyn FnMut(&tokio::runtime::Runtime, Vec<PersistArgs>) -> Duration>;

/// A fresh store behind `variant`, ready to run chunks.
fn runner(variant: Variant) -> Runner {
    let backend = MemoryBackend::new();
    // The same call as the direct variant's (a pipeline is a `Backend` too), or `execute`.
    let through = |pipeline: Pipeline, execute: bool| -> Runner {
        Box::new(move |rt, args| {
            timed(|| {
                rt.block_on(async {
                    for a in args {
                        if execute {
                            pipeline.execute(a).await.expect("add");
                        } else {
                            pipeline.apply(a).await.expect("add");
                        }
                    }
                })
            })
            .1
        })
    };
    let pipeline = |pipeline: Pipeline| through(pipeline, false);
    let backend = if let Variant::DirectFeedOff = variant { backend.with_feed(None) } else { backend };
    match variant {
        Variant::Direct | Variant::DirectFeedOff => Box::new(move |rt, args| {
            timed(|| {
                rt.block_on(async {
                    for a in args {
                        backend.apply(a).await.expect("add");
                    }
                })
            })
            .1
        }),
        Variant::Pipeline => pipeline(reference_stack!().build(backend)),
        Variant::Bare => pipeline(Pipeline::new(backend)),
        Variant::Floor => pipeline(floor(backend)),
        Variant::Only(name) => pipeline(single_layer(name, backend)),
        Variant::Execute => through(reference_stack!().build(backend), true),
        Variant::Stack => {
            let mut stack = reference_stack!().service(backend);
            Box::new(move |rt, args| {
                timed(|| {
                    rt.block_on(async {
                        for a in args {
                            stack.ready().await.expect("ready").call(a).await.expect("add");
                        }
                    })
                })
                .1
            })
        }
    }
}

const ARC_PAIRS: usize = 2_000_000;

/// What one `Arc` clone and drop costs, in seconds: what a layer that shares state between
/// the clones of a stack (a route table, registered metric handles) pays for each clone; a
/// pipeline clones its stack only when its shared instance is busy or was not ready.
fn arc_clone_and_drop() -> f64 {
    let shared = std::sync::Arc::new(0_u64);
    let (_, elapsed) = timed(|| {
        for _ in 0..ARC_PAIRS {
            drop(std::hint::black_box(std::sync::Arc::clone(std::hint::black_box(&shared))));
        }
    });
    elapsed.as_secs_f64() / ARC_PAIRS as f64
}

/// Every variant adds `n` messages to its own store, in lockstep: chunk by chunk, the order
/// rotating, so drift on a shared machine (which moves a whole run by 20–40% here) hits every
/// variant alike. One round's ratio is a variant's total time over the direct call's; the
/// reported ratio is the median over rounds.
pub(crate) fn pipeline_vs_direct(options: &Options) -> Vec<Row> {
    let rt = runtime();
    let n = options.scale(200_000, 20_000);
    let chunk = 2_000;
    let rounds = options.scale(7, 3);
    let mut variants = vec![
        Variant::Direct,
        Variant::Pipeline,
        Variant::Stack,
        Variant::Bare,
        Variant::Floor,
        Variant::Execute,
        Variant::DirectFeedOff,
    ];
    if !options.quick {
        variants.extend(["observe", "route", "intercept", "trace", "metrics"].map(Variant::Only));
    }
    let threads: Vec<ThreadId> = (0..100).map(|t| ThreadId::new(format!("bench-{t}")).unwrap()).collect();
    let mut ratios: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    let mut direct_rates = Vec::new();
    let mut shared_state = Vec::new();
    for _ in 0..rounds {
        let mut runners: Vec<Runner> = variants.iter().map(|&v| runner(v)).collect();
        let mut totals = vec![Duration::ZERO; variants.len()];
        for (step, from) in (0..n).step_by(chunk).enumerate() {
            for k in 0..variants.len() {
                let index = (k + step) % variants.len();
                let args = prebuilt(&threads, from, chunk.min(n - from));
                totals[index] += runners[index](&rt, args);
            }
        }
        let direct = totals[0].as_secs_f64();
        direct_rates.push(n as f64 / direct);
        let pair = arc_clone_and_drop();
        shared_state.push((pair / (direct / n as f64), pair));
        for (ratio, total) in ratios.iter_mut().zip(&totals) {
            ratio.push(total.as_secs_f64() / direct);
        }
    }
    let medians: Vec<f64> = ratios.iter_mut().map(|r| median(r)).collect();
    let pair_share = median(&mut shared_state.iter().map(|&(share, _)| share).collect::<Vec<_>>());
    let pair = median(&mut shared_state.iter().map(|&(_, pair)| pair).collect::<Vec<_>>());
    let direct_rate = median(&mut direct_rates);
    let per_sec = |ratio: f64| direct_rate / ratio;
    let mut rows = vec![
        // A plain figure: the rows below are its ratios.
        Row::new("memory: direct backend add, single task", n as u64, direct_rate),
        Row::new("memory: Pipeline with 5 reference layers, add", n as u64, per_sec(medians[1]))
            .ratio(medians[1], "time, pipeline / direct backend call")
            .target(Target::RatioAtMost(1.10)),
        Row::new("memory: same 5 layers unerased (PipelineBuilder::service)", n as u64, per_sec(medians[2]))
            .ratio(medians[2], "time, unerased stack / direct backend call"),
        Row::new("memory: Pipeline without layers", n as u64, per_sec(medians[3]))
            .ratio(medians[3], "time, bare pipeline / direct backend call"),
        Row::new("memory: Pipeline with 5 pass-through tower layers (the floor)", n as u64, per_sec(medians[4]))
            .ratio(medians[4], "time, 5 layers doing nothing / direct backend call"),
        Row::new(
            "memory: one Arc clone + drop (a layer's shared state, per clone of the stack)",
            ARC_PAIRS as u64,
            1.0 / pair,
        )
        .ratio(pair_share, "time, one Arc clone and drop / one direct add")
        .note(format!("{:.1} ns", pair * 1e9)),
        Row::new("memory: Pipeline with 5 reference layers, execute ('static future)", n as u64, per_sec(medians[5]))
            .ratio(medians[5], "time, pipeline.execute / direct backend call"),
        Row::new("memory: direct backend add, change feed off (with_feed(None))", n as u64, per_sec(medians[6]))
            .ratio(1.0 / medians[6], "time, feed on (the default) / feed off"),
    ];
    for (variant, ratio) in variants.iter().zip(&medians).skip(7) {
        if let Variant::Only(name) = variant {
            rows.push(
                Row::new(format!("memory: Pipeline with only {name}"), n as u64, per_sec(*ratio))
                    .ratio(*ratio, "time, pipeline / direct backend call"),
            );
        }
    }
    rows
}

/// Lists the latest 50 messages of a thread, through the five reference layers and on the
/// backend directly, over one store (100 threads of 200 messages), in interleaved chunks: the
/// read path's cost, as `pipeline_vs_direct` measures the write path's.
pub(crate) fn reads_vs_direct(options: &Options) -> Vec<Row> {
    let rt = runtime();
    let backend = MemoryBackend::new();
    let threads: Vec<ThreadId> = (0..100).map(|t| ThreadId::new(format!("read-{t}")).unwrap()).collect();
    rt.block_on(async {
        for args in prebuilt(&threads, 0, 20_000) {
            backend.apply(args).await.expect("fill");
        }
    });
    let pipeline = reference_stack!().build(backend.clone());
    let n = options.scale(100_000, 10_000);
    let chunk = 1_000;
    let rounds = options.scale(7, 3);
    let query = |i: usize| ListMessages::new(threads[i % threads.len()].clone()).with_order(Order::Desc).with_limit(50);
    let (mut ratios, mut direct_rates) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let (mut direct, mut layered) = (Duration::ZERO, Duration::ZERO);
        for (step, from) in (0..n).step_by(chunk).enumerate() {
            let run_direct = |rt: &tokio::runtime::Runtime| {
                timed(|| {
                    rt.block_on(async {
                        for i in from..from + chunk {
                            std::hint::black_box(backend.list(query(i)).await.expect("list"));
                        }
                    })
                })
                .1
            };
            let run_layered = |rt: &tokio::runtime::Runtime| {
                timed(|| {
                    rt.block_on(async {
                        for i in from..from + chunk {
                            std::hint::black_box(pipeline.list(query(i)).await.expect("list"));
                        }
                    })
                })
                .1
            };
            // The order alternates every chunk, so drift hits both alike.
            if step % 2 == 0 {
                direct += run_direct(&rt);
                layered += run_layered(&rt);
            } else {
                layered += run_layered(&rt);
                direct += run_direct(&rt);
            }
        }
        direct_rates.push(n as f64 / direct.as_secs_f64());
        ratios.push(layered.as_secs_f64() / direct.as_secs_f64());
    }
    let ratio = median(&mut ratios);
    let direct_rate = median(&mut direct_rates);
    vec![
        Row::new("memory: list the latest 50 of a thread, backend called directly", n as u64, direct_rate),
        Row::new("memory: list the latest 50 through the 5 reference layers", n as u64, direct_rate / ratio)
            .ratio(ratio, "time, pipeline.list / Backend::list")
            .target(Target::RatioAtMost(1.10)),
    ]
}

/// For profiling one variant alone
/// (`PERSIST_BENCH_PROFILE=direct|pipeline|stack|bare|floor|execute|<layer>`, `PERSIST_BENCH_N` adds):
/// no interleaving, so `perf` or `callgrind` see just that variant.
pub(crate) fn profile(variant: &str) {
    let rt = runtime();
    let n = crate::measure::profile_adds(200_000);
    let variant = match variant {
        "direct" => Variant::Direct,
        "pipeline" => Variant::Pipeline,
        "bare" => Variant::Bare,
        "stack" => Variant::Stack,
        "floor" => Variant::Floor,
        "execute" => Variant::Execute,
        "observe" => Variant::Only("observe"),
        "route" => Variant::Only("route"),
        "intercept" => Variant::Only("intercept"),
        "trace" => Variant::Only("trace"),
        "metrics" => Variant::Only("metrics"),
        other => {
            eprintln!(
                "unknown variant `{other}`: direct, pipeline, stack, bare, floor, execute, observe, \
                 route, intercept, trace or metrics"
            );
            std::process::exit(2);
        }
    };
    let threads: Vec<ThreadId> = (0..100).map(|t| ThreadId::new(format!("bench-{t}")).unwrap()).collect();
    let args = prebuilt(&threads, 0, n);
    let elapsed = runner(variant)(&rt, args);
    eprintln!("{variant:?}: {:.0} ns per add", elapsed.as_secs_f64() * 1e9 / n as f64);
}

pub(crate) fn resident(options: &Options) -> Vec<Row> {
    let rt = runtime();
    let n = options.scale(1_000_000, 100_000);
    let filler = "Benchmark conversation text of a realistic length, the kind an assistant writes. ";
    let text = |i: usize| format!("{i:09} {}", filler.repeat(4).chars().take(280).collect::<String>());
    let payload = Content::text(text(0)).json_len();
    let Some(before) = resident_bytes() else {
        return vec![Row::skipped("memory: resident bytes per message", "no /proc/self/statm")];
    };
    let backend = MemoryBackend::new();
    let threads: Vec<ThreadId> = (0..1000).map(|t| ThreadId::new(format!("resident-{t}")).unwrap()).collect();
    let (_, elapsed) = timed(|| {
        rt.block_on(async {
            for i in 0..n {
                let add = Add::new(threads[i % threads.len()].clone(), Role::Assistant, Content::text(text(i)));
                backend.apply(add.into()).await.expect("add");
            }
        })
    });
    let after = resident_bytes().unwrap_or(before);
    let per_message = after.saturating_sub(before) as f64 / n as f64;
    let row =
        Row::new(format!("memory: resident bytes per message ({n} × {payload} B content)"), n as u64, rate(n, elapsed))
            .ratio(per_message / payload as f64, "resident bytes per message / content bytes")
            .target(Target::RatioAtMost(1.5))
            .note(format!("{per_message:.0} B per message"));
    drop(backend);
    vec![row]
}

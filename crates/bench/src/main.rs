//! persist-bench: named scenarios, each measured side by side with a hand-written baseline in
//! the same run (interleaved rounds, median), printed as a markdown table or JSON lines.
//!
//! ```text
//! cargo run --release -p persist-bench -- [--quick | --smoke] [--json] [--only SUBSTRING]
//! ```
//!
//! `--quick` runs each scenario at about a tenth of its size; `--smoke` at about a hundredth,
//! so that every scenario runs and none is measured (what CI runs, on a debug build).
//!
//! PostgreSQL scenarios use `$PERSIST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`) and are reported as skipped without a server;
//! `pgvector` uses `$PERSIST_PGVECTOR_URL` (default `postgres://postgres@127.0.0.1:5418/test`,
//! a server with pgvector 0.8 or later).
//!
//! `PERSIST_BENCH_PROFILE=<variant>` (`direct`, `pipeline`, `stack`, `bare`, `floor`, `execute` or one
//! layer's name) runs just that memory variant, `PERSIST_BENCH_N` adds, for `perf` or `callgrind`;
//! `sqlite-one`, `sqlite-threads` or `sqlite-tasks` runs one SQLite caller, or 64 callers on
//! OS threads or as tasks, on a fresh database; `postgres-one` or `postgres-tasks` the same
//! for PostgreSQL; `full-ours-search`, `full-ours-plain`, `full-rusqlite-search` or
//! `full-rusqlite-plain` one caller at `synchronous=FULL`; `streams-final`, `streams-reserve-final`, `streams-coalesced`,
//! `streams-appends` or `streams-every` one way of writing 64 streamed replies.
//!
//! `--only soak` and `--only recall-1m` run the scenarios left out of a full run: `persist
//! serve`'s resident memory over rounds of creates (see `serve::soak`), and the vector index at
//! one million vectors (minutes of fill, 2 GB of disk: see `recall::run_million`).

#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod branches;
mod compaction;
mod durability;
mod encrypt;
mod feed;
mod live;
mod mcp;
mod measure;
mod memory;
mod peers;
mod pgvector;
mod postgres;
mod reads;
mod recall;
mod replicas;
mod report;
mod scaling;
mod search;
mod serve;
mod sqlite;
mod storage;
mod streams;
mod turns;
mod workload;

use report::Row;

/// The HTTP client of the `serve` and `mcp` rows: up to `clients` connections kept open between
/// requests, each dropped once idle for 5 s. `persist serve` closes a keep-alive connection
/// idle for its header timeout (10 s); a client keeping it longer may send on one the server is
/// closing (`IncompleteMessage`), as happened when the in-process rounds between the HTTP ones
/// ran slowly on a loaded machine.
fn http_client(clients: usize) -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .pool_idle_timeout(std::time::Duration::from_secs(5))
        .build()
        .expect("an HTTP client")
}

/// Options of one run.
#[derive(Debug, Clone)]
struct Options {
    quick: bool,
    /// Smaller still than `quick` (which it implies): every scenario runs, none is measured.
    smoke: bool,
    json: bool,
    only: Option<String>,
}

impl Options {
    fn parse() -> Result<Self, String> {
        let mut options = Self { quick: false, smoke: false, json: false, only: None };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--quick" => options.quick = true,
                "--smoke" => (options.quick, options.smoke) = (true, true),
                "--json" => options.json = true,
                "--only" => options.only = Some(args.next().ok_or("--only needs a value")?),
                "--help" | "-h" => {
                    return Err("usage: persist-bench [--quick | --smoke] [--json] [--only SUBSTRING]".to_owned());
                }
                other => return Err(format!("unknown argument {other:?} (try --help)")),
            }
        }
        Ok(options)
    }

    fn wants(&self, group: &str) -> bool {
        self.only.as_deref().is_none_or(|only| group.contains(only) || only.contains(group))
    }

    /// `full` in a full run, `quick` with `--quick`, a tenth of `quick` with `--smoke` but never
    /// below 64 (rounds, callers and a page's rows stay as `--quick` has them).
    fn scale(&self, full: usize, quick: usize) -> usize {
        match (self.smoke, self.quick) {
            (true, _) => (quick / 10).max(quick.min(64)),
            (false, true) => quick,
            (false, false) => full,
        }
    }

    /// As [`Options::scale`], but at `quick` in a smoke run too: for the sizes later steps
    /// depend on (pages of the rows written, lists learned from the vectors).
    fn scale_kept(&self, full: usize, quick: usize) -> usize {
        if self.quick { quick } else { full }
    }
}

fn main() {
    // The `mcp` rows' child processes: MCP on stdio over the store named next, or the stdio
    // floor answering the file named next.
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        Some("--mcp-stdio-child") => return mcp::stdio_child(&args.next().expect("--mcp-stdio-child URL")),
        Some("--mcp-stdio-floor") => return mcp::stdio_floor(&args.next().expect("--mcp-stdio-floor FILE")),
        _ => {}
    }
    if let Ok(variant) = std::env::var("PERSIST_BENCH_PROFILE") {
        if let Some(variant) = variant.strip_prefix("streams-") {
            streams::profile(variant);
        } else if let Some(variant) = variant.strip_prefix("full-") {
            durability::profile(variant);
        } else if let Some(variant) = variant.strip_prefix("sqlite-") {
            sqlite::profile(variant);
        } else if let Some(variant) = variant.strip_prefix("postgres-") {
            postgres::profile(variant);
        } else {
            memory::profile(&variant);
        }
        return;
    }
    let options = match Options::parse() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(2);
        }
    };
    let mut rows: Vec<Row> = Vec::new();
    let mut emit = |new: Vec<Row>| {
        for row in &new {
            if options.json {
                println!("{}", row.json());
            }
        }
        rows.extend(new);
    };
    // Resident memory first: later scenarios would leave freed pages behind.
    if options.wants("memory") {
        emit(memory::resident(&options));
        emit(memory::pipeline_vs_direct(&options));
        emit(memory::reads_vs_direct(&options));
    }
    if options.wants("sqlite") {
        emit(sqlite::run(&options));
    }
    if options.wants("durability") {
        emit(durability::run(&options));
    }
    if options.wants("peers") {
        emit(peers::run(&options));
    }
    if options.wants("turns") {
        emit(turns::run(&options));
    }
    if options.wants("reads") {
        emit(reads::run(&options));
    }
    if options.wants("streams") {
        emit(streams::run_all(&options));
        emit(streams::bytes_per_reply(&options));
    }
    if options.wants("postgres") {
        emit(postgres::run(&options));
    }
    if options.wants("standby") {
        emit(replicas::run(&options));
    }
    if options.wants("encrypt") {
        emit(encrypt::run(&options));
    }
    if options.wants("feed") {
        emit(feed::run(&options));
    }
    if options.wants("live") {
        emit(live::run(&options));
    }
    if options.wants("branches") {
        emit(branches::run(&options));
    }
    if options.wants("compaction") {
        emit(compaction::run(&options));
    }
    if options.wants("search") {
        emit(search::run(&options));
    }
    if options.wants("recall") && options.only.as_deref() != Some("recall-1m") {
        emit(recall::run(&options));
    }
    // One million vectors: asked for by name only, never in a full run.
    if options.only.as_deref() == Some("recall-1m") {
        emit(recall::run_million(&options));
    }
    if options.wants("pgvector") {
        emit(pgvector::run(&options));
    }
    if options.wants("embedding") {
        emit(recall::run_writes(&options));
    }
    if options.wants("serve") {
        emit(serve::run(&options));
    }
    if options.wants("mcp") {
        emit(mcp::run(&options));
    }
    // Only when asked for by name: it reads the process's resident memory.
    if options.only.as_deref() == Some("soak") {
        emit(serve::soak(&options));
    }
    if options.wants("storage") {
        emit(storage::run(&options));
    }
    if options.wants("scaling") {
        emit(scaling::run(&options));
    }
    if !options.json {
        println!("{}", report::table(&rows));
    }
}

//! `persist serve`: OpenAI's Conversations API on the store (see `persist::serve`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use persist::encrypt::EncryptLayer;
use persist::layer::{MetricsLayer, TraceLayer};
use persist::mcp::McpServer;
use persist::recall::{OpenAiEmbedder, VectorIndex};
use persist::serve::metrics::Prometheus;
use persist::serve::{ApiKeys, Auth, Limits, Server};
use persist::{PersistError, Pipeline, TenantId};
use tracing_subscriber::filter::Targets;

use crate::commands::embeddings::embedding;
use crate::error::{CliError, CliResult};
use crate::store::{Mode, Store};

/// The variable holding API keys (`TENANT:KEY,…`), read from the environment only: a flag would
/// show them in the process list and the shell's history.
pub(crate) const KEYS_VAR: &str = "PERSIST_SERVE_KEYS";

/// What `persist serve` was told.
#[derive(Debug)]
pub(crate) struct ServeOptions {
    pub(crate) addr: SocketAddr,
    pub(crate) keys_file: Option<PathBuf>,
    pub(crate) tenant_header: Option<String>,
    pub(crate) no_auth: bool,
    pub(crate) allowed_hosts: Vec<String>,
    pub(crate) tenant: Option<TenantId>,
    pub(crate) limits: Limits,
    /// The most connections the store's pool opens (PostgreSQL; SQLite's read connections).
    pub(crate) pool_size: u32,
    pub(crate) json_logs: bool,
    /// Which events are logged: a level, and levels by target.
    pub(crate) log_filter: Targets,
    /// Where `GET /metrics` is served, when it is.
    pub(crate) metrics_addr: Option<SocketAddr>,
    /// What new messages are embedded with, and recall served by (`--embeddings-url`).
    pub(crate) embedder: Option<OpenAiEmbedder>,
    /// What recall's `nearest` is answered from (`--vector-index-mib`).
    pub(crate) vector_index: Option<VectorIndex>,
}

/// How callers are known: keys (from the file and the environment), a gateway's tenant
/// header, or no authentication at all when asked for by name.
fn auth(options: &ServeOptions) -> CliResult<Auth> {
    let keys = read_keys(options.keys_file.as_deref())?;
    let ways = [!keys.is_empty(), options.tenant_header.is_some(), options.no_auth];
    match ways {
        [true, false, false] => {
            if options.tenant.is_some() {
                return Err(CliError::usage("--tenant does not apply with keys: each key names its tenant"));
            }
            Ok(Auth::Keys(keys))
        }
        [false, true, false] => {
            let name = options.tenant_header.as_deref().unwrap_or_default();
            let header = axum_header(name)?;
            Ok(Auth::TenantHeader(header))
        }
        [false, false, true] => Ok(Auth::Open(options.tenant.clone())),
        [false, false, false] => Err(CliError::usage(format!(
            "no way to know callers: give API keys ({KEYS_VAR} or --keys-file), --tenant-header NAME behind a gateway, or --no-auth"
        ))),
        _ => Err(CliError::usage("API keys, --tenant-header and --no-auth exclude each other")),
    }
}

/// The API keys of `--keys-file` and `$PERSIST_SERVE_KEYS`, as they are now. An error names
/// where the key at fault is: the file's line, the variable's entry (its comma-separated
/// position), never the key.
fn read_keys(keys_file: Option<&Path>) -> CliResult<ApiKeys> {
    let mut keys = ApiKeys::new();
    if let Some(path) = keys_file {
        let file = std::fs::read_to_string(path)
            .map_err(|e| CliError::context(format!("reading the keys file {}", path.display()), &e))?;
        keys = ApiKeys::parse(&file)
            .map_err(|e| CliError::usage(format!("the keys file {}: {}", path.display(), reason(e))))?;
    }
    let listed = match std::env::var(KEYS_VAR) {
        Ok(listed) => listed,
        Err(std::env::VarError::NotPresent) => return Ok(keys),
        Err(std::env::VarError::NotUnicode(_)) => return Err(CliError::usage(format!("{KEYS_VAR} is not UTF-8 text"))),
    };
    for (at, entry) in listed.split(',').map(str::trim).enumerate().filter(|(_, entry)| !entry.is_empty()) {
        let refused = |why: String| CliError::usage(format!("${KEYS_VAR}, entry {}: {why}", at + 1));
        let (tenant, key) = entry.rsplit_once(':').ok_or_else(|| refused("not TENANT:KEY".into()))?;
        let tenant = TenantId::new(tenant.trim()).map_err(|e| refused(reason(e)))?;
        keys = keys.with_key(tenant, key.trim()).map_err(|e| refused(reason(e)))?;
    }
    Ok(keys)
}

/// Why a key was refused, without the error's kind (`invalid keys: `).
fn reason(error: PersistError) -> String {
    match error {
        PersistError::InvalidInput { reason, .. } => reason.into_owned(),
        other => other.to_string(),
    }
}

/// Reads the keys again on each SIGHUP (the file is what changes: a process's environment
/// does not) and serves them from then on; a file that cannot be read or parsed, or holds no
/// key, leaves the keys in use, and the log says why. A server without keys ignores SIGHUP.
/// Set up before the server answers, so a SIGHUP never ends the process.
#[cfg(unix)]
fn reload_on_hangup(server: Server, options: &ServeOptions) -> CliResult {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = signal(SignalKind::hangup()).map_err(|e| CliError::context("listening for SIGHUP", &e))?;
    let keys_file = options.keys_file.clone();
    let takes_keys = options.tenant_header.is_none() && !options.no_auth;
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            if !takes_keys {
                tracing::warn!("SIGHUP ignored: this server takes no API keys (--tenant-header, --no-auth)");
                continue;
            }
            let reloaded = read_keys(keys_file.as_deref())
                .and_then(|keys| server.reload_keys(keys.clone()).map(|()| keys.len()).map_err(CliError::failed));
            match reloaded {
                Ok(keys) => tracing::info!(keys, "SIGHUP: reloaded the API keys"),
                Err(error) => tracing::warn!(%error, "SIGHUP: kept the API keys in use"),
            }
        }
    });
    Ok(())
}

fn axum_header(name: &str) -> CliResult<persist::serve::HeaderName> {
    persist::serve::HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| CliError::usage(format!("--tenant-header: '{name}' is not a header name")))
}

/// Serves until Ctrl-C or SIGTERM; requests in flight then have the shutdown timeout to
/// finish. SIGHUP reloads the API keys. With `--log-format json` every line on stderr is a JSON
/// object, a failure's too.
pub(crate) async fn serve(url: &str, encrypt: Option<EncryptLayer>, options: ServeOptions) -> CliResult {
    init_logs(options.json_logs, options.log_filter.clone());
    match run(url, encrypt, &options).await {
        Err(error) if options.json_logs => {
            logs::failed(&error);
            Err(CliError::Reported(error.exit_code()))
        }
        served => served,
    }
}

async fn run(url: &str, encrypt: Option<EncryptLayer>, options: &ServeOptions) -> CliResult {
    let auth = auth(options)?;
    // Installed before the pipeline is built: its layer registers its metrics then.
    let prometheus = options.metrics_addr.map(|_| match &options.vector_index {
        Some(index) => Prometheus::new().with_vector_index(index.clone()),
        None => Prometheus::new(),
    });
    if let Some(prometheus) = &prometheus {
        prometheus.install().map_err(CliError::failed)?;
    }
    let store = Store::open_pooled(url, Mode::CreateIfMissing, options.pool_size).await?.with_keys(encrypt.as_ref());
    let served = serve_store(&store, auth, prometheus, options).await;
    store.close().await;
    if served.is_ok() {
        tracing::info!("stopped");
    }
    served
}

async fn serve_store(store: &Store, auth: Auth, prometheus: Option<Prometheus>, options: &ServeOptions) -> CliResult {
    let builder = Pipeline::builder().layer(TraceLayer::new());
    let stored = embedding(store.keyed().clone(), options.embedder.as_ref(), options.vector_index.as_ref());
    let pipeline = match prometheus.is_some() {
        true => builder.layer(MetricsLayer::new()).build(stored),
        false => builder.build(stored),
    };
    // MCP at /mcp: the same pipeline, callers and limits (each request's caller is its tenant).
    let mut mcp = McpServer::new(pipeline.clone()).with_tenant(options.tenant.clone());
    let mut server = Server::new(pipeline, auth);
    if let Some(embedder) = &options.embedder {
        mcp = mcp.with_embedder(embedder.clone());
        server = server.with_embedder(embedder.clone());
    }
    let server = server
        .with_service("/mcp", mcp.http_service())
        .with_limits(options.limits.clone())
        .with_allowed_hosts(&options.allowed_hosts);
    #[cfg(unix)]
    reload_on_hangup(server.clone(), options)?;
    let listener = tokio::net::TcpListener::bind(options.addr)
        .await
        .map_err(|e| CliError::context(format!("listening on {}", options.addr), &e))?;
    let addr = listener.local_addr().unwrap_or(options.addr);
    let url = format!("http://{addr}/v1");
    // `GET /metrics` on its own listener, never the API's; it stops with the server.
    let (stop_metrics, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
    let mut metrics = None;
    if let (Some(prometheus), Some(at)) = (prometheus, options.metrics_addr) {
        let scraped = tokio::net::TcpListener::bind(at)
            .await
            .map_err(|e| CliError::context(format!("listening for --metrics-addr on {at}"), &e))?;
        let scrape_url = format!("http://{}/metrics", scraped.local_addr().unwrap_or(at));
        let stopped = async {
            let _ = metrics_stopped.await;
        };
        metrics = Some((tokio::spawn(prometheus.serve(scraped, stopped)), scrape_url));
    }
    let shutdown = shutdown();
    let scrape_url = metrics.as_ref().map(|(_, url)| url.as_str());
    let recall = options.embedder.as_ref().map(|embedder| embedder.endpoint().to_owned());
    tracing::info!(%url, store = %store.label, metrics = scrape_url, recall, "serving the Conversations API, and MCP at /mcp");
    if !options.json_logs {
        let metrics = scrape_url.map(|url| format!("; metrics on {url}")).unwrap_or_default();
        eprintln!("persist serve: the Conversations API on {url}, MCP on http://{addr}/mcp ({}){metrics}", store.label);
    }
    let served = server.serve(listener, shutdown).await;
    let _ = stop_metrics.send(());
    if let Some((task, _)) = metrics {
        let _ = task.await;
    }
    served.map_err(|e| CliError::context("serving", &e))
}

/// Completes on Ctrl-C or SIGTERM, both listened for from the call on (a signal sent once the
/// address is printed is never met by its default action).
#[cfg(unix)]
fn shutdown() -> impl Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let (interrupt, terminate) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate()));
    async move {
        match (interrupt, terminate) {
            (Ok(mut interrupt), Ok(mut terminate)) => {
                tokio::select! {
                    _ = interrupt.recv() => {}
                    _ = terminate.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}

/// Completes on Ctrl-C.
#[cfg(not(unix))]
fn shutdown() -> impl Future<Output = ()> + Send + 'static {
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Logs to stderr, a line per event: text, or JSON objects with `--log-format json`; the
/// events `filter` keeps.
pub(crate) fn init_logs(json: bool, filter: Targets) {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(tracing::level_filters::LevelFilter::TRACE)
        .with_ansi(false);
    let _ = match json {
        true => builder.json().finish().with(filter).try_init(),
        false => builder.finish().with(filter).try_init(),
    };
}

/// What `--log-level` takes: a level (`error`, `warn`, `info`, `debug`, `trace`, `off`), and/or
/// `TARGET=LEVEL` directives, comma-separated (`warn,persist_serve::access=info`); the most
/// specific target applies. A bare word that is not a level is refused (a misspelt level would
/// otherwise be read as a target, logging nothing else).
pub(crate) fn parse_log_filter(text: &str) -> Result<Targets, String> {
    for directive in text.split(',').map(str::trim) {
        let level = directive.rsplit_once('=').map_or(directive, |(_, level)| level);
        if level.parse::<tracing::level_filters::LevelFilter>().is_err() {
            return Err(format!(
                "'{directive}' is neither a level (error, warn, info, debug, trace, off) nor TARGET=LEVEL"
            ));
        }
    }
    text.parse::<Targets>().map_err(|e| e.to_string())
}

/// The JSON lines of `--log-format json` that are not `tracing` events.
mod logs {
    use std::io::Write as _;

    use tracing_subscriber::fmt::format::Writer;
    use tracing_subscriber::fmt::time::{FormatTime as _, SystemTime};

    use crate::error::CliError;

    /// The failure that ends `persist serve`, as the log's other lines are written (whatever
    /// the log's filter keeps: it is the last line).
    pub(super) fn failed(error: &CliError) {
        let mut timestamp = String::new();
        let _ = SystemTime.format_time(&mut Writer::new(&mut timestamp));
        let line = serde_json::json!({
            "timestamp": timestamp,
            "level": "ERROR",
            "fields": {"message": "persist serve failed", "error": error.to_string()},
            "target": "persist::serve",
        });
        let _ = writeln!(std::io::stderr(), "{line}");
    }
}

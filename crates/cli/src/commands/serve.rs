//! `persist serve`: OpenAI's Conversations API on the store (see `persist::serve`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use persist::encrypt::EncryptLayer;
use persist::layer::TraceLayer;
use persist::serve::{ApiKeys, Auth, Limits, Server};
use persist::{Pipeline, TenantId};

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
    pub(crate) log_level: tracing::Level,
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

/// The API keys of `--keys-file` and `$PERSIST_SERVE_KEYS`, as they are now.
fn read_keys(keys_file: Option<&Path>) -> CliResult<ApiKeys> {
    let mut text = String::new();
    if let Some(path) = keys_file {
        let file = std::fs::read_to_string(path)
            .map_err(|e| CliError::context(format!("reading the keys file {}", path.display()), &e))?;
        text.push_str(&file);
        text.push('\n');
    }
    match std::env::var(KEYS_VAR) {
        Ok(keys) => text.push_str(&keys.replace(',', "\n")),
        Err(std::env::VarError::NotPresent) => {}
        Err(std::env::VarError::NotUnicode(_)) => return Err(CliError::usage(format!("{KEYS_VAR} is not UTF-8 text"))),
    }
    ApiKeys::parse(&text).map_err(|e| CliError::usage(format!("the API keys: {e}")))
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
/// finish. SIGHUP reloads the API keys.
pub(crate) async fn serve(url: &str, encrypt: Option<EncryptLayer>, options: ServeOptions) -> CliResult {
    init_logs(options.json_logs, options.log_level);
    let auth = auth(&options)?;
    let store = Store::open_pooled(url, Mode::CreateIfMissing, options.pool_size).await?.with_keys(encrypt.as_ref());
    let pipeline = Pipeline::builder().layer(TraceLayer::new()).build(store.keyed().clone());
    let server =
        Server::new(pipeline, auth).with_limits(options.limits.clone()).with_allowed_hosts(&options.allowed_hosts);
    #[cfg(unix)]
    if let Err(error) = reload_on_hangup(server.clone(), &options) {
        store.close().await;
        return Err(error);
    }
    let listener = match tokio::net::TcpListener::bind(options.addr).await {
        Ok(listener) => listener,
        Err(e) => {
            store.close().await;
            return Err(CliError::context(format!("listening on {}", options.addr), &e));
        }
    };
    let shutdown = shutdown();
    let addr = listener.local_addr().unwrap_or(options.addr);
    tracing::info!(%addr, store = %store.label, "serving the Conversations API");
    eprintln!("persist serve: the Conversations API on http://{addr}/v1 ({})", store.label);
    let served = server.serve(listener, shutdown).await;
    store.close().await;
    tracing::info!("stopped");
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

/// Logs to stderr, a line per event: text, or JSON objects with `--log-format json`.
fn init_logs(json: bool, level: tracing::Level) {
    let builder = tracing_subscriber::fmt().with_writer(std::io::stderr).with_max_level(level).with_ansi(false);
    let _ = if json { builder.json().try_init() } else { builder.try_init() };
}

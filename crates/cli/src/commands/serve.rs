//! `persist serve`: OpenAI's Conversations API on the store (see `persist::serve`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

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
    pub(crate) json_logs: bool,
    pub(crate) log_level: tracing::Level,
}

/// How callers are known: keys (from the file and the environment), a gateway's tenant
/// header, or no authentication at all when asked for by name.
fn auth(options: &ServeOptions) -> CliResult<Auth> {
    let mut text = String::new();
    if let Some(path) = &options.keys_file {
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
    let keys = ApiKeys::parse(&text).map_err(|e| CliError::usage(format!("the API keys: {e}")))?;
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

fn axum_header(name: &str) -> CliResult<persist::serve::HeaderName> {
    persist::serve::HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| CliError::usage(format!("--tenant-header: '{name}' is not a header name")))
}

/// Serves until Ctrl-C or SIGTERM; requests in flight finish first.
pub(crate) async fn serve(url: &str, encrypt: Option<EncryptLayer>, options: ServeOptions) -> CliResult {
    init_logs(options.json_logs, options.log_level);
    let auth = auth(&options)?;
    let store = Store::open(url, Mode::CreateIfMissing).await?.with_keys(encrypt.as_ref());
    let pipeline = Pipeline::builder().layer(TraceLayer::new()).build(store.keyed().clone());
    let server = Server::new(pipeline, auth).with_limits(options.limits).with_allowed_hosts(&options.allowed_hosts);
    let listener = match tokio::net::TcpListener::bind(options.addr).await {
        Ok(listener) => listener,
        Err(e) => {
            store.close().await;
            return Err(CliError::context(format!("listening on {}", options.addr), &e));
        }
    };
    let addr = listener.local_addr().unwrap_or(options.addr);
    tracing::info!(%addr, store = %store.label, "serving the Conversations API");
    eprintln!("persist serve: the Conversations API on http://{addr}/v1 ({})", store.label);
    let served = server.serve(listener, shutdown()).await;
    tracing::info!("stopped: every request in flight was answered");
    store.close().await;
    served.map_err(|e| CliError::context("serving", &e))
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
}

/// Logs to stderr, a line per event: text, or JSON objects with `--log-format json`.
fn init_logs(json: bool, level: tracing::Level) {
    let builder = tracing_subscriber::fmt().with_writer(std::io::stderr).with_max_level(level).with_ansi(false);
    let _ = if json { builder.json().try_init() } else { builder.try_init() };
}

/// The limits `persist serve` was given.
pub(crate) fn limits(
    max_body_bytes: usize,
    max_items: usize,
    store_timeout: Duration,
    max_concurrent_requests: usize,
) -> Limits {
    Limits::default()
        .with_max_body_bytes(max_body_bytes)
        .with_max_items(max_items)
        .with_store_timeout(store_timeout)
        .with_max_concurrent_requests(max_concurrent_requests)
}

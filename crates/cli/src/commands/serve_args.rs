//! `persist serve`'s flags, and the options they make.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use persist::TenantId;
use persist::serve::Limits;

use crate::commands::serve::{ServeOptions, parse_log_filter};
use crate::error::{CliError, CliResult};
use crate::text::parse_duration;

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// The address to listen on.
    #[arg(long, env = "PERSIST_SERVE_ADDR", value_name = "HOST:PORT", default_value = "127.0.0.1:8080")]
    addr: std::net::SocketAddr,
    /// A file of API keys, one TENANT:KEY a line (# starts a comment); with those of
    /// $PERSIST_SERVE_KEYS. Read again on SIGHUP: keys added or removed there apply from then
    /// on, without a restart.
    #[arg(long, env = "PERSIST_SERVE_KEYS_FILE", hide_env_values = true, value_name = "FILE")]
    keys_file: Option<PathBuf>,
    /// Behind a gateway that authenticates callers: the tenant is this header's value (the
    /// server must be reachable only through the gateway, which replaces the client's header:
    /// two of it, or a value with a comma, is 401).
    #[arg(long, env = "PERSIST_SERVE_TENANT_HEADER", value_name = "NAME")]
    tenant_header: Option<String>,
    /// No authentication: every request is --tenant's (or the threads without a tenant). For a
    /// private interface used by one app; see --allow-host.
    #[arg(long, env = "PERSIST_SERVE_NO_AUTH")]
    no_auth: bool,
    /// Without keys (--tenant-header, --no-auth), a host name requests may name in Host and
    /// Origin besides localhost, 127.0.0.1, [::1] and --addr's address (others are 403, against
    /// DNS rebinding and cross-site requests); repeatable, or comma-separated; * allows any.
    #[arg(long = "allow-host", env = "PERSIST_SERVE_ALLOW_HOSTS", value_name = "NAME", value_delimiter = ',')]
    allowed_hosts: Vec<String>,
    /// The largest request body; a larger one is 413, refused before it is read.
    #[arg(long, env = "PERSIST_SERVE_MAX_BODY_BYTES", value_name = "BYTES", default_value_t = 16 * 1024 * 1024)]
    max_body_bytes: usize,
    /// The most items one items.create writes (at most 256; a conversation's create takes 20).
    #[arg(long, env = "PERSIST_SERVE_MAX_ITEMS", value_name = "N", default_value_t = 256,
          value_parser = clap::value_parser!(u16).range(1..=256))]
    max_items: u16,
    /// How long a request waits for the store before answering 503 with retry-after.
    #[arg(long, env = "PERSIST_SERVE_STORE_TIMEOUT", value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    store_timeout: Duration,
    /// The most requests answered at once; more are 429 with retry-after. A request counts once
    /// its body is read: clients slow to send one hold no slot.
    #[arg(long, env = "PERSIST_SERVE_MAX_CONCURRENT_REQUESTS", value_name = "N", default_value_t = 512)]
    max_concurrent_requests: usize,
    /// How long a request's headers may take to arrive (from the connection's opening or the
    /// previous answer): then the connection is closed. Also how long an idle keep-alive
    /// connection stays open.
    #[arg(long, env = "PERSIST_SERVE_HEADER_TIMEOUT", value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    header_timeout: Duration,
    /// How long a request's body may take to arrive after its headers: a later one is 408 and
    /// its connection closed.
    #[arg(long, env = "PERSIST_SERVE_BODY_TIMEOUT", value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    body_timeout: Duration,
    /// The most connections open at once: further ones wait, unaccepted, in the listen backlog
    /// until one closes.
    #[arg(long, env = "PERSIST_SERVE_MAX_CONNECTIONS", value_name = "N", default_value_t = 1024,
          value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: u32,
    /// After Ctrl-C or SIGTERM, how long the requests in flight have to finish (event streams
    /// end at once; clients resume with Last-Event-ID); the connections still busy are then
    /// closed and the process exits.
    #[arg(long, env = "PERSIST_SERVE_SHUTDOWN_TIMEOUT", value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    shutdown_timeout: Duration,
    /// The most connections this instance opens to the store: PostgreSQL server connections
    /// (one more while event streams are open), keeping instances × (N + 1) below the
    /// server's max_connections; for a SQLite file, its read connections (the writer's is one
    /// more).
    #[arg(long, env = "PERSIST_POOL_SIZE", value_name = "N", default_value_t = 4,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pool_size: u32,
    /// The log on stderr, a line per request and event: text, or json (every line a JSON
    /// object, the start's and a failure's too).
    #[arg(long, env = "PERSIST_LOG_FORMAT", value_name = "FORMAT", default_value = "text",
          value_parser = ["text", "json"])]
    log_format: String,
    /// The events logged: the least severe level (error, warn, info, debug, trace, off), and/or
    /// TARGET=LEVEL, comma-separated, the longest matching target deciding. Each request has one
    /// access line at info (target persist_serve::access); the store's traces are persist_layer;
    /// 'warn,persist_serve::access=info' keeps the access lines and drops the traces.
    #[arg(long, visible_alias = "log", env = "PERSIST_LOG_LEVEL", value_name = "FILTER", default_value = "info,rmcp=error",
          value_parser = parse_log_filter)]
    log_level: tracing_subscriber::filter::Targets,
    /// Serve GET /metrics (the Prometheus text format: requests by route and status, latencies,
    /// requests in flight, store calls and errors) on this address, apart from the API's and
    /// without a key. Off by default.
    #[arg(long, env = "PERSIST_SERVE_METRICS_ADDR", value_name = "HOST:PORT")]
    metrics_addr: Option<std::net::SocketAddr>,
    #[command(flatten)]
    embeddings: crate::commands::embeddings::EmbeddingsArgs,
    // The global flags that do nothing for `serve`, shadowed so its help leaves them out; given
    // anyway, they are refused.
    #[arg(long, hide = true)]
    json: bool,
    #[arg(long, hide = true, alias = "all-tenants")]
    across_tenants: bool,
}

impl ServeArgs {
    /// The options these flags give, for `--tenant`'s tenant; `json` is the global `--json`
    /// (given, it is refused, as `--across-tenants` is: neither applies to `serve`).
    pub(crate) fn options(self, tenant: Option<TenantId>, json: bool) -> CliResult<ServeOptions> {
        if self.across_tenants {
            return Err(CliError::usage("--across-tenants does not apply to `serve`"));
        }
        if json || self.json {
            return Err(CliError::usage("--json does not apply to `serve`: its log is --log-format json"));
        }
        Ok(ServeOptions {
            addr: self.addr,
            keys_file: self.keys_file,
            tenant_header: self.tenant_header,
            no_auth: self.no_auth,
            allowed_hosts: self.allowed_hosts,
            tenant,
            limits: Limits::default()
                .with_max_body_bytes(self.max_body_bytes)
                .with_max_items(usize::from(self.max_items))
                .with_store_timeout(self.store_timeout)
                .with_max_concurrent_requests(self.max_concurrent_requests)
                .with_header_timeout(self.header_timeout)
                .with_body_timeout(self.body_timeout)
                .with_max_connections(usize::try_from(self.max_connections).unwrap_or(usize::MAX))
                .with_shutdown_timeout(self.shutdown_timeout),
            pool_size: self.pool_size,
            json_logs: self.log_format == "json",
            log_filter: self.log_level,
            metrics_addr: self.metrics_addr,
            embedder: self.embeddings.embedder()?,
            vector_index: self.embeddings.vector_index(),
        })
    }
}

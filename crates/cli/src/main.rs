//! `persist`: the command line of persist conversation stores.
//!
//! ```text
//! persist --url sqlite:chat.db threads                      # the latest threads, a page at a time
//! persist --url sqlite:chat.db show support:1042            # one thread's transcript
//! persist --url sqlite:chat.db export --all -o chat.jsonl   # the threads without a tenant, as JSONL
//! persist --url sqlite:new.db import chat.jsonl             # idempotent: run it again to finish it
//! persist --url sqlite:chat.db copy --to postgres://app@db/chat   # every tenant, then verified
//! persist --url sqlite:chat.db prune --idle-for 90d --dry-run
//! persist --url sqlite:chat.db check --across-tenants
//! persist --url sqlite:chat.db --tenant acme search 'lisbon "rate limit" retr*'
//! PERSIST_SERVE_KEYS=acme:sk-acme-0123456789abcdef persist --url sqlite:chat.db serve   # and MCP at /mcp
//! persist --url sqlite:memory.db --tenant me mcp           # an MCP server on stdio, for an agent
//! persist --url postgres://db/directory move-tenant acme --shard a=postgres://db1/chat \
//!     --shard b=postgres://db2/chat --to b      # while the app runs; run again if stopped
//! ```
//!
//! **The store** is `--url` (or `$PERSIST_URL`): `sqlite:PATH`, `sqlite://PATH`, a path ending
//! in `.db`, or `postgres://…` / `postgresql://…` (`?schema=NAME` picks the schema). Commands
//! that only read or maintain a store refuse a SQLite file that does not exist (`no store at
//! PATH`) instead of creating an empty one; `import`, the target of `copy` and `migrate up` create it.
//!
//! **Tenants.** A thread is `(tenant, thread_id)`. Commands reach the threads of `--tenant T`,
//! or the threads without a tenant when it is not given; `--across-tenants` reaches every tenant's
//! (`threads`, `search`, `export`, `check`, `prune`, `cleanup-stranded`). `copy` copies every tenant
//! unless `--tenant` names one; `import` keeps each thread's tenant unless `--tenant` names
//! another one for all of them.
//!
//! **Encrypted stores.** A store sealed by `EncryptLayer` holds envelopes. With the keys in
//! `$PERSIST_ENCRYPTION_KEYS` (the format of `KeyRing::from_env`: `id:base64,…`, never a flag),
//! `threads` and `show` print values in clear, `export --clear` writes them in clear (an export
//! as stored, envelopes and all, stays the default), and `import` seals what it writes as the
//! app's layer would and refuses, before writing a thread, a value that does not open for its
//! place (wrong keys, another tenant's envelope), before the request that would write it. Tell the CLI what the app's layer seals
//! besides content: `--seal-metadata KEY,…` and `--seal-titles` (or `$PERSIST_SEAL_METADATA`,
//! `$PERSIST_SEAL_TITLES`), and `--allow-clear-values` to read values written in clear before
//! the layer was added. Keys are the ring's (tenants' keys derived from it); a tenant's own
//! keys (`KeyRing::add_tenant_key`) are not read from the environment. Without keys, `show`
//! marks sealed values `(sealed)`, and an import that would move envelopes to another tenant is
//! refused.
//!
//! **Output.** Tables and sentences for people; `--json` gives JSON lines for programs
//! (`threads`, `show`, `search`, `check`, `sessions`, `prune`, `cleanup-stranded`, `import`, `copy`,
//! `migrate`, `move-tenant`).
//! Progress of long work (export, import, copy, prune) goes to stderr: a live counter on a
//! terminal, a line every 1000 items otherwise.
//!
//! **Exports** are JSONL, format version 3 (versions 1 and 2 still import): a header line, then each thread's line followed by
//! its messages' and session bindings' lines, then an end line with the counts; every line a
//! JSON object with a `kind` (`header`, `thread`, `message`, `binding`, `end`).
//! The threads and messages carry every field the store holds (ids, seqs, versions, statuses,
//! idempotency keys, metadata, times in microseconds), so an import restores them exactly, in
//! requests of at most 1000 messages, each a transaction (`persist::args::Restore`). An import
//! refuses another format version, skips lines of unknown kinds and a last line cut short
//! (counting them), warns when the end line is missing or its counts differ from what was read
//! (an export cut short between two lines), and names the line of any other malformed line.
//! `export -o FILE` writes `FILE.partial` (readable by its owner only) and renames it once
//! whole.
//!
//! **Errors and exit codes.** A failure prints one line, `error: …`, on stderr: exit code 2 for
//! a command line that cannot be run as given, 1 for anything else (a `check` or a copy's
//! verification that found problems included). Ctrl-C during an export, import, copy,
//! prune or move-tenant stops it between two requests and exits with 130; import, copy,
//! prune and move-tenant finish what is left when run again.

/// The server's allocator (feature `mimalloc`, on by default): see the crate's features.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod checksum;
mod commands;
mod error;
mod jsonl;
mod keys;
mod progress;
mod store;
mod text;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use persist::read::{DEFAULT_PAGE_LIMIT, ThreadCursor};
use persist::search::{DEFAULT_SEARCH_LIMIT, SearchCursor};
use persist::{AgentId, ProviderId, Role, RuntimeId, TenantId, ThreadId};
use serde_json::Value;

use crate::commands::Scope;
use crate::commands::maintain::PruneOptions;
use crate::commands::read::{SessionQuery, ThreadsOptions};
use crate::commands::transfer::ExportOptions;
use crate::error::{CliError, CliResult};
use crate::store::{Mode, Store};
use crate::text::{
    parse_agent, parse_cursor, parse_duration, parse_filter, parse_provider, parse_role, parse_runtime,
    parse_search_cursor, parse_tenant, parse_thread,
};

/// List, show, search, export, import, copy, prune and check persist conversation stores, and
/// serve them as OpenAI's Conversations API (`persist serve`) and as an MCP server (`persist
/// mcp`, and `persist serve` at /mcp).
#[derive(Debug, Parser)]
#[command(name = "persist", version)]
struct Cli {
    /// The store: sqlite:PATH, sqlite://PATH, a PATH ending in .db, postgres://… or
    /// postgresql://… (?schema=NAME picks the schema), or memory: (an empty in-memory store,
    /// for trying commands out).
    // Its value is never printed: it may hold a password.
    #[arg(long, global = true, env = "PERSIST_URL", hide_env_values = true, value_name = "URL")]
    url: Option<String>,
    /// Reach this tenant's threads (default: the threads without a tenant).
    #[arg(long, global = true, value_name = "TENANT", value_parser = parse_tenant)]
    tenant: Option<TenantId>,
    /// Reach every tenant's threads (threads, search, export, check, prune, cleanup-stranded).
    /// `--all-tenants`, its earlier name, still works.
    #[arg(long, global = true, alias = "all-tenants")]
    across_tenants: bool,
    /// Print JSON lines instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// Metadata keys the app's EncryptLayer seals (comma-separated; with
    /// PERSIST_ENCRYPTION_KEYS).
    #[arg(long, global = true, env = "PERSIST_SEAL_METADATA", value_name = "KEY", value_delimiter = ',')]
    seal_metadata: Vec<String>,
    /// The app's EncryptLayer seals thread titles (with PERSIST_ENCRYPTION_KEYS).
    #[arg(long, global = true, env = "PERSIST_SEAL_TITLES")]
    seal_titles: bool,
    /// Read values written in clear before the app's EncryptLayer was added, as the app does
    /// with `allow_clear_values(true)` (with PERSIST_ENCRYPTION_KEYS; without it they are refused
    /// as unreadable).
    #[arg(long, global = true, env = "PERSIST_ALLOW_CLEAR_VALUES")]
    allow_clear_values: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List threads, most recently updated first, one page at a time.
    Threads(ThreadsArgs),
    /// Print a thread's transcript: its active branch, `#seq role [status]` and the message's
    /// parts (text, reasoning, tool calls and results, files), a line a message; a message with
    /// alternatives (an edit, a regenerated reply) is marked `(i/n)`. `--compacted`: its latest
    /// summary first, then the messages after it.
    Show {
        /// The thread.
        #[arg(value_parser = parse_thread)]
        thread: ThreadId,
        /// Every message of every branch, in arrival order, each naming its parent.
        #[arg(long, conflicts_with = "compacted")]
        all: bool,
        /// The active branch as a model is given it: its latest summary, then the messages after
        /// it.
        #[arg(long)]
        compacted: bool,
    },
    /// Write one thread, the tenant's threads (--all) or the whole store (--across-tenants) as JSONL.
    Export(ExportArgs),
    /// Restore the threads of a JSONL export (FILE, or - for stdin); idempotent.
    Import {
        /// The export to read; - reads stdin.
        #[arg(value_name = "FILE")]
        input: String,
        /// The longest line read, in bytes (a longer one is refused, naming its number): what
        /// bounds the memory an import takes.
        #[arg(long, value_name = "BYTES", default_value_t = jsonl::DEFAULT_MAX_LINE_BYTES)]
        max_line_bytes: u64,
    },
    /// Copy every thread of every tenant (or of --tenant) to another store, then verify it.
    ///
    /// Idempotent, so resumable: run again after an interruption, it skips what the target
    /// holds. Each thread's session bindings go with it (the newest of two wins).
    Copy {
        /// The target store (created when it is a SQLite file that does not exist).
        #[arg(long, value_name = "URL")]
        to: String,
    },
    /// Delete idle threads and/or old messages (retention).
    Prune(PruneArgs),
    /// Mark interrupted (or delete) reservations nobody wrote to for a while: replies whose
    /// streams never finished. Their text so far is kept and shown, marked as cut short.
    CleanupStranded {
        /// Reservations with no write for longer than this (e.g. 30m, 12h, 2d).
        #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_duration)]
        older_than: Duration,
        /// Delete them, with what their streams wrote, instead of marking them interrupted.
        #[arg(long)]
        delete: bool,
        /// Report what would be cleaned (at most 1000, oldest first), write nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Check every thread's counters against its messages (and a SQLite file's integrity).
    Check,
    /// Find messages by the words of their text, newest first, one page at a time: every word
    /// must occur (any order, any case), "a phrase" in order, pref* as a prefix. A store sealed
    /// by EncryptLayer holds no text to find: with its keys (PERSIST_ENCRYPTION_KEYS), refused.
    Search(SearchArgs),
    /// The store's schema against this build's migrations: `status`, `up` to apply what it
    /// lacks (for deployments that open stores with `migrate(false)`), `finish` once no instance
    /// of an earlier build uses it.
    #[command(subcommand)]
    Migrate(MigrateCommand),
    /// List a thread's session bindings (every agent's, with their state); with --agent and
    /// --provider, resolve one: resume it, or start fresh and why.
    Sessions(SessionsArgs),
    /// Move a tenant to another shard of a deployment on several stores while the app runs:
    /// copy its threads, switch its placement (its writes refused for at most --max-switch),
    /// verify and erase what the old shard held. --url is the deployment's directory. Run again
    /// after an interruption, it finishes the move.
    MoveTenant(MoveTenantArgs),
    /// Serve OpenAI's Conversations API on the store, for the `openai` SDKs and the OpenAI
    /// Agents SDK's session (base URL `http://ADDR/v1`), until Ctrl-C or SIGTERM.
    ///
    /// Callers are known by API keys, each a tenant: `TENANT:KEY` entries in $PERSIST_SERVE_KEYS
    /// (comma-separated; never a flag, which the process list would show) and/or --keys-file,
    /// read again on SIGHUP (a file that cannot be read or parsed keeps the keys in use, and the
    /// log says why); or by --tenant-header behind a gateway; or not at all with --no-auth (one
    /// tenant: --tenant).
    /// The store is --url / $PERSIST_URL (a SQLite file is created when missing); values are
    /// sealed with $PERSIST_ENCRYPTION_KEYS when it is set, as the other commands do. A body
    /// must be sent as application/json (else 415).
    Serve(Box<commands::serve_args::ServeArgs>),
    /// Serve the store as an MCP server over standard input and output, for an agent that
    /// launches it (a desktop or coding agent's MCP configuration), until the client closes
    /// it: tools to list and read threads, search them by words, recall by meaning (with
    /// --embeddings-url), read and change a user's working memory, and append messages; each
    /// thread a resource. Every call is --tenant's (or the threads without a tenant). The log
    /// goes to stderr. Over HTTP, `persist serve` answers MCP at /mcp, its API keys naming the
    /// tenants.
    Mcp(Box<McpArgs>),
}

#[derive(Debug, Args)]
struct McpArgs {
    #[command(flatten)]
    embeddings: commands::embeddings::EmbeddingsArgs,
    /// The events logged on stderr: a level (error, warn, info, debug, trace, off) and/or
    /// TARGET=LEVEL, comma-separated.
    #[arg(long, visible_alias = "log", env = "PERSIST_LOG_LEVEL", value_name = "FILTER", default_value = "warn,rmcp=error",
          value_parser = commands::serve::parse_log_filter)]
    log_level: tracing_subscriber::filter::Targets,
}

#[derive(Debug, Args)]
struct MoveTenantArgs {
    /// The tenant to move.
    #[arg(value_name = "TENANT", value_parser = parse_tenant)]
    moved: TenantId,
    /// The shard to move it to: its name, or its URL as --shard gives it.
    #[arg(long, value_name = "NAME|URL")]
    to: String,
    /// A shard of the deployment, as NAME=URL with the name the app gives it; once per shard
    /// (or comma-separated in PERSIST_SHARDS).
    #[arg(
        long = "shard",
        value_name = "NAME=URL",
        env = "PERSIST_SHARDS",
        hide_env_values = true,
        value_delimiter = ','
    )]
    shards: Vec<String>,
    /// The app's placement TTL (the longest of its instances'): each step waits this long for
    /// every instance to see it.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration)]
    placement_ttl: Duration,
    /// The longest time the tenant's writes are refused; a switch that takes longer lets them
    /// through again and is tried anew.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    max_switch: Duration,
    /// How long this run's claim on the move outlives it when it is killed (a second run waits
    /// for it).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    claim_ttl: Duration,
}

#[derive(Debug, Subcommand)]
enum MigrateCommand {
    /// Print the store's schema version, this build's, and the migrations pending; changes
    /// nothing.
    Status,
    /// Apply the migrations the store lacks (creating it when it does not exist); a store a
    /// newer version of persist migrated is refused.
    Up {
        /// Print what would be applied, apply nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Have a store migrated from an earlier version written in this build's packed form from
    /// now on; run it once no instance of an earlier build uses the store (an earlier build
    /// cannot read that form). A store this build created needs none.
    Finish,
}

#[derive(Debug, Args)]
struct ThreadsArgs {
    /// Threads per page (1 to 1000).
    #[arg(long, default_value_t = DEFAULT_PAGE_LIMIT, value_parser = clap::value_parser!(u32).range(1..=1000))]
    limit: u32,
    /// Continue after this cursor (printed with the previous page).
    #[arg(long, value_name = "CURSOR", value_parser = parse_cursor)]
    after: Option<ThreadCursor>,
    /// Only threads whose metadata has KEY equal to VALUE (JSON, or else a string); repeatable.
    #[arg(long, value_name = "KEY=VALUE", value_parser = parse_filter)]
    filter: Vec<(String, Value)>,
}

#[derive(Debug, Args)]
struct SearchArgs {
    /// What to find (quote it for the shell: 'rate "too many requests" retr*').
    query: String,
    /// Only this thread.
    #[arg(long, value_parser = parse_thread)]
    thread: Option<ThreadId>,
    /// Only messages of this role (user, assistant, tool, system, …); repeatable.
    #[arg(long, value_name = "ROLE", value_parser = parse_role)]
    role: Vec<Role>,
    /// Hits per page (1 to 1000).
    #[arg(long, default_value_t = DEFAULT_SEARCH_LIMIT, value_parser = clap::value_parser!(u32).range(1..=1000))]
    limit: u32,
    /// Continue after this cursor (printed with the previous page).
    #[arg(long, value_name = "CURSOR", value_parser = parse_search_cursor)]
    after: Option<SearchCursor>,
}

#[derive(Debug, Args)]
struct ExportArgs {
    /// The one thread to export.
    #[arg(value_parser = parse_thread)]
    thread: Option<ThreadId>,
    /// Export every thread of the tenant.
    #[arg(long, conflicts_with = "thread")]
    all: bool,
    /// Write to FILE instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Write sealed values in clear, opened with the keys of PERSIST_ENCRYPTION_KEYS (default:
    /// as stored, envelopes and all).
    #[arg(long)]
    clear: bool,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("rule").required(true).multiple(true).args(["idle_for", "keep_latest", "covered"])))]
struct PruneArgs {
    /// Delete threads with no activity for this long (e.g. 30d, 12h, 90m).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    idle_for: Option<Duration>,
    /// In the other threads, keep only the latest N messages.
    #[arg(long, value_name = "N")]
    keep_latest: Option<u32>,
    /// In the other threads, delete what the latest summary covers (the compacted read of each
    /// stays as it is).
    #[arg(long)]
    covered: bool,
    /// Report what would be deleted, delete nothing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Debug, Args)]
struct SessionsArgs {
    /// The thread.
    #[arg(value_parser = parse_thread)]
    thread: ThreadId,
    /// Resolve this agent's binding (with --provider) instead of listing.
    #[arg(long, value_name = "AGENT", value_parser = parse_agent, requires = "provider")]
    agent: Option<AgentId>,
    /// The provider about to run.
    #[arg(long, value_name = "PROVIDER", value_parser = parse_provider, requires = "agent")]
    provider: Option<ProviderId>,
    /// The runtime about to run it (a machine, a container).
    #[arg(long, value_name = "RUNTIME", value_parser = parse_runtime, requires = "agent")]
    runtime: Option<RuntimeId>,
}

fn main() -> ExitCode {
    // Usage errors, --help and --version: clap prints them and exits (2, 0, 0).
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            CliError::context("starting the async runtime", &e).report();
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(run(cli));
    // Background tasks (connection pools) end with the runtime, without waiting for them.
    runtime.shutdown_timeout(Duration::from_secs(1));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            error.report();
            ExitCode::from(error.exit_code())
        }
    }
}

async fn run(cli: Cli) -> CliResult {
    let Some(url) = cli.url.as_deref() else {
        return Err(CliError::usage("no store: pass --url URL or set PERSIST_URL"));
    };
    if cli.tenant.is_some() && cli.across_tenants {
        return Err(CliError::usage("--tenant and --across-tenants exclude each other"));
    }
    let sealing =
        keys::Sealing { metadata: cli.seal_metadata, titles: cli.seal_titles, allow_clear: cli.allow_clear_values };
    // Read by the commands that open or seal values only: the others never see a bad key.
    let keys = || keys::from_env(&sealing);
    let scope = Scope { tenant: cli.tenant, across_tenants: cli.across_tenants };
    let refuse_across_tenants = |command: &str| {
        if scope.across_tenants {
            Err(CliError::usage(format!("--across-tenants does not apply to `{command}`")))
        } else {
            Ok(())
        }
    };
    let json = cli.json;
    match cli.command {
        Command::Threads(args) => {
            let options = ThreadsOptions { limit: args.limit, after: args.after, filter: args.filter };
            let store = Store::open(url, Mode::ReadOnly).await?.with_keys(keys()?.as_ref());
            finish(store, async |store| commands::read::threads(store, &scope, options, json).await).await
        }
        Command::Search(args) => {
            if args.thread.is_some() && scope.across_tenants {
                return Err(CliError::usage(
                    "--thread names one tenant's thread: pair it with --tenant, not --across-tenants",
                ));
            }
            let options = commands::search::SearchOptions {
                query: args.query,
                thread: args.thread,
                roles: args.role,
                limit: args.limit,
                after: args.after,
            };
            let store = Store::open(url, Mode::ReadOnly).await?.with_keys(keys()?.as_ref());
            finish(store, async |store| commands::search::search(store, &scope, options, json).await).await
        }
        Command::Show { thread, all, compacted } => {
            refuse_across_tenants("show")?;
            let store = Store::open(url, Mode::ReadOnly).await?.with_keys(keys()?.as_ref());
            match compacted {
                true => {
                    finish(store, async |store| commands::read::show_compacted(store, &scope, thread, json).await).await
                }
                false => {
                    finish(store, async |store| commands::read::show(store, &scope, thread, all, json).await).await
                }
            }
        }
        Command::Export(args) => {
            let keys = if args.clear { keys()? } else { None };
            if args.clear && keys.is_none() {
                return Err(CliError::usage(format!("export --clear needs the keys: set {}", keys::KEYS_VAR)));
            }
            let options = ExportOptions { thread: args.thread, all: args.all, output: args.output, clear: args.clear };
            let store = Store::open(url, Mode::ReadOnly).await?.with_keys(keys.as_ref());
            finish(store, async |store| commands::transfer::export(store, &scope, options).await).await
        }
        Command::Import { input, max_line_bytes } => {
            refuse_across_tenants("import")?;
            commands::transfer::import(url, &scope, keys()?.as_ref(), &input, max_line_bytes, json).await
        }
        Command::Copy { to } => {
            // Every tenant, unless --tenant names one.
            let scope = Scope { tenant: scope.tenant.clone(), across_tenants: scope.tenant.is_none() };
            let source = Store::open(url, Mode::ReadOnly).await?;
            let target = match Store::open(&to, Mode::CreateIfMissing).await {
                Ok(target) => target,
                Err(error) => {
                    source.close().await;
                    return Err(error);
                }
            };
            let result = commands::copy::copy(&source, &target, &scope, json).await;
            source.close().await;
            target.close().await;
            result
        }
        Command::Prune(args) => {
            let PruneArgs { idle_for, keep_latest, covered, dry_run } = args;
            let options = PruneOptions { idle_for, keep_latest, covered, dry_run };
            with_store(url, Mode::Existing, async |store| commands::maintain::prune(store, &scope, options, json).await)
                .await
        }
        Command::CleanupStranded { older_than, delete, dry_run } => {
            let mode = if dry_run { Mode::ReadOnly } else { Mode::Existing };
            let options = commands::maintain::StrandedOptions { delete, dry_run };
            with_store(url, mode, async |store| {
                commands::maintain::cleanup_stranded(store, &scope, older_than, options, json).await
            })
            .await
        }
        Command::Migrate(command) => {
            // The schema is the store's, not a tenant's.
            if scope.tenant.is_some() || scope.across_tenants {
                return Err(CliError::usage("--tenant and --across-tenants do not apply to `migrate`"));
            }
            match command {
                MigrateCommand::Status => commands::migrate::status(url, json).await,
                MigrateCommand::Up { dry_run } => commands::migrate::up(url, dry_run, json).await,
                MigrateCommand::Finish => commands::migrate::finish(url, json).await,
            }
        }
        Command::Check => {
            with_store(url, Mode::ReadOnly, async |store| commands::read::check(store, &scope, json).await).await
        }
        Command::MoveTenant(args) => {
            if scope.tenant.is_some() || scope.across_tenants {
                return Err(CliError::usage("move-tenant names its tenant: drop --tenant and --across-tenants"));
            }
            let request = commands::shards::MoveRequest {
                tenant: Some(args.moved),
                to: args.to,
                shards: args.shards,
                placement_ttl: args.placement_ttl,
                max_switch: args.max_switch,
                claim_ttl: args.claim_ttl,
            };
            commands::shards::move_tenant(url, request, json).await
        }
        Command::Serve(args) => {
            refuse_across_tenants("serve")?;
            commands::serve::serve(url, keys()?, args.options(scope.tenant, json)?).await
        }
        Command::Mcp(args) => {
            refuse_across_tenants("mcp")?;
            if json {
                return Err(CliError::usage("--json does not apply to `mcp`: it answers MCP"));
            }
            commands::mcp::mcp(url, keys()?, scope.tenant, &args.embeddings, args.log_level).await
        }
        Command::Sessions(args) => {
            refuse_across_tenants("sessions")?;
            let resolve = args.agent.zip(args.provider);
            let query = SessionQuery { thread: args.thread, resolve, runtime: args.runtime };
            with_store(url, Mode::ReadOnly, async |store| commands::read::sessions(store, &scope, query, json).await)
                .await
        }
    }
}

/// Opens the store at `url`, runs `work` on it, and closes it (queued writes finished) whatever
/// `work` answered.
async fn with_store(url: &str, mode: Mode, work: impl AsyncFnOnce(&Store) -> CliResult) -> CliResult {
    finish(Store::open(url, mode).await?, work).await
}

/// Runs `work` on `store`, and closes it whatever `work` answered.
async fn finish(store: Store, work: impl AsyncFnOnce(&Store) -> CliResult) -> CliResult {
    let result = work(&store).await;
    store.close().await;
    result
}

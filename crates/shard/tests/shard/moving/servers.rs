//! Shards on PostgreSQL servers of their own (`.ci/servers`: three servers, separate data
//! directories and ports), as operators place them: under load from two app instances, one
//! tenant moves between servers, then one server stops as a crash would and starts again.
//! Only the stopped server's tenants are refused meanwhile (temporary errors: 503s over HTTP),
//! every other tenant is served, and every acknowledged write is there once, in order.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use persist::args::Add;
use persist::postgres::PostgresBackend;
use persist::read::ListMessages;
use persist::{Content, IdempotencyKey, PersistError, Pipeline, Role};

use super::{Stores, ctx, id, options, tenant};
use crate::support::schema_name;

/// The servers' URLs: `$PERSIST_POSTGRES_SERVERS` (comma-separated; default the three
/// `.ci/servers` starts), or `None` outside CI when they are not there.
async fn servers() -> Option<Vec<String>> {
    let urls: Vec<String> = std::env::var("PERSIST_POSTGRES_SERVERS")
        .unwrap_or_else(|_| {
            (1..=3).map(|n| format!("postgres://postgres@127.0.0.1:544{n}/test")).collect::<Vec<_>>().join(",")
        })
        .split(',')
        .map(str::to_owned)
        .collect();
    for url in &urls {
        if let Err(error) = PostgresBackend::builder(url.clone()).feed(None).connect().await {
            assert!(std::env::var_os("CI").is_none(), "the servers .ci/servers starts are required in CI: {error}");
            eprintln!("SKIPPED shards on servers of their own: {url}: {error} (run .ci/servers)");
            return None;
        }
    }
    Some(urls)
}

/// Runs `.ci/servers ACTION N`.
fn server(action: &str, n: usize) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../.ci/servers");
    let status = std::process::Command::new("bash").args([script, action, &n.to_string()]).status().unwrap();
    assert!(status.success(), ".ci/servers {action} {n}: {status}");
}

/// What one tenant's writer did: its acknowledged keys in order, and its refusals by cause.
#[derive(Default)]
struct Written {
    acked: Vec<String>,
    /// Refused while the tenant moved.
    moving: u32,
    /// Refused while its server was down.
    down: u32,
    /// When it was last refused so.
    last_down: Option<Instant>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stopped_server_refuses_only_its_tenants_and_a_tenant_moves_between_servers() {
    let Some(urls) = servers().await else { return };
    let schema = schema_name();
    let mut shards = Vec::new();
    for (at, url) in urls.iter().enumerate() {
        let backend = PostgresBackend::builder(url.clone())
            .schema(&schema)
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(1));
        shards.push((format!("server-{}", at + 1), Pipeline::new(backend.connect().await.unwrap())));
    }
    // The directory on the first server: the third is the one stopped.
    let directory = PostgresBackend::builder(urls[0].clone()).schema(format!("{schema}_d")).max_connections(4);
    let stores = Stores { directory: Pipeline::new(directory.connect().await.unwrap()), shards };
    // Two tenants a server, by where each would be placed.
    let probe = stores.instance();
    let mut tenants: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for n in 0.. {
        let name = format!("tenant-{n}");
        let on = probe.hashed(Some(&tenant(&name))).to_owned();
        let held = tenants.entry(on).or_default();
        if held.len() < 2 {
            held.push(name);
        }
        if tenants.len() == 3 && tenants.values().all(|held| held.len() == 2) {
            break;
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let (outage, in_outage) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicBool::new(false)));
    let mut writers = Vec::new();
    for (on, names) in &tenants {
        for name in names {
            // Two app instances, each a writer per tenant, each writing its own thread.
            for instance in 0..2 {
                let app = Pipeline::new(stores.instance());
                let (name, on, stop, outage, in_outage) =
                    (name.clone(), on.clone(), stop.clone(), outage.clone(), in_outage.clone());
                writers.push(tokio::spawn(async move {
                    let mut written = Written::default();
                    let mut n = 0;
                    while !stop.load(Ordering::SeqCst) || n < 20 {
                        let key = format!("{name}-{instance}-{n}");
                        let add = Add::new(id(&format!("writer-{instance}")), Role::User, Content::text(&key))
                            .with_idempotency_key(IdempotencyKey::new(key.clone()).unwrap());
                        match app.add(add.with_context(ctx(&name))).await {
                            Ok(_) => {
                                written.acked.push(key);
                                n += 1;
                                tokio::time::sleep(Duration::from_millis(2)).await;
                            }
                            Err(PersistError::Temporary { message, .. }) => {
                                if message.contains("moving from shard") {
                                    written.moving += 1;
                                } else {
                                    assert!(in_outage.load(Ordering::SeqCst), "{name} on {on}: {message}");
                                    assert_eq!(on, "server-3", "{name} on {on} refused during the outage: {message}");
                                    written.down += 1;
                                    written.last_down = Some(Instant::now());
                                    outage.fetch_add(1, Ordering::SeqCst);
                                }
                                // The same write again, by its key: written once however often.
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                            Err(error) => panic!("{name} on {on}: {error}"),
                        }
                    }
                    (name, written)
                }));
            }
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A tenant of the first server moves to the second, under load.
    let moved = tenants["server-1"][0].clone();
    let shards = stores.instance();
    shards.move_tenant(Some(&tenant(&moved)), "server-2", options()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The third server crashes and comes back 2 s later.
    in_outage.store(true, Ordering::SeqCst);
    server("stop", 3);
    let stopped = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    server("start", 3);
    let restarted = Instant::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    in_outage.store(false, Ordering::SeqCst);
    let outage_lasted = stopped.elapsed();
    stop.store(true, Ordering::SeqCst);
    let mut by_tenant: BTreeMap<String, Vec<Written>> = BTreeMap::new();
    for writer in writers {
        let (name, written) = writer.await.unwrap();
        by_tenant.entry(name).or_default().push(written);
    }
    assert!(outage.load(Ordering::SeqCst) > 0, "the third server's tenants were never refused");
    let probe = stores.instance();
    for (name, written) in &by_tenant {
        let on = probe.placement(Some(&tenant(name))).await.unwrap().shard;
        if name == &moved {
            assert_eq!(on, "server-2");
        }
        let store = stores.store(&on);
        for (instance, written) in written.iter().enumerate() {
            // Every page: a writer acknowledges as many writes as the machine's speed allows.
            let mut list =
                ListMessages::new(id(&format!("writer-{instance}"))).with_limit(1000).with_context(ctx(name));
            let mut texts: Vec<String> = Vec::new();
            loop {
                let page = store.list(list.clone()).await.unwrap();
                texts.extend(page.items.iter().map(|message| message.content.to_text()));
                match list.next_page(&page) {
                    Some(next) => list = next,
                    None => break,
                }
            }
            assert_eq!(
                texts, written.acked,
                "{name}'s writer {instance} on {on}: every acknowledged write once, in order"
            );
        }
        let refused: u32 = written.iter().map(|written| written.down).sum();
        eprintln!(
            "{name} on {on}: {} written, {refused} refused while its server was down, {} while moving",
            written.iter().map(|written| written.acked.len()).sum::<usize>(),
            written.iter().map(|written| written.moving).sum::<u32>()
        );
    }
    let last_refusal = by_tenant.values().flatten().filter_map(|written| written.last_down).max().unwrap();
    eprintln!(
        "the third server was stopped for 2 s; its tenants were served again {:?} after it answered ({outage_lasted:?} in all)",
        last_refusal.saturating_duration_since(restarted)
    );
    // Nothing of the moved tenant is left where it was.
    let left = stores.store("server-1").list(ListMessages::new(id("writer-0")).with_context(ctx(&moved))).await;
    assert!(left.unwrap().items.is_empty());
    for (name, _) in &stores.shards {
        let url = &urls[name.trim_start_matches("server-").parse::<usize>().unwrap() - 1];
        crate::support::drop_schema(url, &schema).await;
    }
    crate::support::drop_schema(&urls[0], &format!("{schema}_d")).await;
}

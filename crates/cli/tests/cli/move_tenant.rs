//! `persist move-tenant`: a tenant moved between shards (three PostgreSQL databases; a SQLite
//! file and a PostgreSQL schema) while an app writes, the command killed (SIGKILL) again and
//! again along the way, then run to its end: every message once on the new shard, nothing
//! left on the old one; and a tenant's vectors moved with it, its recall answering as before.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use persist::args::Add;
use persist::postgres::PostgresBackend;
use persist::read::{ListMessages, ListThreads};
use persist::shard::Shards;
use persist::sqlite::SqliteBackend;
use persist::vector::{Embed, Embedding, ListEmbeddings, Nearest};
use persist::{Content, Context, PersistError, Pipeline, Role, TenantId, ThreadId};
use sqlx::Connection;

use crate::support::{Schema, block_on, ok, path_str, postgres_url, run};

const DATABASES: [&str; 3] = ["persist_cli_shard_1", "persist_cli_shard_2", "persist_cli_shard_3"];

/// The server's URL naming `database` instead.
fn database_url(server: &str, database: &str) -> String {
    let (base, query) = server.split_once('?').map_or((server, None), |(base, query)| (base, Some(query)));
    let host = base.rsplit_once('/').map_or(base, |(host, _)| host);
    query.map_or_else(|| format!("{host}/{database}"), |query| format!("{host}/{database}?{query}"))
}

/// Makes the three databases unless they are there.
async fn databases(server: &str) {
    let mut admin = sqlx::PgConnection::connect(server).await.unwrap();
    for database in DATABASES {
        let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(database)
            .fetch_one(&mut admin)
            .await
            .unwrap();
        if !exists {
            // Names this test made; another test process racing to make it: it is there.
            let create = format!("CREATE DATABASE \"{database}\"");
            let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(create)).execute(&mut admin).await;
        }
    }
    let _ = admin.close().await;
}

fn ctx() -> Context {
    Context::new().with_tenant(TenantId::new("acme").unwrap())
}

/// Every message of `acme` in `store`: thread → texts in seq order.
async fn texts(store: &Pipeline) -> BTreeMap<String, Vec<String>> {
    let mut found = BTreeMap::new();
    let threads = store.threads(ListThreads::new().with_limit(1000).with_context(ctx())).await.unwrap();
    for thread in threads.items {
        let list = ListMessages::new(thread.id.clone()).include_reserved(true).with_limit(1000);
        let page = store.list(list.with_context(ctx())).await.unwrap();
        found.insert(thread.id.to_string(), page.items.iter().map(|m| m.content.to_text()).collect());
    }
    found
}

/// An app's add, retried while a switch refuses it.
async fn add(app: &Pipeline, thread: &str, text: &str) {
    let add = Add::new(ThreadId::new(thread).unwrap(), Role::User, Content::text(text)).with_context(ctx());
    loop {
        match app.add(add.clone()).await {
            Ok(_) => return,
            Err(PersistError::Temporary { .. }) => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(error) => panic!("{error}"),
        }
    }
}

/// Moves `acme` from where it is to another shard with `persist move-tenant`, killing the
/// command after longer and longer delays until a run ends by itself, an app's message added
/// between two runs; then checks both shards.
fn move_with_kills(directory: &str, shards: &[(&str, String)], open: impl AsyncFn() -> (Shards, Vec<Pipeline>)) {
    let (from, to, before) = block_on(async {
        let (instance, _) = open().await;
        let app = Pipeline::new(instance.clone());
        for t in 0..30 {
            for m in 0..20 {
                add(&app, &format!("thread-{t}"), &format!("{t}/{m}")).await;
            }
        }
        let from = instance.placement(Some(&TenantId::new("acme").unwrap())).await.unwrap().shard;
        let to = shards.iter().map(|(name, _)| *name).find(|name| *name != from).unwrap().to_owned();
        (from, to, texts(&app).await)
    });
    let mut args = vec!["--url".to_owned(), directory.to_owned(), "move-tenant".to_owned(), "acme".to_owned()];
    for (name, url) in shards {
        args.extend(["--shard".to_owned(), format!("{name}={url}")]);
    }
    args.extend(
        ["--to", &to, "--placement-ttl", "100ms", "--claim-ttl", "300ms", "--max-switch", "3s"].map(str::to_owned),
    );
    let (mut kills, mut delay, mut between) = (0, Duration::from_millis(30), Vec::new());
    loop {
        let mut child =
            Command::new(env!("CARGO_BIN_EXE_persist")).args(&args).env_remove("PERSIST_URL").spawn().unwrap();
        std::thread::sleep(delay);
        if child.try_wait().unwrap().is_some_and(|status| status.success()) {
            break;
        }
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();
        if status.success() {
            break;
        }
        kills += 1;
        let text = format!("between runs {kills}");
        block_on(async {
            let (instance, _) = open().await;
            add(&Pipeline::new(instance), &format!("thread-{}", kills % 30), &text).await;
        });
        between.push(text);
        delay = delay.mul_f64(1.6);
        assert!(kills < 20, "the move never finished");
    }
    let out = ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(out.contains("on shard") || out.contains("moved tenant acme"), "{out}");
    assert!(kills >= 3, "killed {kills} times only");
    block_on(async {
        let (instance, stores) = open().await;
        let index = |name: &str| shards.iter().position(|(named, _)| *named == name).unwrap();
        let (old, new) = (texts(&stores[index(&from)]).await, texts(&stores[index(&to)]).await);
        assert!(old.is_empty(), "left on the old shard: {old:?}");
        let mut expected = before.clone();
        for (kill, text) in between.iter().enumerate() {
            expected.get_mut(&format!("thread-{}", (kill + 1) % 30)).unwrap().push(text.clone());
        }
        assert_eq!(new, expected);
        let placed = instance.placement(Some(&TenantId::new("acme").unwrap())).await.unwrap();
        assert_eq!((placed.shard, placed.moving), (to.clone(), None));
    });
    let again = ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(again.contains(&format!("tenant acme is on shard {to:?} already")), "{again}");
}

#[test]
fn a_tenant_moves_across_postgres_databases_through_kills() {
    let Some(server) = postgres_url("move-tenant across databases") else { return };
    block_on(databases(&server));
    let schemas: Vec<Schema> = DATABASES.iter().map(|db| Schema::new(database_url(&server, db))).collect();
    let directory = Schema::new(database_url(&server, DATABASES[0]));
    let shards: Vec<(&str, String)> =
        ["one", "two", "three"].into_iter().zip(schemas.iter().map(Schema::url)).collect();
    let open = async || {
        let mut stores = Vec::new();
        for schema in &schemas {
            let backend = PostgresBackend::builder(&schema.server).schema(&schema.name).max_connections(2);
            stores.push(Pipeline::new(backend.connect().await.unwrap()));
        }
        let dir = PostgresBackend::builder(&directory.server).schema(&directory.name).max_connections(2);
        let builder =
            Shards::builder(Pipeline::new(dir.connect().await.unwrap())).placement_ttl(Duration::from_millis(100));
        let builder = shards.iter().zip(&stores).fold(builder, |b, ((name, _), store)| b.shard(*name, store.clone()));
        (builder.build().unwrap(), stores)
    };
    move_with_kills(&directory.url(), &shards, open);
}

#[test]
fn a_tenant_moves_from_a_sqlite_file_to_postgres_through_kills() {
    let Some(server) = postgres_url("move-tenant from SQLite to PostgreSQL") else { return };
    let dir = tempfile::tempdir().unwrap();
    let (file, directory) = (dir.path().join("shard.db"), dir.path().join("directory.db"));
    let schema = Schema::new(server);
    let shards = vec![("file", path_str(&file).to_owned()), ("server", schema.url())];
    let open = async || {
        let file = Pipeline::new(SqliteBackend::open(&file).await.unwrap());
        let backend = PostgresBackend::builder(&schema.server).schema(&schema.name).max_connections(2);
        let server = Pipeline::new(backend.connect().await.unwrap());
        let directory = Pipeline::new(SqliteBackend::open(&directory).await.unwrap());
        let builder = Shards::builder(directory).placement_ttl(Duration::from_millis(100));
        (builder.shard("file", file.clone()).shard("server", server.clone()).build().unwrap(), vec![file, server])
    };
    move_with_kills(path_str(&directory), &shards, open);
}

/// A vector of model `m` (3 dimensions) for the `i`th message.
fn vector(i: usize) -> Vec<f32> {
    let x = i as f32;
    vec![(x * 0.7).sin(), (x * 0.3).cos(), 1.0 / (1.0 + x)]
}

/// What `acme`'s nearest reads answer in `store`: each hit's thread, message and score's bits.
async fn recall(store: &Pipeline) -> Vec<Vec<(String, String, u32)>> {
    let mut answers = Vec::new();
    for query in [vector(2), vector(25), vec![0.0, 0.0, 1.0]] {
        let nearest = Nearest::new(Embedding::new("m", query)).with_limit(100).with_context(ctx());
        let found = store.nearest(nearest).await.unwrap();
        answers.push(
            found
                .iter()
                .map(|n| (n.message.thread_id.to_string(), n.message.id.to_string(), n.score.to_bits()))
                .collect(),
        );
    }
    answers
}

/// A tenant moved keeps its recall: the new shard holds each message's vectors (the same
/// numbers) and answers the nearest reads the old one did, hit for hit, with each model's
/// dimensions fixed there; the old shard keeps none. From a SQLite file to PostgreSQL (to
/// another file without a server).
#[test]
fn a_moved_tenant_keeps_its_recall() {
    let dir = tempfile::tempdir().unwrap();
    let (file, other, directory) =
        (dir.path().join("recall.db"), dir.path().join("recall-other.db"), dir.path().join("recall-directory.db"));
    let schema = postgres_url("move-tenant with vectors to PostgreSQL").map(Schema::new);
    let other_url = schema.as_ref().map_or_else(|| path_str(&other).to_owned(), Schema::url);
    let shards = [("file", path_str(&file).to_owned()), ("other", other_url)];
    let open = async || {
        let file = Pipeline::new(SqliteBackend::open(&file).await.unwrap());
        let other = match &schema {
            Some(schema) => {
                let backend = PostgresBackend::builder(&schema.server).schema(&schema.name).max_connections(2);
                Pipeline::new(backend.connect().await.unwrap())
            }
            None => Pipeline::new(SqliteBackend::open(&other).await.unwrap()),
        };
        let directory = Pipeline::new(SqliteBackend::open(&directory).await.unwrap());
        let builder = Shards::builder(directory).placement_ttl(Duration::from_millis(100));
        (builder.shard("file", file.clone()).shard("other", other.clone()).build().unwrap(), vec![file, other])
    };
    let (from, to, before) = block_on(async {
        let (instance, _) = open().await;
        let app = Pipeline::new(instance.clone());
        for t in 0..3 {
            let thread = ThreadId::new(format!("thread-{t}")).unwrap();
            for m in 0..10 {
                let text = Content::text(format!("{t}/{m}"));
                let add =
                    Add::new(thread.clone(), Role::User, text).with_embedding(Embedding::new("m", vector(t * 10 + m)));
                let added = app.add(add.with_context(ctx())).await.unwrap().message;
                if m % 3 == 0 {
                    let second = Embed::new(thread.clone(), added.id, Embedding::new("n", vec![1.0, m as f32]));
                    app.embed(second.with_context(ctx())).await.unwrap();
                }
            }
        }
        let from = instance.placement(Some(&TenantId::new("acme").unwrap())).await.unwrap().shard;
        let to = if from == "file" { "other" } else { "file" };
        (from, to, recall(&app).await)
    });
    assert!(before.iter().all(|hits| hits.len() == 30));
    let mut args = vec!["--url", path_str(&directory), "move-tenant", "acme"];
    let flags: Vec<String> = shards.iter().map(|(name, url)| format!("{name}={url}")).collect();
    for flag in &flags {
        args.extend(["--shard", flag.as_str()]);
    }
    args.extend(["--to", to, "--placement-ttl", "100ms", "--claim-ttl", "300ms", "--max-switch", "3s"]);
    ok(&args);
    block_on(async {
        let (instance, stores) = open().await;
        let index = |name: &str| shards.iter().position(|(named, _)| *named == name).unwrap();
        let (old, new) = (&stores[index(&from)], &stores[index(to)]);
        assert_eq!(recall(new).await, before, "the new shard answers as the old one did");
        assert_eq!(recall(&Pipeline::new(instance)).await, before, "and so do the shards, placed there");
        let mut vectors = 0;
        for t in 0..3 {
            let query = ListEmbeddings::new(ThreadId::new(format!("thread-{t}")).unwrap()).with_context(ctx());
            vectors += new.embeddings(query.clone()).await.unwrap().items.len();
            assert!(old.embeddings(query).await.unwrap().items.is_empty(), "none left on the old shard");
        }
        assert_eq!(vectors, 3 * (10 + 4), "each model's vectors");
        let longer = Nearest::new(Embedding::new("m", vec![1.0; 4])).with_context(ctx());
        let refused = new.nearest(longer).await.unwrap_err();
        assert!(matches!(refused, PersistError::InvalidInput { field: "embedding", .. }), "{refused:?}");
    });
}

#[test]
fn move_tenant_refuses_what_it_cannot_do() {
    let dir = tempfile::tempdir().unwrap();
    let directory = dir.path().join("directory.db");
    block_on(async { SqliteBackend::open(&directory).await.unwrap().close().await });
    let url = path_str(&directory);
    let a = format!("a={}", path_str(&dir.path().join("a.db")));
    for (args, expected) in [
        (vec!["move-tenant", "acme", "--to", "a"], "no shards"),
        (vec!["move-tenant", "acme", "--shard", "a", "--to", "a"], "expected NAME=URL"),
        (vec!["move-tenant", "acme", "--shard", &a, "--shard", &a, "--to", "a"], "twice"),
        (vec!["move-tenant", "acme", "--shard", &a, "--to", "b"], "no --shard has that name"),
        (vec!["--tenant", "acme", "move-tenant", "acme", "--shard", &a, "--to", "a"], "drop --tenant"),
    ] {
        let output = run(&[&["--url", url][..], &args].concat());
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(String::from_utf8_lossy(&output.stderr).contains(expected), "{args:?}");
    }
}

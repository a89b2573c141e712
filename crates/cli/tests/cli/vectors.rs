//! Vectors travel with the messages they describe: `persist export` writes them on each message's
//! line (JSONL version 3), `persist import` and `persist copy` write them back, on SQLite and
//! PostgreSQL, so the copy answers the nearest reads its source answered; a file of an older
//! version still imports.

use std::collections::BTreeMap;
use std::path::Path;

use persist::args::{Add, Reserve};
use persist::postgres::PostgresBackend;
use persist::read::ListThreads;
use persist::sqlite::SqliteBackend;
use persist::vector::{Embed, Embedding, ListEmbeddings, Nearest, StoredEmbedding};
use persist::{Content, Context, PersistError, Pipeline, Role, TenantId, ThreadId};
use serde_json::{Value, json};

use crate::support::{Schema, block_on, ok, path_str, postgres_url};

/// Each thread's vectors (tenant, thread → as listed).
type Vectors = BTreeMap<(Option<String>, String), Vec<StoredEmbedding>>;

/// Each nearest read's hits: thread, message and the score's bits, in order.
type Hits = Vec<Vec<(String, String, u32)>>;

fn context(tenant: Option<&str>) -> Context {
    Context::new().for_tenant(tenant.map(|t| TenantId::new(t).unwrap()))
}

/// A vector of model `m` (4 dimensions) for the `i`th message.
fn vector(i: usize) -> Vec<f32> {
    let x = i as f32;
    vec![(x * 0.37).sin(), (x * 1.3).cos(), 0.1 * x, 1.0 / (1.0 + x)]
}

/// Two tenants' threads: messages with a vector of model `m` written with them, some with a
/// second model's by `Embed`, one without any, a reservation.
async fn seed(pipeline: &Pipeline) -> Result<usize, PersistError> {
    let mut vectors = 0;
    for (t, tenant) in [None, Some("acme")].into_iter().enumerate() {
        for thread in ["trip", "work"] {
            let id = ThreadId::new(thread)?;
            for i in 0..6 {
                let n = t * 100 + thread.len() * 10 + i;
                let add = Add::new(id.clone(), Role::User, Content::text(format!("{thread} {i}")))
                    .with_embedding(Embedding::new("m", vector(n)))
                    .with_context(context(tenant));
                let added = pipeline.add(add).await?.message;
                vectors += 1;
                if i % 2 == 0 {
                    let second = Embedding::new("small", vec![1.0, n as f32]);
                    pipeline.embed(Embed::new(id.clone(), added.id, second).with_context(context(tenant))).await?;
                    vectors += 1;
                }
            }
            let plain = Add::new(id.clone(), Role::Assistant, Content::text("no vector")).with_context(context(tenant));
            pipeline.add(plain).await?;
            pipeline.reserve(Reserve::new(id, Role::Assistant).with_context(context(tenant))).await?;
        }
    }
    Ok(vectors)
}

/// Every thread's vectors in `pipeline`'s store.
async fn vectors(pipeline: &Pipeline) -> Result<Vectors, PersistError> {
    let threads = pipeline.threads(ListThreads::new().across_tenants(true).with_limit(1000)).await?;
    let mut found = BTreeMap::new();
    for thread in threads.items {
        let tenant = thread.tenant.as_ref().map(|t| t.as_str().to_owned());
        let query = ListEmbeddings::new(thread.id.clone()).with_context(context(tenant.as_deref()));
        let page = pipeline.embeddings(query.with_limit(1000)).await?;
        assert!(!page.has_more);
        found.insert((tenant, thread.id.to_string()), page.items);
    }
    Ok(found)
}

/// What nearest reads of each tenant answer: thread, message and the score's bits, in order.
async fn hits(pipeline: &Pipeline) -> Result<Hits, PersistError> {
    let mut answers = Vec::new();
    for tenant in [None, Some("acme")] {
        for query in [vector(3), vector(57), vec![1.0, 0.0, 0.0, 0.0]] {
            let nearest = Nearest::new(Embedding::new("m", query)).with_limit(50).with_context(context(tenant));
            let found = pipeline.nearest(nearest).await?;
            answers.push(
                found
                    .iter()
                    .map(|n| (n.message.thread_id.to_string(), n.message.id.to_string(), n.score.to_bits()))
                    .collect(),
            );
        }
    }
    Ok(answers)
}

async fn sqlite(path: &Path) -> Pipeline {
    Pipeline::new(SqliteBackend::open(path).await.unwrap())
}

async fn postgres(schema: &Schema) -> Pipeline {
    Pipeline::new(PostgresBackend::builder(&schema.server).schema(&schema.name).connect().await.unwrap())
}

/// The vectors and nearest answers of `store`.
fn recall_of(store: impl AsyncFnOnce() -> Pipeline) -> (Vectors, Hits) {
    block_on(async {
        let pipeline = store().await;
        (vectors(&pipeline).await.unwrap(), hits(&pipeline).await.unwrap())
    })
}

fn json_of(output: &str) -> Value {
    serde_json::from_str(output.trim()).expect("a JSON report")
}

/// Exported from SQLite, imported into SQLite and PostgreSQL: each copy holds the same vectors
/// (the same numbers) and answers the same hits with the same scores; imported again, nothing
/// changes; imported into another tenant, the vectors follow their messages there.
#[test]
fn export_then_import_keeps_every_vector() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source.db");
    let written = block_on(async { seed(&sqlite(&source).await).await }).unwrap();
    let export = dir.path().join("all.jsonl");
    ok(&["--url", path_str(&source), "--across-tenants", "export", "-o", path_str(&export)]);
    let lines: Vec<Value> =
        std::fs::read_to_string(&export).unwrap().lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    assert_eq!(lines[0]["schema_version"], 3);
    let carried: usize = lines
        .iter()
        .filter(|line| line["kind"] == "message")
        .map(|line| line.get("embeddings").and_then(Value::as_array).map_or(0, Vec::len))
        .sum();
    assert_eq!(carried, written, "every vector on its message's line");
    assert_eq!(lines.last().unwrap()["embeddings"], json!(written), "the end line counts them");
    let expected = recall_of(async || sqlite(&source).await);
    assert_eq!(expected.0.values().map(Vec::len).sum::<usize>(), written);
    assert!(expected.1.iter().all(|answer| !answer.is_empty()));

    let target = dir.path().join("target.db");
    let report = json_of(&ok(&["--url", path_str(&target), "import", path_str(&export), "--json"]));
    assert_eq!(report["embeddings"], json!(written), "{report}");
    assert_eq!(recall_of(async || sqlite(&target).await), expected, "SQLite: the same vectors and hits");
    let again = json_of(&ok(&["--url", path_str(&target), "import", path_str(&export), "--json"]));
    assert_eq!((again["restored"].clone(), again["complete"].clone()), (json!(0), json!(true)), "{again}");
    assert_eq!(recall_of(async || sqlite(&target).await), expected, "imported again: the same numbers");

    if let Some(server) = postgres_url("export and import of vectors through PostgreSQL") {
        let schema = Schema::new(server);
        let report = json_of(&ok(&["--url", &schema.url(), "import", path_str(&export), "--json"]));
        assert_eq!(report["embeddings"], json!(written), "{report}");
        assert_eq!(recall_of(async || postgres(&schema).await), expected, "PostgreSQL: the same vectors and hits");
        // And out of PostgreSQL again: the same file's vectors.
        let back = dir.path().join("back.jsonl");
        ok(&["--url", &schema.url(), "--across-tenants", "export", "-o", path_str(&back)]);
        let round = dir.path().join("round.db");
        ok(&["--url", path_str(&round), "import", path_str(&back)]);
        assert_eq!(recall_of(async || sqlite(&round).await), expected, "through PostgreSQL and back");
    }

    // Into another tenant: the vectors go with their messages, the models' dimensions fixed there.
    let acme = dir.path().join("acme.jsonl");
    ok(&["--url", path_str(&source), "--tenant", "acme", "export", "--all", "-o", path_str(&acme)]);
    let moved = dir.path().join("moved.db");
    ok(&["--url", path_str(&moved), "--tenant", "globex", "import", path_str(&acme)]);
    let found = block_on(async {
        let pipeline = sqlite(&moved).await;
        let query =
            ListEmbeddings::new(ThreadId::new("trip").unwrap()).with_limit(1000).with_context(context(Some("globex")));
        let listed = pipeline.embeddings(query).await.unwrap().items;
        let wrong = Nearest::new(Embedding::new("m", vec![1.0, 0.0])).with_context(context(Some("globex")));
        (listed.len(), pipeline.nearest(wrong).await.unwrap_err())
    });
    assert_eq!(found.0, 9, "six vectors of model m, three of model small");
    assert!(matches!(found.1, PersistError::InvalidInput { field: "embedding", .. }), "{:?}", found.1);
}

/// A file of version 2 (before vectors) still imports: its messages, no vectors; an end line
/// without `embeddings` counts none.
#[test]
fn a_version_2_export_still_imports() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("v2.jsonl");
    let lines = [
        r#"{"kind":"header","schema_version":2,"source":"sqlite:old.db","tenant":null,"all_tenants":false,"thread":"old","exported_at":0}"#,
        r#"{"kind":"thread","id":"old","tenant":null,"title":"Old","metadata":{},"version":2,"created_at":1,"updated_at":3,"last_seq":2,"message_count":2,"active_leaf":2,"deleted_at":null}"#,
        r#"{"kind":"message","thread_id":"old","id":"m1","role":"user","content":[{"type":"text","text":"from before vectors"}],"metadata":{},"status":"complete","seq":1,"parent_seq":null,"version":1,"idempotency_key":null,"created_at":1,"updated_at":1}"#,
        r#"{"kind":"message","thread_id":"old","id":"m2","role":"assistant","content":[{"type":"text","text":"still here"}],"metadata":{},"status":"complete","seq":2,"parent_seq":1,"version":1,"idempotency_key":null,"created_at":2,"updated_at":2}"#,
        r#"{"kind":"end","threads":1,"messages":2,"bindings":0,"summaries":0,"memories":0}"#,
    ];
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let target = dir.path().join("target.db");
    let report = json_of(&ok(&["--url", path_str(&target), "import", path_str(&file), "--json"]));
    assert_eq!(
        (report["restored"].clone(), report["embeddings"].clone(), report["complete"].clone()),
        (json!(2), json!(0), json!(true)),
        "{report}"
    );
    let shown = ok(&["--url", path_str(&target), "show", "old"]);
    assert!(shown.contains("#1 user [complete] from before vectors") && shown.contains("still here"), "{shown}");
}

/// `persist copy` writes each message's vectors after it and verifies them: SQLite to SQLite and
/// to PostgreSQL, the same vectors and hits; run again, the same.
#[test]
fn copy_keeps_every_vector() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source.db");
    let written = block_on(async { seed(&sqlite(&source).await).await }).unwrap();
    let expected = recall_of(async || sqlite(&source).await);
    let target = dir.path().join("copy.db");
    let copy = |to: &str| json_of(&ok(&["--url", path_str(&source), "copy", "--to", to, "--json"]));
    let report = copy(path_str(&target));
    assert_eq!((report["embeddings"].clone(), report["mismatches"].clone()), (json!(written), json!([])), "{report}");
    assert_eq!(recall_of(async || sqlite(&target).await), expected);
    let again = copy(path_str(&target));
    assert_eq!((again["restored"].clone(), again["mismatches"].clone()), (json!(0), json!([])), "{again}");
    assert_eq!(recall_of(async || sqlite(&target).await), expected);

    if let Some(server) = postgres_url("copy of vectors to PostgreSQL") {
        let schema = Schema::new(server);
        let report = copy(&schema.url());
        assert_eq!((report["embeddings"].clone(), report["mismatches"].clone()), (json!(written), json!([])));
        assert_eq!(recall_of(async || postgres(&schema).await), expected, "PostgreSQL: the same vectors and hits");
    }
}

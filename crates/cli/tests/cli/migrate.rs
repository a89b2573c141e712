//! `persist migrate status` and `persist migrate up [--dry-run]`, on a SQLite file and a
//! PostgreSQL schema.

use persist::Backend;
use persist::sqlite::SqliteBackend;

use crate::support::{Schema, block_on, ok, path_str, postgres_url, run};

#[test]
fn migrate_reports_and_applies_a_sqlite_files_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chat.db");
    let url = path_str(&path);
    let status = ok(&["--url", url, "migrate", "status"]);
    assert!(status.contains("no schema yet"), "{status}");
    assert!(status.contains("pending: 17 compact messages"), "{status}");
    let dry = ok(&["--url", url, "migrate", "up", "--dry-run"]);
    assert!(dry.contains("would apply 1 schema") && dry.contains("no schema yet"), "{dry}");
    assert!(!path.exists(), "a dry run creates nothing");
    let applied = ok(&["--url", url, "migrate", "up"]);
    assert!(
        applied.contains("applied 17 compact messages")
            && applied.contains("applied 18 messages view")
            && applied.contains("applied 19 embeddings")
            && applied.contains("applied 20 working memory")
            && applied.contains("applied 21 working memory feed")
            && applied.contains("applied 22 spent keys")
            && applied.contains("applied 23 embed feed")
            && applied.contains("applied 24 search pending")
            && applied.contains("applied 25 records")
            && applied.contains("schema version 25, up to date"),
        "{applied}"
    );
    let status: serde_json::Value = serde_json::from_str(&ok(&["--url", url, "--json", "migrate", "status"])).unwrap();
    assert_eq!(status["applied"], 25);
    assert_eq!(status["current"], true);
    assert_eq!(status["pending"], serde_json::json!([]));
    assert!(ok(&["--url", url, "migrate", "up"]).contains("up to date"));
    // The store it made opens without migrating, and takes writes.
    block_on(async {
        let backend = SqliteBackend::builder(&path).migrate(false).open().await.unwrap();
        let add = persist::args::Add::new(
            persist::ThreadId::new("t").unwrap(),
            persist::Role::User,
            persist::Content::text("hello"),
        );
        backend.apply(add.into()).await.unwrap();
        backend.close().await;
    });
    // A store this build made is finished; one an earlier build wrote (its format lowered here
    // as a version 14 store is upgraded) is written as before until `migrate finish`.
    assert!(ok(&["--url", url, "migrate", "finish"]).contains("nothing to finish"));
    block_on(async {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display())).await.unwrap();
        sqlx::query("UPDATE persist_format SET level = 0").execute(&mut conn).await.unwrap();
        conn.close().await.unwrap();
    });
    let status = ok(&["--url", url, "migrate", "status"]);
    assert!(status.contains("until `persist migrate finish`"), "{status}");
    let finished: serde_json::Value =
        serde_json::from_str(&ok(&["--url", url, "--json", "migrate", "finish"])).unwrap();
    assert_eq!((finished["finished_now"].clone(), finished["unfinished"].clone()), (true.into(), false.into()));
    let status: serde_json::Value = serde_json::from_str(&ok(&["--url", url, "--json", "migrate", "status"])).unwrap();
    assert_eq!(status["unfinished"], false);
    let missing = run(&["--url", path_str(&dir.path().join("none.db")), "migrate", "finish"]);
    assert_eq!(missing.status.code(), Some(1), "no store to finish");
    let memory = run(&["--url", "memory:", "migrate", "status"]);
    assert!(!memory.status.success());
    let tenant = run(&["--url", url, "--tenant", "acme", "migrate", "status"]);
    assert_eq!(tenant.status.code(), Some(2), "the schema is no tenant's");
}

#[test]
fn migrate_reports_and_applies_a_postgres_schema() {
    let Some(server) = postgres_url("migrate on PostgreSQL") else { return };
    let schema = Schema::new(server);
    let url = schema.url();
    let status: serde_json::Value = serde_json::from_str(&ok(&["--url", &url, "--json", "migrate", "status"])).unwrap();
    assert_eq!(status["applied"], 0);
    assert_eq!(status["pending"].as_array().map(Vec::len), status["latest"].as_u64().map(|n| n as usize));
    let dry: serde_json::Value =
        serde_json::from_str(&ok(&["--url", &url, "--json", "migrate", "up", "--dry-run"])).unwrap();
    assert_eq!(dry["applied_now"], serde_json::json!([]));
    let applied: serde_json::Value = serde_json::from_str(&ok(&["--url", &url, "--json", "migrate", "up"])).unwrap();
    assert_eq!(applied["applied_now"].as_array().map(Vec::len), status["pending"].as_array().map(Vec::len));
    assert_eq!(applied["current"], true, "the report is of the schema after: {applied}");
    assert_eq!(applied["pending"], serde_json::json!([]));
    let after: serde_json::Value = serde_json::from_str(&ok(&["--url", &url, "--json", "migrate", "status"])).unwrap();
    assert!(ok(&["--url", &url, "migrate", "finish"]).contains("nothing to finish"), "a new schema is finished");
    assert_eq!(after["current"], true);
}

/// A SQLite file whose version 17 was applied but whose copy of messages did not complete (the
/// migrating process stopped): `status` shows 17 pending, `up` completes the copy, and the
/// messages read as before.
#[test]
fn migrate_up_completes_an_interrupted_copy_of_messages() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("half.db");
    let url = path_str(&path);
    block_on(async {
        use sqlx::Connection;
        let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../sqlite-backend/migrations");
        let upto = |version: u32| {
            let only = dir.path().join(format!("migrations-{version}"));
            std::fs::create_dir(&only).unwrap();
            for file in std::fs::read_dir(&shipped).unwrap() {
                let name = file.unwrap().file_name().into_string().unwrap();
                if name[..4].parse::<u32>().unwrap() <= version {
                    std::fs::copy(shipped.join(&name), only.join(&name)).unwrap();
                }
            }
            only
        };
        let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}?mode=rwc", path.display())).await.unwrap();
        sqlx::migrate::Migrator::new(upto(16).as_path()).await.unwrap().run(&mut conn).await.unwrap();
        sqlx::raw_sql(
            "INSERT INTO threads (tenant, thread_id, created_at, updated_at) VALUES ('', 't', 1, 1); \
             INSERT INTO messages (tenant, thread_id, message_id, seq, role, content, metadata, status, version, \
                                   created_at, updated_at) \
                 VALUES ('', 't', 'a', 1, 'user', '\"kept across the copy\"', '{}', 'complete', 1, 1, 1);",
        )
        .execute(&mut conn)
        .await
        .unwrap();
        sqlx::migrate::Migrator::new(upto(17).as_path()).await.unwrap().run(&mut conn).await.unwrap();
        conn.close().await.unwrap();
    });
    let status = ok(&["--url", url, "migrate", "status"]);
    assert!(status.contains("pending: 17 compact messages"), "{status}");
    let applied = ok(&["--url", url, "migrate", "up"]);
    assert!(applied.contains("applied 17 compact messages") && applied.contains("up to date"), "{applied}");
    let shown = ok(&["--url", url, "show", "t"]);
    assert!(shown.contains("kept across the copy"), "{shown}");
}

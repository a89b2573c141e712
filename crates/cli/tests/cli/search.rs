//! `persist search QUERY`: a tenant's hits as a table or JSON lines, newest first, paged with
//! the printed cursor; `--thread`, `--role`, `--across-tenants`; bad queries refused; PostgreSQL
//! too.

use persist::args::Add;
use persist::sqlite::SqliteBackend;
use persist::{Backend, Content, Context, Role, TenantId, ThreadId};

use crate::support::{Schema, block_on, ok, path_str, postgres_url, run};

/// Writes the messages every test searches, through `backend`.
async fn seed(backend: &impl Backend) {
    let acme = Context::new().with_tenant(TenantId::new("acme").unwrap());
    let globex = Context::new().with_tenant(TenantId::new("globex").unwrap());
    let writes = [
        (acme.clone(), "trip", Role::User, "Will it be sunny in Lisbon?"),
        (acme.clone(), "trip", Role::Assistant, "Lisbon will be sunny on Friday."),
        (acme.clone(), "work", Role::User, "Book a room in Lisbon for the offsite."),
        (globex, "plans", Role::User, "Lisbon is globex's secret."),
    ];
    for (context, thread, role, text) in writes {
        let add = Add::new(ThreadId::new(thread).unwrap(), role, Content::text(text)).with_context(context);
        backend.apply(add.into()).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    }
}

fn check_searches(url: &str) {
    let table = ok(&["--url", url, "--tenant", "acme", "search", "lisbon"]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("THREAD") && lines[0].contains("TEXT"), "{table}");
    assert_eq!(lines.len(), 4, "a header and acme's three hits: {table}");
    assert!(lines[1].contains("work") && lines[1].contains("**Lisbon**"), "newest first: {table}");
    assert!(!table.contains("globex"), "another tenant's messages are never found: {table}");

    let assistant = ok(&["--url", url, "--tenant", "acme", "search", "sunny lisb*", "--role", "assistant"]);
    assert!(assistant.contains("**Lisbon** will be **sunny**") && assistant.lines().count() == 2, "{assistant}");
    let capitalized = ok(&["--url", url, "--tenant", "acme", "search", "sunny lisb*", "--role", "Assistant"]);
    assert_eq!(capitalized, assistant, "persist's roles in any case");
    let thread = ok(&["--url", url, "--tenant", "acme", "search", "lisbon", "--thread", "trip", "--json"]);
    let hits: Vec<serde_json::Value> = thread.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(hits.len(), 2, "{thread}");
    assert!(hits.iter().all(|h| h["kind"] == "hit" && h["thread_id"] == "trip" && h["tenant"] == "acme"), "{thread}");
    assert_eq!(hits[0]["marked"], "**Lisbon** will be sunny on Friday.");

    // Paged: one hit a page, the printed cursor continues.
    let first = ok(&["--url", url, "--tenant", "acme", "--json", "search", "lisbon", "--limit", "1"]);
    let lines: Vec<serde_json::Value> = first.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!((lines.len(), &lines[1]["kind"]), (2, &serde_json::json!("next_cursor")), "{first}");
    let cursor = lines[1]["cursor"].as_str().unwrap();
    let second =
        ok(&["--url", url, "--tenant", "acme", "--json", "search", "lisbon", "--limit", "1", "--after", cursor]);
    let hit: serde_json::Value = serde_json::from_str(second.lines().next().unwrap()).unwrap();
    assert_eq!(hit["thread_id"], "trip");
    assert_eq!(hit["role"], "assistant", "the second newest: {second}");

    let everyone = ok(&["--url", url, "--across-tenants", "search", "lisbon"]);
    // The flag's earlier name still works.
    assert_eq!(ok(&["--url", url, "--all-tenants", "search", "lisbon"]), everyone);
    assert_eq!(everyone.lines().count(), 5, "every tenant's, for operators: {everyone}");
    assert_eq!(ok(&["--url", url, "search", "lisbon"]).trim(), "no messages found", "no tenant is a tenant");

    let refused = run(&["--url", url, "--tenant", "acme", "search", " -- "]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("query"), "names the query");
    let refused = run(&["--url", url, "--across-tenants", "search", "x", "--thread", "trip"]);
    assert_eq!(refused.status.code(), Some(2), "a thread is one tenant's");
}

#[test]
fn search_finds_a_tenants_messages_in_a_sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chat.db");
    block_on(async {
        let backend = SqliteBackend::open(&path).await.unwrap();
        seed(&backend).await;
        backend.close().await;
    });
    check_searches(path_str(&path));
}

#[test]
fn search_finds_a_tenants_messages_in_a_postgres_schema() {
    let Some(server) = postgres_url("search on PostgreSQL") else { return };
    let schema = Schema::new(server);
    let url = schema.url();
    block_on(async {
        let backend = persist::postgres::PostgresBackend::connect(url.clone()).await.unwrap();
        seed(&backend).await;
        backend.close().await;
    });
    check_searches(&url);
}

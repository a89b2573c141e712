//! The `persist` binary end to end, on SQLite files seeded with the library (and through
//! PostgreSQL when `$PERSIST_POSTGRES_URL` names a server).

mod support;

use std::path::Path;
use std::process::Output;

use persist::args::{Add, Delete, Reserve, Update, UpdateContent};
use persist::read::{ListMessages, ListThreads, MAX_PAGE_LIMIT};
use persist::session::{Bind, ListBindings, ResetSession, StoredBinding};
use persist::sqlite::SqliteBackend;
use persist::{
    AgentId, Content, Context, IdempotencyKey, Message, Metadata, PersistError, Pipeline, ProviderId, Role, SessionId,
    TenantId, Thread, ThreadId,
};
use serde_json::{Value, json};
use support::{Schema, block_on, ok, path_str, persist, postgres_url, run};

/// Messages the seeded store holds outside its long thread.
const SEEDED_MESSAGES: usize = 5;

/// Runs `persist ARGS`, which must fail with one `error:` line and no panic; answers its
/// stderr and exit code.
fn fails(args: &[&str]) -> (String, i32) {
    let output = run(args);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success(), "persist {args:?} succeeded: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let errors = stderr.lines().filter(|line| line.starts_with("error:")).count();
    assert_eq!(errors, 1, "one error line expected: {stderr}");
    (stderr, output.status.code().expect("an exit code"))
}

/// Threads of two tenants (one id in both), a reserved message, metadata, idempotency keys, a
/// deleted message (a gap in the seqs), a title, session bindings (one reset), a deleted
/// thread, and a thread of `long` messages in tenant `acme`.
async fn seed(path: &Path, long: usize) -> Result<(), PersistError> {
    let backend = SqliteBackend::open(path).await?;
    let store = Pipeline::new(backend.clone());
    let order = ThreadId::new("support:1042")?;
    let first = Add::new(order.clone(), Role::User, Content::text("Where is my order?"))
        .with_idempotency_key(IdempotencyKey::new("turn-1")?)
        .with_metadata(Metadata::new().with("channel", json!("web")));
    store.add(first).await?;
    let reply = store.reserve(Reserve::new(order.clone(), Role::Assistant)).await?.message;
    store.update_content(UpdateContent::new(order.clone(), reply.id, Content::text("It left yesterday."))).await?;
    let gone = store.add(Add::new(order.clone(), Role::User, Content::text("never mind"))).await?.message;
    store.delete(Delete::message(order.clone(), gone.id)).await?;
    let tool = Content::new(json!({ "status": "shipped", "weight": 1.5, "parcels": 2 }));
    store.add(Add::new(order.clone(), Role::Tool, tool)).await?;
    let pending = Reserve::new(order.clone(), Role::Assistant).with_idempotency_key(IdempotencyKey::new("turn-2")?);
    store.reserve(pending).await?;
    let title = Update::thread(order.clone())
        .with_title(Some("Order 1042".to_owned()))
        .with_metadata(Metadata::new().with("user", json!("u1")));
    store.update(title).await?;
    for (agent, session) in [("support-bot", "sess-9"), ("triage", "sess-2")] {
        let bind = Bind::new(AgentId::new(agent)?, order.clone(), SessionId::new(session)?, ProviderId::new("cli")?);
        store.bind(bind.with_work_dir("/srv/work/1042")).await?;
    }
    store.reset_session(ResetSession::new(AgentId::new("triage")?, order.clone())).await?;

    let acme = Context::new().with_tenant(TenantId::new("acme")?);
    let theirs = Add::new(order.clone(), Role::User, Content::text("acme's own thread"));
    store.add(theirs.with_context(acme.clone())).await?;
    let old = ThreadId::new("old")?;
    store.add(Add::new(old.clone(), Role::User, Content::text("bye"))).await?;
    store.delete(Delete::thread(old)).await?;
    let long_thread = ThreadId::new("long")?;
    for i in 0..long {
        let add = Add::new(long_thread.clone(), Role::User, Content::text(format!("message {i}")));
        store.add(add.with_context(acme.clone())).await?;
    }
    backend.close().await;
    Ok(())
}

/// Every thread of every tenant (tombstones aside) with all its messages and session bindings,
/// by tenant and id.
async fn snapshot(path: &Path) -> Result<Vec<Stored>, PersistError> {
    let backend = SqliteBackend::open(path).await?;
    let store = Pipeline::new(backend.clone());
    let mut threads = Vec::new();
    let mut listing = ListThreads::new().across_tenants(true).with_limit(MAX_PAGE_LIMIT);
    loop {
        let page = store.threads(listing.clone()).await?;
        threads.extend(page.items);
        if !page.has_more {
            break;
        }
        listing = listing.with_cursor(page.next_cursor);
    }
    threads.sort_by(|a, b| (&a.tenant, &a.id).cmp(&(&b.tenant, &b.id)));
    let mut all = Vec::new();
    for thread in threads {
        let mut messages = Vec::new();
        let mut query = Some(
            ListMessages::new(thread.id.clone())
                .include_reserved(true)
                .with_limit(MAX_PAGE_LIMIT)
                .with_context(Context::new().for_tenant(thread.tenant.clone())),
        );
        while let Some(current) = query {
            let page = store.list(current.clone()).await?;
            query = current.next_page(&page);
            messages.extend(page.items);
        }
        let context = Context::new().for_tenant(thread.tenant.clone());
        let bindings = store.bindings(ListBindings::new(thread.id.clone()).with_context(context)).await?;
        all.push((thread, messages, bindings));
    }
    backend.close().await;
    Ok(all)
}

/// A thread, its messages and its session bindings.
type Stored = (Thread, Vec<Message>, Vec<StoredBinding>);

fn message_count(snapshot: &[Stored]) -> usize {
    snapshot.iter().map(|(_, messages, _)| messages.len()).sum()
}

#[test]
fn export_then_import_restores_every_thread_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source.db");
    block_on(seed(&source, 1005)).unwrap();
    let export = dir.path().join("all.jsonl");
    ok(&["--url", path_str(&source), "--across-tenants", "export", "-o", path_str(&export)]);

    let lines: Vec<Value> = std::fs::read_to_string(&export)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).expect("every line is JSON"))
        .collect();
    assert_eq!(lines[0]["kind"], "header");
    assert_eq!(lines[0]["schema_version"], 3);
    assert_eq!(lines.iter().filter(|line| line["kind"] == "thread").count(), 3, "the tombstone is not exported");
    assert_eq!(lines.iter().filter(|line| line["kind"] == "message").count(), SEEDED_MESSAGES + 1005);

    let target = dir.path().join("target.db");
    let report = ok(&["--url", &format!("sqlite:{}", path_str(&target)), "import", path_str(&export)]);
    assert!(report.contains(&format!("restored {} messages, 0 already present", SEEDED_MESSAGES + 1005)), "{report}");
    let original = block_on(snapshot(&source)).unwrap();
    assert_eq!(original.len(), 3);
    assert_eq!(block_on(snapshot(&target)).unwrap(), original);

    assert!(ok(&["--url", path_str(&target), "--across-tenants", "check"]).contains(": ok"));
    let transcript = ok(&["--url", path_str(&target), "show", "support:1042"]);
    assert!(transcript.contains("#1 user [complete] Where is my order?"), "{transcript}");
    assert!(transcript.contains("[reserved]"), "{transcript}");
    assert!(!transcript.contains("never mind"), "{transcript}");
    let acme = ok(&["--url", path_str(&target), "--tenant", "acme", "show", "support:1042", "--json"]);
    assert_eq!(acme.lines().count(), 2, "the thread and its one message: {acme}");
    assert_eq!(lines.iter().filter(|line| line["kind"] == "binding").count(), 2);
    let sessions = ok(&["--url", path_str(&target), "sessions", "support:1042"]);
    assert!(sessions.contains("support-bot") && sessions.contains("sess-9"), "{sessions}");
    assert!(sessions.contains("reset"), "the reset binding keeps its state: {sessions}");
    let resolved =
        ok(&["--url", path_str(&target), "sessions", "support:1042", "--agent", "support-bot", "--provider", "cli"]);
    assert!(resolved.contains("resume session sess-9"), "{resolved}");
}

#[test]
fn threads_pages_with_a_cursor_and_filters() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source.db");
    block_on(seed(&source, 3)).unwrap();
    let url = path_str(&source);
    let first = ok(&["--url", url, "--across-tenants", "threads", "--limit", "2"]);
    let cursor = first
        .lines()
        .find_map(|line| line.strip_prefix("next page: --after "))
        .unwrap_or_else(|| panic!("a cursor: {first}"));
    let rest = ok(&["--url", url, "--across-tenants", "threads", "--limit", "2", "--after", cursor, "--json"]);
    let rest: Vec<Value> = rest.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    assert_eq!(rest.len(), 1, "the third thread, and no further cursor: {rest:?}");
    assert_eq!(rest[0]["kind"], "thread");
    let mine = ok(&["--url", url, "threads", "--filter", "user=u1", "--json"]);
    assert_eq!(mine.lines().count(), 1, "{mine}");
    assert!(ok(&["--url", url, "threads", "--filter", "user=u2"]).contains("no threads"));
}

#[test]
fn an_empty_listing_says_where_the_tenants_threads_are() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tenants.db");
    block_on(async {
        let backend = SqliteBackend::open(&path).await?;
        let acme = Context::new().with_tenant(TenantId::new("acme")?);
        let add = Add::new(ThreadId::new("t")?, Role::User, Content::text("hi")).with_context(acme);
        Pipeline::new(backend.clone()).add(add).await?;
        backend.close().await;
        Ok::<_, PersistError>(())
    })
    .unwrap();
    let url = path_str(&path);
    let untenanted = ok(&["--url", url, "threads"]);
    assert!(untenanted.contains("no threads without a tenant") && untenanted.contains("--tenant NAME"), "{untenanted}");
    assert!(ok(&["--url", url, "--tenant", "acme", "threads"]).contains("acme"));
    let other = ok(&["--url", url, "--tenant", "globex", "threads"]);
    assert_eq!(other.trim(), "no threads", "a tenant named is listed as asked");
    let empty = dir.path().join("empty.db");
    block_on(async {
        SqliteBackend::open(&empty).await?.close().await;
        Ok::<_, PersistError>(())
    })
    .unwrap();
    assert_eq!(ok(&["--url", path_str(&empty), "threads"]).trim(), "no threads");
}

#[test]
fn importing_twice_writes_nothing_the_second_time() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source.db");
    block_on(seed(&source, 3)).unwrap();
    let export = dir.path().join("all.jsonl");
    ok(&["--url", path_str(&source), "--across-tenants", "export", "-o", path_str(&export)]);
    let target = dir.path().join("target.db");
    let first = ok(&["--url", path_str(&target), "import", path_str(&export)]);
    assert!(first.contains(&format!("restored {} messages", SEEDED_MESSAGES + 3)), "{first}");
    let again = ok(&["--url", path_str(&target), "import", path_str(&export), "--json"]);
    let again: Value = serde_json::from_str(again.trim()).unwrap();
    assert_eq!(again["restored"], 0);
    assert_eq!(again["present"], SEEDED_MESSAGES + 3);
    assert_eq!(again["complete"], true, "the export ends with its end line");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&export).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "an export is readable by its owner only");
    }
    assert!(!dir.path().join("all.jsonl.partial").exists());

    // Cut between two lines: every line parses, the end line is missing; import says so.
    let whole = std::fs::read_to_string(&export).unwrap();
    let cut: Vec<&str> = whole.lines().collect();
    let cut = cut[..cut.len() - 3].join("\n") + "\n";
    let output = persist()
        .args(["--url", path_str(&dir.path().join("cut.db")), "import", "-", "--json"])
        .write_stdin(cut)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("warning: the input has no end line"), "{stderr}");
    let report: Value = serde_json::from_str(String::from_utf8_lossy(&output.stdout).trim()).unwrap();
    assert_eq!(report["complete"], false);
    let text = ok(&["--url", path_str(&target), "import", path_str(&export)]);
    assert!(text.contains("restored 0 messages"), "{text}");
    assert_eq!(block_on(snapshot(&target)).unwrap(), block_on(snapshot(&source)).unwrap());
}

#[test]
fn a_torn_last_line_is_skipped_and_the_rest_imported() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source.db");
    block_on(seed(&source, 3)).unwrap();
    let export = ok(&["--url", path_str(&source), "--across-tenants", "export"]);
    // An export interrupted in the middle of a message's line: what came before it, and half
    // of it.
    let lines: Vec<&str> = export.lines().collect();
    let last = lines.iter().rposition(|line| line.contains("\"kind\":\"message\"")).expect("a message line");
    let torn = format!("{}\n{}", lines[..last].join("\n"), &lines[last][..lines[last].len() / 2]);
    let target = dir.path().join("target.db");
    let output = persist().args(["--url", path_str(&target), "import", "-"]).write_stdin(torn).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("warning: line"), "{stderr}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("1 lines skipped"), "{stdout}");
    let original = block_on(snapshot(&source)).unwrap();
    let imported = block_on(snapshot(&target)).unwrap();
    assert_eq!(message_count(&imported), message_count(&original) - 1);
    let all_original: Vec<&Message> = original.iter().flat_map(|(_, messages, _)| messages).collect();
    for (_, messages, _) in &imported {
        for message in messages {
            assert!(all_original.contains(&message), "{message:?} was not in the source");
        }
    }
}

#[test]
fn an_interrupted_copy_resumes_without_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source.db");
    block_on(seed(&source, 1005)).unwrap();
    let export = ok(&["--url", path_str(&source), "--across-tenants", "export"]);
    // What an interrupted copy leaves: the first half of the store, a transaction at a time.
    let lines: Vec<&str> = export.lines().collect();
    let half = lines[..lines.len() / 2].join("\n") + "\n";
    let target = dir.path().join("target.db");
    let partial = persist().args(["--url", path_str(&target), "import", "-"]).write_stdin(half).output().unwrap();
    assert!(partial.status.success(), "{}", String::from_utf8_lossy(&partial.stderr));
    let halfway = message_count(&block_on(snapshot(&target)).unwrap());
    assert!(halfway > 0 && halfway < SEEDED_MESSAGES + 1005, "{halfway} messages after the first half");

    let report = ok(&["--url", path_str(&source), "copy", "--to", path_str(&target), "--json"]);
    let report: Value = serde_json::from_str(report.trim()).unwrap();
    assert_eq!(report["threads"], 3);
    assert_eq!(report["messages"], SEEDED_MESSAGES + 1005);
    assert!(report["present"].as_u64().unwrap() > 0, "the first half was there: {report}");
    assert_eq!(
        report["present"].as_u64().unwrap() + report["restored"].as_u64().unwrap(),
        (SEEDED_MESSAGES + 1005) as u64
    );
    assert_eq!(report["mismatches"], json!([]));
    assert_eq!(block_on(snapshot(&target)).unwrap(), block_on(snapshot(&source)).unwrap());
    assert!(ok(&["--url", path_str(&target), "--across-tenants", "check"]).contains(": ok"));
}

#[test]
fn copy_round_trips_through_postgres() {
    let Some(server) = postgres_url("copy through PostgreSQL") else {
        return;
    };
    let schema = Schema::new(server);
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source.db");
    block_on(seed(&source, 20)).unwrap();
    let there = ok(&["--url", path_str(&source), "copy", "--to", &schema.url()]);
    assert!(there.contains("verified"), "{there}");
    let back = dir.path().join("back.db");
    let again = ok(&["--url", &schema.url(), "copy", "--to", path_str(&back)]);
    assert!(again.contains("verified"), "{again}");
    assert_eq!(block_on(snapshot(&back)).unwrap(), block_on(snapshot(&source)).unwrap());
    assert!(ok(&["--url", &schema.url(), "--across-tenants", "check"]).contains(": ok"));

    // A schema that holds no store is refused, not created empty.
    let typo = Schema::new(schema.server.clone());
    let (stderr, _) = fails(&["--url", &typo.url(), "threads"]);
    assert!(stderr.contains("no store at") && stderr.contains("holds no persist tables"), "{stderr}");
    let (stderr, _) = fails(&["--url", &typo.url(), "copy", "--to", path_str(&dir.path().join("never.db"))]);
    assert!(stderr.contains("no store at"), "{stderr}");
}

#[test]
fn prune_dry_run_reports_and_deletes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source.db");
    block_on(seed(&source, 5)).unwrap();
    let before = block_on(snapshot(&source)).unwrap();
    let url = path_str(&source);
    let report = ok(&["--url", url, "--across-tenants", "prune", "--keep-latest", "2", "--dry-run", "--json"]);
    let report: Value = serde_json::from_str(report.trim()).unwrap();
    // support:1042 keeps 2 of 4, long keeps 2 of 5.
    assert_eq!(report["deleted_messages"], 5, "{report}");
    assert_eq!(report["dry_run"], true);
    assert_eq!(block_on(snapshot(&source)).unwrap(), before);

    // Run for real, it deletes what the dry run reported, and keeps the latest two.
    let report = ok(&["--url", url, "--across-tenants", "prune", "--keep-latest", "2", "--json"]);
    let report: Value = serde_json::from_str(report.trim()).unwrap();
    assert_eq!((report["deleted_messages"].as_u64(), report["dry_run"].as_bool()), (Some(5), Some(false)));
    let after = block_on(snapshot(&source)).unwrap();
    assert_eq!(message_count(&after), message_count(&before) - 5);
    for (thread, messages, _) in &after {
        let kept: Vec<u64> = messages.iter().map(|m| m.seq).collect();
        let latest: Vec<u64> = before
            .iter()
            .find(|(t, _, _)| (&t.tenant, &t.id) == (&thread.tenant, &thread.id))
            .map(|(_, m, _)| m.iter().rev().take(2).rev().map(|m| m.seq).collect())
            .unwrap();
        assert_eq!(kept, latest, "thread {}", thread.id);
    }
}

/// `cleanup-stranded` marks interrupted the reservations nobody wrote to for longer than its
/// age (`show` then says so), keeps the others, and with `--delete` deletes them instead.
#[test]
fn cleanup_stranded_interrupts_old_reservations_only() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source.db");
    block_on(seed(&source, 0)).unwrap();
    let url = path_str(&source);
    let with_status = |status: persist::Status| {
        let snapshot = block_on(snapshot(&source)).unwrap();
        snapshot.iter().flat_map(|(_, m, _)| m).filter(|m| m.status == status).count()
    };
    assert_eq!(with_status(persist::Status::Reserved), 1, "the seed leaves one reservation");
    // Its stream wrote a token; another reservation's stream died before its first.
    block_on(async {
        let backend = SqliteBackend::open(&source).await?;
        let store = Pipeline::new(backend.clone());
        let order = ThreadId::new("support:1042")?;
        let listing = ListMessages::new(order.clone()).include_reserved(true);
        let open = store.list(listing).await?.items.into_iter().find(|m| m.status == persist::Status::Reserved);
        let open = open.expect("the seed's reservation");
        store.update_content(UpdateContent::appending(order, open.id, Content::text("Checking"))).await?;
        store.reserve(Reserve::new(ThreadId::new("support:2")?, Role::Assistant)).await?;
        backend.close().await;
        Ok::<_, PersistError>(())
    })
    .unwrap();
    let kept = ok(&["--url", url, "cleanup-stranded", "--older-than", "1h", "--json"]);
    let kept: Value = serde_json::from_str(kept.trim()).unwrap();
    assert_eq!(
        (&kept["interrupted"], &kept["deleted"]),
        (&json!([]), &json!([])),
        "recent reservations are not stranded"
    );
    std::thread::sleep(std::time::Duration::from_millis(1100));
    // A dry run names what would be cleaned and writes nothing.
    let dry = ok(&["--url", url, "cleanup-stranded", "--older-than", "1s", "--dry-run"]);
    assert!(dry.contains("would mark interrupted reservation") && dry.contains("nothing written"), "{dry}");
    assert!(dry.contains("would delete reservation") && dry.contains("(its stream wrote nothing)"), "{dry}");
    assert!(dry.contains("would mark interrupted 1 and delete 1 (nothing streamed)"), "{dry}");
    assert_eq!(with_status(persist::Status::Reserved), 2, "a dry run writes nothing");
    let report = ok(&["--url", url, "cleanup-stranded", "--older-than", "1s", "--json"]);
    let report: Value = serde_json::from_str(report.trim()).unwrap();
    assert_eq!(report["interrupted"].as_array().map(Vec::len), Some(1), "{report}");
    assert_eq!(report["interrupted"][0]["thread"], "support:1042");
    assert_eq!(report["interrupted"][0]["status"], "interrupted");
    assert_eq!(report["deleted"].as_array().map(Vec::len), Some(1), "the blank one: {report}");
    assert_eq!(report["deleted"][0]["thread"], "support:2");
    assert_eq!((with_status(persist::Status::Reserved), with_status(persist::Status::Interrupted)), (0, 1));
    let shown = ok(&["--url", url, "show", "support:1042"]);
    assert!(shown.contains("assistant [interrupted]"), "{shown}");

    // Deleting instead: the reservation goes, with what its stream wrote.
    block_on(async {
        let backend = SqliteBackend::open(&source).await?;
        let store = Pipeline::new(backend.clone());
        let order = ThreadId::new("support:1042")?;
        let reply = store.reserve(Reserve::new(order.clone(), Role::Assistant)).await?.message;
        store.update_content(UpdateContent::appending(order, reply.id, Content::text("Let me"))).await?;
        backend.close().await;
        Ok::<_, PersistError>(())
    })
    .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let dry = ok(&["--url", url, "cleanup-stranded", "--older-than", "1s", "--delete", "--dry-run", "--json"]);
    let dry: Value = serde_json::from_str(dry.trim()).unwrap();
    assert_eq!(dry["would_delete"].as_array().map(Vec::len), Some(1), "{dry}");
    let deleted = ok(&["--url", url, "cleanup-stranded", "--older-than", "1s", "--delete"]);
    assert!(deleted.contains("deleted 1 stranded reservations"), "{deleted}");
    assert_eq!((with_status(persist::Status::Reserved), with_status(persist::Status::Interrupted)), (0, 1));
}

#[test]
fn failures_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.db");
    block_on(seed(&store, 0)).unwrap();
    let store = path_str(&store);

    let (stderr, code) = fails(&["--url", "mysql://db/chat", "threads"]);
    assert!(stderr.contains("unsupported store URL"), "{stderr}");
    assert_eq!(code, 1);

    let missing = dir.path().join("missing.db");
    let (stderr, _) = fails(&["--url", path_str(&missing), "threads"]);
    assert!(stderr.contains("no store at"), "{stderr}");
    assert!(!missing.exists(), "a read never creates a store");

    let (stderr, _) = fails(&["--url", store, "import", path_str(&dir.path().join("nothing.jsonl"))]);
    assert!(stderr.contains("nothing.jsonl"), "{stderr}");

    let future = dir.path().join("future.jsonl");
    std::fs::write(&future, "{\"kind\":\"header\",\"schema_version\":4}\n{\"kind\":\"thread\"}\n").unwrap();
    let (stderr, _) = fails(&["--url", store, "import", path_str(&future)]);
    assert!(stderr.contains("unsupported schema_version 4 (this persist reads 1 to 3)"), "{stderr}");

    // An endless line: refused at the limit, with its number, memory bounded by the limit.
    let (stderr, code) = fails(&["--url", store, "import", "/dev/zero", "--max-line-bytes", "100000"]);
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("line 1 is longer than the limit of 100000 bytes"), "{stderr}");
    assert_eq!(code, 1);

    let not_export = dir.path().join("other.jsonl");
    std::fs::write(&not_export, "{\"hello\":1}\n").unwrap();
    fails(&["--url", store, "import", path_str(&not_export)]);

    let (_, code) = fails(&["threads"]);
    assert_eq!(code, 2, "no store given");
    let output = run(&["--url", store, "prune"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "prune without a rule: {stderr}");
    assert!(stderr.contains("<--idle-for <DURATION>|--keep-latest <N>|--covered>"), "one of the rules: {stderr}");
    let (stderr, _) = fails(&["--url", store, "show", "general"]);
    assert!(stderr.contains("--tenant"), "a tenant's thread needs --tenant: {stderr}");
    assert!(ok(&["--help"]).contains("memory:"), "--help names every kind of store");
    fails(&["--url", store, "show", "no-such-thread"]);
    fails(&["--url", store, "export"]);
    fails(&["--url", store, "threads", "--after", "not a cursor"]);
}

/// A store with one thread of `count` messages, written a thousand at a time (as an import
/// would, fast enough to make a copy that takes a while).
async fn seed_big(path: &Path, count: u64) -> Result<(), PersistError> {
    let backend = SqliteBackend::open(path).await?;
    let store = Pipeline::new(backend.clone());
    let id = ThreadId::new("big")?;
    let at = persist::Timestamp::now();
    let thread = Thread::stored(id.clone(), count, at);
    for first in (1..=count).step_by(1000) {
        let messages = (first..(first + 1000).min(count + 1))
            .map(|seq| {
                let content = Content::text(format!("message {seq}: {}", "lorem ipsum ".repeat(20)));
                Message::stored(
                    id.clone(),
                    persist::MessageId::new(format!("m{seq}")).unwrap(),
                    seq,
                    Role::User,
                    content,
                    at,
                )
            })
            .collect();
        store.restore(persist::args::Restore::new(thread.clone(), messages)).await?;
    }
    backend.close().await;
    Ok(())
}

/// Ctrl-C (SIGINT) during a copy stops it between two transactions with exit code 130 and a
/// word on what to do; the same command run again completes it, verified, with no duplicate.
#[test]
fn ctrl_c_stops_a_copy_and_running_it_again_completes_it() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    let dir = tempfile::tempdir().unwrap();
    let (source, target) = (dir.path().join("source.db"), dir.path().join("target.db"));
    const COUNT: u64 = 20_000;
    block_on(seed_big(&source, COUNT)).unwrap();
    let args = ["--url", path_str(&source), "copy", "--to", path_str(&target), "--json"];
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_persist"))
        .args(args)
        .env_remove("PERSIST_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Interrupted once the copy reported its first thousand messages.
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    while !seen.contains("messages copied: ") {
        seen.clear();
        assert!(stderr.read_line(&mut seen).unwrap() > 0, "the copy ended before reporting progress");
    }
    let signal = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(signal.success());
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "interrupted: {rest}");
    assert!(rest.contains("run the same command again"), "{rest}");
    assert!(!rest.contains("panicked"), "{rest}");
    let halfway = message_count(&block_on(snapshot(&target)).unwrap()) as u64;
    assert!(halfway > 0 && halfway < COUNT, "{halfway} of {COUNT} messages copied before the interrupt");

    let report: Value = serde_json::from_str(ok(&args).trim()).unwrap();
    assert_eq!(report["present"].as_u64(), Some(halfway), "{report}");
    assert_eq!(report["restored"].as_u64(), Some(COUNT - halfway), "{report}");
    assert_eq!(report["mismatches"], json!([]));
    assert_eq!(block_on(snapshot(&target)).unwrap(), block_on(snapshot(&source)).unwrap());
}

/// Unmounts its directory when dropped, whatever the test did.
struct Mounted<'a>(&'a Path);

impl Drop for Mounted<'_> {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(self.0).status();
    }
}

/// The read commands open a SQLite file for reads only: a store on a read-only filesystem is
/// listed, shown, exported and checked; a command that writes says which file and why.
#[test]
fn read_commands_work_on_a_read_only_filesystem() {
    let dir = tempfile::tempdir().unwrap();
    let mount =
        std::process::Command::new("mount").args(["-t", "tmpfs", "-o", "size=16m", "tmpfs"]).arg(dir.path()).status();
    match mount {
        Ok(status) if status.success() => {}
        failure if std::env::var_os("CI").is_some() => panic!("CI must be able to mount a tmpfs: {failure:?}"),
        failure => return eprintln!("SKIPPED: cannot mount a tmpfs here (needs root): {failure:?}"),
    }
    let _mounted = Mounted(dir.path());
    let store = dir.path().join("archive.db");
    block_on(seed(&store, 3)).unwrap();
    let remount = std::process::Command::new("mount").args(["-o", "remount,ro"]).arg(dir.path()).status();
    assert!(remount.is_ok_and(|status| status.success()), "remounting read-only");
    let store = path_str(&store);
    assert!(ok(&["--url", store, "threads"]).contains("support:1042"));
    assert!(ok(&["--url", store, "show", "support:1042"]).contains("Where is my order?"));
    assert!(ok(&["--url", store, "export", "--across-tenants"]).contains("\"kind\":\"end\""));
    ok(&["--url", store, "check"]);
    let (stderr, _) = fails(&["--url", store, "prune", "--keep-latest", "1"]);
    assert!(stderr.contains(store) && stderr.contains("read_only"), "{stderr}");
}

/// An export holding sealed values (`EncryptLayer`'s envelopes) imports into its own tenant as
/// it is; moved to another tenant with `--tenant`, it is refused in one line before anything
/// is written, since an envelope is bound to its tenant and would never open there.
#[test]
fn sealed_values_are_not_moved_to_another_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let export = dir.path().join("sealed.jsonl");
    let header =
        r#"{"kind":"header","schema_version":1,"source":"memory:","tenant":"acme","thread":null,"exported_at":0}"#;
    let thread = r#"{"kind":"thread","id":"t","tenant":"acme","title":null,"metadata":{},"version":1,"created_at":1,"updated_at":2,"last_seq":1,"message_count":1,"deleted_at":null}"#;
    let message = r#"{"kind":"message","thread_id":"t","id":"m","role":"user","content":{"persist:sealed":"v1.k1.AAAA"},"metadata":{},"status":"complete","seq":1,"version":1,"idempotency_key":null,"created_at":1,"updated_at":1}"#;
    std::fs::write(&export, format!("{header}\n{thread}\n{message}\n")).unwrap();
    let target = dir.path().join("target.db");
    let (stderr, code) = fails(&["--url", path_str(&target), "--tenant", "globex", "import", path_str(&export)]);
    assert_eq!(code, 1);
    assert!(stderr.contains("sealed for tenant acme") && stderr.contains("tenant globex"), "{stderr}");
    let report = ok(&["--url", path_str(&target), "--tenant", "acme", "import", path_str(&export)]);
    assert!(report.contains("restored 1 messages"), "{report}");
    let listed = ok(&["--url", path_str(&target), "--tenant", "globex", "threads"]);
    assert!(!listed.contains(" t "), "nothing was written for globex: {listed}");
}

const KEYS: &str = "k1:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";
/// Another key under the same id.
const WRONG_KEYS: &str = "k1:AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=";

/// Runs `persist ARGS` with `$PERSIST_ENCRYPTION_KEYS` set to `keys` (unset for `None`).
fn run_keyed(keys: Option<&str>, args: &[&str]) -> Output {
    let mut command = persist();
    command
        .env_remove("PERSIST_ENCRYPTION_KEYS")
        .env_remove("PERSIST_SEAL_METADATA")
        .env_remove("PERSIST_SEAL_TITLES")
        .env_remove("PERSIST_ALLOW_CLEAR_VALUES");
    if let Some(keys) = keys {
        command.env("PERSIST_ENCRYPTION_KEYS", keys);
    }
    command.args(args).output().expect("the binary runs")
}

fn stdout_of(output: Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "failed: {stderr}");
    String::from_utf8(output.stdout).unwrap()
}

/// One line on stderr, `error: …`, and the exit code.
fn error_of(output: Output) -> (String, i32) {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success() && !stderr.contains("panicked"), "{stderr}");
    assert_eq!(stderr.lines().filter(|line| line.starts_with("error:")).count(), 1, "{stderr}");
    (stderr, output.status.code().unwrap())
}

/// An app's store sealed by `EncryptLayer` (content, the metadata key `email`, titles) in
/// tenant `acme`.
async fn seed_sealed(path: &Path) -> Result<(), PersistError> {
    use persist::encrypt::{EncryptLayer, KeyRing};
    let backend = SqliteBackend::open(path).await?;
    let layer = EncryptLayer::new(KeyRing::from_text(KEYS)?).seal_metadata(["email"]).seal_titles(true);
    let app = Pipeline::builder().layer(layer).build(backend.clone());
    let acme = Context::new().with_tenant(TenantId::new("acme")?);
    let thread = ThreadId::new("order")?;
    let metadata = Metadata::new().with("email", json!("jane@example.com")).with("lang", json!("en"));
    let add = Add::new(thread.clone(), Role::User, Content::text("my card ends 4242")).with_metadata(metadata);
    app.add(add.with_context(acme.clone())).await?;
    let title = Update::thread(thread).with_title(Some("Refund for Jane".into()));
    app.update(title.with_context(acme)).await?;
    backend.close().await;
    Ok(())
}

/// A store written in clear before the app added its `EncryptLayer`, then sealed from there:
/// with the keys, the clear message is refused as unreadable unless `--allow-clear-values`
/// says the app allows such values, which then reads both.
#[test]
fn clear_values_written_before_encryption_are_read_when_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("mixed.db");
    block_on(async {
        use persist::encrypt::{EncryptLayer, KeyRing};
        let backend = SqliteBackend::open(&db).await?;
        let thread = ThreadId::new("order")?;
        let before = Add::new(thread.clone(), Role::User, Content::text("written before encryption"));
        Pipeline::new(backend.clone()).add(before).await?;
        let layer = EncryptLayer::new(KeyRing::from_text(KEYS)?).allow_clear_values(true);
        let app = Pipeline::builder().layer(layer).build(backend.clone());
        app.add(Add::new(thread, Role::Assistant, Content::text("sealed at rest"))).await?;
        backend.close().await;
        Ok::<_, PersistError>(())
    })
    .unwrap();
    let url = path_str(&db);
    let (stderr, code) = error_of(run_keyed(Some(KEYS), &["--url", url, "show", "order"]));
    assert!(code == 1 && stderr.contains("does not open"), "{stderr}");
    let shown = stdout_of(run_keyed(Some(KEYS), &["--url", url, "--allow-clear-values", "show", "order"]));
    assert!(shown.contains("written before encryption") && shown.contains("sealed at rest"), "{shown}");
    let (stderr, code) = error_of(run_keyed(None, &["--url", url, "--allow-clear-values", "show", "order"]));
    assert!(code == 2 && stderr.contains("PERSIST_ENCRYPTION_KEYS"), "{stderr}");
}

/// With the keys in the environment, `show` and `export --clear` read a sealed store in clear;
/// without them `show` marks sealed values, `export` (as stored) holds envelopes only, and
/// `--clear` is a usage error. An import with other keys is refused in one line before it
/// writes, and the right keys import it afterwards; an import of a clear export seals it for
/// its new tenant.
#[test]
fn the_cli_reads_and_moves_sealed_stores_with_keys_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sealed.db");
    block_on(seed_sealed(&db)).unwrap();
    let url = path_str(&db);
    let sealing = ["--seal-metadata", "email", "--seal-titles"];
    let keyed = |keys: Option<&str>, args: &[&str]| {
        let mut all = vec!["--url", url, "--tenant", "acme"];
        all.extend_from_slice(&sealing);
        all.extend_from_slice(args);
        run_keyed(keys, &all)
    };

    let blind = stdout_of(run_keyed(None, &["--url", url, "--tenant", "acme", "show", "order"]));
    assert!(blind.contains("(sealed: set PERSIST_ENCRYPTION_KEYS") && blind.contains("\"(sealed)\""), "{blind}");
    assert!(!blind.contains("ends 4242"), "{blind}");
    let shown = stdout_of(keyed(Some(KEYS), &["show", "order"]));
    assert!(shown.contains("my card ends 4242") && shown.contains("Refund for Jane"), "{shown}");
    let listed = stdout_of(keyed(Some(KEYS), &["threads"]));
    assert!(listed.contains("Refund for Jane"), "{listed}");

    let as_stored = dir.path().join("as-stored.jsonl");
    stdout_of(keyed(Some(KEYS), &["export", "--all", "-o", path_str(&as_stored)]));
    let text = std::fs::read_to_string(&as_stored).unwrap();
    assert!(text.contains("persist:sealed") && !text.contains("ends 4242") && !text.contains("jane@"), "{text}");
    let (stderr, code) = error_of(run_keyed(None, &["--url", url, "--tenant", "acme", "export", "--all", "--clear"]));
    assert!(code == 2 && stderr.contains("PERSIST_ENCRYPTION_KEYS"), "{stderr}");
    let clear = dir.path().join("clear.jsonl");
    stdout_of(keyed(Some(KEYS), &["export", "--all", "--clear", "-o", path_str(&clear)]));
    let text = std::fs::read_to_string(&clear).unwrap();
    assert!(text.contains("my card ends 4242") && text.contains("jane@example.com"), "{text}");
    assert!(text.contains("Refund for Jane") && !text.contains("persist:sealed"), "{text}");
    let (stderr, code) = error_of(keyed(Some(WRONG_KEYS), &["export", "--all", "--clear"]));
    assert!(code == 1 && stderr.contains("does not open"), "{stderr}");
    // Not told that titles are sealed: an export in clear that would hold one sealed is refused.
    let args = ["--url", url, "--tenant", "acme", "--seal-metadata", "email", "export", "--all", "--clear"];
    let (stderr, code) = error_of(run_keyed(Some(KEYS), &args));
    assert!(code == 1 && stderr.contains("--seal-titles"), "{stderr}");

    // Wrong keys: refused before the thread is written, and nothing recorded.
    let copy = dir.path().join("copy.db");
    let copy_url = path_str(&copy);
    let import = |keys: Option<&str>, tenant: &str, file: &Path| {
        let mut args = vec!["--url", copy_url, "--tenant", tenant];
        args.extend_from_slice(&sealing);
        args.extend_from_slice(&["import", path_str(file)]);
        run_keyed(keys, &args)
    };
    let (stderr, code) = error_of(import(Some(WRONG_KEYS), "acme", &as_stored));
    assert!(code == 1 && stderr.contains("unreadable"), "{stderr}");
    let empty = stdout_of(run_keyed(None, &["--url", copy_url, "--tenant", "acme", "threads"]));
    assert!(empty.contains("no threads"), "{empty}");
    let report = stdout_of(import(Some(KEYS), "acme", &as_stored));
    assert!(report.contains("restored 1 messages"), "{report}");
    let shown = stdout_of(run_keyed(Some(KEYS), &["--url", copy_url, "--tenant", "acme", "show", "order"]));
    assert!(shown.contains("my card ends 4242"), "{shown}");

    // The envelopes of acme never move to globex; the clear export is sealed anew there.
    let (stderr, code) = error_of(import(Some(KEYS), "globex", &as_stored));
    assert!(code == 1 && stderr.contains("sealed for tenant acme"), "{stderr}");
    let report = stdout_of(import(Some(KEYS), "globex", &clear));
    assert!(report.contains("restored 1 messages"), "{report}");
    let moved = dir.path().join("globex.jsonl");
    let args = ["--url", copy_url, "--tenant", "globex", "export", "--all", "-o", path_str(&moved)];
    stdout_of(run_keyed(None, &args));
    let text = std::fs::read_to_string(&moved).unwrap();
    assert!(text.contains("persist:sealed") && !text.contains("ends 4242") && !text.contains("jane@"), "{text}");
    let shown = stdout_of(run_keyed(Some(KEYS), &["--url", copy_url, "--tenant", "globex", "show", "order"]));
    assert!(shown.contains("my card ends 4242"), "{shown}");
}

/// `show` prints each part of a message: text as it is, reasoning, tool calls and results,
/// files, and a block of another kind by its text or its JSON.
#[test]
fn show_prints_tool_calls_results_and_reasoning() {
    use persist::Part;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("tools.db");
    block_on(async {
        let backend = SqliteBackend::open(&db).await?;
        let store = Pipeline::new(backend.clone());
        let thread = ThreadId::new("tools")?;
        let parts = vec![
            Part::reasoning("the user wants the weather"),
            Part::text("Checking. "),
            Part::tool_call("call_1", "weather", json!({"city": "Lisbon"})),
        ];
        store.add(Add::new(thread.clone(), Role::Assistant, Content::from_parts(parts))).await?;
        let results = vec![Part::tool_result("call_1", json!({"temp": 21})), Part::tool_error("call_2", json!("timeout"))];
        store.add(Add::new(thread.clone(), Role::Tool, Content::from_parts(results))).await?;
        let other = json!([{"type": "output_text", "text": "Sunny.", "annotations": []}, Part::file("image/png", "s3://b/map.png").to_block()]);
        store.add(Add::new(thread, Role::Assistant, Content::new(other))).await?;
        backend.close().await;
        Ok::<_, PersistError>(())
    })
    .unwrap();
    let transcript = ok(&["--url", path_str(&db), "show", "tools"]);
    let expected = [
        r#"#1 assistant [complete] (reasoning: the user wants the weather) Checking. [call call_1: weather({"city":"Lisbon"})]"#,
        r#"#2 tool [complete] [result of call_1: {"temp":21}] [call_2 failed: "timeout"]"#,
        "#3 assistant [complete] Sunny.[file image/png s3://b/map.png]",
    ];
    for line in expected {
        assert!(transcript.lines().any(|shown| shown.trim_end() == line), "{line:?} not in {transcript}");
    }
}

/// Working memory documents travel with an export of a tenant or of the store: imported as they
/// were (each into its tenant, or into `--tenant`'s), and not written again by a second import.
#[test]
fn working_memory_is_exported_and_imported() {
    use persist::working::{ListMemories, WriteMemory};
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("memory.db");
    let doc = |v: Value| Metadata::try_from(v).unwrap();
    block_on(async {
        let pipeline = Pipeline::new(SqliteBackend::open(&source).await?);
        pipeline.add(Add::new(ThreadId::new("t")?, Role::User, Content::text("hi"))).await?;
        for (tenant, name) in [(Some("acme"), "Ada"), (None, "Nobody")] {
            let context = Context::new().for_tenant(tenant.map(TenantId::new).transpose()?);
            let resource = persist::ResourceId::new("user:1")?;
            let write = WriteMemory::patch(resource, doc(json!({"name": name, "n": 1.5}))).with_context(context);
            pipeline.write_memory(write).await?;
        }
        Ok::<_, PersistError>(())
    })
    .unwrap();
    let export = dir.path().join("all.jsonl");
    ok(&["--url", path_str(&source), "--across-tenants", "export", "-o", path_str(&export)]);
    let text = std::fs::read_to_string(&export).unwrap();
    assert_eq!(text.lines().filter(|line| line.contains(r#""kind":"working_memory""#)).count(), 2, "{text}");
    assert!(text.lines().last().unwrap().contains(r#""memories":2"#), "{text}");
    let target = dir.path().join("imported.db");
    let first: Value =
        serde_json::from_str(ok(&["--url", path_str(&target), "import", path_str(&export), "--json"]).trim()).unwrap();
    assert_eq!(first["working_memory"], 2);
    let again: Value =
        serde_json::from_str(ok(&["--url", path_str(&target), "import", path_str(&export), "--json"]).trim()).unwrap();
    assert_eq!(again["working_memory"], 0, "the same documents are not written again");
    let moved = dir.path().join("moved.db");
    ok(&["--url", path_str(&moved), "--tenant", "globex", "import", path_str(&export)]);
    let listed = |path: &Path, tenant: Option<&str>| {
        block_on(async {
            let pipeline = Pipeline::new(SqliteBackend::open(path).await?);
            let context = Context::new().for_tenant(tenant.map(TenantId::new).transpose()?);
            let page =
                pipeline.memories(ListMemories::new().across_tenants(tenant.is_none()).with_context(context)).await?;
            Ok::<_, PersistError>(page.items.into_iter().map(|m| (m.tenant, m.document)).collect::<Vec<_>>())
        })
        .unwrap()
    };
    assert_eq!(listed(&target, None), listed(&source, None), "every tenant's, as they were");
    let globex = listed(&moved, Some("globex"));
    assert_eq!(globex.len(), 1, "two documents of one resource into one tenant: the last one read");
}

/// `persist copy` takes working memory documents along (every tenant's, at their versions),
/// verifies them, and writes none twice.
#[test]
fn copy_takes_working_memory_along() {
    use persist::working::{ReadMemory, WriteMemory};
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("memory.db");
    let doc = |v: Value| Metadata::try_from(v).unwrap();
    block_on(async {
        let pipeline = Pipeline::new(SqliteBackend::open(&source).await?);
        pipeline.add(Add::new(ThreadId::new("t")?, Role::User, Content::text("hi"))).await?;
        for (tenant, name) in [(Some("acme"), "Ada"), (None, "Nobody")] {
            let context = Context::new().for_tenant(tenant.map(TenantId::new).transpose()?);
            let resource = persist::ResourceId::new("user:1")?;
            for n in 0..3 {
                let write = WriteMemory::patch(resource.clone(), doc(json!({"name": name, "n": n})));
                pipeline.write_memory(write.with_context(context.clone())).await?;
            }
        }
        Ok::<_, PersistError>(())
    })
    .unwrap();
    let target = dir.path().join("copy.db");
    let report: Value =
        serde_json::from_str(ok(&["--url", path_str(&source), "copy", "--to", path_str(&target), "--json"]).trim())
            .unwrap();
    assert_eq!((report["working_memory"].clone(), report["memories_written"].clone()), (json!(2), json!(2)));
    assert_eq!(report["mismatches"], json!([]));
    let again: Value =
        serde_json::from_str(ok(&["--url", path_str(&source), "copy", "--to", path_str(&target), "--json"]).trim())
            .unwrap();
    assert_eq!(again["memories_written"], 0, "the same documents are not written again");
    let copied = block_on(async {
        let pipeline = Pipeline::new(SqliteBackend::open(&target).await?);
        let acme = Context::new().for_tenant(Some(TenantId::new("acme")?));
        let read = ReadMemory::new(persist::ResourceId::new("user:1")?).with_context(acme);
        Ok::<_, PersistError>(pipeline.read_memory(read).await?.expect("copied"))
    })
    .unwrap();
    assert_eq!((copied.version, copied.document.get("n")), (3, Some(&json!(2))), "at the source's version");
}

#[test]
fn no_password_or_key_is_printed_by_help_or_errors() {
    const PASSWORD: &str = "s3cret-pw-4711";
    const API_KEY: &str = "sk-acme-secret-0123456789";
    let url = format!("postgres://app:{PASSWORD}@127.0.0.1:1/chat");
    let shards = format!("a=postgres://app:{PASSWORD}@127.0.0.1:1/a,b=postgres://app:{PASSWORD}@127.0.0.1:1/b");
    let keys_file = format!("/run/secrets/{PASSWORD}.keys");
    let run_with = |args: &[&str]| {
        let mut command = persist();
        command
            .env("PERSIST_URL", &url)
            .env("PERSIST_SHARDS", &shards)
            .env("PERSIST_SERVE_KEYS", format!("acme:{API_KEY}"))
            .env("PERSIST_SERVE_KEYS_FILE", &keys_file)
            .env_remove("PERSIST_ENCRYPTION_KEYS");
        let output = command.args(args).output().expect("the binary runs");
        let printed = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        assert!(
            !printed.contains(PASSWORD) && !printed.contains(API_KEY),
            "persist {args:?} printed a secret: {printed}"
        );
        printed
    };
    for help in [&["--help"][..], &["serve", "--help"], &["move-tenant", "--help"], &["threads", "-h"]] {
        let printed = run_with(help);
        assert!(printed.contains("PERSIST_URL"), "the variable is named, its value is not: {printed}");
    }
    assert!(run_with(&["move-tenant", "--help"]).contains("PERSIST_SHARDS"));
    assert!(run_with(&["serve", "--help"]).contains("PERSIST_SERVE_KEYS_FILE"));
    // Errors that name the store: an unreachable server, a malformed URL, the URL as a flag.
    let refused = run_with(&["threads"]);
    assert!(refused.contains("error:") && refused.contains("127.0.0.1:1"), "{refused}");
    run_with(&["--url", &format!("postgres://app:{PASSWORD}@127.0.0.1:notaport/chat"), "threads"]);
    run_with(&["--url", &format!("mysql://app:{PASSWORD}@127.0.0.1/chat"), "threads"]);
    run_with(&["--url", &url, "check"]);
    let mut serve = persist();
    let output = serve
        .env("PERSIST_URL", &url)
        .env("PERSIST_SERVE_KEYS", format!("acme:{API_KEY}"))
        .args(["serve", "--addr", "127.0.0.1:0"])
        .output()
        .expect("the binary runs");
    let printed = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && printed.contains("error:"), "{printed}");
    assert!(!printed.contains(PASSWORD) && !printed.contains(API_KEY), "{printed}");
    run_with(&["move-tenant", "acme", "--to", "b"]);
}

/// A request to `addr` as raw HTTP/1.1, and the status of its answer.
fn status_of(addr: &str, request: &str) -> u16 {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer.split(' ').nth(1).and_then(|status| status.parse().ok()).unwrap_or_else(|| panic!("{answer}"))
}

/// A process killed when dropped, even by a failed assertion.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn serve_without_keys_answers_its_hosts_and_json_bodies_only() {
    use std::io::BufRead;
    let server = std::process::Command::new(env!("CARGO_BIN_EXE_persist"))
        .args(["--url", "memory:", "serve", "--no-auth", "--addr", "127.0.0.1:0", "--allow-host", "chat.internal"])
        .env("PERSIST_SERVE_ALLOW_HOSTS", "other.internal")
        .env_remove("PERSIST_SERVE_KEYS")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the binary runs");
    let mut server = Running(server);
    let mut stderr = std::io::BufReader::new(server.0.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("http://") {
        line.clear();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "persist serve ended before it served");
    }
    let addr = line.split("http://").nth(1).and_then(|rest| rest.split('/').next()).unwrap().to_owned();
    let get =
        |host: &str| format!("GET /v1/persist/conversations HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    let statuses: Vec<u16> = [&addr, "localhost", "chat.internal:8080", "rebind.example", "other.internal"]
        .iter()
        .map(|host| status_of(&addr, &get(host)))
        .collect();
    let post = |content_type: &str| {
        format!(
            "POST /v1/conversations HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {content_type}\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
        )
    };
    assert_eq!(statuses, [200, 200, 200, 403, 403], "--allow-host adds a name (the flag overrides the variable)");
    let posted = (status_of(&addr, &post("text/plain")), status_of(&addr, &post("application/json")));
    assert_eq!(posted, (415, 200));
}

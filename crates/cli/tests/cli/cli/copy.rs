//! `persist copy`: resumed after an interruption or Ctrl-C, through PostgreSQL, with working memory.

use std::path::Path;

use persist::args::Add;
use persist::sqlite::SqliteBackend;
use persist::{Content, Context, Message, Metadata, PersistError, Pipeline, Role, TenantId, Thread, ThreadId};
use serde_json::{Value, json};

use super::{SEEDED_MESSAGES, fails, message_count, seed, snapshot};
use crate::support::{Schema, block_on, ok, path_str, persist, postgres_url};

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

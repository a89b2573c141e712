//! Writing maintenance: `prune` (dry run and for real) and `cleanup-stranded`.

use persist::args::{Reserve, UpdateContent};
use persist::read::ListMessages;
use persist::sqlite::SqliteBackend;
use persist::{Content, PersistError, Pipeline, Role, ThreadId};
use serde_json::{Value, json};

use super::{message_count, seed, snapshot};
use crate::support::{block_on, ok, path_str};

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

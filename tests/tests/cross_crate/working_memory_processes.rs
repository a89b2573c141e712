//! Working memory patched by two OS processes at once, on SQLite (one file) and PostgreSQL (one
//! schema): every patch survives (an in-process lock would serialize nothing across them).

use persist::working::{ReadMemory, WriteMemory};
use persist::{Metadata, ResourceId};
use persist_testkit::{Store, child, stores};
use serde_json::json;

const PATCHES: usize = 100;

fn user() -> ResourceId {
    ResourceId::new("user:1").unwrap()
}

/// In a child: `PATCHES` patches, each setting a key of its own and one inside a shared object.
#[tokio::test]
async fn patch_from_a_child() {
    let Some((mode, store)) = child() else { return };
    let pipeline = store.open().await;
    for i in 0..PATCHES {
        let key = format!("{mode}{i}");
        let patch = Metadata::try_from(json!({ key.clone(): i, "seen": { key: true } })).unwrap();
        pipeline.write_memory(WriteMemory::patch(user(), patch)).await.unwrap();
    }
}

#[tokio::test]
async fn two_processes_patching_one_document_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // The child's test by its name in the binary: its module's path past the crate's name.
    let test = format!("{}::patch_from_a_child", module_path!().split_once("::").unwrap().1);
    for store in stores(&dir, "working_memory").await {
        let children: Vec<_> = ["a", "b"]
            .map(|mode| {
                let (store, test): (Store, String) = (store.clone(), test.clone());
                std::thread::spawn(move || store.run_child(&test, mode))
            })
            .into_iter()
            .collect();
        for child in children {
            assert!(child.join().unwrap().success(), "{store:?}: a child failed");
        }
        let memory = store.open().await.read_memory(ReadMemory::new(user())).await.unwrap().expect("written");
        assert_eq!(memory.version, 2 * PATCHES as u64, "{store:?}");
        assert_eq!(memory.document.len(), 2 * PATCHES + 1, "{store:?}: every key");
        let seen = memory.document.get("seen").and_then(|s| s.as_object()).map_or(0, |s| s.len());
        assert_eq!(seen, 2 * PATCHES, "{store:?}: every nested key");
    }
}

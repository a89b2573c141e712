//! Several processes opening a new SQLite file at the same instant: each sets the schema up,
//! the ones that lose the race pick up what the winner applied, and every one opens and
//! writes. (Before, one failed with "table threads already exists" or a taken
//! `_sqlx_migrations` row in most races.)

use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use persist::Backend;
use persist::read::ListMessages;
use persist::sqlite::SqliteBackend;

const ROUNDS: usize = 10;
const PROCESSES: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_opening_a_new_file_at_once_all_succeed() {
    for round in 0..ROUNDS {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new.db");
        // Far enough ahead for every process to be started and waiting.
        let start = SystemTime::now().duration_since(UNIX_EPOCH).unwrap() + Duration::from_millis(400);
        let children: Vec<_> = (0..PROCESSES)
            .map(|child| {
                Command::new(env!("CARGO_BIN_EXE_first-opener"))
                    .arg(&path)
                    .arg(start.as_micros().to_string())
                    .arg(format!("process {child}"))
                    .stdout(Stdio::piped())
                    .spawn()
                    .expect("start an opener")
            })
            .collect();
        for child in children {
            let output = child.wait_with_output().unwrap();
            let said = String::from_utf8_lossy(&output.stdout);
            assert!(output.status.success(), "round {round}: an opener failed: {said}");
        }
        let backend = SqliteBackend::open(&path).await.unwrap();
        let thread = persist::ThreadId::new("opened").unwrap();
        let written = backend.list(ListMessages::new(thread)).await.unwrap().items;
        assert_eq!(written.len(), PROCESSES, "round {round}: one message per process");
        backend.close().await;
    }
}

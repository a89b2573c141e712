//! The other SQLite libraries of this process.
//!
//! persist links its own SQLite. A process that also has another (Python's `sqlite3`, a Node
//! module, a C library) has two, and two SQLite libraries in one process corrupt a file they
//! both open: POSIX locks belong to the process, so neither library sees the other's, and a
//! close in one drops every lock the other holds on the file
//! (<https://sqlite.org/howtocorrupt.html#_posix_advisory_locks_canceled_by_a_separate_thread_doing_close_>).
//! So a store refuses to open a file that is open in this process through a descriptor that is
//! not persist's ([`check`]), and says which files persist has open ([`is_open_in_process`]), so that a
//! host can refuse the other way (persist's Python package refuses `sqlite3.connect` to them).
//! Other processes are no concern: between processes the locks work.
//!
//! Windows' locks belong to a handle, not a process: two libraries exclude each other there as
//! two processes do, and nothing is checked.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use persist_core::{PersistError, Result};

/// A file, by device and inode: the same however it is named.
type FileKey = (u64, u64);

/// The files this library has open in this process, with how many stores hold each.
static OPEN: Mutex<BTreeMap<FileKey, usize>> = Mutex::new(BTreeMap::new());

/// The files this library opened in this process at any time: a store dropped a moment ago may
/// still be closing its connections (each closes on a thread of its own).
static OPENED: Mutex<BTreeSet<FileKey>> = Mutex::new(BTreeSet::new());

/// Held while a store opens its file, from the check to its [`Hold`]: stores of this process
/// open one at a time, so none takes another's descriptors, opened a moment before its hold is
/// recorded, for another library's.
pub(crate) static OPENING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// How long a store waits for the descriptors of one closed a moment ago to close.
const CLOSING: Duration = Duration::from_secs(2);

/// The file of `path`, if there is one.
#[cfg(unix)]
fn key(path: &Path) -> Option<FileKey> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|meta| (meta.dev(), meta.ino()))
}

#[cfg(not(unix))]
fn key(_: &Path) -> Option<FileKey> {
    None
}

/// Whether a store of this process has the database file at `path` open (by the file, however
/// it is named). A host with another SQLite library refuses to open such a file with it: two
/// SQLite libraries in one process corrupt a file they both open (see [`SqliteBackendBuilder::open`](crate::SqliteBackendBuilder::open)).
///
/// # Example
///
/// ```no_run
/// # async fn run() -> persist::Result<()> {
/// use persist::sqlite::{SqliteBackend, is_open_in_process};
///
/// let store = SqliteBackend::builder("chat.db").open().await?;
/// assert!(is_open_in_process("chat.db".as_ref()));
/// # Ok(()) }
/// ```
pub fn is_open_in_process(path: &Path) -> bool {
    key(path).is_some_and(|key| OPEN.lock().unwrap_or_else(PoisonError::into_inner).contains_key(&key))
}

/// `Unsupported` when the database at `path` (or its `-wal` or `-shm` file) is open in this
/// process through another SQLite library: a descriptor of this process on it while no store
/// of persist's has it open (or, for a file a store of persist's had open, still after
/// [`CLOSING`]). Called before a store opens the file.
pub(crate) async fn check(path: &Path) -> Result<()> {
    if is_open_in_process(path) {
        return Ok(());
    }
    let files: Vec<FileKey> = ["", "-wal", "-shm"]
        .iter()
        .filter_map(|suffix| {
            let mut name = path.as_os_str().to_owned();
            name.push(suffix);
            key(Path::new(&name))
        })
        .collect();
    let closing = files.iter().any(|file| OPENED.lock().unwrap_or_else(PoisonError::into_inner).contains(file));
    let started = Instant::now();
    loop {
        if files.is_empty() || !open_here(&files) {
            return Ok(());
        }
        if !closing || started.elapsed() > CLOSING {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Err(PersistError::Unsupported {
        what: format!(
            "opening {}: the file is open in this process through another SQLite library (Python's sqlite3, \
             say); two SQLite libraries in one process do not see each other's locks and corrupt the file \
             (https://sqlite.org/howtocorrupt.html, 2.2.1). Close it there first, or use it from another process",
            path.display()
        )
        .into(),
    })
}

/// Whether a descriptor of this process is open on one of `files`.
fn open_here(files: &[FileKey]) -> bool {
    let listing = if Path::new("/proc/self/fd").is_dir() { "/proc/self/fd" } else { "/dev/fd" };
    let Ok(descriptors) = std::fs::read_dir(listing) else { return false };
    descriptors.flatten().any(|entry| key(&entry.path()).is_some_and(|found| files.contains(&found)))
}

/// A store's hold on its file, from its opening to its drop.
#[derive(Debug)]
pub(crate) struct Hold(Option<FileKey>);

impl Hold {
    /// Records that a store of this process has the file at `path` open (after it opened it).
    pub(crate) fn new(path: &Path) -> Self {
        let key = key(path);
        if let Some(key) = key {
            *OPEN.lock().unwrap_or_else(PoisonError::into_inner).entry(key).or_default() += 1;
            OPENED.lock().unwrap_or_else(PoisonError::into_inner).insert(key);
        }
        Self(key)
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        let Some(key) = self.0 else { return };
        let mut open = OPEN.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&key) {
            *count -= 1;
            if *count == 0 {
                open.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_file_open_through_a_descriptor_not_persist_s_is_refused_until_it_is_closed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("other.db");
        std::fs::write(&path, b"").unwrap();
        check(&path).await.unwrap();
        // Another library's descriptor (here, std's).
        let other = std::fs::File::open(&path).unwrap();
        let refused = check(&path).await.unwrap_err();
        assert!(matches!(refused, PersistError::Unsupported { .. }), "{refused}");
        assert!(refused.to_string().contains("another SQLite library"), "{refused}");
        drop(other);
        check(&path).await.unwrap();
    }

    /// Node's worker threads open one file at once, each its own store: a store still opening
    /// (its descriptors open, its hold not yet recorded) is not another library.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn stores_of_this_process_opening_one_file_at_once_all_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("together.db");
        let opening = (0..32).map(|_| tokio::spawn(crate::SqliteBackend::builder(path.clone()).open()));
        let mut stores = Vec::new();
        for opened in opening.collect::<Vec<_>>() {
            stores.push(opened.await.unwrap().unwrap());
        }
        assert!(is_open_in_process(&path));
        for store in stores {
            store.close().await;
        }
    }

    #[tokio::test]
    async fn persist_s_own_holds_are_counted_and_released() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("own.db");
        std::fs::write(&path, b"").unwrap();
        assert!(!is_open_in_process(&path));
        let (first, second) = (Hold::new(&path), Hold::new(&path));
        assert!(is_open_in_process(&path));
        // persist's own descriptors on a file it holds are not another library's.
        let own = std::fs::File::open(&path).unwrap();
        check(&path).await.unwrap();
        drop((first, own));
        assert!(is_open_in_process(&path));
        drop(second);
        assert!(!is_open_in_process(&path));
    }
}

//! A tenant's index written to a file and read back, so that an index started again (a restart,
//! a deploy) begins from the file and catches up from the change feed instead of reading every
//! vector from the rows.
//!
//! One file per tenant in the directory a host names: `default.vectors` for the default tenant,
//! `tenant-<the id's bytes in hex>.vectors` for the others (past 100 bytes, the first 100 and a
//! checksum of the id). Written whole to a file of its own
//! and renamed over the last, so a reader finds the old file or the new one, never half of one;
//! a file that is not whole (cut short, changed, of another version) fails its checksum or its
//! reading and is set aside: the index is built from the rows, as without a file.
//!
//! What a file holds, in order (numbers little-endian, a text its length as a `u32` and then its
//! UTF-8 bytes): the magic `persist-vectors\0` and the format's version (`u32`); the tenant; the
//! feed position the index held; the last event of the tenant it read (`u8` 1, its position and
//! its fingerprint; or `u8` 0); the threads (`u32` count; each its id, its metadata as JSON and
//! `u8` live); the arenas (`u32` count; each its model, `u32` dimensions, `u64` vectors `n`,
//! the `n × dims` `f32`s, the `n × dims` int8 codes, the `n` scales, and the `n` slots: `u32`
//! thread, `u64` seq, message id, role, status, `i64` microseconds); and a 64-bit checksum of
//! everything before it.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use persist_core::{MessageId, Metadata, Role, Status, TenantId, ThreadId, Timestamp};

use super::arena::{Arena, Slot, TenantIndex, ThreadEntry};

const MAGIC: &[u8; 16] = b"persist-vectors\0";
const VERSION: u32 = 1;

/// The file of `tenant`'s index in `dir`.
pub(super) fn path(dir: &Path, tenant: Option<&TenantId>) -> PathBuf {
    match tenant {
        None => dir.join("default.vectors"),
        Some(tenant) => {
            // A file name holds 255 bytes: an id past 100 bytes is named by its first 100 and
            // the checksum of all of it (two ids of one name share a file, each setting the
            // other's aside: the file says whose it is).
            let bytes = tenant.as_str().as_bytes();
            let hex: String = bytes.iter().take(100).map(|b| format!("{b:02x}")).collect();
            match bytes.len() {
                0..=100 => dir.join(format!("tenant-{hex}.vectors")),
                _ => dir.join(format!("tenant-{hex}-{:016x}.vectors", checksum(bytes))),
            }
        }
    }
}

/// Why a file was not read back.
#[derive(Debug)]
pub(super) struct Unreadable(pub(super) String);

impl std::fmt::Display for Unreadable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn unreadable(what: impl Into<String>) -> Unreadable {
    Unreadable(what.into())
}

const LANE_KEYS: [u64; 4] =
    [0x9E37_79B9_7F4A_7C15, 0xC2B2_AE3D_27D4_EB4F, 0x1656_67B1_9E37_79F9, 0x27D4_EB2F_1656_67C5];

/// A checksum (not a MAC: it finds a file cut short or changed by accident), taken as the bytes
/// come: four lanes of 64-bit words mixed by multiplication, so the lanes run side by side.
#[derive(Debug, Clone)]
struct Checksum {
    lanes: [u64; 4],
    len: u64,
    /// Bytes short of a whole 32-byte block, kept for the next ones.
    carry: [u8; 32],
    carried: usize,
}

impl Checksum {
    fn new() -> Self {
        Self { lanes: LANE_KEYS, len: 0, carry: [0; 32], carried: 0 }
    }

    fn block(&mut self, block: &[u8]) {
        for (lane, (word, k)) in self.lanes.iter_mut().zip(block.chunks_exact(8).zip(LANE_KEYS)) {
            let word = u64::from_le_bytes([word[0], word[1], word[2], word[3], word[4], word[5], word[6], word[7]]);
            *lane = (*lane ^ word).wrapping_mul(k).rotate_left(29);
        }
    }

    fn update(&mut self, mut bytes: &[u8]) {
        self.len += bytes.len() as u64;
        if self.carried > 0 {
            let take = (32 - self.carried).min(bytes.len());
            self.carry[self.carried..self.carried + take].copy_from_slice(&bytes[..take]);
            self.carried += take;
            bytes = &bytes[take..];
            if self.carried < 32 {
                return;
            }
            let carry = self.carry;
            self.block(&carry);
            self.carried = 0;
        }
        let mut blocks = bytes.chunks_exact(32);
        for block in &mut blocks {
            self.block(block);
        }
        let rest = blocks.remainder();
        self.carry[..rest.len()].copy_from_slice(rest);
        self.carried = rest.len();
    }

    fn finish(&self) -> u64 {
        let mut hash = self.len;
        for (lane, k) in self.lanes.iter().zip(LANE_KEYS) {
            hash = (hash ^ lane).wrapping_mul(k).rotate_left(31);
        }
        for &byte in &self.carry[..self.carried] {
            hash = (hash ^ u64::from(byte)).wrapping_mul(LANE_KEYS[0]);
        }
        hash ^ (hash >> 32)
    }
}

/// The [`Checksum`] of `bytes`.
fn checksum(bytes: &[u8]) -> u64 {
    let mut sum = Checksum::new();
    sum.update(bytes);
    sum.finish()
}

/// The fingerprint of a feed event, kept with a file: a file whose last event the feed no longer
/// holds as it was (another store's file, a store restored from an older copy) is not used.
pub(super) fn fingerprint(event: &persist_core::feed::FeedEvent) -> u64 {
    let change = &event.change;
    let text = format!(
        "{}|{}|{:?}|{:?}|{:?}|{}|{:?}|{}",
        event.position,
        change.op.as_str(),
        change.thread_id.as_ref().map(ThreadId::as_str),
        change.message_id.as_ref().map(MessageId::as_str),
        change.seq,
        change.version,
        change.removed,
        event.at.as_micros(),
    );
    checksum(text.as_bytes())
}

struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, value: u8) {
        self.0.push(value);
    }
    fn u32(&mut self, value: u32) {
        self.0.extend_from_slice(&value.to_le_bytes());
    }
    fn u64(&mut self, value: u64) {
        self.0.extend_from_slice(&value.to_le_bytes());
    }
    fn text(&mut self, text: &str) {
        self.u32(u32::try_from(text.len()).unwrap_or(u32::MAX));
        self.0.extend_from_slice(text.as_bytes());
    }
}

/// `index` of `tenant` as a file's bytes.
pub(super) fn encode(index: &TenantIndex, tenant: Option<&TenantId>) -> Vec<u8> {
    let vectors: usize = index.arenas.values().map(|a| a.len() * (a.dims * 5 + 64)).sum();
    let mut out = Writer(Vec::with_capacity(vectors + index.threads.len() * 64 + 64));
    out.0.extend_from_slice(MAGIC);
    out.u32(VERSION);
    out.text(tenant.map_or("", TenantId::as_str));
    out.u64(index.position);
    match index.last_event {
        Some((position, fingerprint)) => {
            out.u8(1);
            out.u64(position);
            out.u64(fingerprint);
        }
        None => out.u8(0),
    }
    out.u32(u32::try_from(index.threads.len()).unwrap_or(u32::MAX));
    for thread in &index.threads {
        out.text(thread.id.as_str());
        out.text(&serde_json::to_string(&thread.metadata).unwrap_or_else(|_| "{}".to_owned()));
        out.u8(u8::from(thread.live));
    }
    out.u32(u32::try_from(index.arenas.len()).unwrap_or(u32::MAX));
    for (model, arena) in &index.arenas {
        out.text(model);
        out.u32(u32::try_from(arena.dims).unwrap_or(u32::MAX));
        out.u64(arena.len() as u64);
        out.0.extend(arena.vectors.iter().flat_map(|x| x.to_le_bytes()));
        out.0.extend(arena.codes().iter().map(|&c| c as u8));
        out.0.extend(arena.scales().iter().flat_map(|x| x.to_le_bytes()));
        for slot in &arena.slots {
            out.u32(slot.thread);
            out.u64(slot.seq);
            out.text(slot.message_id.as_str());
            out.text(slot.role.as_str());
            out.text(slot.status.as_str());
            out.u64(slot.created_at.as_micros() as u64);
        }
    }
    let sum = checksum(&out.0);
    out.u64(sum);
    out.0
}

/// Reads a file's body (all but its last 8 bytes, the checksum) from `from`, taking the checksum
/// of what it reads; nothing read past the body.
struct Reader<R> {
    from: R,
    /// The body's bytes not yet read.
    left: u64,
    sum: Checksum,
    /// Where large runs (vectors, codes) are read a piece at a time.
    scratch: Vec<u8>,
}

/// A piece of a large run read at once.
const PIECE: usize = 1 << 16;

impl<R: Read> Reader<R> {
    fn fill(&mut self, into: &mut [u8]) -> Result<(), Unreadable> {
        if into.len() as u64 > self.left {
            return Err(unreadable("cut short"));
        }
        self.from.read_exact(into).map_err(|e| unreadable(format!("reading it: {e}")))?;
        self.left -= into.len() as u64;
        self.sum.update(into);
        Ok(())
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], Unreadable> {
        let mut bytes = [0; N];
        self.fill(&mut bytes)?;
        Ok(bytes)
    }
    fn u8(&mut self) -> Result<u8, Unreadable> {
        Ok(self.array::<1>()?[0])
    }
    fn u32(&mut self) -> Result<u32, Unreadable> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, Unreadable> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    fn text(&mut self) -> Result<String, Unreadable> {
        let len = self.u32()? as usize;
        if len as u64 > self.left {
            return Err(unreadable("cut short"));
        }
        let mut bytes = vec![0; len];
        self.fill(&mut bytes)?;
        String::from_utf8(bytes).map_err(|_| unreadable("a text is not UTF-8"))
    }
    /// A run of `n` items of `size` bytes, each made by `item`: checked against what is left
    /// before anything is made, then read a piece at a time.
    fn run<T>(&mut self, n: usize, size: usize, item: impl Fn(&[u8]) -> T) -> Result<Vec<T>, Unreadable> {
        let bytes = n.checked_mul(size).ok_or_else(|| unreadable("a count past any file"))?;
        if bytes as u64 > self.left {
            return Err(unreadable("cut short"));
        }
        let mut made = Vec::with_capacity(n);
        let mut scratch = std::mem::take(&mut self.scratch);
        let mut left = bytes;
        while left > 0 {
            let piece = left.min(PIECE / size * size);
            scratch.resize(piece, 0);
            self.fill(&mut scratch)?;
            made.extend(scratch.chunks_exact(size).map(&item));
            left -= piece;
        }
        self.scratch = scratch;
        Ok(made)
    }
}

/// The index the file at `path` holds, if it is a whole file of `tenant`'s index.
pub(super) fn read(path: &Path, tenant: Option<&TenantId>) -> Result<TenantIndex, Unreadable> {
    let file = std::fs::File::open(path).map_err(|e| unreadable(format!("opening it: {e}")))?;
    let len = file.metadata().map_err(|e| unreadable(format!("reading it: {e}")))?.len();
    decode_from(std::io::BufReader::with_capacity(PIECE, file), len, tenant)
}

/// The index a file's `bytes` hold, if they are a whole file of `tenant`'s index.
#[cfg(test)]
fn decode(bytes: &[u8], tenant: Option<&TenantId>) -> Result<TenantIndex, Unreadable> {
    decode_from(bytes, bytes.len() as u64, tenant)
}

/// The index the `len` bytes of `from` hold, if they are a whole file of `tenant`'s index.
fn decode_from(from: impl Read, len: u64, tenant: Option<&TenantId>) -> Result<TenantIndex, Unreadable> {
    let left = len.checked_sub(8).ok_or_else(|| unreadable("cut short"))?;
    let mut read = Reader { from, left, sum: Checksum::new(), scratch: Vec::new() };
    if &read.array::<16>()? != MAGIC {
        return Err(unreadable("not a vector index's file"));
    }
    let version = read.u32()?;
    if version != VERSION {
        return Err(unreadable(format!("version {version}, this build reads {VERSION}")));
    }
    if read.text()? != tenant.map_or("", TenantId::as_str) {
        return Err(unreadable("another tenant's file"));
    }
    let position = read.u64()?;
    let last_event = match read.u8()? {
        0 => None,
        _ => Some((read.u64()?, read.u64()?)),
    };
    let count = read.u32()? as usize;
    let mut threads = Vec::with_capacity(count.min((read.left / 9) as usize));
    for _ in 0..count {
        let id = ThreadId::new(read.text()?).map_err(|e| unreadable(format!("a thread id: {e}")))?;
        let metadata: Metadata =
            serde_json::from_str(&read.text()?).map_err(|e| unreadable(format!("a thread's metadata: {e}")))?;
        threads.push(ThreadEntry { id, metadata, live: read.u8()? != 0 });
    }
    let mut arenas = Vec::new();
    for _ in 0..read.u32()? {
        let model = read.text()?;
        let dims = read.u32()? as usize;
        let n = usize::try_from(read.u64()?).map_err(|_| unreadable("a count past any file"))?;
        let cells = n.checked_mul(dims).ok_or_else(|| unreadable("a count past any file"))?;
        let vectors = read.run(cells, 4, |b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))?;
        let codes = read.run(cells, 1, |b| b[0] as i8)?;
        let scales = read.run(n, 4, |b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))?;
        let mut slots = Vec::with_capacity(n.min((read.left / 40) as usize));
        for _ in 0..n {
            let thread = read.u32()?;
            if thread as usize >= threads.len() {
                return Err(unreadable("a vector of a thread the file does not hold"));
            }
            let seq = read.u64()?;
            let message_id = MessageId::new(read.text()?).map_err(|e| unreadable(format!("a message id: {e}")))?;
            let role = Role::new(&read.text()?).map_err(|e| unreadable(format!("a role: {e}")))?;
            let status = Status::parse(&read.text()?).ok_or_else(|| unreadable("a status"))?;
            let created_at = Timestamp::from_micros(read.u64()? as i64);
            slots.push(Slot { thread, seq, message_id, role, status, created_at });
        }
        let arena = Arena::from_parts(dims, vectors, codes, scales, slots)
            .ok_or_else(|| unreadable("an arena holds one vector twice"))?;
        arenas.push((model, arena));
    }
    if read.left != 0 {
        return Err(unreadable("bytes past its end"));
    }
    let mut sum = [0; 8];
    read.from.read_exact(&mut sum).map_err(|_| unreadable("cut short"))?;
    if read.sum.finish().to_le_bytes() != sum {
        return Err(unreadable("its checksum does not match (cut short or changed)"));
    }
    Ok(TenantIndex::from_parts(position, last_event, threads, arenas))
}

/// Writes `bytes` as `path`: to a file beside it first (readable by this user alone: it holds
/// the tenant's vectors and metadata as the store holds them), then renamed over it.
pub(super) fn write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let partial = path.with_extension(format!("partial-{}", std::process::id()));
    let written = (|| {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&partial)?;
        file.write_all(bytes)?;
        file.sync_data()?;
        std::fs::rename(&partial, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    written
}

/// How old a partial file is when its writer is taken for dead whoever it names (a file is
/// written in seconds; a process id may have been given to another process since).
const STALE: std::time::Duration = std::time::Duration::from_secs(3600);

/// Removes the partial files in `dir` that no writer will rename: those of processes that are
/// gone (where `/proc` says so), and any older than [`STALE`]. A writer killed while writing
/// leaves one; this process's own are left to its writers.
pub(super) fn sweep(dir: &Path) {
    let Ok(files) = std::fs::read_dir(dir) else { return };
    let ours = std::process::id();
    // Where there is no `/proc`, whether a process runs cannot be told: only the age rule holds.
    let processes_known = Path::new("/proc/self").exists();
    for file in files.flatten() {
        let name = file.file_name();
        let Some(pid) = name.to_str().and_then(|name| name.rsplit_once(".partial-")).map(|(_, pid)| pid) else {
            continue;
        };
        let Ok(pid) = pid.parse::<u32>() else { continue };
        if pid == ours {
            continue; // this process's own: perhaps being written now
        }
        let gone = processes_known && !Path::new(&format!("/proc/{pid}")).exists();
        let old = file
            .metadata()
            .and_then(|meta| meta.modified())
            .is_ok_and(|modified| modified.elapsed().is_ok_and(|age| age > STALE));
        if (gone || old) && std::fs::remove_file(file.path()).is_ok() {
            tracing::info!(target: "persist::recall", path = %file.path().display(), "a partial vector index file a writer left was removed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checksum_sees_one_changed_bit_anywhere() {
        let bytes: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 251) as u8).collect();
        let sum = checksum(&bytes);
        for at in [0, 31, 32, 500, 990, 999] {
            let mut changed = bytes.clone();
            changed[at] ^= 1;
            assert_ne!(checksum(&changed), sum, "byte {at}");
        }
        assert_ne!(checksum(&bytes[..999]), sum);
    }

    #[test]
    fn the_checksum_taken_as_the_bytes_come_is_the_checksum_of_them_all() {
        let bytes: Vec<u8> = (0..777u32).map(|i| (i * 13 % 256) as u8).collect();
        for piece in [1, 5, 31, 32, 33, 100, 777] {
            let mut sum = Checksum::new();
            for part in bytes.chunks(piece) {
                sum.update(part);
            }
            assert_eq!(sum.finish(), checksum(&bytes), "pieces of {piece}");
        }
    }

    #[test]
    fn an_index_reads_back_as_written() {
        use persist_core::vector::{Embedding, StoredEmbedding};
        let mut index = TenantIndex::new(42);
        index.last_event = Some((40, 7));
        let thread = ThreadId::new("t").unwrap();
        let at = index.set_thread(&thread, Metadata::new().with("user_id", serde_json::json!("u1")));
        for seq in 1..=70_000_u64 {
            let vector = vec![seq as f32, 1.0, -0.5];
            let stored = StoredEmbedding::new(
                MessageId::generate(),
                seq,
                Embedding::new("m", vector),
                Role::new(if seq % 2 == 0 { "user" } else { "critic" }).unwrap(),
                Status::Complete,
                Timestamp::from_micros(seq as i64),
            );
            index.put(at, &stored);
        }
        let tenant = TenantId::new("acme").unwrap();
        let bytes = encode(&index, Some(&tenant));
        let back = decode(&bytes, Some(&tenant)).unwrap();
        assert_eq!(encode(&back, Some(&tenant)), bytes);
        assert_eq!((back.position, back.last_event, back.vectors()), (42, Some((40, 7)), 70_000));
        assert!(decode(&bytes, None).is_err(), "another tenant's");
    }

    #[test]
    fn a_tenants_file_is_named_by_its_bytes() {
        let dir = Path::new("/x");
        assert_eq!(path(dir, None), Path::new("/x/default.vectors"));
        let tenant = TenantId::new("a/b").unwrap();
        assert_eq!(path(dir, Some(&tenant)), Path::new("/x/tenant-612f62.vectors"));
        let (long, other) = (TenantId::new("x".repeat(255)).unwrap(), TenantId::new("x".repeat(254)).unwrap());
        let name = |tenant| path(dir, Some(tenant)).file_name().unwrap().len();
        assert!(name(&long) <= 240, "a file name of 255 bytes at most, a partial file's too");
        assert_ne!(path(dir, Some(&long)), path(dir, Some(&other)));
    }
}

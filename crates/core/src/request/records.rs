//! Records: opaque values under a space and a key, per tenant, that an integration keeps beside
//! the conversations (LangGraph's checkpoints, its channels' values and pending writes, its
//! store's items), written by [`WriteRecords`] and read by [`ReadRecords`].
//!
//! A space is a name of the integration's own (`lg:checkpoints\u{1f}thread-1\u{1f}`, …): a read
//! names one space, or every space that starts with a prefix, so a hierarchy of names is read
//! or deleted whole. Spaces and keys compare bytewise on every backend; a listing is ordered by
//! key, then space. A value is bytes the store never reads.
//!
//! # Expiry
//!
//! A record written with [`expires_at`](RecordWrite::Put) is never answered once that time has
//! passed, by any read; a [`Put`](RecordWrite::Put) or an [`Insert`](RecordWrite::Insert) over
//! it writes as if it were not there, a [`Touch`](RecordWrite::Touch) moves the time of a record
//! still there, and [`Sweep`](RecordWrite::Sweep) deletes the tenant's expired records.
//!
//! # One write
//!
//! Every change of one [`WriteRecords`] is applied in one transaction, in order: all of them or
//! none.
//!
//! # Example
//!
//! ```
//! use persist::memory::MemoryBackend;
//! use persist::records::{ReadRecords, RecordWrite, WriteRecords};
//! use persist::Pipeline;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let pipeline = Pipeline::new(MemoryBackend::new());
//! pipeline
//!     .write_records(WriteRecords::new(vec![
//!         RecordWrite::put("graph/thread-1/", "0001", b"first".to_vec()),
//!         RecordWrite::put("graph/thread-1/", "0002", b"second".to_vec()),
//!         RecordWrite::put("graph/thread-2/", "0001", b"other".to_vec()),
//!     ]))
//!     .await?;
//!
//! let newest = pipeline.read_records(ReadRecords::space("graph/thread-1/").newest_first().with_limit(1)).await?;
//! assert_eq!(newest.items[0].value, b"second");
//! let all = pipeline.read_records(ReadRecords::prefix("graph/")).await?;
//! assert_eq!(all.items.len(), 3);
//! # Ok::<_, persist::PersistError>(())
//! # }).unwrap();
//! ```

use serde::{Deserialize, Serialize};

use crate::context::{Context, context_setter};
use crate::model::Timestamp;
use crate::model::error::{PersistError, Result};
use crate::model::id::TenantId;
use crate::read::Order;

/// The longest space or key, in bytes.
pub const MAX_NAME_BYTES: usize = 1024;
/// The largest value, in bytes.
pub const MAX_VALUE_BYTES: usize = 16 * 1024 * 1024;
/// The most changes one [`WriteRecords`] carries.
pub const MAX_WRITES: usize = 1000;

/// A record as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Record {
    /// The tenant it belongs to, if any.
    pub tenant: Option<TenantId>,
    /// Its space.
    pub space: String,
    /// Its key in the space.
    pub key: String,
    /// Its value, as written.
    pub value: Vec<u8>,
    /// When it stops being answered, if ever.
    pub expires_at: Option<Timestamp>,
    /// When it was last written or touched.
    pub updated_at: Timestamp,
}

impl Record {
    /// A record as a store read it.
    pub fn new(
        tenant: Option<TenantId>,
        space: String,
        key: String,
        value: Vec<u8>,
        expires_at: Option<Timestamp>,
        updated_at: Timestamp,
    ) -> Self {
        Self { tenant, space, key, value, expires_at, updated_at }
    }

    /// Whether it is still answered at `now`.
    pub fn is_live(&self, now: Timestamp) -> bool {
        live(self.expires_at, now)
    }
}

/// Whether a record that expires at `expires_at` is still answered at `now`.
pub fn live(expires_at: Option<Timestamp>, now: Timestamp) -> bool {
    expires_at.is_none_or(|at| at > now)
}

/// One change of a [`WriteRecords`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum RecordWrite {
    /// Writes the record, replacing one there.
    Put {
        /// Its space.
        space: String,
        /// Its key.
        key: String,
        /// Its value.
        value: Vec<u8>,
        /// When it expires, if ever.
        expires_at: Option<Timestamp>,
    },
    /// Writes the record unless a live one is there (which is kept as it is).
    Insert {
        /// Its space.
        space: String,
        /// Its key.
        key: String,
        /// Its value.
        value: Vec<u8>,
        /// When it expires, if ever.
        expires_at: Option<Timestamp>,
    },
    /// Sets when a live record expires (`None`: never); nothing when there is none.
    Touch {
        /// Its space.
        space: String,
        /// Its key.
        key: String,
        /// When it expires now.
        expires_at: Option<Timestamp>,
    },
    /// Deletes the record, if there.
    Delete {
        /// Its space.
        space: String,
        /// Its key.
        key: String,
    },
    /// Deletes every record of every space that starts with `prefix` (not empty).
    DeleteSpaces {
        /// The prefix of the spaces.
        prefix: String,
    },
    /// Deletes the tenant's expired records.
    Sweep,
}

impl RecordWrite {
    /// Writes `value` under `space` and `key`, never expiring.
    pub fn put(space: impl Into<String>, key: impl Into<String>, value: Vec<u8>) -> Self {
        Self::Put { space: space.into(), key: key.into(), value, expires_at: None }
    }

    /// Writes `value` under `space` and `key` unless a live record is there.
    pub fn insert(space: impl Into<String>, key: impl Into<String>, value: Vec<u8>) -> Self {
        Self::Insert { space: space.into(), key: key.into(), value, expires_at: None }
    }

    /// Deletes the record under `space` and `key`.
    pub fn delete(space: impl Into<String>, key: impl Into<String>) -> Self {
        Self::Delete { space: space.into(), key: key.into() }
    }

    /// Deletes every record of the spaces that start with `prefix`.
    pub fn delete_spaces(prefix: impl Into<String>) -> Self {
        Self::DeleteSpaces { prefix: prefix.into() }
    }

    /// This put or insert expiring at `at` (other changes as they are).
    pub fn expiring(mut self, at: Option<Timestamp>) -> Self {
        if let Self::Put { expires_at, .. } | Self::Insert { expires_at, .. } = &mut self {
            *expires_at = at;
        }
        self
    }

    fn validate(&self) -> Result<()> {
        match self {
            Self::Put { space, key, value, .. } | Self::Insert { space, key, value, .. } => {
                check_space(space, "space")?;
                check_key(key)?;
                if value.len() > MAX_VALUE_BYTES {
                    return Err(PersistError::invalid(
                        "value",
                        format!("is {} bytes, the limit is {MAX_VALUE_BYTES}", value.len()),
                    ));
                }
                Ok(())
            }
            Self::Touch { space, key, .. } | Self::Delete { space, key } => {
                check_space(space, "space")?;
                check_key(key)
            }
            Self::DeleteSpaces { prefix } => check_space(prefix, "prefix"),
            Self::Sweep => Ok(()),
        }
    }
}

fn check_name(name: &str, field: &'static str) -> Result<()> {
    if name.len() > MAX_NAME_BYTES {
        return Err(PersistError::invalid(field, format!("is {} bytes, the limit is {MAX_NAME_BYTES}", name.len())));
    }
    if name.contains('\0') {
        return Err(crate::request::write::nul(field));
    }
    Ok(())
}

fn check_space(space: &str, field: &'static str) -> Result<()> {
    if space.is_empty() {
        return Err(PersistError::invalid(field, "is empty"));
    }
    check_name(space, field)
}

fn check_key(key: &str) -> Result<()> {
    check_name(key, "key")
}

/// Applies changes to records, in one transaction; see the [module docs](self). Answers how
/// many records it wrote, touched or deleted.
///
/// Errors: `InvalidInput` for no change or more than [`MAX_WRITES`] (`writes`), an empty space
/// or prefix, a space or key over [`MAX_NAME_BYTES`] or holding U+0000, a value over
/// [`MAX_VALUE_BYTES`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct WriteRecords {
    /// The changes, applied in order.
    pub writes: Vec<RecordWrite>,
    /// Who is asking: its tenant's records are written.
    #[serde(skip)]
    pub context: Context,
}

impl WriteRecords {
    /// Applies `writes`.
    pub fn new(writes: Vec<RecordWrite>) -> Self {
        Self { writes, context: Context::new() }
    }

    context_setter!(tenant);

    /// Checks the request; backends call this first.
    ///
    /// # Errors
    ///
    /// `InvalidInput`, as the type's docs say.
    pub fn validate(&self) -> Result<()> {
        if self.writes.is_empty() || self.writes.len() > MAX_WRITES {
            return Err(PersistError::invalid(
                "writes",
                format!("must hold 1 to {MAX_WRITES} changes, got {}", self.writes.len()),
            ));
        }
        self.writes.iter().try_for_each(RecordWrite::validate)
    }
}

/// What a [`WriteRecords`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RecordsWritten {
    /// The records written, touched or deleted (an insert that kept a live record counts none).
    pub changed: u64,
}

impl RecordsWritten {
    /// `changed` records changed.
    pub fn new(changed: u64) -> Self {
        Self { changed }
    }
}

/// Reads a page of records, by key then space (oldest key first, or
/// [newest first](Self::newest_first)); expired ones never.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ReadRecords {
    /// The space, or the prefix of the spaces when [`prefix`](Self::prefix) is set.
    pub space: String,
    /// Whether `space` is a prefix: every space that starts with it is read.
    pub prefix: bool,
    /// Only these keys (empty: every key).
    pub keys: Vec<String>,
    /// Only keys below this one, bytewise.
    pub before: Option<String>,
    /// By key ascending, or descending.
    pub order: Order,
    /// Continue after this record (the previous page's last).
    pub cursor: Option<RecordCursor>,
    /// Page size, 1 to [`MAX_PAGE_LIMIT`](crate::read::MAX_PAGE_LIMIT) (default 100).
    pub limit: u32,
    /// Who is asking: its tenant's records are read.
    pub context: Context,
}

impl ReadRecords {
    /// The records of `space`.
    pub fn space(space: impl Into<String>) -> Self {
        Self::new(space.into(), false)
    }

    /// The records of every space that starts with `prefix`.
    pub fn prefix(prefix: impl Into<String>) -> Self {
        Self::new(prefix.into(), true)
    }

    fn new(space: String, prefix: bool) -> Self {
        Self {
            space,
            prefix,
            keys: Vec::new(),
            before: None,
            order: Order::Asc,
            cursor: None,
            limit: crate::read::DEFAULT_PAGE_LIMIT,
            context: Context::new(),
        }
    }

    /// Only the records of these keys.
    pub fn with_keys(mut self, keys: Vec<String>) -> Self {
        self.keys = keys;
        self
    }

    /// Only the records of keys below `key`.
    pub fn with_before(mut self, key: Option<String>) -> Self {
        self.before = key;
        self
    }

    /// Highest key first.
    pub fn newest_first(mut self) -> Self {
        self.order = Order::Desc;
        self
    }

    page_setters!(cursor: RecordCursor, limit);

    context_setter!(tenant);

    /// Checks the request; backends call this first.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a limit of 0 or over the maximum (`limit`), an empty space, a space or
    /// key over [`MAX_NAME_BYTES`] or holding U+0000, more than
    /// [`MAX_PAGE_LIMIT`](crate::read::MAX_PAGE_LIMIT) keys (`keys`).
    pub fn validate(&self) -> Result<()> {
        crate::model::page::validate_limit(self.limit)?;
        check_space(&self.space, "space")?;
        if self.keys.len() > crate::read::MAX_PAGE_LIMIT as usize {
            return Err(PersistError::invalid("keys", "names more keys than a page holds"));
        }
        self.keys.iter().try_for_each(|key| check_key(key))?;
        self.before.as_deref().map_or(Ok(()), check_key)
    }

    /// The upper bound of the spaces read when `space` is a prefix: the least string above
    /// every string that starts with it, bytewise (`None`: no bound, the prefix being all
    /// U+10FFFF). What a backend that reads a range of its index binds.
    pub fn prefix_end(&self) -> Option<String> {
        let mut end: Vec<char> = self.space.chars().collect();
        while let Some(last) = end.pop() {
            let next = (u32::from(last) + 1..=0x10FFFF).find_map(char::from_u32);
            if let Some(next) = next {
                end.push(next);
                return Some(end.into_iter().collect());
            }
        }
        None
    }

    /// Whether a record of `space` under `key`, expiring at `expires_at`, is in the listing at
    /// `now`, after its cursor: what a backend that scans applies.
    pub fn admits(&self, space: &str, key: &str, expires_at: Option<Timestamp>, now: Timestamp) -> bool {
        let in_space = if self.prefix { space.starts_with(&self.space) } else { space == self.space };
        in_space
            && live(expires_at, now)
            && (self.keys.is_empty() || self.keys.iter().any(|k| k == key))
            && self.before.as_deref().is_none_or(|before| key < before)
            && self.cursor.as_ref().is_none_or(|cursor| cursor.precedes(key, space, self.order))
    }

    /// The page of up to `limit + 1` records, in the listing's order.
    pub fn page(&self, mut fetched: Vec<Record>) -> crate::Page<Record, RecordCursor> {
        fetched.sort_by(|a, b| (a.key.as_str(), a.space.as_str()).cmp(&(b.key.as_str(), b.space.as_str())));
        if self.order == Order::Desc {
            fetched.reverse();
        }
        crate::model::page::lookahead(fetched, self.limit, |r| RecordCursor::new(r.key.clone(), r.space.clone()))
    }

    /// The request of the page after `page`; `None` when it was the last.
    pub fn next_page(&self, page: &crate::Page<Record, RecordCursor>) -> Option<Self> {
        let cursor = page.next_cursor.clone().filter(|_| page.has_more)?;
        Some(self.clone().with_cursor(Some(cursor)))
    }
}

/// Where a [`ReadRecords`] page stopped: its last record's key and space.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RecordCursor {
    key: String,
    space: String,
}

impl RecordCursor {
    /// The cursor just past the record of `space` under `key`.
    pub fn new(key: String, space: String) -> Self {
        Self { key, space }
    }

    /// The last record's key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The last record's space.
    pub fn space(&self) -> &str {
        &self.space
    }

    /// Whether the record of `space` under `key` comes after this cursor in `order`.
    pub fn precedes(&self, key: &str, space: &str, order: Order) -> bool {
        let mine = (self.key.as_str(), self.space.as_str());
        match order {
            Order::Asc => (key, space) > mine,
            Order::Desc => (key, space) < mine,
        }
    }
}

/// The records of `tenant` (in a scan of `stored`, ordered by tenant, space and key) that
/// `writes` leave at `now`, and how many changed: the rules every backend applies, written once
/// for the stores that keep their records in a map.
pub fn apply_to_map(
    stored: &mut std::collections::BTreeMap<(String, String, String), Record>,
    tenant: Option<&TenantId>,
    writes: &[RecordWrite],
    now: Timestamp,
) -> u64 {
    let tenant_key = crate::model::id_checks::tenant_key(tenant).to_owned();
    let at = |space: &str, key: &str| (tenant_key.clone(), space.to_owned(), key.to_owned());
    let mut changed = 0;
    for write in writes {
        match write {
            RecordWrite::Put { space, key, value, expires_at }
            | RecordWrite::Insert { space, key, value, expires_at } => {
                let place = at(space, key);
                let kept = matches!(write, RecordWrite::Insert { .. })
                    && stored.get(&place).is_some_and(|record| record.is_live(now));
                if !kept {
                    let record =
                        Record::new(tenant.cloned(), space.clone(), key.clone(), value.clone(), *expires_at, now);
                    stored.insert(place, record);
                    changed += 1;
                }
            }
            RecordWrite::Touch { space, key, expires_at } => {
                if let Some(record) = stored.get_mut(&at(space, key)).filter(|record| record.is_live(now)) {
                    record.expires_at = *expires_at;
                    record.updated_at = now;
                    changed += 1;
                }
            }
            RecordWrite::Delete { space, key } => changed += u64::from(stored.remove(&at(space, key)).is_some()),
            RecordWrite::DeleteSpaces { prefix } => {
                let before = stored.len();
                stored.retain(|(t, space, _), _| *t != tenant_key || !space.starts_with(prefix.as_str()));
                changed += (before - stored.len()) as u64;
            }
            RecordWrite::Sweep => {
                let before = stored.len();
                stored.retain(|(t, _, _), record| *t != tenant_key || record.is_live(now));
                changed += (before - stored.len()) as u64;
            }
        }
    }
    changed
}

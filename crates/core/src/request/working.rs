//! Working memory: a small JSON document per (tenant, resource) that an agent keeps about a
//! user (preferences, facts) across threads, read by [`ReadMemory`] and changed by
//! [`WriteMemory`].
//!
//! # Updates that are never lost
//!
//! A [`MemoryChange::Patch`] is a JSON merge patch ([RFC 7396](https://www.rfc-editor.org/rfc/rfc7396),
//! [`merge_patch`]) applied **inside the store's write**, to the document as it is at that
//! moment: two processes patching different keys at once both survive, whichever commits first
//! (a read in the app and a write of the whole document would lose one). A
//! [`MemoryChange::Replace`] writes the whole document; with
//! [`expected_version`](WriteMemory::expected_version) it is a compare-and-set
//! (`DocumentConflict`, the working memory's version conflict, when another write came first), which is how an app that rewrites the
//! document from a model's answer keeps the writes it did not see. Every write moves the
//! version by one; a document never written reads as `None`, and its version counts as `0`
//! (`with_expected_version(0)`: only if nobody wrote it yet). Clearing it writes `{}`.
//!
//! The document is a JSON object of at most [`MAX_DOCUMENT_BYTES`] as written (after the
//! patch), stored as the JSON text of the parsed document (on PostgreSQL too: `text`, not
//! `jsonb`, so every backend answers the values `serde_json` parsed, the same way), confined to
//! the request's tenant like a thread.
//!
//! # Example
//!
//! ```
//! use persist::memory::MemoryBackend;
//! use persist::working::{ReadMemory, WriteMemory};
//! use persist::{Metadata, Pipeline, ResourceId};
//! use serde_json::json;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let pipeline = Pipeline::new(MemoryBackend::new());
//! let user = ResourceId::new("user:42")?;
//! let patch = |value: serde_json::Value| Metadata::try_from(value).unwrap();
//! pipeline.write_memory(WriteMemory::patch(user.clone(), patch(json!({"name": "Ada", "diet": {"vegan": true}})))).await?;
//! pipeline.write_memory(WriteMemory::patch(user.clone(), patch(json!({"diet": {"nuts": false}, "name": null})))).await?;
//!
//! let memory = pipeline.read_memory(ReadMemory::new(user)).await?.expect("written");
//! assert_eq!(memory.document.as_map(), patch(json!({"diet": {"vegan": true, "nuts": false}})).as_map());
//! assert_eq!(memory.version, 2);
//! # Ok::<_, persist::PersistError>(())
//! # }).unwrap();
//! ```

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::context::{Context, context_setter};
use crate::model::error::{PersistError, Result};
use crate::model::id::{ResourceId, TenantId};
use crate::model::{Metadata, Timestamp};

/// The largest document stored, in bytes of its JSON.
pub const MAX_DOCUMENT_BYTES: usize = 64 * 1024;

/// A working memory document as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct WorkingMemory {
    /// The tenant it belongs to, if any.
    pub tenant: Option<TenantId>,
    /// What it is about.
    pub resource: ResourceId,
    /// The document: a JSON object.
    pub document: Metadata,
    /// `1` once written, `+1` on every write.
    pub version: u64,
    /// When it was first written.
    pub created_at: Timestamp,
    /// When it was last written.
    pub updated_at: Timestamp,
}

impl WorkingMemory {
    /// A document as a store read it.
    pub fn new(
        tenant: Option<TenantId>,
        resource: ResourceId,
        document: Metadata,
        version: u64,
        created_at: Timestamp,
        updated_at: Timestamp,
    ) -> Self {
        Self { tenant, resource, document, version, created_at, updated_at }
    }
}

/// Reads a working memory document; `None` when it was never written.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ReadMemory {
    /// What it is about.
    pub resource: ResourceId,
    /// Who is asking: its tenant's document is read.
    pub context: Context,
}

impl ReadMemory {
    /// The document of `resource` in the context's tenant.
    pub fn new(resource: ResourceId) -> Self {
        Self { resource, context: Context::new() }
    }

    context_setter!(tenant);
}

/// Lists working memory documents: the context's tenant's, or every tenant's for operators
/// (never through a [`Scoped`](crate::Scoped) handle), by tenant then resource, bytewise; what
/// an export or a copy of a tenant reads.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ListMemories {
    /// Continue after this document (the previous page's last).
    pub cursor: Option<MemoryCursor>,
    /// Page size, 1 to [`MAX_PAGE_LIMIT`](crate::read::MAX_PAGE_LIMIT) (default 100).
    pub limit: u32,
    /// Every tenant's documents instead of the context's tenant's.
    pub across_tenants: bool,
    /// Who is asking: its tenant's documents are listed.
    pub context: Context,
}

impl Default for ListMemories {
    fn default() -> Self {
        Self::new()
    }
}

impl ListMemories {
    /// The first page of the context's tenant's documents.
    pub fn new() -> Self {
        Self { cursor: None, limit: crate::read::DEFAULT_PAGE_LIMIT, across_tenants: false, context: Context::new() }
    }

    page_setters!(cursor: MemoryCursor, limit);

    /// Every tenant's documents (`true`: operators only), or the context's tenant's.
    pub fn across_tenants(mut self, across: bool) -> Self {
        self.across_tenants = across;
        self
    }

    context_setter!(tenant);

    /// Checks the request; backends call this first.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a limit of 0 or over the maximum (`limit`).
    pub fn validate(&self) -> Result<()> {
        crate::model::page::validate_limit(self.limit)
    }

    /// Whether a document (of `tenant`, about `resource`) is in the listing after its cursor:
    /// what a backend that scans applies.
    pub fn admits(&self, tenant: Option<&TenantId>, resource: &ResourceId) -> bool {
        (self.across_tenants || tenant == self.tenant())
            && self.cursor.as_ref().is_none_or(|cursor| cursor.precedes(tenant, resource))
    }

    /// The page of up to `limit + 1` documents, in the listing's order.
    pub fn page(&self, mut fetched: Vec<WorkingMemory>) -> crate::Page<WorkingMemory, MemoryCursor> {
        fetched.sort_by(|a, b| order(a).cmp(&order(b)));
        crate::model::page::lookahead(fetched, self.limit, |m| MemoryCursor::new(m.tenant.clone(), m.resource.clone()))
    }
}

fn order(memory: &WorkingMemory) -> (&str, &str) {
    (crate::model::id_checks::tenant_key(memory.tenant.as_ref()), memory.resource.as_str())
}

/// Where a [`ListMemories`] page stopped: its last document's tenant and resource.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MemoryCursor {
    tenant: Option<TenantId>,
    resource: ResourceId,
}

impl MemoryCursor {
    /// The cursor just past the document of `tenant` about `resource`.
    pub fn new(tenant: Option<TenantId>, resource: ResourceId) -> Self {
        Self { tenant, resource }
    }

    /// The last document's tenant.
    pub fn tenant(&self) -> Option<&TenantId> {
        self.tenant.as_ref()
    }

    /// The last document's resource.
    pub fn resource(&self) -> &ResourceId {
        &self.resource
    }

    /// Whether the document of `tenant` about `resource` comes after this cursor.
    pub fn precedes(&self, tenant: Option<&TenantId>, resource: &ResourceId) -> bool {
        let mine = (crate::model::id_checks::tenant_key(self.tenant.as_ref()), self.resource.as_str());
        (crate::model::id_checks::tenant_key(tenant), resource.as_str()) > mine
    }
}

/// How a [`WriteMemory`] changes the document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
#[non_exhaustive]
pub enum MemoryChange {
    /// A JSON merge patch ([`merge_patch`]) applied to the document as the store holds it (to
    /// `{}` when there is none).
    Patch(Metadata),
    /// The whole document.
    Replace(Metadata),
    /// The whole document at a version of its own, above the stored one: how an import or a
    /// copy writes a document as its source held it, so that an expected version read from the
    /// source never matches an older state here.
    Restore {
        /// The document.
        document: Metadata,
        /// Its version.
        version: u64,
    },
}

/// Changes a working memory document; see the [module docs](self). Answers the document as
/// written.
///
/// Errors: `DocumentConflict` when [`expected_version`](Self::expected_version) is set and the
/// document is at another (`0`: never written); `InvalidInput` for a document over
/// [`MAX_DOCUMENT_BYTES`] once changed (`document`), nested too deep or holding U+0000.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct WriteMemory {
    /// What it is about.
    pub resource: ResourceId,
    /// The change.
    pub change: MemoryChange,
    /// Write only if the document is at this version (`0`: never written).
    pub expected_version: Option<u64>,
    /// Who is asking: its tenant's document is written.
    #[serde(skip)]
    pub context: Context,
}

impl WriteMemory {
    /// Applies `patch` (a JSON merge patch) to the document of `resource`.
    pub fn patch(resource: ResourceId, patch: Metadata) -> Self {
        Self::new(resource, MemoryChange::Patch(patch))
    }

    /// Replaces the document of `resource` with `document`.
    pub fn replace(resource: ResourceId, document: Metadata) -> Self {
        Self::new(resource, MemoryChange::Replace(document))
    }

    /// Empties the document of `resource` (writes `{}`: its version goes on counting).
    pub fn clear(resource: ResourceId) -> Self {
        Self::replace(resource, Metadata::new())
    }

    /// Writes `document` at `version` (as a source store held it), if the stored document is
    /// at a lower version (never written: 0); `DocumentConflict` otherwise.
    pub fn restore(resource: ResourceId, document: Metadata, version: u64) -> Self {
        Self::new(resource, MemoryChange::Restore { document, version })
    }

    fn new(resource: ResourceId, change: MemoryChange) -> Self {
        Self { resource, change, expected_version: None, context: Context::new() }
    }

    /// Writes only if the document is at `version` (`0`: only if it was never written).
    pub fn with_expected_version(mut self, version: u64) -> Self {
        self.expected_version = Some(version);
        self
    }

    context_setter!(tenant);

    /// Checks the request; backends call this first.
    ///
    /// # Errors
    ///
    /// `InvalidInput` naming `document` for a patch or document nested too deep, holding
    /// U+0000, or larger than [`MAX_DOCUMENT_BYTES`] by itself.
    pub fn validate(&self) -> Result<()> {
        let (MemoryChange::Patch(value) | MemoryChange::Replace(value) | MemoryChange::Restore { document: value, .. }) =
            &self.change;
        if let MemoryChange::Restore { version: 0, .. } = &self.change {
            return Err(PersistError::invalid("version", "a document's versions start at 1"));
        }
        value.check_depth().map_err(|_| PersistError::invalid("document", "is nested too deep"))?;
        if value.has_nul() {
            return Err(crate::request::write::nul("document"));
        }
        check_size(value)
    }

    /// The document this write leaves and its version, from the stored one (`None`: never
    /// written) and its version: what every backend applies inside its write.
    ///
    /// # Errors
    ///
    /// `DocumentConflict` as [`expected_version`](Self::expected_version) says, or for a
    /// [restore](MemoryChange::Restore) at or below the stored version; `InvalidInput` naming
    /// `document` when the result is larger than [`MAX_DOCUMENT_BYTES`].
    pub fn apply(&self, stored: Option<&Metadata>, version: u64) -> Result<(Metadata, u64)> {
        if let Some(expected) = self.expected_version
            && expected != version
        {
            return Err(self.conflict(version));
        }
        let (document, next) = match &self.change {
            MemoryChange::Restore { document, version: restored } => {
                if *restored <= version {
                    let resource = self.resource.clone();
                    return Err(PersistError::DocumentConflict { resource, expected: *restored, actual: version });
                }
                (document.clone(), *restored)
            }
            MemoryChange::Replace(document) => (document.clone(), version + 1),
            MemoryChange::Patch(patch) => {
                let mut target = Value::Object(stored.map(|d| d.as_map().clone()).unwrap_or_default());
                merge_patch(&mut target, &Value::Object(patch.as_map().clone()));
                let document = match target {
                    Value::Object(map) => Metadata::from(map),
                    // A patch that is an object leaves an object.
                    _ => Metadata::new(),
                };
                (document, version + 1)
            }
        };
        check_size(&document)?;
        Ok((document, next))
    }

    /// The error of a document at `actual` when the write expected another version.
    pub fn conflict(&self, actual: u64) -> PersistError {
        let expected = self.expected_version.unwrap_or_default();
        PersistError::DocumentConflict { resource: self.resource.clone(), expected, actual }
    }
}

fn check_size(document: &Metadata) -> Result<()> {
    let bytes = document.json_len();
    if bytes > MAX_DOCUMENT_BYTES {
        return Err(PersistError::invalid(
            "document",
            format!("is {bytes} bytes of JSON, the limit is {MAX_DOCUMENT_BYTES}"),
        ));
    }
    Ok(())
}

/// Applies a JSON merge patch ([RFC 7396](https://www.rfc-editor.org/rfc/rfc7396)) to `target`:
/// an object patch merges key by key (recursively into objects, `null` removing the key), any
/// other patch replaces the target.
///
/// # Example
///
/// ```
/// use persist::working::merge_patch;
/// use serde_json::json;
///
/// let mut doc = json!({"a": "b", "c": {"d": "e", "f": "g"}});
/// merge_patch(&mut doc, &json!({"a": "z", "c": {"f": null}}));
/// assert_eq!(doc, json!({"a": "z", "c": {"d": "e"}}));
/// ```
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(map) = target else { return };
    for (key, value) in patch {
        if value.is_null() {
            map.remove(key);
        } else {
            merge_patch(map.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

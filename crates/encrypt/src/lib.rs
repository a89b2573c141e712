//! Encryption at rest for persist, as a layer.
//!
//! [`EncryptLayer`] seals every message's content (and the metadata keys and thread titles it
//! is told to) with XChaCha20-Poly1305 on the way down, and opens them on the way up, for every
//! write and every read that carries them: results of writes, messages, pages, threads,
//! stranded reservations. Whatever is below the layer (routes, mirrors, the backend, the
//! database files and their backups) holds only envelopes; whatever is above it sees clear
//! values. Stack it **last**, closest to the backend, so that observers and indexers above it
//! see what callers wrote.
//!
//! # The envelope
//!
//! A sealed content or metadata value is stored as the JSON object
//! `{"persist:sealed": "v1.<key id>.<base64url(nonce ‖ ciphertext ‖ tag)>"}`, a sealed title as
//! `persist:sealed:v1.…`. The version and key id say how to open it; a fresh random 24-byte
//! nonce is drawn for every seal. The associated data binds the envelope to where it belongs:
//! its tenant, thread, message (none for a thread's own fields) and field (content, which
//! metadata key, title). An envelope copied to another message, thread or tenant, or with one
//! byte changed, does not open: reading it answers [`PersistError::Unreadable`], never garbage
//! and never a part of the value.
//!
//! # What stays clear
//!
//! Ids (tenant, thread, message), seqs, versions, roles, statuses, times, idempotency keys,
//! thread counters, the placeholder `[]` of a reservation, metadata keys not named with
//! [`seal_metadata`](EncryptLayer::seal_metadata) (and the *names* of those that are), and
//! thread titles unless [`seal_titles`](EncryptLayer::seal_titles). A thread listing cannot
//! filter on a sealed metadata key (refused with `InvalidInput`). Sizes are visible: an envelope is about 4/3 of its value plus ~60 bytes,
//! and a store's size limits hold for what it stores (a sealed title holds about 700 bytes of
//! the 1024 a title may have; SQLite's `max_content_bytes` counts the envelope).
//!
//! # Clear values where sealed ones belong
//!
//! Where the layer seals, whatever the store holds that is not an envelope is refused with
//! [`PersistError::Unreadable`], whatever its shape (`[]`, `{}`, `null`, a number, a string):
//! a complete message's content is sealed even when it is the empty `[]`, and a sealed
//! metadata key's `null` is sealed too (in a patch, a `null` still removes its key). Only a
//! reservation's placeholder `[]` is clear. A store written without the layer (or by a version
//! that left `[]` content and `null` values clear) opens with
//! [`allow_clear_values`](EncryptLayer::allow_clear_values), and [`EncryptLayer::rotate`] then
//! seals what is clear.
//!
//! # What it does not protect against
//!
//! Whoever can write to the store can put back an older envelope of the same field of the same
//! message (the associated data does not hold the version), or delete rows; sealing hides
//! values, it does not sign the history. A deleted thread's tombstone keeps its sealed title
//! and metadata, and a rotation, which lists live threads, does not reach it: keep an old key
//! while a tombstone's title must still be read. Summaries (see `persist::summary`) are sealed
//! like content, bound to their thread and range, and a rotation does not re-seal them (a
//! summary is written once, never replaced): keep an old key while summaries it sealed are
//! read, or let the next compaction write a summary under the new key.
//!
//! # Repeats
//!
//! A seal draws a fresh nonce, but for the messages of a write sent with an idempotency key: their
//! nonce is derived from the key, the place and the value (HMAC-SHA256 under a key of its own,
//! the synthetic-IV construction), and a message written without an id gets one derived from
//! the key, so a retry seals exactly what its first call sealed, and the store tells it apart
//! from another request even once the message is gone (`persist::spent`; a retry after a key
//! rotation is then refused as another request). Equal envelopes say only that one value of one
//! place was sealed twice. Without a key, the layer gives an `add` or `reserve` without an id a
//! new one before sealing (the id is part of what the envelope is bound to). When the store
//! answers `AlreadyExists` or `IdempotencyKeyReused`, the layer reads the stored message, opens
//! it and decides on the clear values, as a backend would: the same request is answered with
//! the stored message (`deduplicated: true`), another keeps its error. Once the message is gone,
//! a retry that names another id than its first call seals other envelopes and is refused as
//! another request, unless the message had changed before it went (any request with its key is
//! then its repeat, answered from the clear request).
//!
//! # Key checks
//!
//! The store keeps a check value per key id and tenant (HKDF-SHA256 of the key under a fixed
//! label, through [`SetOnce`](persist_core::once::SetOnce)): the first instance to seal with a
//! key records it, and every instance compares its own once before it seals with that key. A
//! key id given other bytes is refused with [`PersistError::Rejected`] naming the key, before
//! it seals anything (and once refused, its reads that do not open say so, instead of
//! `Unreadable`). Reads never record a value. A tenant's first write checks the ring's own key
//! too, from which tenants' keys derive. A store that keeps no values (a backend that answers
//! `set_once` with `Unsupported`) is not checked, nor is a request whose `set_once` a layer or
//! a read-only handle refuses (it is checked on the next one).
//!
//! # Pages
//!
//! `get` of a message that does not open fails with `Unreadable`. A page of messages or threads
//! holding one answers the others and names it in
//! [`Page::unreadable`](persist_core::Page::unreadable): one lost or tampered message does not
//! take down a conversation's page, and none is answered in part.
//!
//! # Keys
//!
//! Keys come from a [`Keys`] source, per tenant: a host implements it over its KMS, or uses
//! [`KeyRing`] (keys from bytes, base64 or the environment; a tenant's keys derived from the
//! ring key, or keys of a tenant's own that [`KeyRing::destroy_tenant`] destroys:
//! crypto-shredding). [`EncryptLayer::rotate`] re-seals, through the pipeline, what older keys
//! sealed.
//!
//! # Example
//!
//! ```
//! use persist::encrypt::{EncryptLayer, KeyRing};
//! use persist::{args::Add, Content, Metadata, Pipeline, Role, ThreadId};
//! use persist::memory::MemoryBackend;
//! use serde_json::json;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! // In production: KeyRing::from_env("PERSIST_ENCRYPTION_KEYS"), the same text.
//! let ring = KeyRing::from_text("2026-01:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=")?;
//! let pipeline = Pipeline::builder()
//!     .layer(EncryptLayer::new(ring).seal_metadata(["email"]))
//!     .build(MemoryBackend::new());
//! let add = Add::new(ThreadId::new("t1")?, Role::User, Content::text("hello"))
//!     .with_metadata(Metadata::new().with("email", json!("a@example.com")).with("lang", json!("en")));
//! let message = pipeline.add(add).await?.message;
//! assert_eq!(message.metadata.get("email"), Some(&json!("a@example.com")));
//! # Ok::<_, persist::PersistError>(())
//! # }).unwrap();
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

mod check;
mod envelope;
mod keys;
mod layer;
mod restore;
mod rotate;
mod sealer;
mod summary;

pub use self::keys::{KeyId, KeyRing, Keys, MAX_KEY_ID_BYTES, SecretKey};
pub use self::layer::{Encrypt, EncryptLayer, ResponseFuture};
pub use self::rotate::{RotateKeys, RotationReport};

#[doc(no_inline)]
pub use persist_core::PersistError;

/// A context extension asking [`EncryptLayer`] to answer a request with the values as stored
/// (sealed), not opened: for maintenance that moves envelopes as they are (a rotation, a copy
/// of a store). It changes answers only: what a write writes is sealed whatever the context
/// says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AsStored;

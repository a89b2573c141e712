//! The envelope: one sealed value as text, `v1.<key id>.<base64url(nonce ‖ ciphertext ‖ tag)>`,
//! and the associated data that binds it to where it belongs.
//!
//! XChaCha20-Poly1305 with a fresh random 24-byte nonce per seal, or, for the values of a write
//! sent with an idempotency key, a nonce derived from the key, the associated data and the
//! plaintext ([`Nonce::Derived`], the synthetic-IV construction): a retry of that write seals
//! exactly what its first call sealed, so the store tells the retry from another request by
//! what it stores, even once the message is gone (see `persist::spent`). Equal envelopes then
//! say only that one value of one place was sealed twice. The associated data names the
//! envelope's version and key id, the tenant, the thread, the message (none for a thread's own
//! fields) and the field (`content`, a metadata key, the title), so an envelope copied anywhere
//! else does not open, and neither does one with a byte changed.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use persist_core::{MessageId, PersistError, Result, TenantId, ThreadId};
use zeroize::Zeroizing;

use crate::keys::{KeyId, Keys};

/// The envelope version this crate writes.
const VERSION: &str = "v1";
const NONCE_BYTES: usize = 24;

/// Which field of a message or thread a value is.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Field<'a> {
    Content,
    /// A message's metadata key.
    Metadata(&'a str),
    /// A thread's title.
    Title,
    /// A thread's metadata key.
    ThreadMetadata(&'a str),
    /// The delta of a message's feed event: what the update to this version (its decimal
    /// text) added to the content. Bound to the version, so a delta is never taken for
    /// another event's, nor for content.
    Delta(&'a str),
    /// The content of the summary of this range (`<from>..<through>`, decimal).
    Summary(&'a str),
    /// A metadata key of a summary: `<from>..<through>/<key>`.
    SummaryMetadata(&'a str),
}

/// Where a value is stored: what its envelope is bound to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Place<'a> {
    pub(crate) tenant: Option<&'a TenantId>,
    pub(crate) thread: &'a ThreadId,
    pub(crate) message: Option<&'a MessageId>,
    pub(crate) field: Field<'a>,
}

impl Place<'_> {
    /// The associated data of an envelope sealed by `key_id` for this place: every part
    /// length-prefixed, so no two places share one.
    fn associated_data(&self, key_id: &KeyId) -> Vec<u8> {
        let (tag, name) = match self.field {
            Field::Content => ("content", ""),
            Field::Metadata(key) => ("metadata", key),
            Field::Title => ("title", ""),
            Field::ThreadMetadata(key) => ("thread-metadata", key),
            Field::Delta(version) => ("delta", version),
            Field::Summary(seq) => ("summary", seq),
            Field::SummaryMetadata(name) => ("summary-metadata", name),
        };
        let parts: [Option<&str>; 7] = [
            Some(VERSION),
            Some(key_id.as_str()),
            self.tenant.map(TenantId::as_str),
            Some(self.thread.as_str()),
            self.message.map(MessageId::as_str),
            Some(tag),
            Some(name),
        ];
        let mut aad = b"persist-encrypt".to_vec();
        for part in parts {
            match part {
                None => aad.push(0),
                Some(text) => {
                    aad.push(1);
                    aad.extend_from_slice(&(text.len() as u64).to_be_bytes());
                    aad.extend_from_slice(text.as_bytes());
                }
            }
        }
        aad
    }

    /// The error for a value of this place that does not open.
    pub(crate) fn unreadable(&self, reason: &'static str) -> PersistError {
        let what = match self.field {
            Field::Content => "content".to_owned(),
            Field::Metadata(key) => format!("metadata key {key:?}"),
            Field::Title => "title".to_owned(),
            Field::ThreadMetadata(key) => format!("thread metadata key {key:?}"),
            Field::Delta(version) => format!("the feed's delta of version {version}"),
            Field::Summary(range) => format!("the summary of seqs {range}"),
            Field::SummaryMetadata(name) => format!("summary metadata {name:?} (range/key)"),
        };
        PersistError::Unreadable {
            thread_id: self.thread.clone(),
            message_id: self.message.cloned(),
            reason: format!("{what}: {reason}").into(),
        }
    }
}

/// Where a seal's nonce comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Nonce {
    /// Drawn at random.
    Random,
    /// Derived from the key, the associated data and the plaintext: the same value sealed at the
    /// same place is the same envelope (for the writes sent with an idempotency key).
    Derived,
}

impl Nonce {
    /// [`Derived`](Self::Derived) for a write sent with an idempotency key, else random.
    pub(crate) fn for_key<T>(key: Option<&T>) -> Self {
        if key.is_some() { Self::Derived } else { Self::Random }
    }
}

/// HMAC-SHA256, under a key of its own derived from the sealing key, of the associated data
/// (length-prefixed) and the plaintext, cut to a nonce.
fn derived_nonce(key: &crate::keys::SecretKey, aad: &[u8], plaintext: &[u8]) -> [u8; NONCE_BYTES] {
    let mut nonce_key = Zeroizing::new([0u8; 32]);
    let hkdf = hkdf::Hkdf::<sha2::Sha256>::new(Some(b"persist-encrypt nonce"), key.bytes());
    // 32 bytes is far below HKDF-SHA256's limit: the expansion cannot fail.
    let _ = hkdf.expand(b"v1", nonce_key.as_mut_slice());
    let mut message = Vec::with_capacity(8 + aad.len() + plaintext.len());
    message.extend_from_slice(&(aad.len() as u64).to_be_bytes());
    message.extend_from_slice(aad);
    message.extend_from_slice(plaintext);
    let (mac, _) = hkdf::Hkdf::<sha2::Sha256>::extract(Some(nonce_key.as_slice()), &message);
    let mut nonce = [0u8; NONCE_BYTES];
    nonce.copy_from_slice(&mac[..NONCE_BYTES]);
    nonce
}

/// Seals `plaintext` for `place` with the tenant's current key: the envelope's text.
pub(crate) fn seal(keys: &dyn Keys, place: &Place<'_>, plaintext: &[u8], nonce: Nonce) -> Result<String> {
    let (key_id, key) = keys.current(place.tenant)?;
    let cipher = XChaCha20Poly1305::new(&Key::from(*key.bytes()));
    let aad = place.associated_data(&key_id);
    let nonce = XNonce::from(match nonce {
        Nonce::Random => {
            let mut nonce = [0u8; NONCE_BYTES];
            rand::RngCore::fill_bytes(&mut rand::rng(), &mut nonce);
            nonce
        }
        Nonce::Derived => derived_nonce(&key, &aad, plaintext),
    });
    let sealed = cipher
        .encrypt(&nonce, Payload { msg: plaintext, aad: &aad })
        .map_err(|_| PersistError::Backend { message: "sealing a value failed".into(), source: None })?;
    let mut body = Vec::with_capacity(NONCE_BYTES + sealed.len());
    body.extend_from_slice(&nonce);
    body.extend_from_slice(&sealed);
    Ok(format!("{VERSION}.{key_id}.{}", URL_SAFE_NO_PAD.encode(&body)))
}

/// The key id an envelope names, if `text` is an envelope of a version this crate reads.
pub(crate) fn key_id(text: &str) -> Option<KeyId> {
    let mut parts = text.splitn(3, '.');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(VERSION), Some(id), Some(_)) => KeyId::new(id).ok(),
        _ => None,
    }
}

/// Opens the envelope `text` stored at `place`.
///
/// # Errors
///
/// `Unreadable` for anything that is not an envelope of this place sealed by a key the tenant
/// holds: a malformed envelope, an unknown or destroyed key, another place's envelope, a
/// changed byte. The same error for each, whatever the cause, and never a part of the value.
pub(crate) fn open(keys: &dyn Keys, place: &Place<'_>, text: &str) -> Result<Zeroizing<Vec<u8>>> {
    let mut parts = text.splitn(3, '.');
    let (Some(VERSION), Some(id), Some(body)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(place.unreadable("not a sealed value this version reads"));
    };
    let key_id = KeyId::new(id).map_err(|_| place.unreadable("not a sealed value this version reads"))?;
    let Some(key) = keys.key(place.tenant, &key_id)? else {
        return Err(place.unreadable("sealed with a key this ring does not hold (unknown or destroyed)"));
    };
    let body = URL_SAFE_NO_PAD.decode(body).map_err(|_| place.unreadable("does not open"))?;
    if body.len() < NONCE_BYTES {
        return Err(place.unreadable("does not open"));
    }
    let (nonce, sealed) = body.split_at(NONCE_BYTES);
    let nonce: [u8; NONCE_BYTES] = nonce.try_into().map_err(|_| place.unreadable("does not open"))?;
    let cipher = XChaCha20Poly1305::new(&Key::from(*key.bytes()));
    let aad = place.associated_data(&key_id);
    cipher
        .decrypt(&XNonce::from(nonce), Payload { msg: sealed, aad: &aad })
        .map(Zeroizing::new)
        .map_err(|_| place.unreadable("does not open here (tampered with, or copied from elsewhere)"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{KeyRing, SecretKey};

    fn ring() -> KeyRing {
        KeyRing::new().with_key(KeyId::new("k1").unwrap(), SecretKey::new([5; 32])).unwrap()
    }

    fn ids() -> (TenantId, ThreadId, MessageId) {
        (TenantId::new("acme").unwrap(), ThreadId::new("t").unwrap(), MessageId::new("m").unwrap())
    }

    #[test]
    fn a_value_opens_only_where_it_was_sealed() {
        let keys = ring();
        let (tenant, thread, message) = ids();
        let here = Place { tenant: Some(&tenant), thread: &thread, message: Some(&message), field: Field::Content };
        let text = seal(&keys, &here, b"secret", Nonce::Random).unwrap();
        assert!(text.starts_with("v1.k1.") && !text.contains("secret"));
        assert_eq!(open(&keys, &here, &text).unwrap().as_slice(), b"secret");
        assert_ne!(seal(&keys, &here, b"secret", Nonce::Random).unwrap(), text, "a fresh nonce every time");
        // Derived: the same value at the same place is the same envelope, and opens; another
        // value, or another place, another envelope.
        let derived = seal(&keys, &here, b"secret", Nonce::Derived).unwrap();
        assert_eq!(seal(&keys, &here, b"secret", Nonce::Derived).unwrap(), derived);
        assert_eq!(open(&keys, &here, &derived).unwrap().as_slice(), b"secret");
        assert_ne!(seal(&keys, &here, b"secreT", Nonce::Derived).unwrap(), derived);
        let there = MessageId::new("m9").unwrap();
        let other = Place { message: Some(&there), ..here };
        assert_ne!(seal(&keys, &other, b"secret", Nonce::Derived).unwrap(), derived);

        let other_thread = ThreadId::new("t2").unwrap();
        let other_message = MessageId::new("m2").unwrap();
        let other_tenant = TenantId::new("globex").unwrap();
        let elsewhere = [
            Place { thread: &other_thread, ..here },
            Place { message: Some(&other_message), ..here },
            Place { message: None, ..here },
            Place { tenant: Some(&other_tenant), ..here },
            Place { tenant: None, ..here },
            Place { field: Field::Metadata("content"), ..here },
            Place { field: Field::Title, ..here },
        ];
        for place in elsewhere {
            let error = open(&keys, &place, &text).unwrap_err();
            assert!(matches!(error, PersistError::Unreadable { .. }), "{place:?}: {error:?}");
        }
    }

    #[test]
    fn a_changed_byte_or_a_bad_envelope_is_unreadable_never_a_panic() {
        let keys = ring();
        let (tenant, thread, message) = ids();
        let place = Place { tenant: Some(&tenant), thread: &thread, message: Some(&message), field: Field::Content };
        let text = seal(&keys, &place, b"secret", Nonce::Random).unwrap();
        for at in 6..text.len() {
            let mut bytes = text.clone().into_bytes();
            bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
            let Ok(changed) = String::from_utf8(bytes) else { continue };
            if changed == text {
                continue;
            }
            let error = open(&keys, &place, &changed).unwrap_err();
            assert!(matches!(error, PersistError::Unreadable { .. }), "byte {at}: {error:?}");
        }
        for bad in ["", "v1", "v1.k1", "v1.k1.", "v2.k1.AAAA", "v1.k9.AAAA", "v1.k1.!!!!", "v1.bad id.AAAA"] {
            let error = open(&keys, &place, bad).unwrap_err();
            assert!(matches!(error, PersistError::Unreadable { .. }), "{bad:?}: {error:?}");
        }
        assert_eq!(key_id(&text).unwrap().as_str(), "k1");
        assert!(key_id("not an envelope").is_none());
    }
}

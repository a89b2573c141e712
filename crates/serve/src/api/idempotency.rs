//! `Idempotency-Key`: a POST sent again with the same key writes nothing twice and answers
//! what the first one did.
//!
//! The ids such a request mints are derived from the key (UUIDv5 in a namespace of this
//! server's), so a retry carries the very same items: persist's own turn keys then answer the
//! retried `items.create` with the items the first one wrote, and a retried create finds the
//! conversation the first one made (or is refused, 422, when its body differs).
//!
//! A key may carry an identifier (a customer's, an order's), so persist is handed a digest of
//! it ([`stored`]): the store, its layers' logs and the errors never hold the key itself.

use axum::http::HeaderMap;
use persist_core::IdempotencyKey;
use uuid::Uuid;

use crate::http::error::ApiError;

/// What the server puts before the digest of a client's `Idempotency-Key` when it hands it to
/// persist, keeping its keys apart from those of other writers of the same store.
const KEY_PREFIX: &str = "serve:";

/// The longest key taken, in bytes.
pub const MAX_KEY_BYTES: usize = 200;

/// The namespace of every id derived here.
const NAMESPACE: Uuid = Uuid::from_u128(0x6f2a_8e0c_41d3_4b9e_9a57_3c1e_d4a0_b812);

/// The `Idempotency-Key` header, when there is one.
pub(crate) fn key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else { return Ok(None) };
    let invalid = || {
        ApiError::invalid(
            "Idempotency-Key",
            format!("An Idempotency-Key is 1 to {MAX_KEY_BYTES} printable ASCII characters."),
        )
    };
    let key = value.to_str().map_err(|_| invalid())?;
    if key.is_empty() || key.len() > MAX_KEY_BYTES || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid());
    }
    Ok(Some(key.to_owned()))
}

/// The key persist is given for a client's `key`: [`KEY_PREFIX`] and a
/// digest of the key (122 bits: as unique as the keys it stands for).
pub(crate) fn stored(key: &str) -> Result<IdempotencyKey, ApiError> {
    let digest = Uuid::new_v5(&NAMESPACE, key.as_bytes()).simple();
    IdempotencyKey::new(format!("{}{digest}", KEY_PREFIX))
        .map_err(|_| ApiError::internal("The Idempotency-Key's digest is not a key."))
}

/// Where the ids of one request come from.
#[derive(Debug)]
pub(crate) enum Minter {
    /// A new, time-ordered id each time.
    Fresh,
    /// The `n`th id of a keyed request: the same for every retry of it.
    Derived { seed: String, next: usize },
}

impl Minter {
    /// Ids derived from `parts` (what names the request: the tenant or conversation, the
    /// operation, the key), or fresh ones when there is no key.
    pub(crate) fn new(key: Option<&str>, parts: &[&str]) -> Self {
        match key {
            None => Self::Fresh,
            Some(key) => {
                let mut seed = parts.join("\u{1f}");
                seed.push('\u{1f}');
                seed.push_str(key);
                Self::Derived { seed, next: 0 }
            }
        }
    }

    /// The next id, `{prefix}_{32 hex digits}`.
    pub(crate) fn mint(&mut self, prefix: &str) -> String {
        let uuid = match self {
            Self::Fresh => Uuid::now_v7(),
            Self::Derived { seed, next } => {
                *next += 1;
                Uuid::new_v5(&NAMESPACE, format!("{seed}\u{1f}{next}").as_bytes())
            }
        };
        format!("{prefix}_{}", uuid.simple())
    }
}

/// A fingerprint of a request's body, to tell a retry from another request with the same key.
pub(crate) fn fingerprint(body: &serde_json::Value) -> String {
    Uuid::new_v5(&NAMESPACE, body.to_string().as_bytes()).simple().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_ids_repeat_and_fresh_ones_do_not() {
        let ids = |key| {
            let mut minter = Minter::new(key, &["acme", "create"]);
            (minter.mint("conv"), minter.mint("msg"))
        };
        assert_eq!(ids(Some("k1")), ids(Some("k1")));
        assert_ne!(ids(Some("k1")), ids(Some("k2")));
        assert_ne!(ids(None), ids(None));
        assert!(ids(None).0.starts_with("conv_") && ids(None).0.len() == 37);
        let other_tenant = Minter::new(Some("k1"), &["globex", "create"]).mint("conv");
        assert_ne!(ids(Some("k1")).0, other_tenant);
    }

    #[test]
    fn persist_is_given_a_digest_of_the_key() {
        let key = stored("order-4711").unwrap();
        assert_eq!(key, stored("order-4711").unwrap());
        assert_ne!(key, stored("order-4712").unwrap());
        assert!(key.as_str().starts_with("serve:") && !key.as_str().contains("4711"), "{key}");
        assert_eq!(key.as_str().len(), "serve:".len() + 32);
    }
}

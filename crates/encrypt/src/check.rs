//! Key check values: one per tenant and key id, kept in the store with `SetOnce`, so that an
//! instance given the right key id with other bytes is refused before it seals anything (its
//! envelopes would not open anywhere else, and every page holding one would fail).
//!
//! The value is HKDF-SHA256 of the key under a fixed label: it says nothing of the key, and
//! the same key always gives the same value. The first instance to seal with a key records its
//! value; every instance checks its own against it once per key, then remembers the answer.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use persist_core::once::SetOnce;
use persist_core::{Context, PersistArgs, PersistError, PersistResult, Result, TenantId};
use tower::{Service, ServiceExt};

use crate::keys::{KeyId, SecretKey};

/// The name a key's check value is kept under, followed by the key id.
pub(crate) const NAME_PREFIX: &str = "persist.encrypt.key-check.";

/// What this instance learned of a key's check value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// The store holds this key's value.
    Matches,
    /// The store keeps no values (a backend that answers `set_once` with `Unsupported`).
    Unverifiable,
    /// The store's value is another key's.
    Mismatch,
}

/// The keys this instance checked already, per tenant.
#[derive(Debug, Default)]
pub(crate) struct Checked(Mutex<HashMap<(Option<TenantId>, KeyId), Verdict>>);

impl Checked {
    fn get(&self, tenant: Option<&TenantId>, id: &KeyId) -> Option<Verdict> {
        let checked = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        checked.get(&(tenant.cloned(), id.clone())).copied()
    }

    fn set(&self, tenant: Option<&TenantId>, id: &KeyId, verdict: Verdict) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).insert((tenant.cloned(), id.clone()), verdict);
    }
}

/// The check value of `key`.
pub(crate) fn check_value(key: &SecretKey) -> String {
    let hkdf = hkdf::Hkdf::<sha2::Sha256>::new(Some(b"persist-encrypt key check"), key.bytes());
    let mut value = [0u8; 16];
    // 16 bytes is far below HKDF's limit (255 × 32): expanding cannot fail.
    let _ = hkdf.expand(b"v1", &mut value);
    URL_SAFE_NO_PAD.encode(value)
}

/// The refusal of a key whose check value is not the store's.
pub(crate) fn mismatch(id: &KeyId, tenant: Option<&TenantId>) -> PersistError {
    let whose = tenant.map(|tenant| format!(" (tenant {tenant})")).unwrap_or_default();
    PersistError::rejected(format!(
        "key {id}{whose} does not match the key that sealed this store: its check value differs from the one \
         the store keeps, so nothing is sealed or opened with it (check the key's bytes)"
    ))
}

/// Whether this instance learned that its key `id` of `tenant` is not the store's: a read that
/// does not open then says why. (Reads never record a value: only a write does, see [`ensure`].)
pub(crate) fn known_mismatch(checked: &Checked, tenant: Option<&TenantId>, id: &KeyId) -> bool {
    checked.get(tenant, id) == Some(Verdict::Mismatch)
}

/// Checks `key` (`id`, of `tenant`) against the store's check value, recording it when the
/// store has none; once per key, then from memory. Called before a seal only.
///
/// # Errors
///
/// [`mismatch`] when the store's value is another key's; the store's error.
pub(crate) async fn ensure<S>(
    checked: &Checked,
    inner: &mut S,
    tenant: Option<&TenantId>,
    id: &KeyId,
    key: &SecretKey,
) -> Result<()>
where
    S: Service<PersistArgs, Response = PersistResult, Error = PersistError>,
{
    match checked.get(tenant, id) {
        Some(Verdict::Mismatch) => return Err(mismatch(id, tenant)),
        Some(Verdict::Matches | Verdict::Unverifiable) => return Ok(()),
        None => {}
    }
    let value = check_value(key);
    let request = SetOnce::new(format!("{NAME_PREFIX}{id}"), value.clone())?
        .with_context(Context::new().for_tenant(tenant.cloned()));
    match inner.ready().await?.call(request.into()).await {
        Ok(PersistResult::Value(stored)) if stored == value => checked.set(tenant, id, Verdict::Matches),
        Ok(PersistResult::Value(_)) => {
            checked.set(tenant, id, Verdict::Mismatch);
            return Err(mismatch(id, tenant));
        }
        Ok(other) => {
            return Err(PersistError::MismatchedResult { op: persist_core::PersistOp::SetOnce, got: other.op() });
        }
        // Nowhere to keep the value: nothing to check against.
        Err(PersistError::Unsupported { .. }) => checked.set(tenant, id, Verdict::Unverifiable),
        // Refused this time (a read-only handle, a layer pausing writes): checked next time.
        Err(PersistError::Rejected { .. }) => {}
        Err(error) => return Err(error),
    }
    Ok(())
}

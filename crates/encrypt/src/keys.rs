//! Keys: the [`Keys`] trait a host implements over its KMS, and [`KeyRing`], a ready one.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use persist_core::{PersistError, Result, TenantId};
use zeroize::Zeroizing;

/// The longest key id accepted, in bytes.
pub const MAX_KEY_ID_BYTES: usize = 64;

/// Names a key: written in every envelope it seals, so the envelope says which key opens it.
///
/// 1 to [`MAX_KEY_ID_BYTES`] ASCII letters, digits, `-` or `_`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(Arc<str>);

impl KeyId {
    /// A key id.
    ///
    /// # Errors
    ///
    /// `InvalidInput` (field `key_id`) for an empty or too long id, or another character.
    pub fn new(id: impl AsRef<str>) -> Result<Self> {
        let id = id.as_ref();
        let fine = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
        if id.is_empty() || id.len() > MAX_KEY_ID_BYTES || !id.bytes().all(fine) {
            return Err(PersistError::invalid(
                "key_id",
                format!("must be 1 to {MAX_KEY_ID_BYTES} ASCII letters, digits, '-' or '_'"),
            ));
        }
        Ok(Self(Arc::from(id)))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// 32 bytes of key material, wiped from memory when dropped; its `Debug` never shows it.
#[derive(Clone)]
pub struct SecretKey(Arc<Zeroizing<[u8; 32]>>);

impl SecretKey {
    /// A key from its 32 bytes.
    pub fn new(bytes: [u8; 32]) -> Self {
        Self(Arc::new(Zeroizing::new(bytes)))
    }

    /// A key from 32 bytes written in standard base64.
    ///
    /// # Errors
    ///
    /// `InvalidInput` (field `key`) unless the text is base64 of exactly 32 bytes.
    pub fn from_base64(text: &str) -> Result<Self> {
        let bad = || PersistError::invalid("key", "must be 32 bytes in standard base64");
        let bytes = Zeroizing::new(STANDARD.decode(text.trim()).map_err(|_| bad())?);
        let bytes: [u8; 32] = bytes.as_slice().try_into().map_err(|_| bad())?;
        Ok(Self::new(bytes))
    }

    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

/// Where the layer gets its keys: a host implements it over its KMS (unwrapping data keys and
/// caching them: the layer asks on every seal and open, and the calls do not wait).
///
/// Keys are per tenant: `tenant` is the tenant of the thread a value belongs to (`None`: the
/// threads without a tenant). A tenant whose keys are gone can no longer open what it sealed,
/// while every other tenant's values open as before (crypto-shredding).
///
/// # Example
///
/// ```
/// use persist::encrypt::{KeyId, KeyRing, Keys, SecretKey};
///
/// let ring = KeyRing::new().with_key(KeyId::new("k1")?, SecretKey::new([7; 32]))?;
/// let (id, _key) = ring.current(None)?;
/// assert_eq!(id.as_str(), "k1");
/// # Ok::<_, persist::PersistError>(())
/// ```
pub trait Keys: Send + Sync + 'static {
    /// The key new values of `tenant` are sealed with, and its id.
    ///
    /// # Errors
    ///
    /// Whatever keeps the key from being had (no key for the tenant, the KMS unreachable):
    /// the write is refused with it.
    fn current(&self, tenant: Option<&TenantId>) -> Result<(KeyId, SecretKey)>;

    /// The key `id` of `tenant`, to open what it sealed; `Ok(None)` when there is no such key
    /// (never was, or destroyed).
    ///
    /// # Errors
    ///
    /// Whatever keeps the key from being had now (the KMS unreachable).
    fn key(&self, tenant: Option<&TenantId>, id: &KeyId) -> Result<Option<SecretKey>>;
}

impl<K: Keys> Keys for Arc<K> {
    fn current(&self, tenant: Option<&TenantId>) -> Result<(KeyId, SecretKey)> {
        (**self).current(tenant)
    }

    fn key(&self, tenant: Option<&TenantId>, id: &KeyId) -> Result<Option<SecretKey>> {
        (**self).key(tenant, id)
    }
}

/// A ready [`Keys`]: ring keys from bytes, base64 or the environment, and keys of a tenant's
/// own. Clones share one ring.
///
/// - **Ring keys** ([`with_key`](Self::with_key), [`add_key`](Self::add_key)): the last one
///   added seals; the others still open what they sealed. A tenant without keys of its own
///   seals with a key **derived** from the ring key for that tenant (HKDF-SHA256 over the
///   tenant's id), so no two tenants share a data key.
/// - **A tenant's own keys** ([`add_tenant_key`](Self::add_tenant_key)): for a tenant whose
///   data must be erasable on its own (crypto-shredding). Give the tenant a key of its own,
///   [rotate](crate::EncryptLayer::rotate) so nothing of it stays sealed with a key derived
///   from the ring, then [`destroy_tenant`](Self::destroy_tenant): its own keys are forgotten
///   and the tenant is refused from then on, so what it sealed can never be opened again, by
///   this ring or by any ring built from the same ring keys, while every other tenant is
///   untouched. Keep those keys where they can be destroyed for good (a KMS), not in the
///   environment next to the ring keys. (For a tenant without keys of its own, destroying only
///   refuses it in this ring: a ring built again from the ring keys derives its keys again.)
/// - Key ids are one namespace: a tenant's key cannot take a ring key's id, nor the reverse.
///
/// # Example
///
/// ```
/// use persist::encrypt::{KeyId, KeyRing, Keys, SecretKey};
/// use persist::TenantId;
///
/// let ring = KeyRing::new().with_key(KeyId::new("2026-01")?, SecretKey::new([1; 32]))?;
/// let acme = TenantId::new("acme")?;
/// ring.add_tenant_key(&acme, KeyId::new("acme-1")?, SecretKey::new([2; 32]))?;
/// assert_eq!(ring.current(Some(&acme))?.0.as_str(), "acme-1");
/// ring.destroy_tenant(&acme);
/// assert!(ring.current(Some(&acme)).is_err());
/// assert_eq!(ring.current(None)?.0.as_str(), "2026-01"); // others are untouched
/// # Ok::<_, persist::PersistError>(())
/// ```
#[derive(Clone, Default)]
pub struct KeyRing {
    state: Arc<RwLock<Ring>>,
}

#[derive(Default)]
struct Ring {
    keys: BTreeMap<KeyId, SecretKey>,
    current: Option<KeyId>,
    tenants: HashMap<TenantId, TenantKeys>,
    destroyed: HashSet<TenantId>,
    /// Keys derived for (tenant, ring key), so a seal does not run HKDF each time.
    derived: HashMap<(Option<TenantId>, KeyId), SecretKey>,
}

struct TenantKeys {
    keys: BTreeMap<KeyId, SecretKey>,
    current: KeyId,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ring = self.state.read().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("KeyRing")
            .field("keys", &ring.keys.keys().collect::<Vec<_>>())
            .field("current", &ring.current)
            .field("tenants_with_own_keys", &ring.tenants.len())
            .field("destroyed_tenants", &ring.destroyed.len())
            .finish()
    }
}

impl KeyRing {
    /// An empty ring (it seals nothing until a key is added).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a ring key, which seals from now on.
    ///
    /// # Errors
    ///
    /// As [`add_key`](Self::add_key).
    pub fn with_key(self, id: KeyId, key: SecretKey) -> Result<Self> {
        self.add_key(id, key)?;
        Ok(self)
    }

    /// Adds a ring key, which seals from now on (earlier ones still open). For a rotation:
    /// add the new key, then re-seal with [`EncryptLayer::rotate`](crate::EncryptLayer::rotate).
    ///
    /// # Errors
    ///
    /// `InvalidInput` (field `key_id`) when a tenant's own key has this id.
    pub fn add_key(&self, id: KeyId, key: SecretKey) -> Result<()> {
        let mut ring = self.write();
        if ring.tenants.values().any(|own| own.keys.contains_key(&id)) {
            return Err(taken(&id));
        }
        ring.keys.insert(id.clone(), key);
        ring.current = Some(id);
        Ok(())
    }

    /// A ring from `PERSIST_ENCRYPTION_KEYS`-style text: `id:base64,id:base64,…`, each key 32
    /// bytes in standard base64; the last one seals.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for an empty list, a malformed entry, a bad id or key, or an id listed
    /// twice.
    pub fn from_text(text: &str) -> Result<Self> {
        let ring = Self::new();
        let mut seen = HashSet::new();
        for entry in text.split(',').map(str::trim).filter(|entry| !entry.is_empty()) {
            let (id, key) =
                entry.split_once(':').ok_or_else(|| PersistError::invalid("keys", "each entry is id:base64-key"))?;
            let id = KeyId::new(id)?;
            if !seen.insert(id.clone()) {
                return Err(PersistError::invalid("keys", format!("key {id} is listed twice")));
            }
            ring.add_key(id, SecretKey::from_base64(key)?)?;
        }
        if seen.is_empty() {
            return Err(PersistError::invalid("keys", "no key given"));
        }
        Ok(ring)
    }

    /// A ring from the environment variable `var` (see [`from_text`](Self::from_text)).
    ///
    /// # Errors
    ///
    /// `InvalidInput` when the variable is unset or not valid key text.
    pub fn from_env(var: &str) -> Result<Self> {
        let text =
            Zeroizing::new(std::env::var(var).map_err(|_| PersistError::invalid("keys", format!("{var} is not set")))?);
        Self::from_text(&text)
    }

    /// Adds a key of `tenant`'s own, which seals its values from now on (its earlier keys still
    /// open).
    ///
    /// # Errors
    ///
    /// `InvalidInput` (field `key_id`) when a ring key has this id; `Rejected` for a tenant
    /// destroyed in this ring (it gets keys again only through a new ring).
    pub fn add_tenant_key(&self, tenant: &TenantId, id: KeyId, key: SecretKey) -> Result<()> {
        let mut ring = self.write();
        if ring.destroyed.contains(tenant) {
            return Err(Self::destroyed(Some(tenant)));
        }
        if ring.keys.contains_key(&id) {
            return Err(taken(&id));
        }
        let keys = ring
            .tenants
            .entry(tenant.clone())
            .or_insert_with(|| TenantKeys { keys: BTreeMap::new(), current: id.clone() });
        keys.keys.insert(id.clone(), key);
        keys.current = id;
        Ok(())
    }

    /// Forgets every key of `tenant` and refuses it from now on: what it sealed can never be
    /// opened again (crypto-shredding). Other tenants are untouched.
    pub fn destroy_tenant(&self, tenant: &TenantId) {
        let mut ring = self.write();
        ring.tenants.remove(tenant);
        ring.derived.retain(|(derived_for, _), _| derived_for.as_ref() != Some(tenant));
        ring.destroyed.insert(tenant.clone());
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Ring> {
        // Every change is one insert or remove: a panic elsewhere cannot leave it half done.
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn destroyed(tenant: Option<&TenantId>) -> PersistError {
        let name = persist_core::raw::tenant_key(tenant);
        PersistError::rejected(format!("the keys of tenant {name} were destroyed"))
    }

    /// The key derived from ring key `id` for `tenant`, from the cache or made now.
    fn derived(&self, tenant: Option<&TenantId>, id: &KeyId) -> Option<SecretKey> {
        let cache_key = (tenant.cloned(), id.clone());
        {
            let ring = self.state.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(key) = ring.derived.get(&cache_key) {
                return Some(key.clone());
            }
        }
        let mut ring = self.write();
        // Destroyed meanwhile: nothing is derived for it again.
        if tenant.is_some_and(|tenant| ring.destroyed.contains(tenant)) {
            return None;
        }
        let key = derive(ring.keys.get(id)?, tenant);
        ring.derived.insert(cache_key, key.clone());
        Some(key)
    }
}

fn taken(id: &KeyId) -> PersistError {
    PersistError::invalid("key_id", format!("{id} is taken: ring keys and tenants' keys share one namespace"))
}

/// HKDF-SHA256 of a ring key for one tenant: `info` names the tenant (a tenant id is never
/// empty, so the threads without one have a name of their own).
fn derive(ring_key: &SecretKey, tenant: Option<&TenantId>) -> SecretKey {
    let hkdf = hkdf::Hkdf::<sha2::Sha256>::new(Some(b"persist-encrypt v1"), ring_key.bytes());
    let info = match tenant {
        Some(tenant) => format!("tenant:{tenant}"),
        None => "no tenant".to_owned(),
    };
    let mut okm = Zeroizing::new([0u8; 32]);
    // 32 bytes is far below HKDF-SHA256's limit of 255 × 32: `expand` cannot fail here.
    if hkdf.expand(info.as_bytes(), okm.as_mut_slice()).is_err() {
        okm.fill(0);
    }
    SecretKey::new(*okm)
}

impl Keys for KeyRing {
    fn current(&self, tenant: Option<&TenantId>) -> Result<(KeyId, SecretKey)> {
        let id = {
            let ring = self.state.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(tenant) = tenant {
                if ring.destroyed.contains(tenant) {
                    return Err(Self::destroyed(Some(tenant)));
                }
                if let Some(own) = ring.tenants.get(tenant) {
                    let key = own.keys.get(&own.current).cloned();
                    return key.map(|key| (own.current.clone(), key)).ok_or_else(|| Self::destroyed(Some(tenant)));
                }
            }
            ring.current.clone().ok_or_else(|| PersistError::rejected("the key ring holds no key to seal with"))?
        };
        let key = self.derived(tenant, &id).ok_or_else(|| PersistError::rejected("the sealing key is gone"))?;
        Ok((id, key))
    }

    fn key(&self, tenant: Option<&TenantId>, id: &KeyId) -> Result<Option<SecretKey>> {
        {
            let ring = self.state.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(tenant) = tenant {
                if ring.destroyed.contains(tenant) {
                    return Ok(None);
                }
                if let Some(own) = ring.tenants.get(tenant)
                    && let Some(key) = own.keys.get(id)
                {
                    return Ok(Some(key.clone()));
                }
            }
        }
        Ok(self.derived(tenant, id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_ids_are_checked() {
        assert!(KeyId::new("k-1_b").is_ok());
        for bad in ["", "a.b", "a:b", "é", &"k".repeat(65)] {
            assert!(KeyId::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn text_lists_keys_and_the_last_seals() {
        let one = STANDARD.encode([1u8; 32]);
        let two = STANDARD.encode([2u8; 32]);
        let ring = KeyRing::from_text(&format!("old:{one}, new:{two}")).unwrap();
        assert_eq!(ring.current(None).unwrap().0.as_str(), "new");
        assert!(ring.key(None, &KeyId::new("old").unwrap()).unwrap().is_some());
        for bad in ["", "k1", &format!("k1:{}", STANDARD.encode([1u8; 31])), &format!("a:{one},a:{two}")] {
            assert!(KeyRing::from_text(bad).is_err(), "{bad:?}");
        }
        assert!(format!("{ring:?}").contains("\"new\""), "ids show, keys never do");
        assert_eq!(format!("{:?}", SecretKey::new([9; 32])), "SecretKey(..)");
    }

    #[test]
    fn tenants_get_keys_of_their_own_derived_or_given() {
        let ring = KeyRing::new().with_key(KeyId::new("k").unwrap(), SecretKey::new([3; 32])).unwrap();
        let (acme, globex) = (TenantId::new("acme").unwrap(), TenantId::new("globex").unwrap());
        let a = ring.current(Some(&acme)).unwrap().1;
        let g = ring.current(Some(&globex)).unwrap().1;
        let none = ring.current(None).unwrap().1;
        assert!(a.bytes() != g.bytes() && a.bytes() != none.bytes() && g.bytes() != none.bytes());
        assert_eq!(a.bytes(), ring.current(Some(&acme)).unwrap().1.bytes(), "derivation is stable");
        ring.add_tenant_key(&acme, KeyId::new("own").unwrap(), SecretKey::new([4; 32])).unwrap();
        assert_eq!(ring.current(Some(&acme)).unwrap().1.bytes(), &[4; 32]);
        // One namespace of ids.
        assert!(ring.add_tenant_key(&globex, KeyId::new("k").unwrap(), SecretKey::new([5; 32])).is_err());
        assert!(ring.add_key(KeyId::new("own").unwrap(), SecretKey::new([5; 32])).is_err());
        ring.destroy_tenant(&acme);
        assert!(ring.current(Some(&acme)).is_err());
        assert!(ring.key(Some(&acme), &KeyId::new("own").unwrap()).unwrap().is_none());
        assert!(ring.key(Some(&acme), &KeyId::new("k").unwrap()).unwrap().is_none());
        assert_eq!(ring.current(Some(&globex)).unwrap().1.bytes(), g.bytes(), "others are untouched");
        assert!(ring.add_tenant_key(&acme, KeyId::new("again").unwrap(), SecretKey::new([6; 32])).is_err());
    }
}

//! Who is calling: a bearer key is a tenant.

use std::fmt;
use std::sync::Arc;

use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, HeaderName};
use persist_core::{PersistError, TenantId};
use subtle::ConstantTimeEq;

use super::error::ApiError;

/// How the server learns a request's tenant.
///
/// Every conversation belongs to the tenant of the request that created it, and is found only
/// by requests of that tenant: another tenant's conversation answers 404, as one that does not
/// exist, never 403.
#[derive(Clone)]
#[non_exhaustive]
pub enum Auth {
    /// `Authorization: Bearer KEY`, each key a tenant; no key or an unknown one is 401.
    Keys(ApiKeys),
    /// Behind a gateway that authenticates callers and names the tenant in this header (the
    /// server must then be reachable only through the gateway): a request without it is 401,
    /// and so is one with two of it, or one value holding a comma (two joined): a gateway that
    /// adds its header to the client's instead of replacing it would let the client pick its
    /// tenant. The `Authorization` header is not read.
    TenantHeader(HeaderName),
    /// No authentication: every request is this tenant's (`None`: the threads without a
    /// tenant). For a server on a private interface used by one app.
    Open(Option<TenantId>),
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Keys(keys) => f.debug_tuple("Keys").field(keys).finish(),
            Self::TenantHeader(name) => f.debug_tuple("TenantHeader").field(name).finish(),
            Self::Open(tenant) => f.debug_tuple("Open").field(tenant).finish(),
        }
    }
}

impl Auth {
    /// The tenant of a request with these headers.
    pub(crate) fn tenant(&self, headers: &HeaderMap) -> Result<Option<TenantId>, ApiError> {
        match self {
            Self::Keys(keys) => {
                let value = headers
                    .get(AUTHORIZATION)
                    .ok_or(ApiError::unauthenticated("No API key: send it as 'Authorization: Bearer KEY'."))?;
                let key = value
                    .to_str()
                    .ok()
                    // The scheme is case-insensitive (RFC 9110, 11.1).
                    .and_then(|value| value.split_once(' '))
                    .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                    .map(|(_, key)| key.trim())
                    .ok_or(ApiError::unauthenticated("The Authorization header is not 'Bearer KEY'."))?;
                keys.tenant_of(key).ok_or(ApiError::unauthenticated("Incorrect API key provided."))
            }
            Self::TenantHeader(name) => tenant_named(headers, name).map(Some),
            Self::Open(tenant) => Ok(tenant.clone()),
        }
    }
}

/// The one tenant the header `name` names.
fn tenant_named(headers: &HeaderMap, name: &HeaderName) -> Result<TenantId, ApiError> {
    let mut values = headers.get_all(name).iter();
    let value = values.next().ok_or(ApiError::unauthenticated("No tenant: the gateway names none."))?;
    let not_a_tenant = || ApiError::unauthenticated("The tenant the gateway names is not a tenant id.");
    let tenant = value.to_str().map_err(|_| not_a_tenant())?;
    if values.next().is_some() || tenant.contains(',') {
        return Err(ApiError::unauthenticated("The gateway names more than one tenant."));
    }
    TenantId::new(tenant).map_err(|_| not_a_tenant())
}

/// API keys and the tenant each one is. Never printed: its `Debug` shows the tenants only.
///
/// # Example
///
/// ```
/// use persist_serve::ApiKeys;
///
/// let keys = ApiKeys::parse("# tenant:key, one a line\nacme:sk-acme-0123456789abcdef\nglobex:sk-globex-0123456789abcdef\n")?;
/// assert_eq!(keys.len(), 2);
/// assert!(!format!("{keys:?}").contains("sk-acme"));
/// # Ok::<_, persist::PersistError>(())
/// ```
#[derive(Clone, Default)]
pub struct ApiKeys {
    entries: Arc<Vec<(Box<[u8]>, TenantId)>>,
}

impl fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeys").field("tenants", &self.entries.iter().map(|(_, t)| t).collect::<Vec<_>>()).finish()
    }
}

/// The shortest key taken: a shorter one could be guessed.
pub const MIN_KEY_BYTES: usize = 16;

impl ApiKeys {
    /// No keys (every request is refused until one is added).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `key` as `tenant`'s.
    ///
    /// # Errors
    ///
    /// [`PersistError::InvalidInput`] naming `key` when it is shorter than [`MIN_KEY_BYTES`],
    /// holds a character outside `A–Z a–z 0–9 - _ . ~ + / =` (what a header carries as it is),
    /// or is another tenant's key already.
    pub fn with_key(mut self, tenant: TenantId, key: &str) -> Result<Self, PersistError> {
        if key.len() < MIN_KEY_BYTES {
            return Err(PersistError::invalid(
                "key",
                format!("a key of {tenant} is shorter than {MIN_KEY_BYTES} bytes"),
            ));
        }
        if !key.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.~+/=".contains(&b)) {
            return Err(PersistError::invalid(
                "key",
                format!("a key of {tenant} holds a character other than A-Z a-z 0-9 - _ . ~ + / ="),
            ));
        }
        if self.tenant_of(key).is_some() {
            return Err(PersistError::invalid("key", format!("a key of {tenant} is given twice")));
        }
        Arc::make_mut(&mut self.entries).push((key.as_bytes().into(), tenant));
        Ok(self)
    }

    /// Keys from text: one `TENANT:KEY` a line (the tenant is what comes before the last `:`),
    /// or several separated by commas; blank lines and lines starting with `#` are skipped.
    ///
    /// # Errors
    ///
    /// [`PersistError::InvalidInput`] naming `keys` and the line at fault (never the key).
    pub fn parse(text: &str) -> Result<Self, PersistError> {
        let mut keys = Self::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            for entry in line.split(',').map(str::trim).filter(|entry| !entry.is_empty()) {
                let at = |why: String| PersistError::invalid("keys", format!("line {}: {why}", number + 1));
                let (tenant, key) = entry.rsplit_once(':').ok_or_else(|| at("not TENANT:KEY".into()))?;
                let tenant = TenantId::new(tenant.trim()).map_err(|e| at(e.to_string()))?;
                keys = keys.with_key(tenant, key.trim()).map_err(|e| at(e.to_string()))?;
            }
        }
        Ok(keys)
    }

    /// How many keys there are.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The tenant of `key`: every key is compared, each in constant time, so the time taken
    /// says nothing about which key came close.
    fn tenant_of(&self, key: &str) -> Option<Option<TenantId>> {
        let mut found = None;
        for (known, tenant) in self.entries.iter() {
            if bool::from(known.as_ref().ct_eq(key.as_bytes())) {
                found = Some(Some(tenant.clone()));
            }
        }
        found
    }
}

//! Keys replaced while the server runs: [`Server::reload_keys`].

use std::sync::{Arc, PoisonError, RwLock};

use axum::http::HeaderMap;
use persist_core::{PersistError, TenantId};

use crate::{ApiError, ApiKeys, Auth, Server};

/// The server's [`Auth`], its keys replaceable at run time; shared by the servers rebuilt from
/// one (a server is rebuilt with its listening address when it serves).
#[derive(Debug, Clone)]
pub(crate) struct SharedAuth(Arc<RwLock<Auth>>);

impl SharedAuth {
    pub(crate) fn new(auth: Auth) -> Self {
        Self(Arc::new(RwLock::new(auth)))
    }

    /// The tenant of a request with these headers, by the keys in use.
    pub(crate) fn tenant(&self, headers: &HeaderMap) -> Result<Option<TenantId>, ApiError> {
        // A reader holds the lock only while it compares keys, and a writer only to swap an
        // `Arc`: nothing panics while holding it, and a poisoned lock's value is whole.
        self.0.read().unwrap_or_else(PoisonError::into_inner).tenant(headers)
    }

    /// Whether callers are known by keys (which a reload cannot change).
    pub(crate) fn takes_keys(&self) -> bool {
        matches!(*self.0.read().unwrap_or_else(PoisonError::into_inner), Auth::Keys(_))
    }
}

impl Server {
    /// Replaces the keys of a server that takes keys ([`Auth::Keys`]) while it serves, each
    /// request after the call checked against `keys` (one in flight finishes as it was let
    /// in): for keys rotated without a restart, as `persist serve` does on `SIGHUP`. Every
    /// clone of the server, and the one [`serve`](Self::serve) runs, uses them.
    ///
    /// # Errors
    ///
    /// [`PersistError::InvalidInput`] naming `keys`, the keys in use kept, when `keys` is empty
    /// (every request would be refused: a keys file read while it was being written, say) or
    /// when the server knows its callers otherwise ([`Auth::TenantHeader`], [`Auth::Open`]).
    ///
    /// # Example
    ///
    /// ```
    /// use persist::memory::MemoryBackend;
    /// use persist::Pipeline;
    /// use persist_serve::{ApiKeys, Auth, Server};
    ///
    /// let keys = ApiKeys::parse("acme:sk-acme-0123456789abcdef")?;
    /// let server = Server::new(Pipeline::new(MemoryBackend::new()), Auth::Keys(keys));
    /// // Later, from the keys file as it now is:
    /// let rotated = ApiKeys::parse("acme:sk-acme-0123456789abcdef\nacme:sk-acme-fedcba9876543210")?;
    /// server.reload_keys(rotated)?;
    /// assert!(server.reload_keys(ApiKeys::new()).is_err(), "no keys: the old ones are kept");
    /// # Ok::<_, persist::PersistError>(())
    /// ```
    pub fn reload_keys(&self, keys: ApiKeys) -> Result<(), PersistError> {
        let mut auth = self.shared.auth.0.write().unwrap_or_else(PoisonError::into_inner);
        match &mut *auth {
            Auth::Keys(_) if keys.is_empty() => {
                Err(PersistError::invalid("keys", "no keys given: the keys in use are kept"))
            }
            Auth::Keys(current) => {
                *current = keys;
                Ok(())
            }
            Auth::TenantHeader(_) | Auth::Open(_) => {
                Err(PersistError::invalid("keys", "this server knows its callers without keys: it takes none"))
            }
        }
    }
}

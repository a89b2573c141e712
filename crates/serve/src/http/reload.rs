//! Keys replaced while the server runs ([`Server::reload_keys`](crate::Server::reload_keys)):
//! the server's [`Auth`] behind a lock, shared by every server rebuilt from one.

use std::sync::{Arc, PoisonError, RwLock};

use axum::http::HeaderMap;
use persist_core::{PersistError, TenantId};

use super::auth::{ApiKeys, Auth};
use super::error::ApiError;

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

    /// Replaces the keys in use with `keys`, for every holder of this auth; refused (the keys in
    /// use kept) when `keys` is empty or callers are known without keys.
    pub(crate) fn replace_keys(&self, keys: ApiKeys) -> Result<(), PersistError> {
        let mut auth = self.0.write().unwrap_or_else(PoisonError::into_inner);
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

//! The rules every identifier is checked against, and the constructors and conversions that
//! check them (the types are in `id`; a failed check is a [`PersistError`], which names ids).

use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Deserializer};

use crate::model::error::PersistError;
use crate::model::id::{
    AgentId, IdempotencyKey, MAX_ID_BYTES, MessageId, ProviderId, RequestId, ResourceId, RuntimeId, SessionId,
    TenantId, ThreadId,
};

/// Checks the shared identifier rules, naming `field` in the error.
pub(crate) fn validate_id(field: &'static str, value: &str) -> Result<(), PersistError> {
    if value.is_empty() {
        return Err(PersistError::invalid(field, "must not be empty"));
    }
    if value.len() > MAX_ID_BYTES {
        return Err(PersistError::invalid(field, format!("is {} bytes, the limit is {MAX_ID_BYTES}", value.len())));
    }
    if value.chars().any(char::is_control) {
        return Err(PersistError::invalid(field, "must not contain control characters"));
    }
    Ok(())
}

macro_rules! checked_id {
    ($name:ident, $field:literal) => {
        impl $name {
            /// Validates `value` and wraps it.
            ///
            /// # Errors
            ///
            /// [`PersistError::InvalidInput`] naming the field when `value` is empty, longer
            /// than [`MAX_ID_BYTES`] bytes or contains a control character.
            pub fn new(value: impl AsRef<str>) -> Result<Self, PersistError> {
                let value = value.as_ref();
                validate_id($field, value)?;
                Ok(Self(Arc::from(value)))
            }
        }

        impl FromStr for $name {
            type Err = PersistError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::new(s)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = PersistError;

            fn try_from(value: &str) -> Result<Self, Self::Error> {
                Self::new(value)
            }
        }

        impl TryFrom<String> for $name {
            type Error = PersistError;

            fn try_from(value: String) -> Result<Self, Self::Error> {
                Self::new(value)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let raw = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                Self::new(raw).map_err(serde::de::Error::custom)
            }
        }
    };
}

checked_id!(ThreadId, "thread_id");
checked_id!(MessageId, "message_id");
checked_id!(TenantId, "tenant");
checked_id!(IdempotencyKey, "idempotency_key");
checked_id!(RequestId, "request_id");
checked_id!(AgentId, "agent_id");
checked_id!(SessionId, "session_id");
checked_id!(ProviderId, "provider");
checked_id!(RuntimeId, "runtime_id");
checked_id!(ResourceId, "resource");

/// A tenant as a store keys it: its id, or `''` for the threads without a tenant (no tenant id is
/// empty, so a key column is an ordinary `NOT NULL` one and `(tenant, thread_id)` an ordinary
/// key). Every backend that stores tenants as text uses this one rule.
pub fn tenant_key(tenant: Option<&TenantId>) -> &str {
    tenant.map_or("", TenantId::as_str)
}

/// The tenant a key written by [`tenant_key`] names: `None` for `''`.
///
/// # Errors
///
/// `InvalidInput` (naming `tenant`) when `key` is not empty and no tenant id.
pub fn tenant_from_key(key: &str) -> Result<Option<TenantId>, PersistError> {
    match key {
        "" => Ok(None),
        tenant => TenantId::new(tenant).map(Some),
    }
}

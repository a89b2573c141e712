//! [`SetOnce`]: a value a store keeps under a name, set by the first writer and never changed.

use serde::{Deserialize, Serialize};

use crate::context::{Context, context_setter};
use crate::model::error::{PersistError, Result};

/// The longest name of a [`SetOnce`], in bytes.
pub const MAX_NAME_BYTES: usize = 255;
/// The longest value of a [`SetOnce`], in bytes.
pub const MAX_VALUE_BYTES: usize = 4096;

/// Stores `value` under `name` for the request's tenant unless a value is stored there
/// already, and answers the value stored: the one given, or the first writer's. Atomic: of
/// writers racing on one name, one value wins and every writer is answered with it.
///
/// For what a layer must find the same in every instance and process sharing a store: the
/// check value of an encryption key (`EncryptLayer` keeps one per key, and refuses a key that
/// does not match it). Names are per tenant, like threads; they are not messages, threads or
/// feed events, and no listing shows them.
///
/// # Example
///
/// ```
/// use persist::once::SetOnce;
/// use persist::Pipeline;
/// use persist::memory::MemoryBackend;
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let store = Pipeline::new(MemoryBackend::new());
/// assert_eq!(store.set_once(SetOnce::new("app.schema", "2")?).await?, "2");
/// assert_eq!(store.set_once(SetOnce::new("app.schema", "3")?).await?, "2"); // the first stays
/// # Ok::<_, persist::PersistError>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SetOnce {
    /// The name: 1 to [`MAX_NAME_BYTES`] bytes, no control characters.
    pub name: String,
    /// The value: at most [`MAX_VALUE_BYTES`] bytes, no U+0000.
    pub value: String,
    /// Request context (its tenant owns the name).
    #[serde(default)]
    pub context: Context,
}

impl SetOnce {
    /// Stores `value` under `name`, unless a value is there already.
    ///
    /// # Errors
    ///
    /// [`PersistError::InvalidInput`] naming `name` or `value` (see [`validate`](Self::validate)).
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Result<Self> {
        let request = Self { name: name.into(), value: value.into(), context: Context::new() };
        request.validate()?;
        Ok(request)
    }

    /// Checks the name and the value; backends call this first.
    ///
    /// # Errors
    ///
    /// [`PersistError::InvalidInput`] for an empty name, one over [`MAX_NAME_BYTES`] or holding
    /// a control character, or a value over [`MAX_VALUE_BYTES`] or holding U+0000.
    pub fn validate(&self) -> Result<()> {
        if self.name.is_empty() || self.name.len() > MAX_NAME_BYTES || self.name.chars().any(char::is_control) {
            return Err(PersistError::invalid(
                "name",
                format!("must be 1 to {MAX_NAME_BYTES} bytes without control characters"),
            ));
        }
        if self.value.len() > MAX_VALUE_BYTES {
            return Err(PersistError::invalid(
                "value",
                format!("is {} bytes, the limit is {MAX_VALUE_BYTES}", self.value.len()),
            ));
        }
        if self.value.contains('\0') {
            return Err(crate::request::write::nul("value"));
        }
        Ok(())
    }

    context_setter!();
}

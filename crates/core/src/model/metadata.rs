//! Metadata of a message or a thread: a JSON object, merged by patches.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use super::error::PersistError;
use super::json::{self, MAX_JSON_DEPTH, check_depth, json_kind};

/// Metadata attached to a message or a thread: a JSON object.
///
/// Cloning is cheap (reference-counted). Only objects are accepted, so "metadata that is not
/// an object" is refused when the value is built, not when it reaches a backend.
///
/// # Example
///
/// ```
/// use persist::Metadata;
/// use serde_json::json;
///
/// let mut meta = Metadata::new().with("model", json!("m-1")).with("tokens", json!(12));
/// meta.merge(&Metadata::new().with("tokens", json!(null)).with("done", json!(true)));
/// assert_eq!(meta.get("tokens"), None);
/// assert_eq!(meta.get("done"), Some(&json!(true)));
/// assert!(Metadata::try_from(json!([1, 2])).is_err());
/// ```
#[derive(Clone)]
pub struct Metadata(Arc<Map<String, Value>>);

/// As its object in canonical form (every object's keys sorted, whatever serde_json's features
/// in the build), so equal metadata is stored as one text.
impl Serialize for Metadata {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut out = serializer.serialize_map(Some(self.0.len()))?;
        for (key, value) in json::sorted(&self.0) {
            out.serialize_entry(key, &json::Sorted(value))?;
        }
        out.end()
    }
}

/// Equal objects, numbers compared by value (see [`Content`](crate::Content)'s equality).
impl PartialEq for Metadata {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || json::map_eq(&self.0, &other.0)
    }
}

impl fmt::Debug for Metadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Written without recursion: a value may be nested too deep for `Value`'s own `Debug`.
        let mut text = String::from("{");
        for (index, (key, value)) in self.0.iter().enumerate() {
            if index > 0 {
                text.push(',');
            }
            json::push_string(&mut text, key);
            text.push(':');
            text.push_str(&json::to_string(value));
        }
        text.push('}');
        f.debug_tuple("Metadata").field(&format_args!("{text}")).finish()
    }
}

impl Drop for Metadata {
    fn drop(&mut self) {
        // The last handle drops the map: a value too deep for `Value`'s recursive drop is taken
        // apart one node at a time first. A flat map costs one look at each value.
        if let Some(map) = Arc::get_mut(&mut self.0) {
            json::drop_deep_values(map, MAX_JSON_DEPTH);
        }
    }
}

impl Default for Metadata {
    fn default() -> Self {
        // Every empty metadata shares one allocation; the first insert copies it.
        static EMPTY: std::sync::LazyLock<Arc<Map<String, Value>>> = std::sync::LazyLock::new(Default::default);
        Self(Arc::clone(&EMPTY))
    }
}

impl Metadata {
    /// An empty object.
    pub fn new() -> Self {
        Self::default()
    }

    /// Returns `self` with `key` set to `value`.
    pub fn with(mut self, key: impl Into<String>, value: Value) -> Self {
        Arc::make_mut(&mut self.0).insert(key.into(), value);
        self
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key)
    }

    /// The object.
    pub fn as_map(&self) -> &Map<String, Value> {
        &self.0
    }

    /// Whether the object has no keys.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Merges `patch` into `self` key by key (top level): a key set to `null` in the patch is
    /// removed, any other value replaces the stored one.
    pub fn merge(&mut self, patch: &Metadata) {
        if patch.is_empty() {
            return;
        }
        let map = Arc::make_mut(&mut self.0);
        for (key, value) in patch.0.iter() {
            if value.is_null() {
                map.remove(key);
            } else {
                map.insert(key.clone(), value.clone());
            }
        }
    }

    /// Size of the object as compact JSON, in bytes (counted, not allocated).
    pub fn json_len(&self) -> usize {
        json::map_len(&self.0)
    }

    /// Nesting depth: `1` for an object of scalars, `+1` per nested object or array level.
    pub fn depth(&self) -> usize {
        1 + self.0.values().map(json::depth).max().unwrap_or(0)
    }

    /// Whether a key or a string anywhere in the object holds U+0000 (see
    /// [`Content::has_nul`](crate::Content::has_nul)).
    pub fn has_nul(&self) -> bool {
        self.0.iter().any(|(key, value)| key.contains('\0') || json::has_nul(value))
    }

    /// Checks that the object can be stored and read back as JSON (see
    /// [`Content::check_depth`](crate::Content::check_depth)).
    ///
    /// # Errors
    ///
    /// `InvalidInput` naming `metadata`.
    pub fn check_depth(&self) -> Result<(), PersistError> {
        if self.0.values().any(|value| json::deeper_than(value, MAX_JSON_DEPTH - 1)) {
            return check_depth("metadata", self.depth());
        }
        Ok(())
    }

    /// Whether every key of `filter` is present in `self` with an equal value (numbers
    /// compared by value, as for equality).
    pub fn contains(&self, filter: &Metadata) -> bool {
        filter.0.iter().all(|(key, value)| self.0.get(key).is_some_and(|own| json::eq(own, value)))
    }
}

impl TryFrom<Value> for Metadata {
    type Error = PersistError;

    fn try_from(value: Value) -> Result<Self, Self::Error> {
        match value {
            Value::Object(map) => Ok(Self(Arc::new(map))),
            other => {
                Err(PersistError::invalid("metadata", format!("must be a JSON object, got {}", json_kind(&other))))
            }
        }
    }
}

impl From<Map<String, Value>> for Metadata {
    fn from(map: Map<String, Value>) -> Self {
        Self(Arc::new(map))
    }
}

impl<'de> Deserialize<'de> for Metadata {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Metadata::try_from(Value::deserialize(deserializer)?).map_err(serde::de::Error::custom)
    }
}

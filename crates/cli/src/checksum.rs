//! A stable checksum of a thread's messages, to compare two stores after a copy.
//!
//! FNV-1a (64 bits) over a canonical encoding of each message's JSON (`persist::Message` as
//! serde serializes it), in seq order. Canonical, because two backends may hand back the same
//! value in different forms: PostgreSQL's `jsonb` orders object keys its own way and writes
//! numbers by value (`1e2` as `100`, `1.0` as `1.0` or `1`), where SQLite returns the text it
//! was given. So: object keys sorted bytewise, numbers by value (an integral float as the
//! integer, others in Rust's shortest exponent form), strings length-prefixed, so that values
//! persist deems equal hash alike, whichever store they come from.

use persist::Message;
use serde_json::{Number, Value};

use crate::error::{CliError, CliResult};

const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const PRIME: u64 = 0x0000_0100_0000_01b3;

/// The running checksum of a sequence of messages, and their count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Checksum {
    hash: u64,
    count: u64,
}

impl Default for Checksum {
    fn default() -> Self {
        Self { hash: OFFSET_BASIS, count: 0 }
    }
}

impl Checksum {
    /// Adds the next message (in seq order).
    pub(crate) fn add(&mut self, message: &Message) -> CliResult {
        let value = serde_json::to_value(message)
            .map_err(|e| CliError::failed(format!("message {} of thread {}: {e}", message.id, message.thread_id)))?;
        self.value(&value);
        self.bytes(b"\n");
        self.count += 1;
        Ok(())
    }

    /// How many messages were added.
    pub(crate) fn count(&self) -> u64 {
        self.count
    }

    /// The checksum, as 16 hex digits.
    pub(crate) fn hex(&self) -> String {
        format!("{:016x}", self.hash)
    }

    fn bytes(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.hash ^= u64::from(byte);
            self.hash = self.hash.wrapping_mul(PRIME);
        }
    }

    /// Values nest at most `persist::MAX_JSON_DEPTH` deep in a store, so recursion is bounded.
    fn value(&mut self, value: &Value) {
        match value {
            Value::Null => self.bytes(b"null"),
            Value::Bool(true) => self.bytes(b"true"),
            Value::Bool(false) => self.bytes(b"false"),
            Value::Number(number) => self.bytes(canonical_number(number).as_bytes()),
            Value::String(text) => self.string(text),
            Value::Array(items) => {
                self.bytes(b"[");
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        self.bytes(b",");
                    }
                    self.value(item);
                }
                self.bytes(b"]");
            }
            Value::Object(map) => {
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
                self.bytes(b"{");
                for (i, (key, item)) in entries.into_iter().enumerate() {
                    if i > 0 {
                        self.bytes(b",");
                    }
                    self.string(key);
                    self.bytes(b":");
                    self.value(item);
                }
                self.bytes(b"}");
            }
        }
    }

    fn string(&mut self, text: &str) {
        self.bytes(text.len().to_string().as_bytes());
        self.bytes(b"\"");
        self.bytes(text.as_bytes());
    }
}

/// A number by value: the same text for `100`, `1e2` and `100.0`; `-0` as `0`.
fn canonical_number(number: &Number) -> String {
    if let Some(int) = number.as_i64() {
        return int.to_string();
    }
    if let Some(int) = number.as_u64() {
        return int.to_string();
    }
    let float = number.as_f64().unwrap_or(f64::NAN);
    // An integral float in -2^63 .. 2^64 converts exactly, as a store that keeps it an integer
    // (PostgreSQL's jsonb) gives it back.
    if float.fract() == 0.0 && float >= -(2f64.powi(63)) && float < 2f64.powi(63) {
        return (float as i64).to_string();
    }
    if float.fract() == 0.0 && float >= 0.0 && float < 2f64.powi(64) {
        return (float as u64).to_string();
    }
    format!("{float:e}")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn hash(value: Value) -> String {
        let mut sum = Checksum::default();
        sum.value(&value);
        sum.hex()
    }

    #[test]
    fn equal_values_hash_alike() {
        assert_eq!(hash(json!({"a": 1, "b": [1.0, -0.0]})), hash(json!({"b": [1, 0], "a": 1e0})));
        assert_ne!(hash(json!({"a": 1})), hash(json!({"a": "1"})));
        assert_ne!(hash(json!(["ab", "c"])), hash(json!(["a", "bc"])));
        assert_eq!(hash(json!(1.5)), hash(json!(15e-1)));
        assert_eq!(hash(json!(1e19)), hash(json!(10_000_000_000_000_000_000u64)));
    }

    #[test]
    fn fnv1a_of_nothing_is_the_offset_basis() {
        assert_eq!(Checksum::default().hex(), "cbf29ce484222325");
    }
}

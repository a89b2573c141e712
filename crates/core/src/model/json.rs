//! JSON values walked without recursion, and the one rule for comparing them.
//!
//! A value can be nested far deeper than a thread's stack allows a recursive walk (a caller can
//! build one a hundred thousand levels deep in a loop): `serde_json`'s own equality, `Display`
//! and `Drop` recurse and overflow the stack on it. Everything persist does with a value it was
//! handed (measure it, compare it, print it, drop it) goes through these functions instead, so
//! such a value is refused as `InvalidInput`, never a crash.
//!
//! **Numbers compare by value**: `1e2` equals `100`, `1` equals `1.0`, `-0` equals `0`, at any
//! depth. PostgreSQL's `jsonb` stores numbers by value (it writes `1e2` back as `100`), so a
//! repeat is compared in this form on every backend, and a thread filter matches by value
//! everywhere. The comparison is exact: an integer equals a float only when the float is that
//! integer. (SQLite's JSON functions hold integers beyond the signed 64-bit range as floats, so
//! its thread filter compares those as floats.)

use serde_json::{Map, Number, Value};

use super::error::PersistError;

/// The deepest JSON nesting a backend stores (below `serde_json`'s parsing limit of 128, so
/// what was written can always be read back).
pub const MAX_JSON_DEPTH: usize = 100;

pub(crate) fn check_depth(field: &'static str, depth: usize) -> Result<(), PersistError> {
    if depth > MAX_JSON_DEPTH {
        return Err(PersistError::invalid(field, format!("is nested {depth} deep, the limit is {MAX_JSON_DEPTH}")));
    }
    Ok(())
}

pub(crate) fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Whether two values are equal, numbers compared by value (see the [module docs](self)).
pub(crate) fn eq(a: &Value, b: &Value) -> bool {
    let mut pending = vec![(a, b)];
    while let Some((a, b)) = pending.pop() {
        let same = match (a, b) {
            (Value::Number(x), Value::Number(y)) => number_eq(x, y),
            (Value::Array(x), Value::Array(y)) => {
                pending.extend(x.iter().zip(y));
                x.len() == y.len()
            }
            (Value::Object(x), Value::Object(y)) => x.len() == y.len() && push_map_pairs(x, y, &mut pending),
            (x, y) => x == y,
        };
        if !same {
            return false;
        }
    }
    true
}

/// Whether every key of `x` is in `y`; queues each pair of values to compare.
fn push_map_pairs<'a>(
    x: &'a Map<String, Value>,
    y: &'a Map<String, Value>,
    pending: &mut Vec<(&'a Value, &'a Value)>,
) -> bool {
    for (key, value) in x {
        match y.get(key) {
            Some(other) => pending.push((value, other)),
            None => return false,
        }
    }
    true
}

/// Whether two maps hold equal values under the same keys (see [`eq`]).
pub(crate) fn map_eq(a: &Map<String, Value>, b: &Map<String, Value>) -> bool {
    let mut pending = Vec::new();
    a.len() == b.len() && push_map_pairs(a, b, &mut pending) && pending.into_iter().all(|(a, b)| eq(a, b))
}

/// Numbers by value, exactly: two integers as integers, an integer and a float only when the
/// float is that very integer (`1e16` is `10000000000000000`, `9007199254740992.0` is not
/// `9007199254740993`), two floats as floats (`-0.0 == 0.0`).
fn number_eq(x: &Number, y: &Number) -> bool {
    match (integer(x), integer(y)) {
        (Some(x), Some(y)) => x == y,
        (Some(int), None) => float_is(y.as_f64(), int),
        (None, Some(int)) => float_is(x.as_f64(), int),
        (None, None) => x.as_f64() == y.as_f64(),
    }
}

fn integer(number: &Number) -> Option<i128> {
    number.as_i64().map(i128::from).or_else(|| number.as_u64().map(i128::from))
}

/// Whether `float` is exactly the integer `int`.
fn float_is(float: Option<f64>, int: i128) -> bool {
    // Below 1e30 in magnitude, the cast of an integral float is exact.
    float.is_some_and(|f| f.fract() == 0.0 && f.abs() < 1e30 && f as i128 == int)
}

/// Whether `value` is nested more than `limit` levels deep. Recurses at most `limit + 1`
/// levels, so it is safe on any value for a small `limit`, and allocates nothing.
pub(crate) fn deeper_than(value: &Value, limit: usize) -> bool {
    match value {
        Value::Array(items) => limit == 0 || items.iter().any(|item| deeper_than(item, limit - 1)),
        Value::Object(map) => limit == 0 || map.values().any(|item| deeper_than(item, limit - 1)),
        _ => false,
    }
}

/// Nesting depth: `0` for a scalar, `+1` per array or object level.
pub(crate) fn depth(value: &Value) -> usize {
    let (mut deepest, mut pending) = (0, vec![(value, 0)]);
    while let Some((value, level)) = pending.pop() {
        match value {
            Value::Array(items) => {
                deepest = deepest.max(level + 1);
                pending.extend(items.iter().map(|item| (item, level + 1)));
            }
            Value::Object(map) => {
                deepest = deepest.max(level + 1);
                pending.extend(map.values().map(|item| (item, level + 1)));
            }
            _ => {}
        }
    }
    deepest
}

/// Bytes `serde_json` writes for `value` as compact JSON, counted, not formatted.
pub(crate) fn len(value: &Value) -> usize {
    let (mut total, mut pending) = (0, vec![value]);
    while let Some(value) = pending.pop() {
        total += match value {
            Value::Array(items) => {
                pending.extend(items);
                2 + items.len().saturating_sub(1)
            }
            Value::Object(map) => {
                pending.extend(map.values());
                2 + map.len().saturating_sub(1) + map.keys().map(|key| string_len(key) + 1).sum::<usize>()
            }
            scalar => scalar_len(scalar),
        };
    }
    total
}

/// Bytes of a map written as a compact JSON object.
pub(crate) fn map_len(map: &Map<String, Value>) -> usize {
    2 + map.len().saturating_sub(1) + map.iter().map(|(key, value)| string_len(key) + 1 + len(value)).sum::<usize>()
}

fn scalar_len(value: &Value) -> usize {
    match value {
        Value::Null | Value::Bool(true) => 4,
        Value::Bool(false) => 5,
        Value::String(text) => string_len(text),
        Value::Number(number) => {
            let mut counter = ByteCounter(0);
            let _ = std::fmt::Write::write_fmt(&mut counter, format_args!("{number}"));
            counter.0
        }
        // Containers are counted by `len`.
        Value::Array(_) | Value::Object(_) => 0,
    }
}

/// A string with its quotes and serde_json's escapes: `\"`, `\\` and the short control escapes
/// take two bytes, other control characters six (`\u00XX`).
fn string_len(text: &str) -> usize {
    2 + text
        .bytes()
        .map(|byte| match byte {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 2,
            0x00..=0x1f => 6,
            _ => 1,
        })
        .sum::<usize>()
}

struct ByteCounter(usize);

impl std::fmt::Write for ByteCounter {
    fn write_str(&mut self, text: &str) -> std::fmt::Result {
        self.0 += text.len();
        Ok(())
    }
}

/// `value` as compact JSON text in its canonical form: as `serde_json::to_string` writes it,
/// every object's keys in sorted order (serde_json's default maps; its `preserve_order`, which a
/// crate of the build may turn on, keeps them as inserted). One value is one text whatever the
/// build, so texts can be compared, deduplicated and hashed.
pub(crate) fn to_string(value: &Value) -> String {
    enum Step<'a> {
        Value(&'a Value),
        Key(&'a str),
        Text(&'static str),
    }
    let mut out = String::with_capacity(64);
    let mut pending = vec![Step::Value(value)];
    while let Some(step) = pending.pop() {
        match step {
            Step::Text(text) => out.push_str(text),
            Step::Key(key) => {
                push_string(&mut out, key);
                out.push(':');
            }
            Step::Value(Value::Array(items)) => {
                out.push('[');
                pending.push(Step::Text("]"));
                for (index, item) in items.iter().enumerate().rev() {
                    pending.push(Step::Value(item));
                    if index > 0 {
                        pending.push(Step::Text(","));
                    }
                }
            }
            Step::Value(Value::Object(map)) => {
                out.push('{');
                pending.push(Step::Text("}"));
                for (index, (key, item)) in sorted(map).into_iter().enumerate().rev() {
                    pending.push(Step::Value(item));
                    pending.push(Step::Key(key));
                    if index > 0 {
                        pending.push(Step::Text(","));
                    }
                }
            }
            Step::Value(Value::String(text)) => push_string(&mut out, text),
            // A scalar: `serde_json` writes it without recursing.
            Step::Value(scalar) => out.push_str(&scalar.to_string()),
        }
    }
    out
}

/// Appends `text` as a JSON string literal, escaped as `serde_json` escapes it.
///
/// Copies runs of bytes that need no escape at once: every byte to escape is ASCII (`"`, `\`,
/// controls), so a run never splits a UTF-8 sequence.
pub(crate) fn push_string(out: &mut String, text: &str) {
    out.reserve(text.len() + 2);
    out.push('"');
    let bytes = text.as_bytes();
    let mut run = 0;
    for (i, &byte) in bytes.iter().enumerate() {
        let escape = match byte {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0x00..=0x1f => "",
            _ => continue,
        };
        out.push_str(&text[run..i]);
        if escape.is_empty() {
            use std::fmt::Write as _;
            let _ = write!(out, "\\u{byte:04x}");
        } else {
            out.push_str(escape);
        }
        run = i + 1;
    }
    out.push_str(&text[run..]);
    out.push('"');
}

/// Whether a string or a key anywhere in `value` holds U+0000.
pub(crate) fn has_nul(value: &Value) -> bool {
    match value {
        Value::String(text) => return text.contains('\0'),
        Value::Array(_) | Value::Object(_) => {}
        _ => return false,
    }
    let mut pending = vec![value];
    while let Some(value) = pending.pop() {
        match value {
            Value::String(text) if text.contains('\0') => return true,
            Value::Array(items) => pending.extend(items),
            Value::Object(map) => {
                if map.keys().any(|key| key.contains('\0')) {
                    return true;
                }
                pending.extend(map.values());
            }
            _ => {}
        }
    }
    false
}

/// Whether compact JSON text holds an escaped U+0000 (`\u0000`) in a string. JSON text never
/// holds a raw one: it must be escaped.
pub(crate) fn text_has_nul(text: &str) -> bool {
    // Fast path: no `u0000` at all.
    if !text.contains("u0000") {
        return false;
    }
    let bytes = text.as_bytes();
    let mut backslashes = 0;
    for (index, &byte) in bytes.iter().enumerate() {
        if byte == b'u' && backslashes % 2 == 1 && bytes[index + 1..].starts_with(b"0000") {
            return true;
        }
        backslashes = if byte == b'\\' { backslashes + 1 } else { 0 };
    }
    false
}

/// Drops `value` one node at a time, so however deep it is the stack does not grow.
pub(crate) fn drop_flat(value: Value) {
    let mut pending = vec![value];
    while let Some(mut value) = pending.pop() {
        match &mut value {
            Value::Array(items) => pending.append(items),
            Value::Object(map) => pending.extend(std::mem::take(map).into_iter().map(|(_, item)| item)),
            _ => {}
        }
    }
}

/// Drops the values of `map` that are nested deeper than `limit` one node at a time (see
/// [`drop_flat`]); shallow ones are left to the map's own drop. Cheap for a flat map.
pub(crate) fn drop_deep_values(map: &mut Map<String, Value>, limit: usize) {
    for value in map.values_mut() {
        if matches!(value, Value::Array(_) | Value::Object(_)) && deeper_than(value, limit) {
            drop_flat(value.take());
        }
    }
}

/// `value`'s canonical text ([`to_string`]) with its numbers written by value, as [`eq`]
/// compares them: a float that is an integer as that integer (`1.0` as `1`, `-0.0` as `0`), so
/// equal values have one text whatever form a store kept them in (PostgreSQL's `jsonb` writes
/// `1e2` back as `100`).
pub(crate) fn by_value(value: &Value) -> String {
    let mut value = value.clone();
    let mut pending = vec![&mut value];
    while let Some(node) = pending.pop() {
        match node {
            Value::Array(items) => pending.extend(items.iter_mut()),
            Value::Object(map) => pending.extend(map.values_mut()),
            Value::Number(number) if integer(number).is_none() => {
                let whole = number.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 1e30).map(|f| f as i128);
                if let Some(int) = whole {
                    if let Ok(int) = i64::try_from(int) {
                        *number = Number::from(int);
                    } else if let Ok(int) = u64::try_from(int) {
                        *number = Number::from(int);
                    }
                }
            }
            _ => {}
        }
    }
    let text = to_string(&value);
    drop_flat(value);
    text
}

/// A map's entries in sorted key order (already so without `preserve_order`).
pub(crate) fn sorted(map: &Map<String, Value>) -> Vec<(&String, &Value)> {
    let mut entries: Vec<_> = map.iter().collect();
    if !entries.is_sorted_by(|a, b| a.0 <= b.0) {
        entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
    }
    entries
}

/// A value serialized in its canonical form (see [`to_string`]): every object's keys sorted.
pub(crate) struct Sorted<'a>(pub(crate) &'a Value);

impl serde::Serialize for Sorted<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        match self.0 {
            Value::Object(map) => {
                let mut out = serializer.serialize_map(Some(map.len()))?;
                for (key, value) in sorted(map) {
                    out.serialize_entry(key, &Sorted(value))?;
                }
                out.end()
            }
            Value::Array(items) => {
                let mut out = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    out.serialize_element(&Sorted(item))?;
                }
                out.end()
            }
            scalar => scalar.serialize(serializer),
        }
    }
}

/// A JSON string read and checked as `String` reads it (escapes, surrogates), its text not
/// kept: a string without escapes is read in place, without a copy.
pub(crate) struct CheckedString;

impl<'de> serde::Deserialize<'de> for CheckedString {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = CheckedString;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }

            fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<CheckedString, E> {
                Ok(CheckedString)
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// A value nested `levels` deep, built without recursion.
    fn nested(levels: usize) -> Value {
        let mut value = json!(1);
        for level in 0..levels {
            // Not `json!`: it copies its argument through `to_value`, which recurses.
            value = if level % 2 == 0 {
                Value::Array(vec![value])
            } else {
                Value::Object(Map::from_iter([("k".to_owned(), value)]))
            };
        }
        value
    }

    #[test]
    fn numbers_compare_by_value_at_any_depth() {
        for (a, b) in [
            (json!(1e2), json!(100)),
            (json!(1), json!(1.0)),
            (json!(-0.0), json!(0)),
            (json!(1e16), json!(10000000000000000u64)),
            (json!({"a": [1, {"b": 2.50}]}), json!({"a": [1.0, {"b": 2.5}]})),
        ] {
            assert!(eq(&a, &b), "{a} = {b}");
            assert!(eq(&b, &a), "{b} = {a}");
        }
        for (a, b) in [
            (json!(1), json!(2)),
            (json!(u64::MAX), json!(u64::MAX - 1)),
            (json!(-1), json!(u64::MAX)),
            (json!(9007199254740993u64), json!(9007199254740992.0)),
            (json!(0.5), json!(0)),
            (json!([1]), json!([1, 1])),
            (json!({"a": 1}), json!({"b": 1})),
            (json!("1"), json!(1)),
        ] {
            assert!(!eq(&a, &b), "{a} != {b}");
        }
        let parsed: Value = serde_json::from_str(r#"{"x": 1E+16, "y": -0}"#).unwrap();
        assert!(eq(&parsed, &json!({"x": 10000000000000000u64, "y": 0})));
    }

    #[test]
    fn one_value_is_one_text_whatever_the_build() {
        // Keys inserted out of order: kept so under serde_json's `preserve_order` (rig turns it
        // on for a whole build), sorted without it; the canonical text sorts them either way.
        let mut inner = Map::new();
        inner.insert("z".into(), json!(1));
        inner.insert("a".into(), json!([{"y": 1, "b": 2}]));
        let mut outer = Map::new();
        outer.insert("type".into(), json!("tool_call"));
        outer.insert("arguments".into(), Value::Object(inner));
        let value = Value::Object(outer);
        let canonical = r#"{"arguments":{"a":[{"b":2,"y":1}],"z":1},"type":"tool_call"}"#;
        assert_eq!(to_string(&value), canonical);
        assert_eq!(serde_json::to_string(&Sorted(&value)).unwrap(), canonical);
    }

    #[test]
    fn walks_match_serde_json() {
        for value in [
            json!(null),
            json!([true, false, 1, -2.5, "a\"\\\n\u{1}é"]),
            json!({"b": [1, {"c": []}], "a": {}, "": "x"}),
            nested(20),
        ] {
            assert_eq!(to_string(&value), serde_json::to_string(&Sorted(&value)).unwrap());
            assert_eq!(len(&value), serde_json::to_string(&value).unwrap().len());
            assert!(eq(&value, &value.clone()));
        }
        assert_eq!(depth(&nested(20)), 20);
        assert!(deeper_than(&nested(20), 19));
        assert!(!deeper_than(&nested(20), 20));
    }

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        let every_control: String = (0u8..0x20).map(char::from).collect();
        for text in [
            String::new(),
            "plain ascii".to_owned(),
            every_control,
            "quote \" backslash \\ slash / del \u{7f}".to_owned(),
            "é ü 😀 \u{2028} \u{ffff} mixed\n\"é\"\t".to_owned(),
            "\\\"\n".repeat(50),
        ] {
            let mut ours = String::new();
            push_string(&mut ours, &text);
            assert_eq!(ours, serde_json::to_string(&text).unwrap(), "{text:?}");
        }
    }

    #[test]
    fn a_value_far_deeper_than_the_stack_is_walked_and_dropped() {
        // On a small stack, where serde_json's recursive walks overflow.
        std::thread::Builder::new()
            .stack_size(256 << 10)
            .spawn(|| {
                let value = nested(100_000);
                assert_eq!(depth(&value), 100_000);
                assert!(deeper_than(&value, 100));
                assert!(len(&value) > 200_000);
                assert!(!has_nul(&value));
                assert!(eq(&value, &value));
                assert!(to_string(&value).starts_with("{\"k\":[{\"k\":"));
                drop_flat(value);
            })
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn nul_is_found_in_strings_keys_and_text() {
        assert!(has_nul(&json!([{"a": "x\u{0}y"}])));
        assert!(has_nul(&json!({"k\u{0}": 1})));
        assert!(!has_nul(&json!({"k": "u0000"})));
        assert!(text_has_nul(r#"["a\u0000"]"#));
        assert!(!text_has_nul(r#"["a\\u0000"]"#), "an escaped backslash, then the text u0000");
        assert!(text_has_nul(r#"["a\\\u0000"]"#));
        assert!(!text_has_nul(r#"["u0000"]"#));
    }
}

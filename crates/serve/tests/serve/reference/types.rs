//! A schema in words: its type(s) with their constraints, a `$ref` as a link to its schema.

use std::collections::BTreeSet;

use serde_json::Value;

use super::page::schema_link;

/// An object's entries, by key.
pub(super) fn sorted(value: &Value) -> Vec<(&str, &Value)> {
    let mut entries: Vec<(&str, &Value)> =
        value.as_object().into_iter().flatten().map(|(key, value)| (key.as_str(), value)).collect();
    entries.sort_by_key(|(key, _)| *key);
    entries
}

/// A sentence: `text` ending with a full stop unless it ends with punctuation.
pub(super) fn sentence(text: &str) -> String {
    let text = text.trim();
    if text.is_empty() || text.ends_with(['.', '!', '?', ':']) { text.to_owned() } else { format!("{text}.") }
}

pub(super) fn yes(required: bool) -> String {
    (if required { "yes" } else { "no" }).to_owned()
}

/// The schema a `$ref` names.
pub(super) fn lookup<'a>(doc: &'a Value, reference: &str) -> &'a Value {
    let name = reference.rsplit('/').next().unwrap_or_default();
    &doc["components"]["schemas"][name]
}

/// A schema's type, in a few words: its type(s) with their constraints, a `$ref` as a link.
pub(super) fn type_of(schema: &Value) -> String {
    if let Some(reference) = schema["$ref"].as_str() {
        return schema_link(reference.rsplit('/').next().unwrap_or_default());
    }
    if let Some(value) = schema.get("const") {
        return format!("`{value}`");
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(variants) = schema[key].as_array() {
            let kinds: Vec<String> = variants.iter().map(type_of).collect();
            return join_unique(kinds, " or ");
        }
    }
    if let Some([only]) = schema["allOf"].as_array().map(Vec::as_slice) {
        return type_of(only);
    }
    let kinds: Vec<&str> = match &schema["type"] {
        Value::String(kind) => vec![kind.as_str()],
        Value::Array(kinds) => kinds.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let mut words: Vec<String> = kinds
        .iter()
        .map(|kind| match *kind {
            "array" => match schema.get("items") {
                Some(items) if items.get("properties").is_none() => format!("array of {}", type_of(items)),
                Some(_) => "array of objects".to_owned(),
                None => "array".to_owned(),
            },
            "object" => match schema.get("additionalProperties") {
                Some(values) if values.is_object() && schema.get("properties").is_none() => {
                    format!("object of {}", type_of(values))
                }
                _ => "object".to_owned(),
            },
            other => other.to_owned(),
        })
        .collect();
    if words.is_empty() && schema.get("enum").is_none() {
        words.push("any".to_owned());
    }
    let constraints = constraints(schema);
    let kind = words.join(" or ");
    match (kind.is_empty(), constraints.is_empty()) {
        (_, true) => kind,
        (true, false) => constraints.join(", "),
        (false, false) => format!("{kind} ({})", constraints.join(", ")),
    }
}

/// `items` joined by `separator`, each once, in order.
fn join_unique(items: Vec<String>, separator: &str) -> String {
    let mut seen = BTreeSet::new();
    let items: Vec<String> = items.into_iter().filter(|item| seen.insert(item.clone())).collect();
    items.join(separator)
}

/// What a schema bounds: values, lengths, counts, pattern, default.
fn constraints(schema: &Value) -> Vec<String> {
    let mut all = Vec::new();
    if let Some(values) = schema["enum"].as_array() {
        let values: Vec<String> =
            values.iter().map(|v| format!("`{}`", v.as_str().map_or(v.to_string(), str::to_owned))).collect();
        all.push(format!("one of {}", values.join(", ")));
    }
    let range = |low: &str, high: &str, unit: &str| -> Option<String> {
        let (low, high) = (&schema[low], &schema[high]);
        // A unit's plural (`items`), but for one alone (`at least 1 item`).
        let unit = |one: &Value| match unit {
            "" => String::new(),
            _ if one.as_u64() == Some(1) => format!(" {}", unit.trim_end_matches('s')),
            _ => format!(" {unit}"),
        };
        let number = |value: &Value| match value.as_u64() {
            Some(u64::MAX) => "2^64 − 1".to_owned(),
            _ => value.to_string(),
        };
        match (low.is_number(), high.is_number()) {
            (true, true) => Some(format!("{} to {}{}", number(low), number(high), unit(&Value::Null))),
            (true, false) => Some(format!("at least {}{}", number(low), unit(low))),
            (false, true) => Some(format!("at most {}{}", number(high), unit(high))),
            (false, false) => None,
        }
    };
    all.extend(range("minimum", "maximum", ""));
    all.extend(range("minLength", "maxLength", "characters"));
    all.extend(range("minItems", "maxItems", "items"));
    all.extend(range("minProperties", "maxProperties", "pairs"));
    if let Some(pattern) = schema["pattern"].as_str() {
        all.push(format!("pattern `{pattern}`"));
    }
    if let Some(media) = schema["contentMediaType"].as_str() {
        all.push(format!("`{media}`"));
    }
    if let Some(default) = schema.get("default") {
        all.push(format!("default `{}`", default.as_str().map_or(default.to_string(), str::to_owned)));
    }
    all
}

/// The type of an object's keys (a string, whether the schema says so or not).
pub(super) fn key_type(names: &Value) -> String {
    let mut names = names.clone();
    if names.get("type").is_none() {
        names["type"] = "string".into();
    }
    type_of(&names)
}

//! The schema pages: each schema of `components/schemas` under a heading of its own, the
//! pages split by the schemas' first letters; and the table of an object's fields, which the
//! operation pages show of a request body too.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::Value;

use super::page::{CLOSED_OBJECTS, Page, SCHEMA_PAGES, link, notice, schema_link};
use super::types::{key_type, sentence, sorted, type_of, yes};

/// The page of the schema `name`: the last whose letter is not after the name's first one.
fn page_of(name: &str) -> &'static str {
    let first = name.chars().next().unwrap_or('A').to_ascii_uppercase();
    let page = SCHEMA_PAGES.iter().rev().find(|(_, letter)| *letter <= first);
    page.unwrap_or(&SCHEMA_PAGES[0]).0
}

/// The letters of the `at`th schema page's schemas, as `A–M`.
fn letters(at: usize) -> String {
    let first = SCHEMA_PAGES[at].1;
    let next = SCHEMA_PAGES.get(at + 1).and_then(|(_, next)| char::from_u32(u32::from(*next) - 1));
    format!("{first}–{}", next.unwrap_or('Z'))
}

/// The schema pages of `doc`: `(file name, Markdown)`.
pub(super) fn schema_pages(doc: &Value, anchors: &mut HashMap<String, String>) -> Vec<(&'static str, String)> {
    let title = doc["info"]["title"].as_str().unwrap_or("The API");
    let schemas = sorted(&doc["components"]["schemas"]);
    let index: Vec<String> = schemas.iter().map(|(name, _)| schema_link(name)).collect();
    let mut pages = Vec::new();
    for (at, (name, _)) in SCHEMA_PAGES.iter().enumerate() {
        let mut page = Page::new(name);
        page.heading(1, &format!("{title}: HTTP schemas {}", letters(at)), Some(format!("page:{name}")), anchors);
        page.line(&notice("the server's OpenAPI document (`components/schemas`)"));
        page.line(&format!(
            "The operations that read and answer these are in {}.",
            link("the HTTP reference", "section:index")
        ));
        let others: Vec<String> = (0..SCHEMA_PAGES.len())
            .filter(|other| *other != at)
            .map(|other| link(&letters(other), &format!("page:{}", SCHEMA_PAGES[other].0)))
            .collect();
        if !others.is_empty() {
            page.line(&format!(
                "This page has the schemas {}, {} the rest; the index below names them all.",
                letters(at),
                others.join(", ")
            ));
        }
        page.line(CLOSED_OBJECTS);
        page.line(&index.join(" · "));
        for (schema_name, schema) in schemas.iter().filter(|(schema_name, _)| page_of(schema_name) == *name) {
            page.heading(2, schema_name, Some(format!("schema:{schema_name}")), anchors);
            schema_section(&mut page, schema);
        }
        pages.push(page.finish());
    }
    pages
}

/// The rows of an object schema's properties, by name; the properties of an inline object
/// (or of the inline objects an array holds) follow as `name.field` (`name[].field`). The
/// fields the object takes besides them come last, unless it takes none.
fn property_rows(schema: &Value, prefix: &str, rows: &mut Vec<Vec<String>>) {
    let required: BTreeSet<&str> =
        schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    for (name, property) in sorted(&schema["properties"]) {
        rows.push(vec![
            format!("`{prefix}{name}`"),
            type_of(property),
            yes(required.contains(name)),
            property["description"].as_str().unwrap_or_default().to_owned(),
        ]);
        if let Some(inner) = inline_object(property) {
            property_rows(inner, &format!("{prefix}{name}."), rows);
        } else if let Some(inner) = property.get("items").and_then(inline_object) {
            property_rows(inner, &format!("{prefix}{name}[]."), rows);
        }
    }
    rows.extend(other_fields(schema, prefix));
}

/// The row of the fields an object takes besides its properties: none when it takes no other
/// (what every page says once), `any` when its schema does not say.
fn other_fields(schema: &Value, prefix: &str) -> Option<Vec<String>> {
    let (kind, description) = match schema.get("additionalProperties") {
        Some(Value::Bool(false)) => return None,
        Some(other) if other.is_object() => {
            let names = schema.get("propertyNames").map(|names| format!("Named {}.", key_type(names)));
            (type_of(other), names.unwrap_or_default())
        }
        _ => ("any".to_owned(), String::new()),
    };
    let field = match prefix.strip_suffix('.') {
        Some(object) => format!("*other fields* of `{object}`"),
        None => "*other fields*".to_owned(),
    };
    Some(vec![field, kind, String::new(), description])
}

/// The object with properties a schema is, or is when not `null`.
fn inline_object(schema: &Value) -> Option<&Value> {
    if schema.get("properties").is_some() {
        return Some(schema);
    }
    let variants = schema["anyOf"].as_array().or_else(|| schema["oneOf"].as_array())?;
    let objects: Vec<&Value> = variants.iter().filter(|v| v.get("properties").is_some()).collect();
    let rest_null = variants.iter().all(|v| v.get("properties").is_some() || v["type"] == "null");
    match objects.as_slice() {
        [only] if rest_null => Some(only),
        _ => None,
    }
}

/// An object schema's properties as a table, the fields it takes besides them last, and which
/// fields need others.
pub(super) fn property_table(page: &mut Page, schema: &Value) {
    let mut rows = Vec::new();
    property_rows(schema, "", &mut rows);
    if rows.is_empty() {
        page.line("An empty object: `{}`.");
    } else {
        page.table(&["Field", "Type", "Required", "Description"], &rows);
    }
    let mut notes = Vec::new();
    for (field, needs) in sorted(&schema["dependentRequired"]) {
        let needs: Vec<String> =
            needs.as_array().into_iter().flatten().map(|n| format!("`{}`", n.as_str().unwrap_or_default())).collect();
        notes.push(format!("`{field}` needs {}.", needs.join(", ")));
    }
    if !notes.is_empty() {
        page.line(&notes.join(" "));
    }
}

fn schema_section(page: &mut Page, schema: &Value) {
    if let Some(description) = schema["description"].as_str() {
        page.line(&sentence(description));
    }
    if schema.get("properties").is_some() {
        property_table(page, schema);
        return;
    }
    let variants = schema["oneOf"].as_array().or_else(|| schema["anyOf"].as_array());
    let Some(variants) = variants else {
        let values = schema.get("additionalProperties").filter(|v| v.is_object() && schema["type"] == "object");
        let line = match values {
            // A map: its values, and its keys.
            Some(values) => {
                let keys = schema.get("propertyNames").map(|names| format!("; keys: {}", key_type(names)));
                format!("Type: object{}; values: {}{}.", range_note(schema), type_of(values), keys.unwrap_or_default())
            }
            None => format!("Type: {}.", type_of(schema)),
        };
        page.line(&line);
        return;
    };
    if let Some(mapping) = schema["discriminator"]["mapping"].as_object() {
        let property = schema["discriminator"]["propertyName"].as_str().unwrap_or("type");
        let mut by_schema: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (value, reference) in mapping {
            by_schema.entry(reference.as_str().unwrap_or_default()).or_default().push(value);
        }
        page.line(&format!("One of these, by `{property}`:"));
        let rows: Vec<Vec<String>> = by_schema
            .into_iter()
            .map(|(reference, mut values)| {
                values.sort_unstable();
                let values: Vec<String> = values.iter().map(|v| format!("`{v}`")).collect();
                vec![type_of(&serde_json::json!({"$ref": reference})), values.join(", ")]
            })
            .collect();
        page.table(&["Schema", &format!("`{property}`")], &rows);
        return;
    }
    page.line("One of:");
    let mut simple = Vec::new();
    for variant in variants {
        if variant.get("properties").is_some() {
            if !simple.is_empty() {
                page.line(&simple.join("\n"));
                simple.clear();
            }
            page.line(&variant_title(variant));
            property_table(page, variant);
        } else {
            simple.push(format!("- {}", type_of(variant)));
        }
    }
    if !simple.is_empty() {
        page.line(&simple.join("\n"));
    }
}

/// `object, at most N pairs`-like words of an object's bounds.
fn range_note(schema: &Value) -> String {
    match schema["maxProperties"].as_u64() {
        Some(most) => format!(" of at most {most} pairs"),
        None => String::new(),
    }
}

/// A variant object's title: what its `type` is.
fn variant_title(variant: &Value) -> String {
    let kind = &variant["properties"]["type"];
    if let Some(value) = kind.get("const") {
        return format!("With `type` `{value}`:");
    }
    if let Some(values) = kind["enum"].as_array() {
        let values: Vec<String> = values.iter().map(|v| format!("`{}`", v.as_str().unwrap_or_default())).collect();
        return format!("With `type` one of {}:", values.join(", "));
    }
    "An object:".to_owned()
}

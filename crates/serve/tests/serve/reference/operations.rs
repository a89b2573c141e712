//! The operation pages: the introduction, the index, authentication and the common responses
//! on the first; each operation under its tag's heading, with its parameters, request body and
//! responses.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use super::page::{CLOSED_OBJECTS, OPERATION_PAGES, Page, link, notice};
use super::schemas::property_table;
use super::types::{lookup, sentence, sorted, type_of, yes};

/// The methods of a path item, in the order they are shown.
const METHODS: &[&str] = &["get", "put", "post", "patch", "delete", "head", "options", "trace"];

/// The document's operations as `(tag, path, method, operation)`, by tag in the document's
/// order of tags (those it does not list after, by name), then by path and method.
fn operations(doc: &Value) -> Vec<(String, String, &'static str, &Value)> {
    let listed: Vec<&str> = doc["tags"].as_array().into_iter().flatten().filter_map(|t| t["name"].as_str()).collect();
    let mut all = Vec::new();
    for (path, item) in sorted(&doc["paths"]) {
        for method in METHODS {
            let operation = &item[*method];
            if operation.is_object() {
                let tag = operation["tags"][0].as_str().unwrap_or("Other").to_owned();
                all.push((tag, path.to_owned(), *method, operation));
            }
        }
    }
    let rank = |tag: &str| listed.iter().position(|t| *t == tag).unwrap_or(listed.len());
    all.sort_by(|a, b| (rank(&a.0), &a.0, &a.1, method_rank(a.2)).cmp(&(rank(&b.0), &b.0, &b.1, method_rank(b.2))));
    all
}

fn method_rank(method: &str) -> usize {
    METHODS.iter().position(|m| *m == method).unwrap_or(METHODS.len())
}

fn heading_of(path: &str, method: &str) -> String {
    format!("{} {path}", method.to_uppercase())
}

/// The responses every operation with the document's security (a key) answers, shown once:
/// by status, the response most of them give (those giving another one show theirs).
fn common_responses(doc: &Value) -> BTreeMap<u16, Value> {
    let keyed: Vec<&Value> = operations(doc)
        .into_iter()
        .map(|(_, _, _, operation)| operation)
        .filter(|operation| operation.get("security").is_none())
        .collect();
    let mut common = BTreeMap::new();
    let Some(first) = keyed.first() else { return common };
    for (status, _) in sorted(&first["responses"]) {
        let given: Vec<&Value> = keyed.iter().filter_map(|operation| operation["responses"].get(status)).collect();
        if given.len() < keyed.len() {
            continue;
        }
        // The one more than half of them give, if one is.
        let count = |response: &Value| given.iter().filter(|r| **r == response).count();
        let most = given.iter().find(|response| count(response) * 2 > keyed.len());
        if let (Some(most), Ok(status)) = (most, status.parse()) {
            common.insert(status, (*most).clone());
        }
    }
    common
}

/// The page of `tag`'s operations.
fn page_of(tag: &str) -> &'static str {
    let page = OPERATION_PAGES.iter().find(|(_, tags)| tags.contains(&tag));
    page.unwrap_or(&OPERATION_PAGES[0]).0
}

/// The operation pages of `doc`: `(file name, Markdown)`.
pub(super) fn operation_pages(doc: &Value, anchors: &mut HashMap<String, String>) -> Vec<(&'static str, String)> {
    let title = doc["info"]["title"].as_str().unwrap_or("The API");
    let operations = operations(doc);
    let common = common_responses(doc);
    let tags: HashMap<&str, &str> = doc["tags"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| Some((t["name"].as_str()?, t["description"].as_str().unwrap_or_default())))
        .collect();
    let mut pages = Vec::new();
    for (index, (name, _)) in OPERATION_PAGES.iter().enumerate() {
        let mut page = Page::new(name);
        let groups: Vec<&String> = {
            let mut groups: Vec<&String> =
                operations.iter().map(|(tag, ..)| tag).filter(|t| page_of(t) == *name).collect();
            groups.dedup();
            groups
        };
        if index == 0 {
            page.heading(1, &format!("{title}: HTTP reference"), None, anchors);
            page.line(&notice("the server's OpenAPI document (`GET /v1/persist/openapi.json`, `Server::openapi()`)"));
            if let Some(description) = doc["info"]["description"].as_str() {
                page.line(description);
            }
            page.line(CLOSED_OBJECTS);
            index_section(&mut page, &operations, anchors);
            authentication_section(&mut page, doc, anchors);
            page.heading(2, "Common responses", Some("section:common".into()), anchors);
            page.line("What any operation that takes a key may answer, beyond what its own table lists:");
            let rows: Vec<Vec<String>> =
                common.iter().map(|(status, response)| response_row(&status.to_string(), response)).collect();
            page.table(&["Status", "Description", "Body"], &rows);
        } else {
            let names: Vec<&str> = groups.iter().map(|g| g.as_str()).collect();
            page.heading(1, &format!("{title}: {}", names.join(", ")), None, anchors);
            page.line(&notice("the server's OpenAPI document"));
            page.line(&format!(
                "The rules every operation follows, the index of them all and the responses they share are in {}.",
                link("the HTTP reference", "section:index")
            ));
            page.line(CLOSED_OBJECTS);
        }
        let mut last_tag = None;
        for (tag, path, method, operation) in operations.iter().filter(|(tag, ..)| page_of(tag) == *name) {
            if last_tag != Some(tag) {
                page.heading(2, tag, Some(format!("tag:{tag}")), anchors);
                if let Some(description) = tags.get(tag.as_str()).filter(|d| !d.is_empty()) {
                    page.line(description);
                }
                last_tag = Some(tag);
            }
            operation_section(&mut page, doc, path, method, operation, &common, anchors);
        }
        pages.push(page.finish());
    }
    pages
}

/// Every operation, by group: a link, its id and its summary.
fn index_section(
    page: &mut Page,
    operations: &[(String, String, &'static str, &Value)],
    anchors: &mut HashMap<String, String>,
) {
    page.heading(2, "Index", Some("section:index".into()), anchors);
    let mut rows = Vec::new();
    let mut last_tag = None;
    for (tag, path, method, operation) in operations {
        let group = if last_tag == Some(tag) { String::new() } else { link(tag, &format!("tag:{tag}")) };
        last_tag = Some(tag);
        rows.push(vec![
            group,
            link(&format!("`{}`", heading_of(path, method)), &format!("op:{method} {path}")),
            format!("`{}`", operation["operationId"].as_str().unwrap_or_default()),
            operation["summary"].as_str().unwrap_or_default().to_owned(),
        ]);
    }
    page.table(&["Group", "Operation", "Id", "Summary"], &rows);
}

fn authentication_section(page: &mut Page, doc: &Value, anchors: &mut HashMap<String, String>) {
    page.heading(2, "Authentication", None, anchors);
    for (name, scheme) in sorted(&doc["components"]["securitySchemes"]) {
        let kind = match (scheme["type"].as_str(), scheme["scheme"].as_str()) {
            (Some("http"), Some(scheme)) => format!("HTTP `{scheme}`"),
            (Some(kind), _) => format!("`{kind}`"),
            _ => String::new(),
        };
        let description = scheme["description"].as_str().unwrap_or_default();
        page.line(&format!("`{name}` ({kind}): {description}"));
    }
    page.line("An operation marked *No key* takes none; every other one takes the key.");
}

fn operation_section(
    page: &mut Page,
    doc: &Value,
    path: &str,
    method: &str,
    operation: &Value,
    common: &BTreeMap<u16, Value>,
    anchors: &mut HashMap<String, String>,
) {
    page.heading(3, &heading_of(path, method), Some(format!("op:{method} {path}")), anchors);
    let mut summary = sentence(operation["summary"].as_str().unwrap_or_default());
    if operation["security"].as_array().is_some_and(Vec::is_empty) {
        summary.push_str(" *No key.*");
    }
    page.line(summary.trim());
    if let Some(description) = operation["description"].as_str() {
        page.line(description);
    }

    let parameters: Vec<Vec<String>> = operation["parameters"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            vec![
                format!("`{}`", p["name"].as_str().unwrap_or_default()),
                p["in"].as_str().unwrap_or_default().to_owned(),
                type_of(&p["schema"]),
                yes(p["required"].as_bool().unwrap_or(false)),
                p["description"].as_str().unwrap_or_default().to_owned(),
            ]
        })
        .collect();
    if !parameters.is_empty() {
        page.line("**Parameters**");
        page.table(&["Name", "In", "Type", "Required", "Description"], &parameters);
    }

    if let Some(body) = operation.get("requestBody") {
        let required = if body["required"].as_bool().unwrap_or(false) { "required" } else { "optional" };
        for (media, content) in sorted(&body["content"]) {
            let schema = &content["schema"];
            page.line(&format!("**Request body** (`{media}`, {required}): {}", type_of(schema)));
            let resolved = schema["$ref"].as_str().map_or(schema, |r| lookup(doc, r));
            if resolved.get("properties").is_some() {
                property_table(page, resolved);
            }
        }
    }

    page.line("**Responses**");
    let mut rows = Vec::new();
    let mut also = Vec::new();
    for (status, response) in responses(operation) {
        if status.parse().ok().and_then(|s: u16| common.get(&s)) == Some(response) {
            also.push(status);
        } else {
            rows.push(response_row(status, response));
        }
    }
    page.table(&["Status", "Description", "Body"], &rows);
    if !also.is_empty() {
        page.line(&format!("Also {}: see {}.", also.join(", "), link("Common responses", "section:common")));
    }
    for (_, response) in responses(operation) {
        if let Some(description) = response["content"]["text/event-stream"]["schema"]["description"].as_str() {
            page.line(&format!("Events: {description}"));
        }
    }
}

/// An operation's responses, by status.
fn responses(operation: &Value) -> Vec<(&str, &Value)> {
    let mut all = sorted(&operation["responses"]);
    all.sort_by_key(|(status, _)| status.parse::<u16>().unwrap_or(u16::MAX));
    all
}

fn response_row(status: &str, response: &Value) -> Vec<String> {
    let mut bodies = Vec::new();
    for (media, content) in sorted(&response["content"]) {
        match content.get("x-events").and_then(Value::as_array) {
            Some(events) => {
                // Each schema once, with the events whose data it is, in the document's order.
                let mut by_schema: Vec<(String, Vec<String>)> = Vec::new();
                for event in events {
                    let schema = type_of(&event["data"]);
                    let name = format!("`{}`", event["event"].as_str().unwrap_or_default());
                    match by_schema.iter_mut().find(|(s, _)| *s == schema) {
                        Some((_, names)) => names.push(name),
                        None => by_schema.push((schema, vec![name])),
                    }
                }
                let each: Vec<String> =
                    by_schema.into_iter().map(|(schema, names)| format!("{}: {schema}", names.join(", "))).collect();
                bodies.push(format!("`{media}`, events {}", each.join("; ")));
            }
            None => bodies.push(type_of(&content["schema"])),
        }
    }
    vec![status.to_owned(), response["description"].as_str().unwrap_or_default().to_owned(), bodies.join("; ")]
}

//! The text of a search: words, queries, matching and indexed text.

use serde_json::json;

use persist_core::search::{MAX_INDEXED_CHARS, MAX_QUERY_BYTES, MAX_QUERY_TERMS, SearchQuery, indexed_text, words};
use persist_core::{Content, Part, PersistError};

#[test]
fn words_are_runs_of_letters_and_digits() {
    let text = "Héllo, wörld! rate_limit e-mail 3.14 日本語";
    let found: Vec<&str> = words(text).map(|r| &text[r]).collect();
    assert_eq!(found, ["Héllo", "wörld", "rate", "limit", "e", "mail", "3", "14", "日本語"]);
}

#[test]
fn queries_parse_into_words_phrases_and_prefixes() {
    let q = SearchQuery::parse("  Foo \"bar  BAZ\" qu* \"open").unwrap();
    let terms: Vec<_> = q.terms().iter().map(|t| (t.words.clone(), t.prefix)).collect();
    assert_eq!(
        terms,
        [
            (vec!["foo".to_owned()], false),
            (vec!["bar".to_owned(), "baz".to_owned()], false),
            (vec!["qu".to_owned()], true),
            (vec!["open".to_owned()], false),
        ]
    );
    for bad in ["", "   ", "***", "\"\"", "- : ()"] {
        let refused = SearchQuery::parse(bad).unwrap_err();
        assert!(matches!(refused, PersistError::InvalidInput { field: "query", .. }), "{bad:?}: {refused:?}");
    }
    assert!(SearchQuery::parse(&"a ".repeat(MAX_QUERY_TERMS + 1)).is_err());
    assert!(SearchQuery::parse(&"a".repeat(MAX_QUERY_BYTES + 1)).is_err());
}

#[test]
fn matching_follows_the_rules() {
    let text = "The Weather in Lisbon: sunny, rate-limited.";
    let hit = |q: &str| SearchQuery::parse(q).unwrap().matches(text);
    assert!(hit("lisbon weather"), "any order, any case");
    assert!(hit("weath*"), "prefix");
    assert!(hit("\"weather in lisbon\""), "phrase");
    assert!(hit("rate-limited"), "punctuation joins a phrase");
    assert!(!hit("\"lisbon weather\""), "a phrase keeps its order");
    assert!(!hit("weath"), "no prefix without *");
    assert!(!hit("lisbon porto"), "every word");
    assert!(!hit("sun"), "no stemming");
}

#[test]
fn indexed_text_reads_text_and_tool_results_only() {
    let content = Content::from_parts([
        Part::text("one"),
        Part::reasoning("hidden"),
        Part::tool_call("c1", "f", json!({"x": "args"})),
        Part::tool_result("c1", json!([{"type": "text", "text": "two"}, {"type": "image"}])),
        Part::tool_result("c2", json!({"not": "text"})),
    ]);
    assert_eq!(indexed_text(&content).as_deref(), Some("one\ntwo"));
    assert_eq!(indexed_text(&Content::new(json!("plain"))).as_deref(), Some("plain"));
    assert_eq!(indexed_text(&Content::new(json!([{"type": "text", "text": "x", "cache": 1}]))).as_deref(), Some("x"));
    assert_eq!(indexed_text(&Content::placeholder()), None);
    let long = "é".repeat(MAX_INDEXED_CHARS + 10);
    assert_eq!(indexed_text(&Content::text(&long)).unwrap().chars().count(), MAX_INDEXED_CHARS);
}

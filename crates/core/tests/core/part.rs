//! `Part`: typed content blocks and the blocks kept as they are.

use serde_json::json;

use persist_core::{Content, Part};

#[test]
fn every_typed_part_round_trips_through_its_block() {
    let parts = [
        Part::text("hello"),
        Part::reasoning("thinking it over"),
        Part::tool_call("call_1", "get_weather", json!({"city": "Lisbon", "days": [1, 2]})),
        Part::tool_result("call_1", json!({"temp": 21.5})),
        Part::tool_error("call_2", json!("timed out")),
        Part::file("image/png", "https://example.invalid/cat.png"),
        Part::File {
            media_type: "application/pdf".into(),
            uri: "s3://bucket/report.pdf".into(),
            name: Some("report.pdf".into()),
            size: Some(12_345),
        },
    ];
    for part in parts.clone() {
        assert_eq!(Part::from_block(part.to_block()), part, "{part:?}");
    }
    let content = Content::from_parts(parts.clone());
    assert_eq!(content.parts(), parts);
    let stored = Content::from_json(content.as_json().into_owned()).unwrap();
    assert_eq!(stored.parts(), parts, "read back from the stored JSON text");
}

#[test]
fn blocks_that_are_not_exactly_a_typed_part_are_kept_as_they_are() {
    let blocks = json!([
        {"type": "text", "text": "hi", "annotations": []},
        {"type": "image", "url": "https://example.invalid/a.png"},
        {"type": "tool_call", "id": "c", "name": "n"},
        {"type": "tool_result", "call_id": "c", "output": 1, "is_error": "no"},
        {"type": "file", "media_type": "image/png", "uri": "u", "size": -1},
        {"text": "no type"},
        "a string block",
        42
    ]);
    let content = Content::new(blocks.clone());
    let parts = content.parts();
    assert!(parts.iter().all(|part| matches!(part, Part::Other(_))), "{parts:?}");
    assert_eq!(Content::from_parts(parts).to_value(), blocks, "nothing lost on the way back");
    assert_eq!(Content::new(json!("plain")).parts(), [Part::Other(json!("plain"))]);
    assert!(Content::placeholder().parts().is_empty());
}

#[test]
fn text_leaves_reasoning_out_and_tool_parts_are_found() {
    let content = Content::from_parts([
        Part::reasoning("secret plan"),
        Part::text("Sure. "),
        Part::tool_call("call_1", "search", json!({"q": "x"})),
        Part::text("Done."),
        Part::tool_result("call_1", json!(["r"])),
    ]);
    assert_eq!(content.to_text(), "Sure. Done.");
    let calls = content.tool_calls();
    assert_eq!(calls.len(), 1);
    let call = calls[0].as_tool_call().unwrap();
    assert_eq!((call.id, call.name, call.arguments), ("call_1", "search", &json!({"q": "x"})));
    let results = content.tool_results();
    assert_eq!(results[0].as_tool_result().map(|r| (r.call_id, r.is_error)), Some(("call_1", false)));
    assert_eq!(content.parts()[1].as_text(), Some("Sure. "));
}

/// One text block (read without its array, see `Content::parts`) gives the part the array's
/// block gives, whatever the text holds; an array that only looks like one block at its ends
/// is read whole.
#[test]
fn one_text_block_reads_as_the_block_it_is() {
    for text in ["", "plain", "quote \" and \\ backslash", "line\nbreak\ttab \u{1}", "é 😀 \u{2028}"] {
        let content = Content::text(text);
        let literal = content.text_block_json().unwrap().to_owned();
        for read in [content, Content::from_text_block_json(&literal).unwrap()] {
            assert_eq!(read.parts(), vec![Part::text(text)], "{text:?}");
        }
    }
    let two = Content::from_json(r#"[{"text":"a","type":"text"},{"text":"b","type":"text"}]"#).unwrap();
    assert_eq!(two.parts(), vec![Part::text("a"), Part::text("b")]);
    let escaped = Content::from_text_block_json(r#""\u00e9\ud83d\ude00\"""#).unwrap();
    assert_eq!(escaped.parts(), vec![Part::text("é😀\"")]);
}

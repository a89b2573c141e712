//! The fixtures copied from each format's documentation (`fixtures/`, sources in its README),
//! and the round trip every format's tests run them through: import, store as a backend would,
//! export.

use serde_json::Value;

use persist_core::PersistError;
use persist_core::args::{AppendTurn, TurnMessage};
use persist_core::{Content, Message, Metadata, Timestamp};
use persist_core::{MessageId, ThreadId};

/// The cases of a fixture file: each example's name and its elements.
pub(super) fn cases(text: &str) -> Vec<(String, Vec<Value>)> {
    let fixture: Value = serde_json::from_str(text).expect("a fixture is JSON");
    assert!(fixture["source"].is_string(), "a fixture names its source");
    let cases = fixture["cases"].as_array().expect("a fixture has cases");
    cases
        .iter()
        .map(|case| {
            let name = case["example"].as_str().expect("a case names its example").to_owned();
            let elements = case["elements"].as_array().expect("a case has elements").clone();
            (name, elements)
        })
        .collect()
}

/// The messages a backend would answer after writing `turn`: content and metadata read back
/// from their JSON text, ids given where the turn has none.
pub(super) fn stored(turn: Vec<TurnMessage>) -> Vec<Message> {
    let thread = ThreadId::new("fixture").unwrap();
    AppendTurn::of(thread.clone(), turn.clone()).validate().expect("an import is a turn persist writes");
    let now = Timestamp::now();
    turn.into_iter()
        .zip(1..)
        .map(|(message, seq)| Message {
            thread_id: thread.clone(),
            id: message.message_id.unwrap_or_else(MessageId::generate),
            role: message.role,
            content: Content::from_json(message.content.as_json().into_owned()).unwrap(),
            metadata: serde_json::from_str::<Metadata>(&serde_json::to_string(&message.metadata).unwrap()).unwrap(),
            status: message.status,
            seq,
            parent_seq: seq.checked_sub(1).filter(|&parent| parent > 0),
            version: 1,
            idempotency_key: None,
            created_at: now,
            updated_at: now,
        })
        .collect()
}

/// Asserts that every case of the fixture `text` comes back exactly through `import`, a store
/// and `export`.
pub(super) fn assert_round_trips(
    text: &str,
    import: impl Fn(&[Value]) -> Result<Vec<TurnMessage>, PersistError>,
    export: impl Fn(&[Message]) -> Vec<Value>,
) {
    for (name, elements) in cases(text) {
        let turn = import(&elements).unwrap_or_else(|error| panic!("{name}: {error}"));
        assert_eq!(turn.len(), elements.len(), "{name}: one message per element");
        for message in &turn {
            let whole = message.metadata.as_map().values().any(|kept| kept.pointer("/form/original").is_some());
            assert!(!whole, "{name}: a documented message reads as parts, not kept whole: {message:?}");
            if std::env::var_os("PERSIST_SHOW_FIXTURES").is_some() {
                println!(
                    "{name}\n  {}\n  {}",
                    message.content.as_json(),
                    serde_json::to_string(&message.metadata).unwrap()
                );
            }
        }
        let exported = export(&stored(turn));
        assert_eq!(Value::Array(exported), Value::Array(elements), "{name}");
    }
}

//! The ids: validation, text and serde forms, derived and generated ids.

use persist_core::{MAX_ID_BYTES, MessageId, PersistError, ThreadId};

#[test]
fn accepts_ordinary_ids() {
    let id = ThreadId::new("chat:42/α").unwrap();
    assert_eq!(id.as_str(), "chat:42/α");
    assert_eq!(id.to_string(), "chat:42/α");
    assert_eq!("x".parse::<MessageId>().unwrap().as_str(), "x");
}

#[test]
fn rejects_empty_oversize_and_control_characters() {
    for (input, needle) in [
        (String::new(), "empty"),
        ("a".repeat(MAX_ID_BYTES + 1), "limit"),
        ("a\nb".to_owned(), "control"),
        ("\u{0}".to_owned(), "control"),
    ] {
        let err = ThreadId::new(&input).unwrap_err();
        match &err {
            PersistError::InvalidInput { field, reason } => {
                assert_eq!(*field, "thread_id");
                assert!(reason.contains(needle), "{reason}");
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(ThreadId::new("a".repeat(MAX_ID_BYTES)).is_ok());
}

#[test]
fn error_names_the_field() {
    let err = MessageId::new("").unwrap_err();
    assert!(matches!(err, PersistError::InvalidInput { field: "message_id", .. }));
}

#[test]
fn deserialization_validates() {
    let ok: ThreadId = serde_json::from_str("\"t1\"").unwrap();
    assert_eq!(ok.as_str(), "t1");
    assert!(serde_json::from_str::<ThreadId>("\"\"").is_err());
    assert_eq!(serde_json::to_string(&ok).unwrap(), "\"t1\"");
}

#[test]
fn derived_ids_do_not_collide_on_separator_tricks() {
    let t = ThreadId::new("t").unwrap();
    assert_ne!(MessageId::derive(&t, "a:b", "c"), MessageId::derive(&t, "a", "b:c"));
    assert_ne!(MessageId::derive(&t, "a|1:b", "c"), MessageId::derive(&t, "a", "1:b|c"));
    let long = "x".repeat(10_000);
    assert_eq!(MessageId::derive(&t, "1", &long).as_str().len(), 36);
}

#[test]
fn generated_ids_are_time_ordered() {
    let ids: Vec<_> = (0..100).map(|_| MessageId::generate()).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted);
}

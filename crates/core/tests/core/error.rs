//! `PersistError`: which errors are temporary, their HTTP statuses and messages.

use std::time::Duration;

use persist_core::{IdempotencyKey, MessageId, PersistError, PersistOp, ThreadId};

#[test]
fn only_transient_errors_are_temporary() {
    let thread = ThreadId::new("t").unwrap();
    let message = MessageId::new("m").unwrap();
    assert!(PersistError::temporary("busy").is_temporary());
    assert!(PersistError::Timeout { op: PersistOp::Add, after: Duration::from_secs(1) }.is_temporary());
    for permanent in [
        PersistError::invalid("x", "bad"),
        PersistError::not_found(&thread, Some(&message)),
        PersistError::AlreadyExists { thread_id: thread.clone(), message_id: message.clone() },
        PersistError::VersionConflict { thread_id: thread.clone(), message_id: None, expected: 1, actual: 2 },
        PersistError::ThreadDeleted { thread_id: thread.clone() },
        PersistError::rejected("no"),
        PersistError::backend("disk", std::io::Error::other("gone")),
    ] {
        assert!(!permanent.is_temporary(), "{permanent}");
    }
}

#[test]
fn every_error_maps_to_the_http_status_an_api_answers() {
    let thread = ThreadId::new("t").unwrap();
    let message = MessageId::new("m").unwrap();
    let key = IdempotencyKey::new("k").unwrap();
    let statuses = [
        (PersistError::invalid("x", "bad"), 400),
        (PersistError::rejected("no"), 403),
        (PersistError::not_found(&thread, None), 404),
        (PersistError::AlreadyExists { thread_id: thread.clone(), message_id: message.clone() }, 409),
        (
            PersistError::MessageComplete {
                thread_id: thread.clone(),
                message_id: message.clone(),
                status: persist_core::Status::Complete,
            },
            409,
        ),
        (PersistError::VersionConflict { thread_id: thread.clone(), message_id: None, expected: 1, actual: 2 }, 409),
        (PersistError::ThreadDeleted { thread_id: thread.clone() }, 410),
        (PersistError::FeedGap { after: 1, trimmed: 2 }, 410),
        (
            PersistError::IdempotencyKeyReused { thread_id: thread.clone(), idempotency_key: key, message_id: message },
            422,
        ),
        (PersistError::Unsupported { what: "x".into() }, 501),
        (PersistError::temporary("busy"), 503),
        (PersistError::Timeout { op: PersistOp::Add, after: Duration::from_secs(1) }, 504),
        (PersistError::backend("disk", std::io::Error::other("gone")), 500),
    ];
    for (error, status) in statuses {
        assert_eq!(error.status_code(), status, "{error}");
        assert_eq!(error.is_temporary(), status == 503 || status == 504, "{error}");
    }
}

#[test]
fn messages_carry_context() {
    let thread = ThreadId::new("t1").unwrap();
    let message = MessageId::new("m1").unwrap();
    let err = PersistError::not_found(&thread, Some(&message));
    assert_eq!(err.to_string(), "not found: thread t1, message m1");
    let err = PersistError::VersionConflict { thread_id: thread, message_id: Some(message), expected: 3, actual: 4 };
    assert_eq!(err.to_string(), "version conflict on thread t1, message m1: expected 3, found 4");
}

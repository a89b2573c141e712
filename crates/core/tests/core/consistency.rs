//! Commit positions and consistency.

use persist_core::{CommitPosition, Consistency, PersistError};

#[test]
fn positions_read_back_and_bad_text_is_refused() {
    for text in ["0/0", "0/1", "FFFFFFFF/FFFFFFFF", "1/A0"] {
        assert_eq!(text.parse::<CommitPosition>().unwrap().to_string(), text);
    }
    assert_eq!("a/b".parse::<CommitPosition>().unwrap(), CommitPosition::new(0xA_0000_000B));
    for bad in ["", "/", "1/", "/1", "1/2/3", "123456789/0", "0x1/2", "g/1", " 1/2", "1/-2"] {
        let error = bad.parse::<CommitPosition>().unwrap_err();
        assert!(matches!(error, PersistError::InvalidInput { field: "position", .. }), "{bad:?}");
    }
    let json = serde_json::to_string(&CommitPosition::new(0x1_0000_00A0)).unwrap();
    assert_eq!(json, "\"1/A0\"");
    assert_eq!(serde_json::from_str::<CommitPosition>(&json).unwrap(), CommitPosition::new(0x1_0000_00A0));
    assert!(serde_json::from_str::<CommitPosition>("\"nope\"").is_err());
}

#[test]
fn a_consistency_keeps_the_newest_position_for_every_clone() {
    let seen = Consistency::new();
    let clone = seen.clone();
    assert!(seen.same(&clone) && !seen.same(&Consistency::new()));
    clone.observe(CommitPosition::new(7));
    seen.observe(CommitPosition::new(3));
    assert_eq!(seen.position(), Some(CommitPosition::new(7)));
    assert_eq!(Consistency::after(CommitPosition::new(9)).position(), Some(CommitPosition::new(9)));
}

//! `Search` and its cursor.

use persist_core::search::{Search, SearchCursor};
use persist_core::{PersistError, TenantId, ThreadId, Timestamp};

#[test]
fn cursors_round_trip_as_text() {
    let plain = SearchCursor::new(Timestamp::from_micros(-5), None, ThreadId::new("a:b-c").unwrap(), 7);
    let tenant = Some(TenantId::new("ac+1:me").unwrap());
    let scoped = SearchCursor::new(Timestamp::from_micros(42), tenant, ThreadId::new("t").unwrap(), 1);
    for cursor in [plain, scoped] {
        let text = cursor.to_string();
        assert_eq!(text.parse::<SearchCursor>().unwrap(), cursor, "{text}");
        let json = serde_json::to_string(&cursor).unwrap();
        assert_eq!(serde_json::from_str::<SearchCursor>(&json).unwrap(), cursor);
    }
    for bad in ["", "1", "1:2", "1:2:x", "x:2-0:t", "1:2+9:t", "1:2-1:tt", "1:2+0:t", "1:2-0:"] {
        assert!(bad.parse::<SearchCursor>().is_err(), "{bad}");
    }
}

#[test]
fn a_search_is_checked_before_it_runs() {
    assert!(Search::new("x").validate().is_ok());
    let field = |s: Search| match s.validate().unwrap_err() {
        PersistError::InvalidInput { field, .. } => field,
        other => panic!("{other:?}"),
    };
    assert_eq!(field(Search::new("  ")), "query");
    assert_eq!(field(Search::new("x").with_limit(0)), "limit");
    let at = Timestamp::from_micros(10);
    assert_eq!(field(Search::new("x").since(at).until(at)), "until");
    let theirs = SearchCursor::new(at, Some(TenantId::new("them").unwrap()), ThreadId::new("t").unwrap(), 1);
    assert_eq!(field(Search::new("x").with_cursor(Some(theirs.clone()))), "cursor");
    assert!(Search::new("x").with_cursor(Some(theirs)).across_tenants(true).validate().is_ok());
}

//! `ListThreads` and its cursor.

use persist_core::read::{ListThreads, ThreadCursor};
use persist_core::{Context, PersistError, TenantId, ThreadId, Timestamp};

#[test]
fn thread_cursor_round_trips_and_rejects_garbage() {
    let c = ThreadCursor::new(Timestamp::from_micros(42), None, ThreadId::new("a:b").unwrap());
    let text = serde_json::to_string(&c).unwrap();
    assert_eq!(text, "\"42:a:b\"");
    assert_eq!(serde_json::from_str::<ThreadCursor>(&text).unwrap(), c);
    let tenant = Some(TenantId::new("ac+1:me").unwrap());
    let c = ThreadCursor::new(Timestamp::from_micros(-7), tenant, ThreadId::new("a:b").unwrap());
    let text = c.to_string();
    assert_eq!(text, "-7+7:ac+1:mea:b");
    assert_eq!(text.parse::<ThreadCursor>().unwrap(), c);
    for bad in ["", "x:y", "12", "12:", "12+9:ab", "12+x:ab", "12+2:ab", "12+0:ab"] {
        assert!(bad.parse::<ThreadCursor>().is_err(), "{bad}");
    }
}

#[test]
fn a_listing_continues_only_from_its_own_tenants_cursor() {
    let acme = TenantId::new("acme").unwrap();
    let cursor = ThreadCursor::new(Timestamp::from_micros(1), Some(acme.clone()), ThreadId::new("t").unwrap());
    let listing = ListThreads::new().with_cursor(Some(cursor));
    let refused = listing.clone().validate().unwrap_err();
    assert!(matches!(refused, PersistError::InvalidInput { field: "cursor", .. }), "{refused:?}");
    assert!(listing.clone().with_context(Context::new().with_tenant(acme)).validate().is_ok());
    assert!(listing.across_tenants(true).validate().is_ok(), "an operator's listing spans tenants");
}

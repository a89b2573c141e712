//! The reads: limits, role filters and next pages.

use persist_core::read::{ListMessages, ListThreads, MAX_PAGE_LIMIT, Order, Page};
use persist_core::{PersistError, Role, ThreadId};

#[test]
fn limits_are_checked() {
    let t = ThreadId::new("t").unwrap();
    assert!(ListMessages::new(t.clone()).with_limit(0).validate().is_err());
    assert!(ListMessages::new(t.clone()).with_limit(MAX_PAGE_LIMIT + 1).validate().is_err());
    assert!(ListMessages::new(t).with_limit(MAX_PAGE_LIMIT).validate().is_ok());
    assert!(ListThreads::new().with_limit(0).validate().is_err());
}

#[test]
fn a_role_filter_admits_by_name_and_refuses_what_no_message_has() {
    let t = ThreadId::new("t").unwrap();
    let any = ListMessages::new(t.clone());
    assert!(any.admits_role(&Role::Tool) && any.role_names().is_none(), "no filter: every role");
    assert!(any.clone().with_roles([]).roles.is_empty(), "an empty filter is no filter");
    let some = any.clone().with_roles([Role::System, Role::new("critic").unwrap()]);
    assert_eq!(some.role_names(), Some(vec!["system", "critic"]));
    assert!(some.admits_role(&Role::System) && some.admits_role(&Role::Other("critic".into())));
    assert!(!some.admits_role(&Role::User) && !some.admits_role(&Role::new("Critic").unwrap()));
    assert!(some.validate().is_ok());
    assert!(any.clone().with_roles([Role::new("nobody").unwrap()]).validate().is_ok(), "matches nothing");
    for bad in ["", "a\u{0}b", &"x".repeat(persist_core::MAX_ROLE_BYTES + 1)] {
        let refused = any.clone().with_roles([Role::Other(bad.into())]).validate().unwrap_err();
        assert!(matches!(refused, PersistError::InvalidInput { field: "roles", .. }), "{bad:?}: {refused:?}");
    }
}

#[test]
fn next_page_follows_the_order() {
    let t = ThreadId::new("t").unwrap();
    let page: Page<()> = Page::new(vec![(), ()], Some(7), true);
    assert_eq!(ListMessages::new(t.clone()).next_page(&page).unwrap().after, Some(7));
    let desc = ListMessages::new(t).with_order(Order::Desc);
    assert_eq!(desc.next_page(&page).unwrap().before, Some(7));
    let last: Page<()> = Page::new(vec![()], Some(9), false);
    assert!(desc.next_page(&last).is_none());
}

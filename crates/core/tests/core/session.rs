//! Sessions: resolutions, work dirs and binding ids.

use persist_core::session::{Bind, BindingState, FreshReason, MAX_WORK_DIR_BYTES, Resolution, Resolve, SessionBinding};
use persist_core::{AgentId, PersistError, ProviderId, RuntimeId, SessionId, ThreadId, Timestamp};

fn binding(provider: &str, runtime: Option<&str>) -> SessionBinding {
    SessionBinding {
        agent_id: AgentId::new("a").unwrap(),
        thread_id: ThreadId::new("t").unwrap(),
        session_id: SessionId::new("s").unwrap(),
        provider: ProviderId::new(provider).unwrap(),
        runtime_id: runtime.map(|r| RuntimeId::new(r).unwrap()),
        work_dir: Some("/work/t".into()),
        created_at: Timestamp::from_micros(1),
        updated_at: Timestamp::from_micros(2),
    }
}

fn ask(provider: &str, runtime: Option<&str>) -> Resolve {
    let q = Resolve::new(AgentId::new("a").unwrap(), ThreadId::new("t").unwrap(), ProviderId::new(provider).unwrap());
    match runtime {
        Some(r) => q.with_runtime(RuntimeId::new(r).unwrap()),
        None => q,
    }
}

#[test]
fn decide_names_every_reason_and_keeps_the_work_dir() {
    let fresh = |reason| Resolution::Fresh { reason, work_dir: Some("/work/t".into()) };
    assert_eq!(
        Resolution::decide(None, &ask("p", None)),
        Resolution::Fresh { reason: FreshReason::NoBinding, work_dir: None }
    );
    let active = Some((binding("p", Some("r1")), BindingState::Active));
    assert_eq!(Resolution::decide(active.clone(), &ask("p", Some("r1"))), Resolution::Resume(binding("p", Some("r1"))));
    assert_eq!(Resolution::decide(active.clone(), &ask("q", Some("r1"))), fresh(FreshReason::ProviderChanged));
    assert_eq!(Resolution::decide(active.clone(), &ask("p", Some("r2"))), fresh(FreshReason::RuntimeChanged));
    assert_eq!(Resolution::decide(active, &ask("p", None)), fresh(FreshReason::RuntimeChanged));
    let reset = Some((binding("p", None), BindingState::Reset));
    assert_eq!(Resolution::decide(reset, &ask("p", None)), fresh(FreshReason::Reset));
    let dead = Some((binding("p", None), BindingState::Invalidated));
    assert_eq!(Resolution::decide(dead, &ask("p", None)), fresh(FreshReason::Invalidated));
}

#[test]
fn work_dir_is_validated() {
    let bind = |dir: &str| {
        Bind::new(
            AgentId::new("a").unwrap(),
            ThreadId::new("t").unwrap(),
            SessionId::new("s").unwrap(),
            ProviderId::new("p").unwrap(),
        )
        .with_work_dir(dir)
    };
    assert!(bind("/home/agent/t").validate().is_ok());
    for bad in ["", "a\nb", &"d".repeat(MAX_WORK_DIR_BYTES + 1)] {
        assert!(matches!(bind(bad).validate(), Err(PersistError::InvalidInput { field: "work_dir", .. })));
    }
}

#[test]
fn binding_ids_are_validated_with_their_field_names() {
    let long = "p".repeat(persist_core::MAX_ID_BYTES + 1);
    assert!(matches!(ProviderId::new(&long), Err(PersistError::InvalidInput { field: "provider", .. })));
    assert!(matches!(AgentId::new(""), Err(PersistError::InvalidInput { field: "agent_id", .. })));
    assert!(matches!(SessionId::new("a\tb"), Err(PersistError::InvalidInput { field: "session_id", .. })));
    assert!(matches!(RuntimeId::new(""), Err(PersistError::InvalidInput { field: "runtime_id", .. })));
}

#[test]
fn every_reason_has_a_user_message() {
    for reason in [
        FreshReason::NoBinding,
        FreshReason::Reset,
        FreshReason::ProviderChanged,
        FreshReason::RuntimeChanged,
        FreshReason::Invalidated,
    ] {
        assert!(!reason.user_message().is_empty());
        assert!(!reason.to_string().is_empty());
    }
}

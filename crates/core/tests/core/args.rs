//! The accessors and validation of `PersistArgs`, every variant.

use serde_json::json;

use persist_core::args::{
    Add, AppendTurn, Delete, MAX_TITLE_BYTES, Reserve, Restore, TurnMessage, Update, UpdateContent,
};
use persist_core::branch::ListBranches;
use persist_core::feed::ReadFeed;
use persist_core::once::SetOnce;
use persist_core::read::{FindStranded, GetMessage, GetThread, ListMessages, ListThreads, Ping};
use persist_core::session::{Bind, InvalidateSession, ListBindings, ResetSession, Resolve};
use persist_core::{
    Content, Context, MessageId, Metadata, PersistArgs, PersistError, PersistOp, Role, TenantId, ThreadId,
};

fn thread() -> ThreadId {
    ThreadId::new("t1").unwrap()
}

#[test]
fn accessors_cover_every_variant() {
    use persist_core::{AgentId, ProviderId, SessionId};
    let m = MessageId::new("m1").unwrap();
    let (agent, session) = (AgentId::new("a").unwrap(), SessionId::new("s").unwrap());
    let provider = ProviderId::new("p").unwrap();
    let all: Vec<PersistArgs> = vec![
        Add::new(thread(), Role::User, Content::text("a")).with_id(m.clone()).into(),
        Reserve::new(thread(), Role::Assistant).into(),
        UpdateContent::new(thread(), m.clone(), Content::text("b")).into(),
        Update::message(thread(), m.clone()).with_role(Role::Tool).into(),
        Delete::thread(thread()).into(),
        Restore::new(
            persist_core::Thread {
                id: thread(),
                tenant: None,
                title: None,
                metadata: Metadata::new(),
                version: 1,
                created_at: persist_core::Timestamp::now(),
                updated_at: persist_core::Timestamp::now(),
                last_seq: 0,
                message_count: 0,
                active_leaf: None,
                deleted_at: None,
            },
            Vec::new(),
        )
        .into(),
        AppendTurn::new(thread()).with_message(TurnMessage::new(Role::User, Content::text("c"))).into(),
        GetMessage::new(thread(), m.clone()).into(),
        GetThread::new(thread()).into(),
        ListMessages::new(thread()).into(),
        ListThreads::new().into(),
        ListBranches::leaves(thread()).into(),
        FindStranded::new(persist_core::Timestamp::now()).into(),
        Resolve::new(agent.clone(), thread(), provider.clone()).into(),
        Bind::new(agent.clone(), thread(), session.clone(), provider).into(),
        ResetSession::new(agent.clone(), thread()).into(),
        InvalidateSession::new(agent, thread(), session).into(),
        ListBindings::new(thread()).into(),
        Ping::new().into(),
        ReadFeed::thread(thread()).into(),
        SetOnce::new("name", "value").unwrap().into(),
        persist_core::summary::Summarize::new(thread(), 1, Content::text("s")).into(),
        persist_core::summary::ListSummaries::new(thread()).into(),
        persist_core::summary::ReadCompacted::new(thread()).into(),
        persist_core::lease::Lease::take(thread(), "n", "h", std::time::Duration::from_secs(1)).unwrap().into(),
        persist_core::search::Search::new("words").into(),
        persist_core::vector::Embed::new(thread(), m.clone(), persist_core::vector::Embedding::new("e", vec![1.0]))
            .into(),
        persist_core::vector::Nearest::new(persist_core::vector::Embedding::new("e", vec![1.0])).into(),
        persist_core::working::ReadMemory::new(persist_core::ResourceId::new("r").unwrap()).into(),
        persist_core::working::WriteMemory::clear(persist_core::ResourceId::new("r").unwrap()).into(),
        persist_core::working::ListMemories::new().into(),
        persist_core::vector::ListEmbeddings::new(thread()).into(),
        persist_core::records::WriteRecords::new(vec![persist_core::records::RecordWrite::Sweep]).into(),
        persist_core::records::ReadRecords::space("s").into(),
    ];
    let ops: Vec<_> = all.iter().map(PersistArgs::op).collect();
    assert_eq!(ops, PersistOp::ALL);
    for args in &all {
        let across_threads = matches!(
            args.op(),
            PersistOp::Threads
                | PersistOp::FindStranded
                | PersistOp::Ping
                | PersistOp::SetOnce
                | PersistOp::ReadMemory
                | PersistOp::WriteMemory
                | PersistOp::ListMemories
                | PersistOp::WriteRecords
                | PersistOp::ReadRecords
        ) || matches!(args, PersistArgs::Search(search) if search.thread_id().is_none())
            || matches!(args, PersistArgs::Nearest(query) if query.thread_id.is_none());
        assert_eq!(args.thread_id().is_none(), across_threads, "{:?}", args.op());
        assert!(args.thread_id().is_none_or(|t| *t == thread()));
    }
    assert_eq!(all[0].message_id(), Some(&m));
    assert_eq!(all[1].message_id(), None);
    assert_eq!(all[3].message_id(), Some(&m));
    assert_eq!(all[4].message_id(), None);
    assert_eq!(all[5].message_id(), None);
    assert_eq!(all[6].message_id(), None);
    assert_eq!(all[7].message_id(), Some(&m));
}

#[test]
fn validate_refuses_meaningless_updates() {
    let m = MessageId::new("m1").unwrap();
    use persist_core::branch::Switch;
    let other = MessageId::new("m2").unwrap();
    let cases: Vec<(PersistArgs, &str)> = vec![
        (Update::message(thread(), m.clone()).into(), "update"),
        (Update::message(thread(), m).with_title(Some("x".into())).into(), "title"),
        (Update::thread(thread()).with_role(Role::User).into(), "role"),
        (Update::message(thread(), other.clone()).with_switch(Switch::To(other)).into(), "switch"),
        (Update::thread(thread()).with_title(Some("x".repeat(MAX_TITLE_BYTES + 1))).into(), "title"),
    ];
    for (args, field) in cases {
        match args.validate() {
            Err(PersistError::InvalidInput { field: got, .. }) => assert_eq!(got, field),
            other => panic!("{args:?} gave {other:?}"),
        }
    }
    let ok: PersistArgs = Update::thread(thread()).with_metadata(Metadata::new().with("a", json!(1))).into();
    assert!(ok.validate().is_ok());
}

#[test]
fn args_round_trip_through_json_with_their_context() {
    let ctx = Context::new().with_tenant(TenantId::new("acme").unwrap()).with_principal("u1");
    let id = ctx.request_id().clone();
    let args: PersistArgs = Add::new(thread(), Role::User, Content::text("hi"))
        .with_metadata(Metadata::new().with("k", json!("v")))
        .with_context(ctx)
        .into();
    let text = serde_json::to_string(&args).unwrap();
    assert!(text.contains("\"op\":\"add\""), "{text}");
    let back: PersistArgs = serde_json::from_str(&text).unwrap();
    assert_eq!(back.context().request_id(), &id);
    assert_eq!(back.context().tenant().unwrap().as_str(), "acme");
    assert_eq!(back.context().principal(), Some("u1"));
    assert_eq!(back.content(), args.content());
}

#[test]
fn request_id_is_stable_across_clones_once_read() {
    let ctx = Context::new();
    let id = ctx.request_id().clone();
    assert_eq!(ctx.clone().request_id(), &id);
}

#[test]
fn an_embedding_travels_with_its_write_and_is_checked_there() {
    use persist_core::args::{AppendTurn, TurnMessage};
    use persist_core::vector::Embedding;
    let plain: PersistArgs = Add::new(thread(), Role::User, Content::text("hi")).into();
    assert!(!plain.uses_vectors());
    let add = Add::new(thread(), Role::User, Content::text("hi")).with_embedding(Embedding::new("m", vec![1.0, 2.0]));
    let args: PersistArgs = add.into();
    assert!(args.uses_vectors() && args.validate().is_ok());
    let back: PersistArgs = serde_json::from_str(&serde_json::to_string(&args).unwrap()).unwrap();
    assert!(matches!(&back, PersistArgs::Add(add) if add.embedding == Some(Embedding::new("m", vec![1.0, 2.0]))));
    let text = serde_json::to_string(&plain).unwrap();
    assert!(!text.contains("embedding"), "none: not written out ({text})");

    let embedded =
        |vector: Vec<f32>| TurnMessage::new(Role::User, Content::text("x")).with_embedding(Embedding::new("m", vector));
    let invalid = |turn: AppendTurn| match PersistArgs::from(turn).validate() {
        Err(PersistError::InvalidInput { field, reason }) => (field, reason.into_owned()),
        other => panic!("expected InvalidInput, got {other:?}"),
    };
    let zero = Add::new(thread(), Role::User, Content::text("hi")).with_embedding(Embedding::new("m", vec![0.0]));
    assert!(matches!(PersistArgs::from(zero).validate(), Err(PersistError::InvalidInput { field: "embedding", .. })));
    let (field, reason) = invalid(AppendTurn::of(thread(), [embedded(vec![1.0]), embedded(vec![1.0, 2.0])]));
    assert!(field == "embedding" && reason.contains("message 1") && reason.contains("earlier message"), "{reason}");
    let reply = TurnMessage::reservation(Role::Assistant).with_embedding(Embedding::new("m", vec![1.0]));
    let (field, reason) = invalid(AppendTurn::of(thread(), [embedded(vec![1.0]), reply]));
    assert!(field == "embedding" && reason.contains("reservation"), "{reason}");
    let turn: PersistArgs = AppendTurn::of(thread(), [embedded(vec![1.0]), embedded(vec![2.0])]).into();
    assert!(turn.uses_vectors() && turn.validate().is_ok());
    let plain_turn = turn.without_embeddings().expect("it carries some");
    assert!(!plain_turn.uses_vectors() && plain_turn.without_embeddings().is_none());
    assert!(!args.without_embeddings().expect("it carries one").uses_vectors());
    assert!(plain.without_embeddings().is_none());
}

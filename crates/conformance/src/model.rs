//! Model-based check: seeded random operations, compared with a reference model at every step.
//!
//! The generator mixes every operation over a few threads, ids and idempotency keys so that
//! collisions (repeats, conflicts, stale versions, writes after deletes) are frequent. After
//! each step the backend's answer (or error kind) and its whole visible state must equal the
//! model's. A failure prints the seed; rerun it with `PERSIST_CONFORMANCE_SEED=<seed>`.

use std::collections::BTreeMap;

use persist_core::args::{Add, Delete, Reserve, Update, UpdateContent};
use persist_core::{
    Backend, Content, IdempotencyKey, Message, MessageId, Metadata, PersistArgs, PersistError, PersistResult, Role,
    Status, Target, ThreadId, Updated,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use crate::fixture::{all_messages, thread};
use crate::{Factory, Outcome};

const THREADS: [&str; 3] = ["model-0", "model-1", "model-2"];
const IDS: [&str; 4] = ["a", "b", "c", "d"];
const KEYS: [&str; 2] = ["k1", "k2"];
const STEPS: usize = 150;
const DEFAULT_SEEDS: [u64; 3] = [0x5eed_0001, 0x5eed_0002, 0x5eed_0003];

/// A message as the model sees it (timestamps are not modelled).
#[derive(Debug, Clone, PartialEq)]
struct ModelMessage {
    id: MessageId,
    role: Role,
    content: Content,
    metadata: Metadata,
    status: Status,
    seq: u64,
    version: u64,
    key: Option<IdempotencyKey>,
}

impl From<&Message> for ModelMessage {
    fn from(m: &Message) -> Self {
        Self {
            id: m.id.clone(),
            role: m.role.clone(),
            content: m.content.clone(),
            metadata: m.metadata.clone(),
            status: m.status,
            seq: m.seq,
            version: m.version,
            key: m.idempotency_key.clone(),
        }
    }
}

#[derive(Debug, Clone, Default)]
struct ModelThread {
    exists: bool,
    deleted: bool,
    last_seq: u64,
    version: u64,
    title: Option<String>,
    metadata: Metadata,
    messages: BTreeMap<u64, ModelMessage>,
    /// The keys of removed messages, each with its message as it went (see `persist::spent`).
    spent: BTreeMap<IdempotencyKey, ModelMessage>,
}

impl ModelThread {
    /// Removes `removed`, keeping the keys they carry.
    fn spend(&mut self, removed: impl IntoIterator<Item = ModelMessage>) -> Vec<MessageId> {
        let mut ids = Vec::new();
        for message in removed {
            ids.push(message.id.clone());
            if let Some(key) = message.key.clone() {
                self.spent.insert(key, message);
            }
        }
        ids
    }
}

/// The part of an answer the model predicts.
#[derive(Debug, Clone, PartialEq)]
enum Answer {
    Message { message: ModelMessage, deduplicated: bool },
    Thread { version: u64, title: Option<String>, metadata: Metadata },
    Deleted(Vec<MessageId>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ErrorKind {
    NotFound,
    AlreadyExists,
    KeyReused,
    VersionConflict,
    ThreadDeleted,
    InvalidInput,
    MessageComplete,
    Other,
}

fn kind(error: &PersistError) -> ErrorKind {
    match error {
        PersistError::NotFound { .. } => ErrorKind::NotFound,
        PersistError::AlreadyExists { .. } => ErrorKind::AlreadyExists,
        PersistError::IdempotencyKeyReused { .. } => ErrorKind::KeyReused,
        PersistError::VersionConflict { .. } => ErrorKind::VersionConflict,
        PersistError::ThreadDeleted { .. } => ErrorKind::ThreadDeleted,
        PersistError::InvalidInput { .. } => ErrorKind::InvalidInput,
        PersistError::MessageComplete { .. } => ErrorKind::MessageComplete,
        _ => ErrorKind::Other,
    }
}

fn observed(result: &Result<PersistResult, PersistError>) -> Result<Answer, ErrorKind> {
    match result {
        Err(error) => Err(kind(error)),
        Ok(PersistResult::Updated(Updated::Thread(th))) => {
            Ok(Answer::Thread { version: th.version, title: th.title.clone(), metadata: th.metadata.clone() })
        }
        Ok(PersistResult::Deleted(deleted)) => Ok(Answer::Deleted(deleted.message_ids.clone())),
        Ok(other) => match other.message() {
            Some(message) => Ok(Answer::Message { message: message.into(), deduplicated: other.is_deduplicated() }),
            None => Err(ErrorKind::Other),
        },
    }
}

#[derive(Debug, Default)]
struct Model {
    threads: BTreeMap<ThreadId, ModelThread>,
}

fn check_version(expected: Option<u64>, actual: u64) -> Result<(), ErrorKind> {
    match expected {
        Some(expected) if expected != actual => Err(ErrorKind::VersionConflict),
        _ => Ok(()),
    }
}

impl Model {
    /// Applies `args` to the model. `generated` is the id the backend chose when the request
    /// named none (ids are the backend's to generate).
    fn apply(&mut self, args: &PersistArgs, generated: Option<&MessageId>) -> Result<Answer, ErrorKind> {
        if args.validate().is_err() {
            return Err(ErrorKind::InvalidInput);
        }
        // The model generates message writes only: each names its thread.
        let Some(thread_id) = args.thread_id() else { return Err(ErrorKind::Other) };
        let th = self.threads.entry(thread_id.clone()).or_default();
        match args {
            PersistArgs::Add(_) | PersistArgs::Reserve(_) => {
                let (id, role, content, metadata, status, key) = match args {
                    PersistArgs::Add(a) => {
                        (&a.message_id, &a.role, a.content.clone(), &a.metadata, Status::Complete, &a.idempotency_key)
                    }
                    PersistArgs::Reserve(r) => (
                        &r.message_id,
                        &r.role,
                        Content::placeholder(),
                        &r.metadata,
                        Status::Reserved,
                        &r.idempotency_key,
                    ),
                    _ => unreachable!("matched above"),
                };
                if th.deleted {
                    return Err(ErrorKind::ThreadDeleted);
                }
                if let Some(existing) =
                    key.as_ref().and_then(|k| th.messages.values().find(|m| m.key.as_ref() == Some(k)))
                {
                    // The same request again, or the key reused for another one: told apart
                    // while the message is as the key's request wrote it (version 1).
                    let same = existing.version > 1
                        || (existing.status == status
                            && existing.role == *role
                            && existing.metadata == *metadata
                            && existing.content == content);
                    return if same {
                        Ok(Answer::Message { message: existing.clone(), deduplicated: true })
                    } else {
                        Err(ErrorKind::KeyReused)
                    };
                }
                if let Some(gone) = key.as_ref().and_then(|k| th.spent.get(k)) {
                    // Its message was removed: the first call's answer, rebuilt from the request.
                    let same = gone.version > 1
                        || (gone.status == status
                            && gone.role == *role
                            && gone.metadata == *metadata
                            && gone.content == content);
                    if !same {
                        return Err(ErrorKind::KeyReused);
                    }
                    let message = ModelMessage {
                        id: gone.id.clone(),
                        role: role.clone(),
                        content,
                        metadata: metadata.clone(),
                        status,
                        seq: gone.seq,
                        version: 1,
                        key: key.clone(),
                    };
                    return Ok(Answer::Message { message, deduplicated: true });
                }
                if let Some(existing) = id.as_ref().and_then(|id| th.messages.values().find(|m| &m.id == id)) {
                    let same = existing.role == *role
                        && existing.metadata == *metadata
                        && existing.key == *key
                        && (status == Status::Reserved
                            || (existing.status == Status::Complete && existing.content == content));
                    return if same {
                        Ok(Answer::Message { message: existing.clone(), deduplicated: true })
                    } else {
                        Err(ErrorKind::AlreadyExists)
                    };
                }
                let id = id
                    .clone()
                    .or_else(|| generated.cloned())
                    .unwrap_or_else(|| MessageId::new("<not generated>").unwrap());
                if !th.exists {
                    *th = ModelThread { exists: true, version: 1, ..ModelThread::default() };
                }
                th.last_seq += 1;
                let message = ModelMessage {
                    id,
                    role: role.clone(),
                    content,
                    metadata: metadata.clone(),
                    status,
                    seq: th.last_seq,
                    version: 1,
                    key: key.clone(),
                };
                th.messages.insert(message.seq, message.clone());
                Ok(Answer::Message { message, deduplicated: false })
            }
            PersistArgs::UpdateContent(u) => {
                if !th.exists {
                    return Err(ErrorKind::NotFound);
                }
                if th.deleted {
                    return Err(ErrorKind::ThreadDeleted);
                }
                let message = th.messages.values_mut().find(|m| m.id == u.message_id).ok_or(ErrorKind::NotFound)?;
                check_version(u.expected_version, message.version)?;
                // Partial content never reopens a complete or interrupted message, and a
                // complete one cannot be marked interrupted (the model's updates never append).
                let refused = match message.status {
                    Status::Reserved => false,
                    Status::Interrupted => !u.finalize && !u.interrupt,
                    Status::Complete => !u.finalize || u.interrupt,
                };
                if refused {
                    return Err(ErrorKind::MessageComplete);
                }
                message.content = u.content.clone();
                if u.interrupt {
                    message.status = Status::Interrupted;
                } else if u.finalize {
                    message.status = Status::Complete;
                }
                message.version += 1;
                Ok(Answer::Message { message: message.clone(), deduplicated: false })
            }
            PersistArgs::Update(u) => {
                if !th.exists {
                    return Err(ErrorKind::NotFound);
                }
                if th.deleted {
                    return Err(ErrorKind::ThreadDeleted);
                }
                match &u.target {
                    Target::Message(id) => {
                        let message = th.messages.values_mut().find(|m| &m.id == id).ok_or(ErrorKind::NotFound)?;
                        check_version(u.expected_version, message.version)?;
                        if let Some(patch) = &u.metadata {
                            message.metadata.merge(patch);
                        }
                        if let Some(role) = &u.role {
                            message.role = role.clone();
                        }
                        message.version += 1;
                        Ok(Answer::Message { message: message.clone(), deduplicated: false })
                    }
                    Target::Thread => {
                        check_version(u.expected_version, th.version)?;
                        if let Some(patch) = &u.metadata {
                            th.metadata.merge(patch);
                        }
                        if let Some(title) = &u.title {
                            th.title = title.clone();
                        }
                        th.version += 1;
                        Ok(Answer::Thread {
                            version: th.version,
                            title: th.title.clone(),
                            metadata: th.metadata.clone(),
                        })
                    }
                    Target::MessagesAfter(_) | Target::Covered => Err(ErrorKind::InvalidInput),
                }
            }
            PersistArgs::Delete(d) => {
                if !th.exists || th.deleted {
                    return Ok(Answer::Deleted(Vec::new()));
                }
                match &d.target {
                    Target::Message(id) => {
                        let Some(message) = th.messages.values().find(|m| &m.id == id) else {
                            return Ok(Answer::Deleted(Vec::new()));
                        };
                        check_version(d.expected_version, message.version)?;
                        let seq = message.seq;
                        let removed = th.messages.remove(&seq);
                        Ok(Answer::Deleted(th.spend(removed)))
                    }
                    Target::Thread => {
                        check_version(d.expected_version, th.version)?;
                        th.deleted = true;
                        let ids = std::mem::take(&mut th.messages).into_values().map(|m| m.id).collect();
                        Ok(Answer::Deleted(ids))
                    }
                    Target::MessagesAfter(seq) => {
                        check_version(d.expected_version, th.version)?;
                        let removed = th.messages.split_off(&seq.saturating_add(1));
                        if !removed.is_empty() {
                            th.version += 1;
                        }
                        Ok(Answer::Deleted(th.spend(removed.into_values())))
                    }
                    // Not generated: summaries are not modelled (the `compaction` group checks them).
                    Target::Covered => Err(ErrorKind::Other),
                }
            }
            _ => Err(ErrorKind::Other),
        }
    }

    /// A random request that often collides with what is already there.
    fn generate(&self, rng: &mut StdRng) -> PersistArgs {
        let thread_id = ThreadId::new(THREADS[rng.random_range(0..THREADS.len())]).unwrap();
        let th = self.threads.get(&thread_id);
        let known: Vec<&ModelMessage> = th.map(|th| th.messages.values().collect()).unwrap_or_default();
        let pick_id = |rng: &mut StdRng| -> MessageId {
            if !known.is_empty() && rng.random_bool(0.7) {
                known[rng.random_range(0..known.len())].id.clone()
            } else {
                MessageId::new(IDS[rng.random_range(0..IDS.len())]).unwrap()
            }
        };
        let version_of = |rng: &mut StdRng, actual: Option<u64>| -> Option<u64> {
            match rng.random_range(0..10) {
                0..=6 => None,
                7 | 8 => actual.or(Some(1)),
                _ => Some(actual.unwrap_or(1) + rng.random_range(1..3)),
            }
        };
        let text = |rng: &mut StdRng| Content::text(format!("text-{}", rng.random_range(0..4)));
        let role = |rng: &mut StdRng| [Role::User, Role::Assistant][rng.random_range(0..2)].clone();
        let meta = |rng: &mut StdRng| {
            let mut m = Metadata::new();
            for key in ["x", "y"] {
                if rng.random_bool(0.5) {
                    let value: Value =
                        [json!(1), json!("s"), Value::Null, json!({"n": [1]})][rng.random_range(0..4)].clone();
                    m = m.with(key, value);
                }
            }
            m
        };
        let no_nulls = |m: Metadata| -> Metadata {
            Metadata::from(
                m.as_map()
                    .iter()
                    .filter(|(_, v)| !v.is_null())
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect::<serde_json::Map<_, _>>(),
            )
        };
        let key = |rng: &mut StdRng| {
            rng.random_bool(0.3).then(|| IdempotencyKey::new(KEYS[rng.random_range(0..KEYS.len())]).unwrap())
        };

        match rng.random_range(0..100) {
            0..=29 => {
                let mut add = Add::new(thread_id, role(rng), text(rng)).with_metadata(no_nulls(meta(rng)));
                if rng.random_bool(0.5) {
                    add = add.with_id(pick_id(rng));
                }
                if let Some(k) = key(rng) {
                    add = add.with_idempotency_key(k);
                }
                add.into()
            }
            30..=44 => {
                let mut reserve = Reserve::new(thread_id, Role::Assistant);
                if rng.random_bool(0.5) {
                    reserve = reserve.with_id(pick_id(rng));
                }
                if let Some(k) = key(rng) {
                    reserve = reserve.with_idempotency_key(k);
                }
                reserve.into()
            }
            45..=64 => {
                let id = pick_id(rng);
                let actual = known.iter().find(|m| m.id == id).map(|m| m.version);
                let mut update = UpdateContent::new(thread_id, id, text(rng))
                    .with_finalize(rng.random_bool(0.6))
                    .with_interrupt(rng.random_bool(0.15));
                if let Some(v) = version_of(rng, actual) {
                    update = update.with_expected_version(v);
                }
                update.into()
            }
            65..=79 => {
                let id = pick_id(rng);
                let actual = known.iter().find(|m| m.id == id).map(|m| m.version);
                let mut update = Update::message(thread_id, id);
                if rng.random_bool(0.8) {
                    update = update.with_metadata(meta(rng));
                }
                if rng.random_bool(0.3) {
                    update = update.with_role(role(rng));
                }
                if let Some(v) = version_of(rng, actual) {
                    update = update.with_expected_version(v);
                }
                update.into()
            }
            80..=87 => {
                let actual = th.map(|th| th.version);
                let mut update = Update::thread(thread_id).with_metadata(meta(rng));
                if rng.random_bool(0.5) {
                    update =
                        update.with_title(rng.random_bool(0.8).then(|| format!("title {}", rng.random_range(0..3))));
                }
                if let Some(v) = version_of(rng, actual) {
                    update = update.with_expected_version(v);
                }
                update.into()
            }
            88..=96 => {
                let id = pick_id(rng);
                let actual = known.iter().find(|m| m.id == id).map(|m| m.version);
                let mut delete = Delete::message(thread_id, id);
                if let Some(v) = version_of(rng, actual) {
                    delete = delete.with_expected_version(v);
                }
                delete.into()
            }
            97 | 98 => {
                let last = known.iter().map(|m| m.seq).max().unwrap_or(0);
                let mut truncate = Delete::after(thread_id, rng.random_range(0..=last + 1));
                if let Some(v) = version_of(rng, th.map(|th| th.version)) {
                    truncate = truncate.with_expected_version(v);
                }
                truncate.into()
            }
            _ => Delete::thread(thread_id).into(),
        }
    }
}

async fn assert_same_state<B: Backend>(b: &B, model: &Model, context: &str) {
    for name in THREADS {
        let id = ThreadId::new(name).unwrap();
        let expected = model.threads.get(&id).filter(|th| th.exists);
        let stored = thread(b, &id).await;
        match (expected, &stored) {
            (None, None) => {}
            (Some(th), Some(got)) => {
                assert_eq!(got.deleted_at.is_some(), th.deleted, "{context}: thread {id} deleted flag");
                assert_eq!(got.last_seq, th.last_seq, "{context}: thread {id} last_seq");
                assert_eq!(got.message_count, th.messages.len() as u64, "{context}: thread {id} message_count");
                assert_eq!(got.version, th.version, "{context}: thread {id} version");
                assert_eq!(got.title, th.title, "{context}: thread {id} title");
                assert_eq!(got.metadata, th.metadata, "{context}: thread {id} metadata");
            }
            (expected, got) => {
                panic!("{context}: thread {id}: model has {expected:?}, backend has {got:?}")
            }
        }
        let messages: Vec<ModelMessage> = all_messages(b, &id).await.iter().map(ModelMessage::from).collect();
        let modelled: Vec<ModelMessage> =
            expected.map(|th| th.messages.values().cloned().collect()).unwrap_or_default();
        assert_eq!(messages, modelled, "{context}: messages of thread {id}");
    }
}

/// Seeded random operations agree with the reference model, answer by answer and state by state.
pub async fn check_random_operations_match_reference_model<F: Factory>(factory: &F) -> Outcome {
    let seeds: Vec<u64> = match std::env::var("PERSIST_CONFORMANCE_SEED") {
        Ok(seed) => vec![seed.parse().expect("PERSIST_CONFORMANCE_SEED must be a u64")],
        Err(_) => DEFAULT_SEEDS.to_vec(),
    };
    for seed in seeds {
        let store = crate::fixture::open!(factory);
        let b = store.b().as_ref();
        let mut rng = StdRng::seed_from_u64(seed);
        let mut model = Model::default();
        for step in 0..STEPS {
            let args = model.generate(&mut rng);
            let context = format!("seed {seed} (PERSIST_CONFORMANCE_SEED={seed}), step {step}, {args:?}");
            let result = crate::fixture::apply(b, args.clone(), step.is_multiple_of(2)).await;
            let generated = result.as_ref().ok().and_then(PersistResult::message).map(|m| m.id.clone());
            let expected = model.apply(&args, generated.as_ref());
            assert_eq!(observed(&result), expected, "{context}: answer differs from the model (left: backend)");
            assert_same_state(b, &model, &context).await;
        }
        store.finish().await;
    }
    Outcome::Passed
}

//! adk-rust's sessions in persist: [`PersistSessionService`] implements adk's
//! [`SessionService`] over any persist pipeline (the embedded SQLite file, PostgreSQL shared by
//! several instances, a tenant's scoped handle, any stack of layers).
//!
//! What it adds to adk's own `InMemorySessionService`:
//!
//! - **Sessions survive the process**, and several processes and instances share them.
//! - **An event is appended once**: its idempotency key is derived from the session and the
//!   event's id, so an append sent again (its acknowledgement lost) writes nothing twice, and
//!   an event is stored whole or not at all.
//! - **State without lost updates**: a state delta is merged key by key inside the store's
//!   write, so two instances changing different keys of one user's (`user:`) or the app's
//!   (`app:`) state at once both keep their change. `temp:` keys are never stored.
//! - **An event and its state delta**: the delta is part of the stored event, and the state is
//!   brought up to date from the events after the last one applied (a mark the session keeps),
//!   in order, by the append and by every later `get`. A process that died between writing an
//!   event and applying its delta leaves nothing lost: the next `get` of the session applies it.
//! - **Lossless**: events are persist messages with typed parts (text, reasoning, function
//!   calls and responses, files), readable by every other reader of the store, and read back
//!   equal; what a part has no place for is kept beside it (see [`convert`]).
//! - **`get` gives what a model can be given** ([`View::Model`], the default): the function
//!   calls of an invocation that died before its tool answered (a later invocation ran) are
//!   left out; [`View::Transcript`] gives every event.
//!
//! # Identity
//!
//! adk's `(app, user, session)` is a thread of the handle's tenant: its id is derived from the
//! triple (adk allows 512-byte ids, persist 255), its title is the session id, and its metadata
//! names the three (`adk.app`, `adk.user`, `adk.session`), which is how sessions are listed.
//! The same session id under two users is two threads. The app's and each user's state live in
//! threads of their own (`adk.kind` `app-state` and `user-state`), without messages. Through a
//! [`Scoped`] handle every session is that tenant's, as every other thread.
//!
//! `delete` erases the session ([`Delete::purge`], freeing its id), so a session of that id can
//! be created again. `rewind` is not supported (adk's default error).
//!
//! Built against adk-rust 2.3 (`adk-core`, `adk-session`; its `Runner` and `LlmAgent` in the
//! tests).
//!
//! # Example
//!
//! ```
//! use std::collections::HashMap;
//! use adk_session::{CreateRequest, GetRequest, SessionService};
//! use persist_adk::PersistSessionService;
//! use persist_core::Pipeline;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let sessions = PersistSessionService::new(&Pipeline::new(persist_memory::MemoryBackend::new()));
//! let state = HashMap::from([("user:name".to_owned(), "Alice".into())]);
//! let created = sessions
//!     .create(CreateRequest { app_name: "app".into(), user_id: "u1".into(), session_id: None, state })
//!     .await?;
//! let read = sessions
//!     .get(GetRequest {
//!         app_name: "app".into(),
//!         user_id: "u1".into(),
//!         session_id: created.id().into(),
//!         num_recent_events: None,
//!         after: None,
//!     })
//!     .await?;
//! assert_eq!(read.state().get("user:name"), Some("Alice".into()));
//! # Ok::<_, adk_core::AdkError>(())
//! # }).unwrap();
//! ```

pub mod convert;
mod session;

use std::collections::HashMap;

use adk_core::identity::{AdkIdentity, AppName, SessionId, UserId};
use adk_core::{AdkError, ErrorCategory, ErrorComponent, Event, Result};
use adk_session::{
    AppendEventRequest, CreateRequest, DeleteRequest, GetRequest, KEY_PREFIX_TEMP, ListRequest, Session,
    SessionService, extract_state_deltas, merge_states,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use persist_core::args::{AppendTurn, Delete, Restore, Update};
use persist_core::read::{GetThread, ListMessages, ListThreads};
use persist_core::{
    Context, IdempotencyKey, Message, Metadata, Order, PersistError, Pipeline, Scoped, Thread, ThreadId, Timestamp,
    ToolNames,
};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::session::{EventList, StateMap, StoredSession, state_of, state_patch, without_dead_calls};

/// What [`PersistSessionService`]'s `get` gives of a session's events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum View {
    /// What a model can be given: every event but the function calls of an invocation that
    /// died before its tool answered (a later invocation ran since).
    #[default]
    Model,
    /// Every event, as stored.
    Transcript,
}

/// Metadata keys of the threads this service writes.
const KIND: &str = "adk.kind";
const APP: &str = "adk.app";
const USER: &str = "adk.user";
const SESSION: &str = "adk.session";
/// The seq of the last event whose state delta the session's state holds.
const APPLIED: &str = "adk.applied";

/// The namespace of the thread ids and idempotency keys this service derives.
const NAMESPACE: Uuid = Uuid::from_u128(0x8a0f_3c51_2d6e_4b97_a4e1_07c9_5b3d_e26f);

/// Messages read per page.
const PAGE: u32 = 500;
/// Threads listed per page.
const THREAD_PAGE: u32 = 100;
/// How often bringing a session's state up to date is tried again when another writer moved
/// it meanwhile.
const APPLY_ATTEMPTS: usize = 16;

/// adk's [`SessionService`] on a persist pipeline; see the [crate docs](crate).
#[derive(Debug, Clone)]
pub struct PersistSessionService {
    store: Scoped,
    view: View,
}

impl PersistSessionService {
    /// Sessions on `pipeline`, with no tenant.
    pub fn new(pipeline: &Pipeline) -> Self {
        Self::scoped(pipeline.scoped(Context::new()))
    }

    /// Sessions on a scoped handle: every session is the handle's tenant's.
    pub fn scoped(store: Scoped) -> Self {
        Self { store, view: View::default() }
    }

    /// What `get` gives of a session's events (default [`View::Model`]).
    pub fn with_view(mut self, view: View) -> Self {
        self.view = view;
        self
    }

    async fn thread(&self, id: &ThreadId) -> Result<Option<Thread>> {
        let thread = self.store.get_thread(GetThread::new(id.clone())).await.map_err(store_error)?;
        Ok(thread.filter(|thread| !thread.is_deleted()))
    }

    /// The session's thread, or adk's `session.not_found`.
    async fn session_thread(&self, identity: &AdkIdentity) -> Result<Thread> {
        let id = session_thread_id(identity)?;
        match self.thread(&id).await? {
            Some(thread) if thread.metadata.get(KIND) == Some(&json!("session")) => Ok(thread),
            _ => Err(not_found(identity)),
        }
    }

    /// The state kept in a state thread (empty when it has none yet).
    async fn state_in(&self, id: &ThreadId) -> Result<HashMap<String, Value>> {
        Ok(self.thread(id).await?.map(|thread| state_of(&thread.metadata)).unwrap_or_default())
    }

    /// The app's and the user's state, with the session's own, as adk's flat map.
    async fn merged_state(&self, identity: &AdkIdentity, session: &Thread) -> Result<HashMap<String, Value>> {
        let app = self.state_in(&app_thread_id(identity.app_name.as_ref())?).await?;
        let user = self.state_in(&user_thread_id(identity.app_name.as_ref(), identity.user_id.as_ref())?).await?;
        Ok(merge_states(&app, &user, &state_of(&session.metadata)))
    }

    /// Merges `delta` into a state thread's state, creating the thread on its first delta.
    async fn patch_state(&self, id: ThreadId, kind: Metadata, delta: &HashMap<String, Value>) -> Result<()> {
        if delta.is_empty() {
            return Ok(());
        }
        let patch = state_patch(delta);
        for _ in 0..2 {
            match self.store.update(Update::thread(id.clone()).with_metadata(patch.clone())).await {
                Ok(_) => return Ok(()),
                Err(PersistError::NotFound { .. }) => {
                    // Its first delta: the thread is created (by this writer or a racing one).
                    let mut thread = Thread::stored(id.clone(), 0, Timestamp::now());
                    thread.tenant = self.store.context().tenant().cloned();
                    thread.metadata = kind.clone();
                    self.store.restore(Restore::new(thread, Vec::new())).await.map_err(store_error)?;
                }
                Err(error) => return Err(store_error(error)),
            }
        }
        Err(AdkError::session(format!("the state thread {id} could not be written")))
    }

    /// Brings the session's state up to date: applies, in order, the state deltas of the
    /// events after the last one applied, then moves the mark, which only the writer that read
    /// it may move (another one read again and applies what is left). Answers the session's
    /// thread as it is afterwards.
    async fn apply_pending(&self, identity: &AdkIdentity, mut thread: Thread) -> Result<Thread> {
        for _ in 0..APPLY_ATTEMPTS {
            let applied = thread.metadata.get(APPLIED).and_then(Value::as_u64).unwrap_or(0);
            let pending = ListMessages::new(thread.id.clone()).after(applied).with_order(Order::Asc).with_limit(PAGE);
            let page = self.store.list(pending).await.map_err(store_error)?;
            let Some(last) = page.items.last().map(|message| message.seq) else {
                return Ok(thread);
            };
            let mut session_delta = HashMap::new();
            for message in &page.items {
                let Some(delta) = state_delta(message) else { continue };
                let (app, user, session) = extract_state_deltas(&delta);
                let app_name = identity.app_name.as_ref();
                self.patch_state(app_thread_id(app_name)?, state_kind("app-state", identity, false), &app).await?;
                let user_thread = user_thread_id(app_name, identity.user_id.as_ref())?;
                self.patch_state(user_thread, state_kind("user-state", identity, true), &user).await?;
                session_delta.extend(session);
            }
            let patch = state_patch(&session_delta).with(APPLIED, json!(last));
            let moved = Update::thread(thread.id.clone()).with_metadata(patch).with_expected_version(thread.version);
            match self.store.update(moved).await {
                Ok(persist_core::Updated::Thread(updated)) => thread = updated,
                Ok(_) => thread = self.session_thread(identity).await?,
                Err(PersistError::VersionConflict { .. }) => thread = self.session_thread(identity).await?,
                Err(error) => return Err(store_error(error)),
            }
            if !page.has_more && thread.metadata.get(APPLIED).and_then(Value::as_u64) == Some(last) {
                return Ok(thread);
            }
        }
        Err(AdkError::new(
            ErrorComponent::Session,
            ErrorCategory::Unavailable,
            "session.state_busy",
            format!("the state of session '{}' kept moving under other writers", identity.session_id.as_ref()),
        ))
    }

    /// The session's events: the newest `recent` of them (all when `None`), those at or after
    /// `after` (events are stored in the order they happen, so their times rise with them).
    async fn events(
        &self,
        thread: &ThreadId,
        recent: Option<usize>,
        after: Option<DateTime<Utc>>,
    ) -> Result<Vec<Event>> {
        let mut stored: Vec<Message> = Vec::new();
        if recent.is_none() && after.is_none() {
            let mut query = ListMessages::new(thread.clone()).with_order(Order::Asc).with_limit(PAGE);
            loop {
                let page = self.store.list(query.clone()).await.map_err(store_error)?;
                let next = query.next_page(&page);
                stored.extend(page.items);
                match next {
                    Some(next) => query = next,
                    None => break,
                }
            }
        } else {
            // Newest first, until enough or one before `after`.
            let wanted = recent.unwrap_or(usize::MAX);
            let mut query = ListMessages::new(thread.clone()).with_order(Order::Desc).with_limit(PAGE);
            'pages: loop {
                let page = self.store.list(query.clone()).await.map_err(store_error)?;
                let next = query.next_page(&page);
                for message in page.items {
                    if stored.len() >= wanted {
                        break 'pages;
                    }
                    if let Some(after) = after
                        && event_time(&message).unwrap_or_else(|| convert::timestamp(message.created_at)) < after
                    {
                        break 'pages;
                    }
                    stored.push(message);
                }
                match next {
                    Some(next) => query = next,
                    None => break,
                }
            }
            stored.reverse();
        }
        let names: ToolNames = stored.iter().map(|message| &message.content).collect();
        let mut events: Vec<Event> = stored.iter().filter_map(|message| convert::to_event(message, &names)).collect();
        if let Some(after) = after {
            events.retain(|event| event.timestamp >= after);
        }
        Ok(match self.view {
            View::Model => without_dead_calls(events),
            View::Transcript => events,
        })
    }

    /// Every session thread of `(app, user)`, newest first.
    async fn sessions_of(&self, app: &str, user: &str) -> Result<Vec<Thread>> {
        let filter = Metadata::new().with(KIND, json!("session")).with(APP, json!(app)).with(USER, json!(user));
        self.all_threads(filter).await
    }

    async fn all_threads(&self, filter: Metadata) -> Result<Vec<Thread>> {
        let mut threads = Vec::new();
        let mut query = ListThreads::new().with_filter(filter).with_limit(THREAD_PAGE);
        loop {
            let page = self.store.threads(query.clone()).await.map_err(store_error)?;
            let cursor = page.next_cursor.clone();
            threads.extend(page.items.into_iter().filter(|thread| !thread.is_deleted()));
            match cursor {
                Some(cursor) if page.has_more => query = query.with_cursor(Some(cursor)),
                _ => break Ok(threads),
            }
        }
    }
}

#[async_trait]
impl SessionService for PersistSessionService {
    async fn create(&self, req: CreateRequest) -> Result<Box<dyn Session>> {
        let session_id = req.session_id.clone().unwrap_or_else(|| Uuid::new_v4().to_string());
        let identity = identity(&req.app_name, &req.user_id, &session_id)?;
        let (app, user, session) = extract_state_deltas(&req.state);
        let mut thread = Thread::stored(session_thread_id(&identity)?, 0, Timestamp::now());
        thread.tenant = self.store.context().tenant().cloned();
        thread.title = Some(session_id.clone());
        thread.metadata = Metadata::new()
            .with(KIND, json!("session"))
            .with(APP, json!(req.app_name))
            .with(USER, json!(req.user_id))
            .with(SESSION, json!(session_id))
            .with(APPLIED, json!(0));
        thread.metadata.merge(&state_patch(&session));
        let restored = match self.store.restore(Restore::new(thread.clone(), Vec::new())).await {
            Ok(restored) => restored.thread,
            Err(PersistError::ThreadDeleted { .. }) => return Err(already_exists(&identity)),
            Err(error) => return Err(store_error(error)),
        };
        // A thread there already keeps what it holds: the session existed.
        if restored.created_at != thread.created_at || restored.metadata != thread.metadata {
            return Err(already_exists(&identity));
        }
        let app_name = identity.app_name.as_ref();
        self.patch_state(app_thread_id(app_name)?, state_kind("app-state", &identity, false), &app).await?;
        let user_thread = user_thread_id(app_name, identity.user_id.as_ref())?;
        self.patch_state(user_thread, state_kind("user-state", &identity, true), &user).await?;
        let state = self.merged_state(&identity, &restored).await?;
        Ok(Box::new(StoredSession {
            identity,
            state: StateMap(state),
            events: EventList(Vec::new()),
            updated_at: convert::timestamp(restored.updated_at),
        }))
    }

    async fn get(&self, req: GetRequest) -> Result<Box<dyn Session>> {
        let identity = req.try_identity()?;
        let thread = self.session_thread(&identity).await?;
        let thread = self.apply_pending(&identity, thread).await?;
        let events = self.events(&thread.id, req.num_recent_events, req.after).await?;
        let state = self.merged_state(&identity, &thread).await?;
        Ok(Box::new(StoredSession {
            identity,
            state: StateMap(state),
            events: EventList(events),
            updated_at: convert::timestamp(thread.updated_at),
        }))
    }

    /// The user's sessions of the app, the most recently changed first, each with its state
    /// and without its events (as adk's database backends answer).
    async fn list(&self, req: ListRequest) -> Result<Vec<Box<dyn Session>>> {
        let app = AppName::try_from(req.app_name.as_str())?;
        let user = UserId::try_from(req.user_id.as_str())?;
        let threads = self.sessions_of(app.as_ref(), user.as_ref()).await?;
        let app_state = self.state_in(&app_thread_id(app.as_ref())?).await?;
        let user_state = self.state_in(&user_thread_id(app.as_ref(), user.as_ref())?).await?;
        let mut sessions: Vec<Box<dyn Session>> = Vec::new();
        for thread in threads.into_iter().skip(req.offset.unwrap_or(0)).take(req.limit.unwrap_or(usize::MAX)) {
            let Some(session_id) = thread.metadata.get(SESSION).and_then(Value::as_str) else { continue };
            let identity = AdkIdentity::new(app.clone(), user.clone(), SessionId::try_from(session_id)?);
            sessions.push(Box::new(StoredSession {
                identity,
                state: StateMap(merge_states(&app_state, &user_state, &state_of(&thread.metadata))),
                events: EventList(Vec::new()),
                updated_at: convert::timestamp(thread.updated_at),
            }));
        }
        Ok(sessions)
    }

    async fn delete(&self, req: DeleteRequest) -> Result<()> {
        let identity = req.try_identity()?;
        let erase = Delete::purge(session_thread_id(&identity)?).freeing_id(true);
        match self.store.delete(erase).await {
            Ok(_) | Err(PersistError::NotFound { .. }) => Ok(()),
            Err(error) => Err(store_error(error)),
        }
    }

    /// Erases every session of the user in the app; the user's state stays (as adk's own
    /// backends do).
    async fn delete_all_sessions(&self, app_name: &str, user_id: &str) -> Result<()> {
        for thread in self.sessions_of(app_name, user_id).await? {
            let erase = Delete::purge(thread.id).freeing_id(true);
            match self.store.delete(erase).await {
                Ok(_) | Err(PersistError::NotFound { .. }) => {}
                Err(error) => return Err(store_error(error)),
            }
        }
        Ok(())
    }

    /// Appends to the one session of that id in the store; an id two users' sessions share is
    /// refused as ambiguous (the runner appends with [`append_event_for_identity`], which names
    /// the whole identity).
    ///
    /// [`append_event_for_identity`]: SessionService::append_event_for_identity
    async fn append_event(&self, session_id: &str, event: Event) -> Result<()> {
        let filter = Metadata::new().with(KIND, json!("session")).with(SESSION, json!(session_id));
        let page =
            self.store.threads(ListThreads::new().with_filter(filter).with_limit(2)).await.map_err(store_error)?;
        let found: Vec<&Thread> = page.items.iter().filter(|thread| !thread.is_deleted()).collect();
        let [thread] = found[..] else {
            if found.is_empty() {
                return Err(AdkError::not_found(
                    ErrorComponent::Session,
                    "session.not_found",
                    format!("session '{session_id}' was not found"),
                ));
            }
            return Err(AdkError::new(
                ErrorComponent::Session,
                ErrorCategory::InvalidInput,
                "session.ambiguous",
                format!(
                    "session id '{session_id}' names sessions of several users or apps: append with the whole identity"
                ),
            ));
        };
        let text = |key: &str| thread.metadata.get(key).and_then(Value::as_str).unwrap_or_default().to_owned();
        let identity = identity(&text(APP), &text(USER), session_id)?;
        self.append_event_for_identity(AppendEventRequest { identity, event }).await
    }

    async fn append_event_for_identity(&self, req: AppendEventRequest) -> Result<()> {
        let AppendEventRequest { identity, mut event } = req;
        event.actions.state_delta.retain(|key, _| !key.starts_with(KEY_PREFIX_TEMP));
        let thread = self.session_thread(&identity).await?;
        let message = convert::to_turn_message(&event).map_err(AdkError::session)?;
        let seed = format!("{}\u{1f}{}", thread.id, event.id);
        let key = IdempotencyKey::new(format!("adk:{}", Uuid::new_v5(&NAMESPACE, seed.as_bytes()).simple()))
            .map_err(store_error)?;
        let turn = AppendTurn::of(thread.id.clone(), [message]).with_idempotency_key(key);
        self.store.append_turn(turn).await.map_err(store_error)?;
        self.apply_pending(&identity, thread).await?;
        Ok(())
    }

    async fn health_check(&self) -> Result<()> {
        self.store.ping().await.map_err(store_error)
    }
}

/// adk's identity of three raw ids, checked as adk checks them.
fn identity(app: &str, user: &str, session: &str) -> Result<AdkIdentity> {
    Ok(AdkIdentity::new(AppName::try_from(app)?, UserId::try_from(user)?, SessionId::try_from(session)?))
}

/// A thread id derived from `parts`, with a prefix that says what the thread holds.
fn derived_id(prefix: &str, parts: &[&str]) -> Result<ThreadId> {
    let seed = parts.join("\u{1f}");
    ThreadId::new(format!("{prefix}{}", Uuid::new_v5(&NAMESPACE, seed.as_bytes()).simple())).map_err(store_error)
}

fn session_thread_id(identity: &AdkIdentity) -> Result<ThreadId> {
    derived_id("adk-session-", &[identity.app_name.as_ref(), identity.user_id.as_ref(), identity.session_id.as_ref()])
}

fn user_thread_id(app: &str, user: &str) -> Result<ThreadId> {
    derived_id("adk-user-", &[app, user])
}

fn app_thread_id(app: &str) -> Result<ThreadId> {
    derived_id("adk-app-", &[app])
}

/// The metadata a state thread is created with.
fn state_kind(kind: &str, identity: &AdkIdentity, with_user: bool) -> Metadata {
    let metadata = Metadata::new().with(KIND, json!(kind)).with(APP, json!(identity.app_name.as_ref()));
    if with_user { metadata.with(USER, json!(identity.user_id.as_ref())) } else { metadata }
}

/// The state delta a stored event carries, if it is an adk event with one.
fn state_delta(message: &Message) -> Option<HashMap<String, Value>> {
    let delta = message.metadata.get(convert::KEPT_KEY)?.get("event")?.get("actions")?.get("state_delta")?;
    let delta: HashMap<String, Value> = serde_json::from_value(delta.clone()).ok()?;
    (!delta.is_empty()).then_some(delta)
}

/// The time a stored adk event says it happened.
fn event_time(message: &Message) -> Option<DateTime<Utc>> {
    let at = message.metadata.get(convert::KEPT_KEY)?.get("event")?.get("timestamp")?;
    serde_json::from_value(at.clone()).ok()
}

fn not_found(identity: &AdkIdentity) -> AdkError {
    AdkError::not_found(
        ErrorComponent::Session,
        "session.not_found",
        format!(
            "session '{}' was not found for app '{}' and user '{}'",
            identity.session_id.as_ref(),
            identity.app_name.as_ref(),
            identity.user_id.as_ref()
        ),
    )
}

fn already_exists(identity: &AdkIdentity) -> AdkError {
    AdkError::new(
        ErrorComponent::Session,
        ErrorCategory::InvalidInput,
        "session.already_exists",
        format!(
            "session '{}' already exists for app '{}' and user '{}'",
            identity.session_id.as_ref(),
            identity.app_name.as_ref(),
            identity.user_id.as_ref()
        ),
    )
}

/// A store's error as adk's, in the category that tells a caller whether to retry.
fn store_error(error: PersistError) -> AdkError {
    let category = match &error {
        PersistError::InvalidInput { .. }
        | PersistError::IdempotencyKeyReused { .. }
        | PersistError::AlreadyExists { .. } => ErrorCategory::InvalidInput,
        PersistError::NotFound { .. } | PersistError::ThreadDeleted { .. } => ErrorCategory::NotFound,
        PersistError::Rejected { .. } => ErrorCategory::Forbidden,
        PersistError::Unsupported { .. } => ErrorCategory::Unsupported,
        PersistError::Timeout { .. } => ErrorCategory::Timeout,
        PersistError::Temporary { .. } | PersistError::Backend { .. } => ErrorCategory::Unavailable,
        _ => ErrorCategory::Internal,
    };
    AdkError::new(ErrorComponent::Session, category, "session.store", error.to_string()).with_source(error)
}

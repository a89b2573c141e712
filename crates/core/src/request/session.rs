//! Session bindings: which provider session to resume for an (agent, thread).
//!
//! A binding belongs to the thread `(tenant, thread_id)` of its request's context, as every
//! row does: bindings are keyed by `(tenant, agent, thread)`, so two tenants' threads of one id
//! never share one.
//!
//! Agent hosts resume a provider's session per conversation (a CLI's `--resume <id>`, a hosted
//! conversation id). A binding records it, and [`Resolution`] says, every time, whether to
//! resume it or to start fresh **and why**, so the host can tell its user instead of silently
//! losing history.
//!
//! The loop a host runs:
//!
//! 1. [`resolve`](crate::Pipeline::resolve) the (agent, thread) with the provider and runtime
//!    about to run;
//! 2. on [`Resolution::Resume`], resume that session; on [`Resolution::Fresh`], start a new one
//!    (in the returned `work_dir`, if any) and tell the user the [`FreshReason`];
//! 3. only once the provider **confirmed** the session, [`bind`](crate::Pipeline::bind) it
//!    (a binding saved before confirmation points at nothing when the start fails);
//! 4. when the provider reports the session dead,
//!    [`invalidate_session`](crate::Pipeline::invalidate_session) it (compare-and-set: a newer
//!    binding is never lost); when the user asks for a new conversation context,
//!    [`reset_session`](crate::Pipeline::reset_session).
//!
//! # Example
//!
//! ```
//! use persist::session::{Bind, FreshReason, Resolution, Resolve};
//! use persist::{AgentId, Pipeline, ProviderId, SessionId, ThreadId};
//! use persist::memory::MemoryBackend;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let store = Pipeline::new(MemoryBackend::new());
//! let (agent, thread) = (AgentId::new("support-bot")?, ThreadId::new("chat-7")?);
//! let provider = ProviderId::new("claude-cli")?;
//!
//! let ask = Resolve::new(agent.clone(), thread.clone(), provider.clone());
//! assert!(matches!(store.resolve(ask.clone()).await?, Resolution::Fresh { reason: FreshReason::NoBinding, .. }));
//!
//! // ... start a session; once the provider confirms it:
//! let session = SessionId::new("sess-123")?;
//! store.bind(Bind::new(agent.clone(), thread.clone(), session.clone(), provider)).await?;
//!
//! match store.resolve(ask).await? {
//!     Resolution::Resume(binding) => assert_eq!(binding.session_id, session),
//!     fresh => panic!("expected to resume, got {fresh:?}"),
//! }
//! # Ok::<_, persist::PersistError>(())
//! # }).unwrap();
//! ```

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::context::{Context, context_setter};
use crate::model::Timestamp;
use crate::model::error::{PersistError, Result};
use crate::model::id::{AgentId, ProviderId, RuntimeId, SessionId, ThreadId};

/// The longest working directory accepted, in bytes.
pub const MAX_WORK_DIR_BYTES: usize = 4096;

/// Which provider session an (agent, thread) resumes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionBinding {
    /// The agent.
    pub agent_id: AgentId,
    /// The thread.
    pub thread_id: ThreadId,
    /// The provider's session id.
    pub session_id: SessionId,
    /// The provider that issued the session.
    pub provider: ProviderId,
    /// The runtime (machine, container, CLI install) the session lives in, if it matters.
    pub runtime_id: Option<RuntimeId>,
    /// The working directory the session ran in; kept across runtime changes.
    pub work_dir: Option<String>,
    /// When the (agent, thread) was first bound; kept by every later bind.
    pub created_at: Timestamp,
    /// When the binding last changed.
    pub updated_at: Timestamp,
}

/// Records a confirmed session for an (agent, thread). Upsert: the first bind sets
/// `created_at`, later binds keep it and replace everything else.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Bind {
    /// The agent.
    pub agent_id: AgentId,
    /// The thread.
    pub thread_id: ThreadId,
    /// The confirmed session.
    pub session_id: SessionId,
    /// Its provider.
    pub provider: ProviderId,
    /// Its runtime.
    pub runtime_id: Option<RuntimeId>,
    /// Its working directory.
    pub work_dir: Option<String>,
    /// Request context: its tenant names the thread's.
    #[serde(default)]
    pub context: Context,
}

impl Bind {
    /// Binds `session_id` of `provider` to (`agent_id`, `thread_id`).
    pub fn new(agent_id: AgentId, thread_id: ThreadId, session_id: SessionId, provider: ProviderId) -> Self {
        Self { agent_id, thread_id, session_id, provider, runtime_id: None, work_dir: None, context: Context::new() }
    }

    context_setter!();

    /// The runtime the session lives in.
    pub fn with_runtime(mut self, runtime_id: RuntimeId) -> Self {
        self.runtime_id = Some(runtime_id);
        self
    }

    /// The working directory the session runs in.
    pub fn with_work_dir(mut self, work_dir: impl Into<String>) -> Self {
        self.work_dir = Some(work_dir.into());
        self
    }

    /// Checks the working directory; backends call this before writing.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for an empty or oversize `work_dir`, or one with control characters.
    pub fn validate(&self) -> Result<()> {
        check_work_dir(self.work_dir.as_deref())
    }
}

/// The rule for a binding's working directory: 1 to [`MAX_WORK_DIR_BYTES`] bytes without
/// control characters.
pub(crate) fn check_work_dir(work_dir: Option<&str>) -> Result<()> {
    match work_dir {
        Some(dir) if dir.is_empty() || dir.len() > MAX_WORK_DIR_BYTES || dir.chars().any(char::is_control) => {
            Err(PersistError::invalid(
                "work_dir",
                format!("must be 1 to {MAX_WORK_DIR_BYTES} bytes without control characters"),
            ))
        }
        _ => Ok(()),
    }
}

/// A binding as the store holds it: the binding and its state (a reset or invalidated one
/// too). What [`ListBindings`] answers and a [`Restore`](crate::args::Restore) writes back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StoredBinding {
    /// The binding.
    #[serde(flatten)]
    pub binding: SessionBinding,
    /// Whether it resumes, or was reset or invalidated.
    pub state: BindingState,
}

impl StoredBinding {
    /// `binding` in `state`.
    pub fn new(binding: SessionBinding, state: BindingState) -> Self {
        Self { binding, state }
    }
}

/// Lists the bindings of one thread (of the request's tenant), every agent's, in any state,
/// ordered by agent id: for operators (`persist sessions`) and for copying a store.
///
/// # Example
///
/// ```
/// use persist::session::{Bind, BindingState, ListBindings};
/// use persist::{AgentId, Pipeline, ProviderId, SessionId, ThreadId};
/// use persist::memory::MemoryBackend;
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let store = Pipeline::new(MemoryBackend::new());
/// let thread = ThreadId::new("chat-7")?;
/// let bind = Bind::new(AgentId::new("bot")?, thread.clone(), SessionId::new("s1")?, ProviderId::new("p")?);
/// store.bind(bind).await?;
/// let bindings = store.bindings(ListBindings::new(thread)).await?;
/// assert_eq!((bindings.len(), bindings[0].state), (1, BindingState::Active));
/// # Ok::<_, persist::PersistError>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ListBindings {
    /// The thread.
    pub thread_id: ThreadId,
    /// Request context: its tenant names the thread's.
    #[serde(default)]
    pub context: Context,
}

impl ListBindings {
    /// The bindings of `thread_id`.
    pub fn new(thread_id: ThreadId) -> Self {
        Self { thread_id, context: Context::new() }
    }

    context_setter!();
}

/// Asks whether (agent, thread) can resume its session with `provider` on `runtime_id`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Resolve {
    /// The agent.
    pub agent_id: AgentId,
    /// The thread.
    pub thread_id: ThreadId,
    /// The provider about to run.
    pub provider: ProviderId,
    /// The runtime about to run it (`None` when runtimes do not matter).
    pub runtime_id: Option<RuntimeId>,
    /// Request context: its tenant names the thread's.
    #[serde(default)]
    pub context: Context,
}

impl Resolve {
    /// Resolves for `provider` without a runtime.
    pub fn new(agent_id: AgentId, thread_id: ThreadId, provider: ProviderId) -> Self {
        Self { agent_id, thread_id, provider, runtime_id: None, context: Context::new() }
    }

    context_setter!();

    /// The runtime about to run.
    pub fn with_runtime(mut self, runtime_id: RuntimeId) -> Self {
        self.runtime_id = Some(runtime_id);
        self
    }
}

/// Resets the binding of (agent, thread): the next [`Resolve`] is `Fresh { Reset }` until a new
/// [`Bind`], which is then what resumes (never the session before the reset).
///
/// # Example
///
/// ```
/// use persist::session::ResetSession;
/// use persist::{AgentId, ThreadId};
///
/// let reset = ResetSession::new(AgentId::new("support-bot")?, ThreadId::new("t1")?);
/// assert_eq!(reset.agent_id.as_str(), "support-bot");
/// # Ok::<_, persist::PersistError>(())
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ResetSession {
    /// The agent.
    pub agent_id: AgentId,
    /// The thread.
    pub thread_id: ThreadId,
    /// Request context: its tenant names the thread's.
    #[serde(default)]
    pub context: Context,
}

impl ResetSession {
    /// Resets (`agent_id`, `thread_id`).
    pub fn new(agent_id: AgentId, thread_id: ThreadId) -> Self {
        Self { agent_id, thread_id, context: Context::new() }
    }

    context_setter!();
}

/// Invalidates the binding of (agent, thread) **only if** it is active and still points at
/// `session_id` (compare-and-set): a session the provider reported dead is not retried
/// forever, and a newer binding made meanwhile is never lost.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct InvalidateSession {
    /// The agent.
    pub agent_id: AgentId,
    /// The thread.
    pub thread_id: ThreadId,
    /// The session the provider reported dead.
    pub session_id: SessionId,
    /// Request context: its tenant names the thread's.
    #[serde(default)]
    pub context: Context,
}

impl InvalidateSession {
    /// Invalidates `session_id` for (`agent_id`, `thread_id`), if the binding still points at it.
    pub fn new(agent_id: AgentId, thread_id: ThreadId, session_id: SessionId) -> Self {
        Self { agent_id, thread_id, session_id, context: Context::new() }
    }

    context_setter!();
}

/// Why a session cannot be resumed. Each has a message a host can show its user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FreshReason {
    /// Nothing was ever bound for this (agent, thread).
    NoBinding,
    /// The binding was reset on purpose (`reset_session`).
    Reset,
    /// The session belongs to another provider than the one about to run.
    ProviderChanged,
    /// The session lives in another runtime than the one about to run.
    RuntimeChanged,
    /// The provider reported the session dead (`invalidate_session`).
    Invalidated,
}

impl FreshReason {
    /// A sentence for the end user.
    pub fn user_message(self) -> &'static str {
        match self {
            Self::NoBinding => "Starting a new session for this conversation.",
            Self::Reset => "Starting fresh, as requested: earlier context was not carried over.",
            Self::ProviderChanged => "The assistant's provider changed, so earlier context could not be resumed.",
            Self::RuntimeChanged => {
                "This conversation moved to another machine, so earlier context could not be resumed."
            }
            Self::Invalidated => "The previous session expired, so a new one was started.",
        }
    }
}

impl fmt::Display for FreshReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Self::NoBinding => "no_binding",
            Self::Reset => "reset",
            Self::ProviderChanged => "provider_changed",
            Self::RuntimeChanged => "runtime_changed",
            Self::Invalidated => "invalidated",
        })
    }
}

/// The answer of `resolve`: resume this binding, or start fresh, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "resolution", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Resolution {
    /// Resume this session.
    Resume(SessionBinding),
    /// Start a new session.
    Fresh {
        /// Why the binding (if any) cannot be resumed.
        reason: FreshReason,
        /// The working directory of the earlier binding, to start the new session in.
        work_dir: Option<String>,
    },
}

/// The state of a stored binding, as backends keep it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum BindingState {
    /// Resumable (subject to provider and runtime).
    Active,
    /// Reset by the host.
    Reset,
    /// Reported dead by the provider.
    Invalidated,
}

impl BindingState {
    /// `"active"`, `"reset"` or `"invalidated"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Reset => "reset",
            Self::Invalidated => "invalidated",
        }
    }

    /// Parses [`as_str`](Self::as_str)'s output.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "active" => Some(Self::Active),
            "reset" => Some(Self::Reset),
            "invalidated" => Some(Self::Invalidated),
            _ => None,
        }
    }
}

impl Resolution {
    /// The one rule every backend applies to a stored binding (or its absence).
    pub fn decide(stored: Option<(SessionBinding, BindingState)>, query: &Resolve) -> Self {
        let Some((binding, state)) = stored else {
            return Self::Fresh { reason: FreshReason::NoBinding, work_dir: None };
        };
        let reason = match state {
            BindingState::Reset => Some(FreshReason::Reset),
            BindingState::Invalidated => Some(FreshReason::Invalidated),
            BindingState::Active if binding.provider != query.provider => Some(FreshReason::ProviderChanged),
            BindingState::Active if binding.runtime_id != query.runtime_id => Some(FreshReason::RuntimeChanged),
            BindingState::Active => None,
        };
        match reason {
            Some(reason) => Self::Fresh { reason, work_dir: binding.work_dir },
            None => Self::Resume(binding),
        }
    }
}

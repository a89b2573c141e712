//! Write a layer as an async closure, like axum's `from_fn`.
//!
//! The closure gets the request and a [`Next`]; it may inspect or rewrite the request, call
//! `next.run(args)` (or not, to short-circuit), and inspect or replace the result. It is the
//! easiest way in, at the cost of one allocation per request (the closure's future and `Next`
//! are boxed); always-on layers that must cost nothing are written as a
//! `Layer` + `Service` + hand-written future instead.
//!
//! # Example
//!
//! An audit log:
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use persist::{args::Add, layer::from_fn, Content, Pipeline, Role, ThreadId};
//! use persist::memory::MemoryBackend;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let audit = Arc::new(Mutex::new(Vec::new()));
//! let log = audit.clone();
//! let pipeline = Pipeline::builder()
//!     .layer(from_fn(move |args, next| {
//!         let log = log.clone();
//!         async move {
//!             let thread = args.thread_id().map(|t| t.to_string()).unwrap_or_default();
//!             let line = format!("{} {thread}", args.op());
//!             let result = next.run(args).await;
//!             log.lock().unwrap().push(format!("{line} ok={}", result.is_ok()));
//!             result
//!         }
//!     }))
//!     .build(MemoryBackend::new());
//! pipeline.add(Add::new(ThreadId::new("t1")?, Role::User, Content::text("hi"))).await?;
//! assert_eq!(*audit.lock().unwrap(), ["add t1 ok=true"]);
//! # Ok::<_, persist::PersistError>(())
//! # }).unwrap();
//! ```

mod layer;

use std::fmt;
use std::future::Future;
use std::task::{Context, Poll};

use tower::util::BoxCloneSyncService;
use tower::{Service, ServiceExt};

pub use self::layer::{FromFnLayer, from_fn};
use persist_core::BoxPersistService;
use persist_core::raw::{BoxFuture, take_ready};
use persist_core::read::GetMessage;
use persist_core::{Content, PersistArgs, PersistError, PersistResult};

/// The rest of the stack, handed to a [`from_fn`] closure.
pub struct Next {
    inner: BoxPersistService,
}

impl Next {
    /// Sends `args` down the rest of the stack.
    pub fn run(self, args: PersistArgs) -> impl Future<Output = Result<PersistResult, PersistError>> + Send + 'static {
        self.inner.oneshot(args)
    }

    /// Sends `args` down with `rewrite` applied to the **whole** content it leaves in its
    /// message: an `add`'s content, each complete message of a turn's, a replacing `update_content`'s, and for an append the
    /// stored content joined with the appended part. For layers that rewrite content (a
    /// redaction): a streamed reply's tokens arrive apart (`jane`, `@example`, `.com`), and
    /// rewriting each alone would miss what they spell together.
    ///
    /// An append is read (`get`, through the rest of the stack), joined, rewritten and written
    /// as a replacement expecting the version read; a write that got in between is read and
    /// joined again, as often as it takes, up to [`MAX_APPEND_JOINS`](persist_core::args::MAX_APPEND_JOINS)
    /// times (an append with an expected version of its own keeps its conflict). A message not there goes down as it is, for the store to answer. Other
    /// requests go down unchanged.
    ///
    /// # Example
    ///
    /// ```
    /// use persist::args::{Reserve, UpdateContent};
    /// use persist::layer::from_fn;
    /// use persist::{Content, Pipeline, Role, ThreadId};
    /// use persist::memory::MemoryBackend;
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let hide_digits = |content: Content| {
    ///     let text: String = content.to_text().chars().map(|c| if c.is_ascii_digit() { '#' } else { c }).collect();
    ///     Ok(Content::text(text))
    /// };
    /// let pipeline = Pipeline::builder()
    ///     .layer(from_fn(move |args, next| next.run_rewriting_content(args, hide_digits)))
    ///     .build(MemoryBackend::new());
    /// let thread = ThreadId::new("t1")?;
    /// let reply = pipeline.reserve(Reserve::new(thread.clone(), Role::Assistant)).await?.message;
    /// for token in ["call 55", "5-01", "23"] {
    ///     let token = UpdateContent::appending(thread.clone(), reply.id.clone(), Content::text(token));
    ///     pipeline.update_content(token).await?;
    /// }
    /// let stored = pipeline.get(persist::read::GetMessage::new(thread, reply.id)).await?.unwrap();
    /// assert_eq!(stored.content.to_text(), "call ###-####");
    /// # Ok::<_, persist::PersistError>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// What `rewrite` answers, or the rest of the stack.
    pub async fn run_rewriting_content<F>(self, args: PersistArgs, rewrite: F) -> Result<PersistResult, PersistError>
    where
        F: Fn(Content) -> Result<Content, PersistError> + Send,
    {
        let update = match args {
            PersistArgs::Add(mut add) => {
                add.content = rewrite(add.content)?;
                return self.run(add.into()).await;
            }
            PersistArgs::AppendTurn(mut turn) => {
                for message in turn.messages.iter_mut().filter(|m| m.status == persist_core::Status::Complete) {
                    message.content = rewrite(std::mem::replace(&mut message.content, Content::placeholder()))?;
                }
                return self.run(turn.into()).await;
            }
            PersistArgs::UpdateContent(mut update) if !update.append => {
                update.content = rewrite(update.content)?;
                return self.run(update.into()).await;
            }
            PersistArgs::UpdateContent(update) => update,
            other => return self.run(other).await,
        };
        let get =
            GetMessage::new(update.thread_id.clone(), update.message_id.clone()).with_context(update.context.clone());
        for _ in 0..persist_core::args::MAX_APPEND_JOINS {
            let stored = match self.inner.clone().oneshot(get.clone().into()).await? {
                PersistResult::Message(Some(stored)) => stored,
                // Absent: the store answers the append as it stands.
                _ => return self.inner.clone().oneshot(update.into()).await,
            };
            let mut joined = update.resolved(&stored)?;
            joined.content = rewrite(joined.content)?;
            let expected = joined.expected_version;
            match self.inner.clone().oneshot(joined.into()).await {
                // Another write went in between the read and this one: join again.
                Err(PersistError::VersionConflict { expected: got, .. })
                    if update.expected_version.is_none() && Some(got) == expected => {}
                answer => return answer,
            }
        }
        Err(persist_core::args::appends_kept_racing())
    }
}

impl fmt::Debug for Next {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Next").finish_non_exhaustive()
    }
}

/// The service of [`from_fn`].
#[derive(Clone)]
pub struct FromFn<S, F> {
    inner: S,
    f: F,
}

impl<S, F> fmt::Debug for FromFn<S, F>
where
    S: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FromFn").field("inner", &self.inner).field("f", &std::any::type_name::<F>()).finish()
    }
}

impl<S, F, Fut> Service<PersistArgs> for FromFn<S, F>
where
    S: Service<PersistArgs, Response = PersistResult, Error = PersistError> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
    F: Fn(PersistArgs, Next) -> Fut,
    Fut: Future<Output = Result<PersistResult, PersistError>> + Send + 'static,
{
    type Response = PersistResult;
    type Error = PersistError;
    type Future = BoxFuture<'static, Result<PersistResult, PersistError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), PersistError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, args: PersistArgs) -> Self::Future {
        let next = Next { inner: BoxCloneSyncService::new(take_ready(&mut self.inner)) };
        Box::pin((self.f)(args, next))
    }
}

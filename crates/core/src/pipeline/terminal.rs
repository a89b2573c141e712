//! [`Terminal`]: adapts a [`Backend`] into the `tower::Service` at the bottom of every stack.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tower::Service;

use crate::args::PersistArgs;
use crate::model::error::{PersistError, Result};
use crate::pipeline::{ApplyNow, Backend, BoxFuture};
use crate::request::result::PersistResult;

/// The service that applies each request to a backend.
///
/// It is always ready (the backend handles its own concurrency) and always last: the
/// [`PipelineBuilder`](crate::PipelineBuilder) puts it under every layer, so it is never a
/// layer itself and never skips one. Its future does nothing until polled; see
/// [`TerminalFuture`].
///
/// # Example
///
/// ```
/// use persist::{args::Add, Content, PersistArgs, Role, Terminal, ThreadId};
/// use persist::memory::MemoryBackend;
/// use tower::ServiceExt;
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let terminal = Terminal::new(MemoryBackend::new());
/// let args = PersistArgs::from(Add::new(ThreadId::new("t1")?, Role::User, Content::text("hi")));
/// let result = terminal.oneshot(args).await?;
/// assert_eq!(result.message().unwrap().seq, 1);
/// # Ok::<_, persist::PersistError>(())
/// # }).unwrap();
/// ```
pub struct Terminal<B> {
    backend: Arc<B>,
}

impl<B: Backend> Terminal<B> {
    /// A terminal over `backend`.
    pub fn new(backend: B) -> Self {
        Self::from_arc(Arc::new(backend))
    }

    /// A terminal over a backend that is shared with other owners (a handle the host keeps).
    pub fn from_arc(backend: Arc<B>) -> Self {
        Self { backend }
    }

    /// The backend.
    pub fn backend(&self) -> &Arc<B> {
        &self.backend
    }
}

impl<B> Clone for Terminal<B> {
    fn clone(&self) -> Self {
        Self { backend: Arc::clone(&self.backend) }
    }
}

impl<B> fmt::Debug for Terminal<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Terminal").field("backend", &std::any::type_name::<B>()).finish()
    }
}

impl<B: Backend> Service<PersistArgs> for Terminal<B> {
    type Response = PersistResult;
    type Error = PersistError;
    type Future = TerminalFuture<B>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, args: PersistArgs) -> Self::Future {
        TerminalFuture { state: State::Start { backend: Arc::clone(&self.backend), args } }
    }
}

/// The [`Terminal`]'s answer to one request.
///
/// Nothing happens until it is first polled. Then it offers a message write to
/// [`Backend::apply_now`]: a backend that answers at once (the memory store) is done with no
/// allocation; a write handed back goes to [`Backend::apply`], whose future is boxed here
/// because its type cannot be named. Every other request (a read, a session request, a
/// ping) goes to the backend method of the same name ([`Backend::get`], [`Backend::list`],
/// [`Backend::bind`], …).
///
/// # Panics
///
/// When polled again after it completed, as most futures do.
pub struct TerminalFuture<B> {
    state: State<B>,
}

enum State<B> {
    Start { backend: Arc<B>, args: PersistArgs },
    Waiting(BoxFuture<'static, Result<PersistResult>>),
    Done,
}

impl<B> fmt::Debug for TerminalFuture<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Start { .. } => "not polled",
            State::Waiting(_) => "waiting for the backend",
            State::Done => "done",
        };
        f.debug_struct("TerminalFuture").field("state", &state).finish()
    }
}

impl<B: Backend> Future for TerminalFuture<B> {
    type Output = Result<PersistResult>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        loop {
            match std::mem::replace(&mut this.state, State::Done) {
                State::Start { backend, args } if args.uses_branches() && !backend.capabilities().branches => {
                    let what = format!("`{}` naming a parent, a switch or a branch on this backend", args.op());
                    return Poll::Ready(Err(PersistError::Unsupported { what: what.into() }));
                }
                State::Start { backend, args } if args.uses_summaries() && !backend.capabilities().summaries => {
                    let what = format!("`{}` (summaries and leases) on this backend", args.op());
                    return Poll::Ready(Err(PersistError::Unsupported { what: what.into() }));
                }
                State::Start { backend, args } if args.uses_vectors() && !backend.capabilities().vectors => {
                    let what = format!("`{}` (embeddings) on this backend", args.op());
                    return Poll::Ready(Err(PersistError::Unsupported { what: what.into() }));
                }
                State::Start { backend, args }
                    if args.uses_working_memory() && !backend.capabilities().working_memory =>
                {
                    let what = format!("`{}` (working memory) on this backend", args.op());
                    return Poll::Ready(Err(PersistError::Unsupported { what: what.into() }));
                }
                State::Start { backend, args } if args.uses_records() && !backend.capabilities().records => {
                    let what = format!("`{}` (records) on this backend", args.op());
                    return Poll::Ready(Err(PersistError::Unsupported { what: what.into() }));
                }
                // Reads, session requests and pings go to the backend method of the same name.
                State::Start { backend, args } if !args.op().is_message_write() => {
                    this.state = State::Waiting(answer(backend, args));
                }
                State::Start { backend, args } => match backend.apply_now(args) {
                    ApplyNow::Done(result) => return Poll::Ready(result),
                    ApplyNow::Wait(args) => {
                        this.state = State::Waiting(Box::pin(async move { backend.apply(args).await }));
                    }
                },
                State::Waiting(mut future) => {
                    let poll = future.as_mut().poll(cx);
                    if poll.is_pending() {
                        this.state = State::Waiting(future);
                    }
                    return poll;
                }
                State::Done => panic!("`TerminalFuture` polled after it completed"),
            }
        }
    }
}

macro_rules! terminal_answer {
    (
        $($(#[$doc:meta])* $name:ident($args:ty) -> $out:ty = $result:ident, $scope:tt $(, $b:ident($av:ident))?;)*
    ) => {
        /// A request other than a message write, answered by the backend method of its name.
        fn answer<B: Backend>(backend: Arc<B>, args: PersistArgs) -> BoxFuture<'static, Result<PersistResult>> {
            Box::pin(async move {
                Ok(match args {
                    $($(PersistArgs::$av(query) => PersistResult::$result(backend.$b(query).await?),)?)*
                    PersistArgs::Ping(_) => {
                        backend.ping().await?;
                        PersistResult::Pong
                    }
                    // The page names where its store announces new events: a subscription whose
                    // reads a route sent to another store waits on that store.
                    PersistArgs::ReadFeed(query) => {
                        PersistResult::Feed(backend.read_feed(query).await?.with_wake_hub(backend.feed_hub()))
                    }
                    write => return backend.apply(write).await,
                })
            })
        }
    };
}
calls!(terminal_answer);

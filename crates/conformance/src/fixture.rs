//! What every check uses: a fresh store, shorthand ids, and reads that see everything.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use persist_core::args::Add;
use persist_core::read::{GetMessage, GetThread, ListMessages};
use persist_core::{
    ApplyNow, Backend, Capabilities, Content, Context, Message, MessageId, PersistArgs, PersistResult, Result, Role,
    TenantId, Thread, ThreadId,
};

use crate::{Factory, Outcome};

/// One check's isolated storage and its handle.
pub(crate) struct Store<'f, F: Factory> {
    factory: &'f F,
    storage: F::Storage,
    backend: Option<Arc<F::Backend>>,
}

impl<'f, F: Factory> Store<'f, F> {
    /// Fresh storage and a handle on it, or `Err(skip)` when the factory reports its storage
    /// [`Unavailable`](crate::Unavailable) (a server that is not running outside CI).
    pub(crate) async fn new(factory: &'f F) -> Result<Self, Outcome> {
        let storage = match factory.create().await {
            Ok(storage) => storage,
            Err(error) if error.is::<crate::Unavailable>() => {
                return Err(Outcome::Skipped("the factory's storage is unavailable (see its notice)"));
            }
            Err(error) => panic!("factory: create storage: {error}"),
        };
        let backend = factory.open(&storage).await.expect("factory: open a handle");
        Ok(Self { factory, storage, backend: Some(Arc::new(backend)) })
    }

    /// The handle.
    pub(crate) fn b(&self) -> &Arc<F::Backend> {
        self.backend.as_ref().expect("the store is open")
    }

    pub(crate) fn caps(&self) -> Capabilities {
        self.b().capabilities()
    }

    /// Another independent handle on the same storage.
    pub(crate) async fn second_handle(&self) -> Arc<F::Backend> {
        Arc::new(self.factory.open(&self.storage).await.expect("factory: open a second handle"))
    }

    /// The handles a race runs through: this one and an independent second one when the
    /// backend declares shared storage, this one alone otherwise.
    pub(crate) async fn racing_handles(&self) -> Vec<Arc<F::Backend>> {
        if self.caps().shared_storage {
            vec![Arc::clone(self.b()), self.second_handle().await]
        } else {
            vec![Arc::clone(self.b())]
        }
    }

    /// Drops the handle and opens the storage again.
    pub(crate) async fn reopen(&mut self) {
        let old = self.backend.take().expect("the store is open");
        assert_eq!(Arc::strong_count(&old), 1, "conformance bug: a handle is still alive when reopening");
        drop(old);
        let backend = self.factory.open(&self.storage).await.expect("factory: reopen");
        self.backend = Some(Arc::new(backend));
    }

    /// Releases the storage; the check passed.
    pub(crate) async fn finish(mut self) -> Outcome {
        self.backend = None;
        self.factory.dispose(self.storage).await;
        Outcome::Passed
    }

    /// Releases the storage; the check does not apply.
    pub(crate) async fn skip(mut self, outcome: Outcome) -> Outcome {
        self.backend = None;
        self.factory.dispose(self.storage).await;
        outcome
    }
}

pub(crate) fn t(id: &str) -> ThreadId {
    ThreadId::new(id).expect("valid thread id")
}

pub(crate) fn m(id: &str) -> MessageId {
    MessageId::new(id).expect("valid message id")
}

pub(crate) fn tenant(name: &str) -> TenantId {
    TenantId::new(name).expect("valid tenant")
}

/// A context addressing `tenant`'s threads (`None`: the threads without a tenant).
pub(crate) fn ctx(tenant: Option<&TenantId>) -> Context {
    Context::new().for_tenant(tenant.cloned())
}

pub(crate) fn text_add(thread: &ThreadId, text: &str) -> Add {
    Add::new(thread.clone(), Role::User, Content::text(text))
}

pub(crate) async fn write<B: Backend>(b: &B, args: impl Into<PersistArgs>) -> Result<PersistResult> {
    static WRITES: AtomicUsize = AtomicUsize::new(0);
    apply(b, args.into(), WRITES.fetch_add(1, Ordering::Relaxed).is_multiple_of(2)).await
}

/// Applies a write through [`Backend::apply`] or, when `now`, first offers it to
/// [`Backend::apply_now`] (a write handed back then goes to `apply`), as a pipeline's terminal
/// does. Checks alternate the two, so a backend that answers at once is held to the contract
/// on both paths.
pub(crate) async fn apply<B: Backend>(b: &B, args: PersistArgs, now: bool) -> Result<PersistResult> {
    if now {
        match b.apply_now(args) {
            ApplyNow::Done(result) => result,
            ApplyNow::Wait(args) => b.apply(args).await,
        }
    } else {
        b.apply(args).await
    }
}

/// Applies `args`, which must succeed and answer a message.
pub(crate) async fn written<B: Backend>(b: &B, args: impl Into<PersistArgs>) -> Message {
    let args = args.into();
    let op = args.op();
    match write(b, args).await {
        Ok(result) => result.message().cloned().unwrap_or_else(|| panic!("{op} answered no message: {result:?}")),
        Err(err) => panic!("{op} failed: {err}"),
    }
}

pub(crate) async fn add_text<B: Backend>(b: &B, thread: &ThreadId, text: &str) -> Message {
    written(b, text_add(thread, text)).await
}

pub(crate) async fn get<B: Backend>(b: &B, thread: &ThreadId, id: &MessageId) -> Option<Message> {
    get_in(b, None, thread, id).await
}

pub(crate) async fn get_in<B: Backend>(
    b: &B,
    tenant: Option<&TenantId>,
    thread: &ThreadId,
    id: &MessageId,
) -> Option<Message> {
    b.get(GetMessage::new(thread.clone(), id.clone()).with_context(ctx(tenant))).await.expect("get")
}

pub(crate) async fn thread<B: Backend>(b: &B, thread: &ThreadId) -> Option<Thread> {
    thread_in(b, None, thread).await
}

pub(crate) async fn thread_in<B: Backend>(b: &B, tenant: Option<&TenantId>, thread: &ThreadId) -> Option<Thread> {
    b.get_thread(GetThread::new(thread.clone()).with_context(ctx(tenant))).await.expect("get_thread")
}

/// Every message of the thread without a tenant, placeholders included, by seq (all pages).
pub(crate) async fn all_messages<B: Backend>(b: &B, thread: &ThreadId) -> Vec<Message> {
    all_messages_in(b, None, thread).await
}

/// Every message of `tenant`'s thread, placeholders included, by seq (all pages).
pub(crate) async fn all_messages_in<B: Backend>(b: &B, tenant: Option<&TenantId>, thread: &ThreadId) -> Vec<Message> {
    let mut query = ListMessages::new(thread.clone()).include_reserved(true).with_limit(7).with_context(ctx(tenant));
    let mut items = Vec::new();
    loop {
        let page = b.list(query.clone()).await.expect("list");
        items.extend(page.items.iter().cloned());
        match query.next_page(&page) {
            Some(next) => query = next,
            None => return items,
        }
    }
}

/// Everything visible about `threads` (without a tenant), for before/after comparisons.
pub(crate) async fn snapshot<B: Backend>(b: &B, threads: &[&ThreadId]) -> Vec<(Option<Thread>, Vec<Message>)> {
    snapshot_in(b, None, threads).await
}

/// Everything visible about `tenant`'s `threads`, for before/after comparisons.
pub(crate) async fn snapshot_in<B: Backend>(
    b: &B,
    tenant: Option<&TenantId>,
    threads: &[&ThreadId],
) -> Vec<(Option<Thread>, Vec<Message>)> {
    let mut out = Vec::new();
    for id in threads {
        out.push((thread_in(b, tenant, id).await, all_messages_in(b, tenant, id).await));
    }
    out
}

/// A fresh [`Store`], or returns the check's skip outcome.
macro_rules! open {
    ($factory:expr) => {
        match $crate::fixture::Store::new($factory).await {
            Ok(store) => store,
            Err(skipped) => return skipped,
        }
    };
}
pub(crate) use open;

/// Skips the check (releasing its storage) unless the backend declares every [`Capabilities`]
/// flag named: `gate!(store, summaries, branches)` skips with the reason "the backend does not
/// declare \`summaries\` and \`branches\`". Every check's capability gate is this one, so every
/// skip reads alike.
macro_rules! gate {
    ($store:ident, $first:ident $(, $more:ident)*) => {
        if !($store.caps().$first $(&& $store.caps().$more)*) {
            return $store
                .skip($crate::Outcome::Skipped(concat!(
                    "the backend does not declare `",
                    stringify!($first),
                    "`"
                    $(, " and `", stringify!($more), "`")*
                )))
                .await;
        }
    };
}
pub(crate) use gate;

/// Asserts that `$result` is `Err` matching `$pattern`.
macro_rules! assert_err {
    ($result:expr, $pattern:pat $(if $guard:expr)?) => {
        match $result {
            Err($pattern) $(if $guard)? => {}
            Err(other) => panic!("expected {}, got error {other:?}", stringify!($pattern)),
            Ok(ok) => panic!("expected {}, got {ok:?}", stringify!($pattern)),
        }
    };
}
pub(crate) use assert_err;

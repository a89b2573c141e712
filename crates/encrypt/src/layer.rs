//! [`EncryptLayer`] and its service, [`Encrypt`].

use std::collections::BTreeSet;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use persist_core::args::{AppendTurn, UpdateContent};
use persist_core::raw::take_ready;
use persist_core::read::{GetMessage, ListMessages};
use persist_core::{Added, PersistArgs, PersistError, PersistResult, Reserved, Result, TurnAppended};
use tower::{Layer, Service, ServiceExt};

use crate::keys::Keys;
use crate::sealer::{Plan, Sealer, conflicting};

/// Seals content, and the metadata keys it is told, on the way down; opens them on the way up.
/// See the [crate docs](crate).
///
/// Clones share one configuration and one key source.
///
/// # Example
///
/// ```
/// use persist::encrypt::{EncryptLayer, KeyId, KeyRing, SecretKey};
/// use persist::{args::Add, read::GetMessage, Content, Pipeline, Role, ThreadId};
/// use persist::memory::MemoryBackend;
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let ring = KeyRing::new().with_key(KeyId::new("k1")?, SecretKey::new([42; 32]))?;
/// let store = MemoryBackend::new();
/// let pipeline = Pipeline::builder()
///     .layer(EncryptLayer::new(ring).seal_metadata(["email"]))
///     .build(store.clone());
/// let thread = ThreadId::new("t1")?;
/// let added = pipeline.add(Add::new(thread.clone(), Role::User, Content::text("my secret"))).await?;
/// assert_eq!(added.message.content.to_text(), "my secret"); // the caller sees clear text
///
/// // The store holds an envelope.
/// let stored = Pipeline::new(store).get(GetMessage::new(thread, added.message.id)).await?.unwrap();
/// assert!(!stored.content.as_json().contains("my secret"));
/// # Ok::<_, persist::PersistError>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct EncryptLayer {
    pub(crate) sealer: Arc<Sealer>,
}

impl fmt::Debug for EncryptLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncryptLayer")
            .field("metadata_keys", &self.sealer.metadata_keys)
            .field("titles", &self.sealer.titles)
            .field("allow_clear", &self.sealer.allow_clear)
            .field("clear_vectors", &self.sealer.clear_vectors)
            .finish_non_exhaustive()
    }
}

impl EncryptLayer {
    /// Seals every message's content with keys from `keys`; metadata and titles stay clear
    /// until configured.
    pub fn new(keys: impl Keys) -> Self {
        Self::from_sealer(Sealer {
            keys: Arc::new(keys),
            metadata_keys: BTreeSet::new(),
            titles: false,
            allow_clear: false,
            clear_vectors: false,
            checked: Arc::default(),
        })
    }

    fn from_sealer(sealer: Sealer) -> Self {
        Self { sealer: Arc::new(sealer) }
    }

    fn edit(self, edit: impl FnOnce(&mut Sealer)) -> Self {
        let mut sealer = (*self.sealer).clone();
        edit(&mut sealer);
        Self::from_sealer(sealer)
    }

    /// Also seals the values of these metadata keys, of messages and of threads. A thread
    /// listing cannot filter on them (refused with `InvalidInput` naming `filter`).
    pub fn seal_metadata<I, K>(self, keys: I) -> Self
    where
        I: IntoIterator<Item = K>,
        K: Into<String>,
    {
        let keys: Vec<String> = keys.into_iter().map(Into::into).collect();
        self.edit(|sealer| sealer.metadata_keys.extend(keys))
    }

    /// Also seals thread titles (`false` by default: a title is often shown in lists).
    pub fn seal_titles(self, seal: bool) -> Self {
        self.edit(|sealer| sealer.titles = seal)
    }

    /// Whether a clear value found where a sealed one belongs (written before this layer was
    /// added) is answered as it is (`true`) or refused as `Unreadable` (`false`, the default:
    /// whoever can write to the store directly cannot pass clear text off as sealed).
    /// [`rotate`](Self::rotate) seals such values.
    pub fn allow_clear_values(self, allow: bool) -> Self {
        self.edit(|sealer| sealer.allow_clear = allow)
    }

    /// Whether embeddings may be written and compared (`embed` and `nearest`, see
    /// `persist::vector`) through this layer: `false` by default, and both are refused with
    /// `Unsupported`. A vector is stored in the clear, and it leaks what its message means (close
    /// texts have close vectors; a vector can be matched against guesses, or inverted into text
    /// like the original): turn this on only where the vectors' store is trusted as the clear text
    /// would be. Crypto-shredding does not reach them: destroying a tenant's keys
    /// ([`KeyRing::destroy_tenant`](crate::KeyRing::destroy_tenant)) leaves its vectors in the
    /// store, readable, until its threads are deleted and purged (which removes their vectors),
    /// and in a `VectorIndex` below this layer until `VectorIndex::forget` drops its copy.
    pub fn clear_vectors(self, allow: bool) -> Self {
        self.edit(|sealer| sealer.clear_vectors = allow)
    }
}

impl<S> Layer<S> for EncryptLayer {
    type Service = Encrypt<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Encrypt { inner, sealer: Arc::clone(&self.sealer) }
    }
}

/// The service of [`EncryptLayer`].
#[derive(Clone)]
pub struct Encrypt<S> {
    inner: S,
    sealer: Arc<Sealer>,
}

impl<S: fmt::Debug> fmt::Debug for Encrypt<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Encrypt").field("inner", &self.inner).finish_non_exhaustive()
    }
}

/// The response future of [`Encrypt`]: boxed, since a repeat is decided with a second call
/// (the cost of a box is small next to sealing).
pub type ResponseFuture = Pin<Box<dyn Future<Output = Result<PersistResult>> + Send + 'static>>;

impl<S> Service<PersistArgs> for Encrypt<S>
where
    S: Service<PersistArgs, Response = PersistResult, Error = PersistError> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = PersistResult;
    type Error = PersistError;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, args: PersistArgs) -> Self::Future {
        let mut inner = take_ready(&mut self.inner);
        let sealer = Arc::clone(&self.sealer);
        Box::pin(async move {
            let tenant = args.context().tenant().cloned();
            if let PersistArgs::Restore(restore) = &args {
                crate::restore::open_sealed(&sealer, restore)?;
            }
            if seals(&args) {
                // Before the first seal with a key: the store's check value must be this key's.
                // A tenant's key may be derived from the ring's: the ring's own key is checked
                // too, so a wrong ring key is refused before a new tenant's first write.
                if tenant.is_some()
                    && let Ok((id, key)) = sealer.keys.current(None)
                {
                    crate::check::ensure(&sealer.checked, &mut inner, None, &id, &key).await?;
                }
                let (id, key) = sealer.keys.current(tenant.as_ref())?;
                crate::check::ensure(&sealer.checked, &mut inner, tenant.as_ref(), &id, &key).await?;
                inner.ready().await?;
            }
            let answer = match args {
                PersistArgs::Restore(restore) => crate::restore::restore(&sealer, inner, restore).await,
                PersistArgs::UpdateContent(update) if update.append => clear_append(&sealer, inner, update).await,
                args => match sealer.seal_args(args) {
                    Ok((sealed, plan)) => call(&sealer, inner, sealed, plan).await,
                    Err(error) => Err(error),
                },
            };
            match answer {
                // A value that does not open: say so plainly when this instance's key is not
                // the one the store's check value names (a wrong key, under the right id).
                Err(unreadable @ PersistError::Unreadable { .. }) => match sealer.keys.current(tenant.as_ref()) {
                    Ok((id, _)) if crate::check::known_mismatch(&sealer.checked, tenant.as_ref(), &id) => {
                        Err(crate::check::mismatch(&id, tenant.as_ref()))
                    }
                    _ => Err(unreadable),
                },
                answer => answer,
            }
        })
    }
}

/// `result`, a repeat, with each message's content and metadata those `original` (the clear
/// request) gives it: what a repeat the store rebuilt from the sealed request says in the clear.
fn spent_repeat(result: &PersistResult, original: &PersistArgs) -> Option<PersistResult> {
    let clear = |mut message: persist_core::Message, role, content: &persist_core::Content, metadata| {
        message.role = role;
        message.content = content.clone();
        message.metadata = metadata;
        message
    };
    match (result, original) {
        (PersistResult::Added(added), PersistArgs::Add(add)) => {
            let message = clear(added.message.clone(), add.role.clone(), &add.content, add.metadata.clone());
            Some(Added::new(message, true).into())
        }
        (PersistResult::Reserved(reserved), PersistArgs::Reserve(reserve)) => {
            let placeholder = persist_core::Content::placeholder();
            let message = clear(reserved.message.clone(), reserve.role.clone(), &placeholder, reserve.metadata.clone());
            Some(Reserved::new(message, true).into())
        }
        (PersistResult::TurnAppended(turn), PersistArgs::AppendTurn(asked))
            if turn.messages.len() == asked.messages.len() =>
        {
            let messages = turn.messages.iter().zip(&asked.messages).map(|(stored, asked)| {
                let content = if asked.status == persist_core::Status::Reserved {
                    persist_core::Content::placeholder()
                } else {
                    asked.content.clone()
                };
                clear(stored.clone(), asked.role.clone(), &content, asked.metadata.clone())
            });
            Some(TurnAppended::new(turn.thread_id.clone(), messages.collect(), true).into())
        }
        _ => None,
    }
}

/// A turn the store refused for a key or an id it holds, decided on the clear turn: the stored
/// messages around the one refused (a turn's messages are consecutive) are read, opened, and
/// judged as the store judges a turn ([`TurnPlan::decide`](persist_core::args::TurnPlan::decide)).
/// `None` when the refusal stands.
async fn turn_repeat<S>(
    sealer: &Sealer,
    mut inner: S,
    turn: &AppendTurn,
    plan: &Plan,
    met: persist_core::Message,
) -> Option<Result<PersistResult>>
where
    S: Service<PersistArgs, Response = PersistResult, Error = PersistError>,
{
    let count = turn.messages.len() as u64;
    let window = ListMessages::new(turn.thread_id.clone())
        .after(met.seq.saturating_sub(count + 1))
        .with_limit(u32::try_from(2 * count + 1).unwrap_or(u32::MAX))
        .include_reserved(true)
        .with_context(turn.context.clone());
    let page = match inner.ready().await {
        Ok(ready) => match ready.call(window.into()).await {
            Ok(PersistResult::Messages(page)) => page,
            _ => return None,
        },
        Err(error) => return Some(Err(error)),
    };
    let mut opened = Vec::with_capacity(page.items.len());
    for stored in page.items {
        match sealer.open_message(plan.tenant.as_ref(), stored.clone()) {
            Ok(clear) => opened.push((stored, clear)),
            Err(error) => return Some(Err(error)),
        }
    }
    let clear_plan = match turn.plan() {
        Ok(clear_plan) => clear_plan,
        Err(error) => return Some(Err(error)),
    };
    let repeat = clear_plan.decide(opened.iter().map(|(_, clear)| clear.clone()).collect()).ok()??;
    // Answered as the request asked: opened, or as stored.
    let messages = if plan.raw {
        let ids: Vec<_> = repeat.iter().map(|m| m.id.clone()).collect();
        ids.iter().filter_map(|id| opened.iter().find(|(s, _)| &s.id == id).map(|(s, _)| s.clone())).collect()
    } else {
        repeat
    };
    Some(Ok(TurnAppended::new(turn.thread_id.clone(), messages, true).into()))
}

/// Whether `args` seals a value with the tenant's current key.
fn seals(args: &PersistArgs) -> bool {
    matches!(
        args,
        PersistArgs::Add(_)
            | PersistArgs::Reserve(_)
            | PersistArgs::AppendTurn(_)
            | PersistArgs::UpdateContent(_)
            | PersistArgs::Update(_)
            | PersistArgs::Restore(_)
            | PersistArgs::Summarize(_)
    )
}

/// An append, joined in clear: the store holds an envelope, which it cannot add to. The stored
/// message is read and opened, the update joined to it and sent sealed as a replacement
/// expecting the version read; a write in between is read and joined again, as often as it
/// takes: each conflict means another write went in, so racing appends all get through in turn
/// and none fails for contention (no layer retries an append: its token would be lost). Up to
/// [`persist_core::args::MAX_APPEND_JOINS`] times, so a message rewritten without pause by
/// others cannot hold one forever.
async fn clear_append<S>(sealer: &Sealer, mut inner: S, update: UpdateContent) -> Result<PersistResult>
where
    S: Service<PersistArgs, Response = PersistResult, Error = PersistError> + Clone,
{
    let get = GetMessage::new(update.thread_id.clone(), update.message_id.clone()).with_context(update.context.clone());
    for _ in 0..persist_core::args::MAX_APPEND_JOINS {
        let stored = match inner.ready().await?.call(get.clone().into()).await? {
            PersistResult::Message(Some(stored)) => stored,
            // Absent: the update goes down as it is, to be answered as the store answers it.
            _ => {
                let (sealed, plan) = sealer.seal_args(update.into())?;
                inner.ready().await?;
                return call(sealer, inner, sealed, plan).await;
            }
        };
        let clear = sealer.open_message(update.context.tenant(), stored)?;
        let resolved = update.resolved(&clear)?;
        let expected = resolved.expected_version;
        let (sealed, plan) = sealer.seal_args(resolved.into())?;
        inner.ready().await?;
        // The ready service goes with the write; a clone waits for the next attempt.
        let ready = take_ready(&mut inner);
        match call(sealer, ready, sealed, plan).await {
            Err(PersistError::VersionConflict { expected: got, .. })
                if update.expected_version.is_none() && Some(got) == expected => {}
            answer => return answer,
        }
    }
    Err(persist_core::args::appends_kept_racing())
}

async fn call<S>(sealer: &Sealer, mut inner: S, sealed: PersistArgs, plan: Plan) -> Result<PersistResult>
where
    S: Service<PersistArgs, Response = PersistResult, Error = PersistError>,
{
    let error = match inner.call(sealed).await {
        Ok(result) if result.is_deduplicated() && !plan.raw => {
            // Only a repeat the store rebuilt is at version 1 and fails to open: a stored one
            // that does not open stays `Unreadable`.
            let rebuilt = result.messages().iter().all(|message| message.version == 1);
            let clear = plan.original.as_ref().filter(|_| rebuilt).and_then(|original| spent_repeat(&result, original));
            return match sealer.open_result(result, &plan) {
                // A repeat the store rebuilt from this request (its message is gone: see
                // `persist::spent`) holds the envelopes sealed for this attempt's id: answered
                // from the request in the clear.
                Err(PersistError::Unreadable { .. }) if clear.is_some() => Ok(clear.expect("matched")),
                answer => answer,
            };
        }
        Ok(result) => return sealer.open_result(result, &plan),
        Err(error) => error,
    };
    // An add or reserve the store found a copy of, with another envelope (every seal draws a
    // fresh nonce, and an id minted here): a repeat is decided on the clear request.
    let (Some(original), Some((thread_id, message_id))) = (&plan.original, conflicting(&error)) else {
        return Err(error);
    };
    let get = GetMessage::new(thread_id.clone(), message_id.clone()).with_context(original.context().clone());
    let PersistResult::Message(Some(stored)) = inner.ready().await?.call(get.into()).await? else {
        return Err(error);
    };
    if let PersistArgs::AppendTurn(turn) = original {
        return turn_repeat(sealer, inner, turn, &plan, stored).await.unwrap_or(Err(error));
    }
    let clear = sealer.open_message(plan.tenant.as_ref(), stored.clone())?;
    let repeat = match &error {
        PersistError::IdempotencyKeyReused { .. } => clear.is_keyed_repeat_of(original),
        _ => clear.is_repeat_of(original),
    };
    if !repeat {
        return Err(error);
    }
    // Answered as the request asked: opened, or as stored.
    let answer = if plan.raw { stored } else { clear };
    Ok(match original {
        PersistArgs::Reserve(_) => Reserved::new(answer, true).into(),
        _ => Added::new(answer, true).into(),
    })
}

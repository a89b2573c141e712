//! A [`Restore`] through the layer: sealed like any write, and idempotent like the backends'.

use persist_core::args::Restore;
use persist_core::read::{GetMessage, GetThread};
use persist_core::{PersistArgs, PersistError, PersistResult, Result};
use tower::{Service, ServiceExt};

use crate::sealer::{Plan, Sealer};

/// Seals what `restore` writes. Every seal draws a fresh nonce, so a message sent again would
/// no longer equal its stored copy: each message of a thread that exists is first read, and
/// one whose stored copy opens to it goes down as stored, so the backend counts it present.
///
/// Values already sealed (an export of a sealed store, or a request marked
/// [`AsStored`](crate::AsStored)) go down as they are once they open for their place: an
/// envelope of another tenant, thread or message is `Unreadable`, never stored to be unreadable
/// later, and a clear value where a sealed one belongs is refused unless clear values are
/// allowed.
///
/// [`open_sealed`] must have been called on it first.
pub(crate) async fn restore<S>(sealer: &Sealer, mut inner: S, mut restore: Restore) -> Result<PersistResult>
where
    S: Service<PersistArgs, Response = PersistResult, Error = PersistError>,
{
    let as_stored = restore.context.extensions().get::<crate::AsStored>().is_some();
    let tenant = restore.context.tenant().cloned();
    let context = restore.context.clone();
    let thread = GetThread::new(restore.thread.id.clone()).with_context(context.clone());
    let exists = matches!(inner.ready().await?.call(thread.into()).await?, PersistResult::Thread(Some(_)));
    for message in &mut restore.messages {
        if as_stored || sealer.holds_envelopes(message) {
            // Opened by `open_sealed`: goes down as it is.
            continue;
        }
        if exists {
            let get = GetMessage::new(message.thread_id.clone(), message.id.clone()).with_context(context.clone());
            if let PersistResult::Message(Some(stored)) = inner.ready().await?.call(get.into()).await?
                && sealer.open_message(tenant.as_ref(), stored.clone()).is_ok_and(|clear| clear == *message)
            {
                *message = stored;
                continue;
            }
        }
        sealer.seal_message(tenant.as_ref(), message)?;
    }
    if !(as_stored || sealer.thread_holds_envelopes(&restore.thread)) {
        sealer.seal_thread(tenant.as_ref(), &mut restore.thread)?;
    }
    let result = inner.ready().await?.call(restore.into()).await?;
    sealer.open_result(result, &Plan { tenant, raw: as_stored, original: None })
}

/// Validates `restore` and opens every value it holds sealed, for its place, before anything
/// is written, and before the store's key check values are recorded: a restore of envelopes
/// sealed with other keys (or for another tenant) is `Unreadable` and leaves the store as it
/// was (an import with the wrong keys into a new store must not record them as the store's).
pub(crate) fn open_sealed(sealer: &Sealer, restore: &Restore) -> Result<()> {
    restore.validate()?;
    let as_stored = restore.context.extensions().get::<crate::AsStored>().is_some();
    let tenant = restore.context.tenant();
    for message in &restore.messages {
        if as_stored || sealer.holds_envelopes(message) {
            sealer.open_message(tenant, message.clone())?;
        }
    }
    if as_stored || sealer.thread_holds_envelopes(&restore.thread) {
        sealer.open_thread(restore.thread.clone())?;
    }
    Ok(())
}

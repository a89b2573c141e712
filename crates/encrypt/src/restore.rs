//! A [`Restore`] through the layer: sealed like any write, and idempotent like the backends'.

use persist_core::args::Restore;
use persist_core::read::{GetMessage, GetThread};
use persist_core::{PersistArgs, PersistError, PersistResult, Result};
use tower::{Service, ServiceExt};

use crate::sealer::{Plan, Sealer};

/// Seals what `restore` writes. Every seal draws a fresh nonce, so a message sent again would
/// no longer equal its stored copy: each message of a thread that exists is first read, and
/// one whose stored copy opens to it goes down as stored, so the backend counts it present.
pub(crate) async fn restore<S>(sealer: &Sealer, mut inner: S, mut restore: Restore) -> Result<PersistResult>
where
    S: Service<PersistArgs, Response = PersistResult, Error = PersistError>,
{
    restore.validate()?;
    let tenant = restore.context.tenant().cloned();
    let context = restore.context.clone();
    let thread = GetThread::new(restore.thread.id.clone()).with_context(context.clone());
    let exists = matches!(inner.ready().await?.call(thread.into()).await?, PersistResult::Thread(Some(_)));
    for message in &mut restore.messages {
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
    sealer.seal_thread(tenant.as_ref(), &mut restore.thread)?;
    let result = inner.ready().await?.call(restore.into()).await?;
    sealer.open_result(result, &Plan { tenant, raw: false, original: None })
}

//! Values set once (`SetOnce`): the first value stored under a name stays, per tenant, and
//! writers racing on a name through two handles are all answered with the one that won.

use std::sync::Arc;

use persist_core::once::SetOnce;
use persist_core::{Backend, PersistError, PersistResult, TenantId};
use tokio::sync::Barrier;
use tokio::task::JoinSet;

use crate::fixture::{assert_err, ctx, tenant, write};
use crate::{Factory, Outcome};

async fn set_once<B: Backend>(
    b: &B,
    tenant: Option<&TenantId>,
    name: &str,
    value: &str,
) -> Result<String, PersistError> {
    let request = SetOnce::new(name, value)?.with_context(ctx(tenant));
    match write(b, request).await? {
        PersistResult::Value(value) => Ok(value),
        other => panic!("set_once answered {other:?}"),
    }
}

/// The first value stored under a name stays and is answered to every later writer; another
/// name, another tenant are independent; a bad name or value is `InvalidInput`; writers racing
/// through two handles are all answered with the one value stored. A backend that answers
/// `Unsupported` is skipped (layers that use values, such as key checks, then go without).
pub async fn check_set_once_keeps_the_first_value<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    let b = store.b();
    match set_once(b.as_ref(), None, "key-check.k1", "first").await {
        Err(PersistError::Unsupported { .. }) => {
            return store.skip(Outcome::Skipped("the backend answers `set_once` with Unsupported")).await;
        }
        first => assert_eq!(first.unwrap(), "first"),
    }
    assert_eq!(set_once(b.as_ref(), None, "key-check.k1", "second").await.unwrap(), "first");
    assert_eq!(set_once(b.as_ref(), None, "key-check.k2", "other").await.unwrap(), "other");
    let acme = tenant("acme");
    assert_eq!(set_once(b.as_ref(), Some(&acme), "key-check.k1", "acme's").await.unwrap(), "acme's");
    assert_eq!(set_once(b.as_ref(), None, "key-check.k1", "third").await.unwrap(), "first", "per tenant");
    for (name, value, field) in [("", "v", "name"), ("a\nb", "v", "name"), ("ok", "a\0b", "value")] {
        // Built past `new`, which refuses it too: the backend must refuse it as sent.
        let mut request = SetOnce::new("x", "y").unwrap();
        (request.name, request.value) = (name.to_owned(), value.to_owned());
        assert_err!(write(b, request).await, PersistError::InvalidInput { field: got, .. } if got == field);
    }
    assert_err!(SetOnce::new("n", "v".repeat(5000)), PersistError::InvalidInput { field: "value", .. });

    let handles = store.racing_handles().await;
    let n = 20;
    let barrier = Arc::new(Barrier::new(n));
    let mut tasks = JoinSet::new();
    for i in 0..n {
        let (b, barrier) = (Arc::clone(&handles[i % handles.len()]), barrier.clone());
        tasks.spawn(async move {
            barrier.wait().await;
            set_once(b.as_ref(), None, "raced", &format!("writer {i}")).await.expect("a racing set_once")
        });
    }
    let answers = tasks.join_all().await;
    assert!(answers.iter().all(|answer| answer == &answers[0]), "one value won: {answers:?}");
    store.finish().await
}

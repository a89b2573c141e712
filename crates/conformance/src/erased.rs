//! The suite compiled once, here: every check over [`Erased`], the factory any [`Factory`] is
//! run as. A test binary that stamps the suite for a factory then compiles that factory's
//! adapter (a [`BoxBackend`] over its backend), not 211 checks for each factory it runs.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::pin::Pin;

use persist_core::BoxError;
use persist_core::raw::{BoxBackend, BoxFuture};

use crate::{Factory, Outcome};

/// The storage of a factory run as [`Erased`].
type Storage = Box<dyn Any + Send + Sync>;

/// A check over [`Erased`]: its future, boxed (a check need not be `Send`).
pub type Check = for<'f> fn(&'f Erased) -> Pin<Box<dyn Future<Output = Outcome> + 'f>>;

/// Any [`Factory`], its backend a [`BoxBackend`] and its storage boxed.
pub struct Erased(Box<dyn DynFactory>);

impl Erased {
    /// `factory`, its types erased.
    pub fn new<F>(factory: F) -> Self
    where
        F: Factory + 'static,
        F::Storage: 'static,
    {
        Self(Box::new(factory))
    }
}

impl fmt::Debug for Erased {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Erased").finish_non_exhaustive()
    }
}

/// [`Factory`] made object safe.
trait DynFactory: Send + Sync {
    fn create(&self) -> BoxFuture<'_, Result<Storage, BoxError>>;
    fn open<'a>(&'a self, storage: &'a Storage) -> BoxFuture<'a, Result<BoxBackend, BoxError>>;
    fn dispose(&self, storage: Storage) -> BoxFuture<'_, ()>;
}

impl<F> DynFactory for F
where
    F: Factory,
    F::Storage: 'static,
{
    fn create(&self) -> BoxFuture<'_, Result<Storage, BoxError>> {
        Box::pin(async move { Ok(Box::new(Factory::create(self).await?) as Storage) })
    }

    fn open<'a>(&'a self, storage: &'a Storage) -> BoxFuture<'a, Result<BoxBackend, BoxError>> {
        Box::pin(async move {
            let storage = storage.downcast_ref::<F::Storage>().expect("conformance: the storage this factory made");
            Ok(BoxBackend::new(Factory::open(self, storage).await?))
        })
    }

    fn dispose(&self, storage: Storage) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let storage = storage.downcast::<F::Storage>().expect("conformance: the storage this factory made");
            Factory::dispose(self, *storage).await;
        })
    }
}

impl Factory for Erased {
    type Backend = BoxBackend;
    type Storage = Storage;

    fn create(&self) -> impl Future<Output = Result<Storage, BoxError>> + Send {
        self.0.create()
    }

    async fn open(&self, storage: &Storage) -> Result<BoxBackend, BoxError> {
        self.0.open(storage).await
    }

    fn dispose(&self, storage: Storage) -> impl Future<Output = ()> + Send {
        self.0.dispose(storage)
    }
}

/// One module per group, one [`Check`] per check, each the check over [`Erased`].
#[doc(hidden)]
#[macro_export]
macro_rules! __erased_checks {
    (() $($group:ident { $($check:ident),* $(,)? })*) => {
        $(
            /// The group's checks over [`Erased`](super::Erased).
            pub mod $group {
                $(
                    /// The check of the same name over [`Erased`](super::super::Erased).
                    pub fn $check(
                        factory: &super::super::Erased,
                    ) -> ::std::pin::Pin<Box<dyn ::std::future::Future<Output = $crate::Outcome> + '_>> {
                        Box::pin($crate::$group::$check(factory))
                    }
                )*
            }
        )*
    };
}

/// Every check over [`Erased`], by group.
pub mod checks {
    crate::__for_each_check!(__erased_checks,);
}

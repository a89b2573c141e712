//! What the pipeline's typed calls are made with, besides the list itself (`calls!`, in
//! `requests.rs` at the contract's top): a [`Scoped`](crate::Scoped) handle's method of a call,
//! and whether a request is one a handle refuses across tenants.

/// A [`Scoped`](crate::Scoped) handle's method of a call: the pipeline's, in the handle's
/// context; for a call `calls!` marks `(unless |request| …)`, refused (`Rejected`) when the
/// request reaches across tenants.
macro_rules! scoped_call {
    (scoped $(#[$doc:meta])* $name:ident($args:ty) -> $out:ty) => {
        $(#[$doc])*
        ///
        /// In the handle's context.
        ///
        /// # Errors
        ///
        /// As the pipeline's method of the same name.
        pub async fn $name(&self, request: $args) -> Result<$out> {
            self.pipeline().$name(request.with_context(self.context().renewed())).await
        }
    };
    ((unless $variant:ident |$request:ident| $across:expr) $(#[$doc:meta])* $name:ident($args:ty) -> $out:ty) => {
        $(#[$doc])*
        ///
        /// In the handle's context, which confines it to the handle's tenant.
        ///
        /// # Errors
        ///
        /// `Rejected` for a request across tenants (for operators, never through a handle);
        /// otherwise as the pipeline's method of the same name.
        pub async fn $name(&self, $request: $args) -> Result<$out> {
            if $across {
                return Err(scoped::across_tenants());
            }
            self.pipeline().$name($request.with_context(self.context().renewed())).await
        }
    };
}

/// `Some(whether args reaches across tenants)` when `args` is the request of a call marked
/// `(unless Variant |request| …)`; `None` for any other.
macro_rules! across {
    (scoped, $args:ident) => {
        None
    };
    ((unless $variant:ident |$request:ident| $across:expr), $args:ident) => {
        match $args {
            PersistArgs::$variant($request) => Some($across),
            _ => None,
        }
    };
}

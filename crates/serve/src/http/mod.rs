//! The HTTP plumbing, below everything else of the server (it imports nothing from outside this
//! folder): what a request is refused as ([`error`]) and how JSON travels ([`json`]), the
//! callers' keys ([`auth`], replaced at run time: [`reload`]) and the limits ([`limits`]),
//! admission ([`admit`]: host check by [`hosts`], body deadline, request slot, the access line
//! and [`metrics`]), the accept loop ([`listen`]), what a request carries beyond its route
//! ([`extract`], [`params`]), and services mounted beside the API ([`mount`]).

pub(crate) mod admit;
pub(crate) mod auth;
pub(crate) mod error;
pub(crate) mod extract;
pub(crate) mod hosts;
pub(crate) mod json;
pub(crate) mod limits;
pub(crate) mod listen;
pub mod metrics;
pub(crate) mod mount;
pub(crate) mod params;
pub(crate) mod reload;

//! The specification: the route table ([`routes`], in the vocabulary of [`route`], its prose in
//! [`route_docs`]) that the router is built from, and the OpenAPI 3.1 document generated from it
//! ([`openapi`], with the schemas of [`schemas`], [`request_schemas`] and [`reply_schemas`]).
//! Above the handlers it names (the API's and the extensions'), below the server that serves it.

pub(crate) mod openapi;
pub(crate) mod reply_schemas;
pub(crate) mod request_schemas;
pub(crate) mod route;
pub(crate) mod route_docs;
pub(crate) mod routes;
pub(crate) mod schemas;

//! The route table's vocabulary: a [`Route`] (path, method, handler, access and what the
//! OpenAPI document says of it), its parameters and answers. [`routes`](super::routes) holds
//! the table; [`openapi`](super::openapi) describes any table of these.

use std::sync::Arc;

use axum::routing::{MethodFilter, MethodRouter};
use serde_json::Value;

use crate::state::App;

/// An HTTP method a route takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    Get,
    Post,
    Put,
    Delete,
}

impl Method {
    /// Its name in an OpenAPI path item (`get`, `post`, `put`, `delete`).
    pub(crate) fn key(self) -> &'static str {
        match self {
            Self::Get => "get",
            Self::Post => "post",
            Self::Put => "put",
            Self::Delete => "delete",
        }
    }

    pub(crate) fn filter(self) -> MethodFilter {
        match self {
            Self::Get => MethodFilter::GET,
            Self::Post => MethodFilter::POST,
            Self::Put => MethodFilter::PUT,
            Self::Delete => MethodFilter::DELETE,
        }
    }
}

/// Who may call a route, and whether it is admitted (host check, request slot, access line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// A tenant's route: its caller is known by the server's [`Auth`](crate::Auth).
    Tenant,
    /// Admitted, but without a key: it holds no data (the OpenAPI document).
    Public,
    /// A load balancer's probe: no key, outside the request limit.
    Probe,
}

/// What a route answers with 200.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Answer {
    /// A JSON body of this component schema.
    Json(&'static str),
    /// Server-Sent Events: each event's name and the component schema of its JSON `data`.
    Events(&'static [(&'static str, &'static str)]),
}

/// A query or header parameter.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Param {
    pub(crate) name: &'static str,
    pub(crate) required: bool,
    pub(crate) description: &'static str,
    pub(crate) schema: fn() -> Value,
}

/// One route: a path and a method, its handler, and what the OpenAPI document says of it.
#[derive(Debug, Clone)]
pub(crate) struct Route {
    pub(crate) method: Method,
    /// The path template, in axum's syntax and OpenAPI's alike (`/v1/conversations/{id}`).
    pub(crate) path: &'static str,
    handler: fn(MethodFilter) -> MethodRouter<Arc<App>>,
    pub(crate) access: Access,
    pub(crate) id: &'static str,
    pub(crate) tag: &'static str,
    pub(crate) summary: &'static str,
    /// What the summary leaves out (CommonMark), when anything is.
    pub(crate) description: &'static str,
    pub(crate) query: Vec<Param>,
    pub(crate) headers: Vec<Param>,
    /// The component schema of the JSON request body, when the route reads one.
    pub(crate) body: Option<&'static str>,
    pub(crate) answer: Answer,
    /// The error statuses the route itself answers, beyond those of every route of its access.
    pub(crate) errors: &'static [u16],
    /// What a status means for this route, beyond what it means for any route.
    pub(crate) notes: &'static [(u16, &'static str)],
}

impl Route {
    pub(crate) fn new(method: Method, path: &'static str, handler: fn(MethodFilter) -> MethodRouter<Arc<App>>) -> Self {
        Self {
            method,
            path,
            handler,
            access: Access::Tenant,
            id: "",
            tag: "",
            summary: "",
            description: "",
            query: Vec::new(),
            headers: Vec::new(),
            body: None,
            answer: Answer::Json(""),
            errors: &[],
            notes: &[],
        }
    }

    pub(crate) fn doc(mut self, id: &'static str, tag: &'static str, summary: &'static str) -> Self {
        (self.id, self.tag, self.summary) = (id, tag, summary);
        self
    }

    pub(crate) fn describe(mut self, description: &'static str) -> Self {
        self.description = description;
        self
    }

    /// What some of the route's statuses mean for it (each one it answers).
    pub(crate) fn notes(mut self, notes: &'static [(u16, &'static str)]) -> Self {
        self.notes = notes;
        self
    }

    pub(crate) fn answers(mut self, answer: Answer, errors: &'static [u16]) -> Self {
        (self.answer, self.errors) = (answer, errors);
        self
    }

    pub(crate) fn query(mut self, query: &[Param]) -> Self {
        self.query = query.to_vec();
        self
    }

    pub(crate) fn headers(mut self, headers: &[Param]) -> Self {
        self.headers = headers.to_vec();
        self
    }

    pub(crate) fn body(mut self, schema: &'static str) -> Self {
        self.body = Some(schema);
        self
    }

    pub(crate) fn access(mut self, access: Access) -> Self {
        self.access = access;
        self
    }

    /// The route's handler, for its method.
    pub(crate) fn handler(&self) -> MethodRouter<Arc<App>> {
        (self.handler)(self.method.filter())
    }
}

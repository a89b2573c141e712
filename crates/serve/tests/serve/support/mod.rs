//! What the server's tests share: a server of a pipeline with one tenant's key, on a port of
//! its own.

use persist::{Pipeline, TenantId};
use persist_serve::{ApiKeys, Auth, Server};

/// The key of the one tenant, `acme`.
pub(crate) const ACME: &str = "sk-acme-0123456789abcdef";

/// The key of a second tenant, `globex`.
pub(crate) const GLOBEX: &str = "sk-globex-0123456789abcdef";

/// Keys for both tenants, `acme` and `globex`.
pub(crate) fn keys() -> Auth {
    let keys = ApiKeys::new()
        .with_key(TenantId::new("acme").unwrap(), ACME)
        .unwrap()
        .with_key(TenantId::new("globex").unwrap(), GLOBEX)
        .unwrap();
    Auth::Keys(keys)
}

/// The embedder of the servers `start` starts (recall): what `AutoEmbedLayer` must embed with.
pub(crate) fn embedder() -> persist::recall::HashEmbedder {
    persist::recall::HashEmbedder::new(64)
}

/// A server of `pipeline` with acme's key and [`embedder`], serving until the test ends: its
/// base URL.
pub(crate) async fn start(pipeline: Pipeline) -> String {
    let keys = ApiKeys::new().with_key(TenantId::new("acme").unwrap(), ACME).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = Server::new(pipeline, Auth::Keys(keys)).with_embedder(embedder());
    tokio::spawn(server.serve(listener, std::future::pending()));
    base
}

/// A tracing event's or span's fields, each as text: what the tests' subscribers record.
#[derive(Default)]
pub(crate) struct Fields(pub(crate) std::collections::HashMap<String, String>);

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

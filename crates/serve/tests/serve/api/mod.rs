//! The Conversations API over HTTP, on every backend: what the SDKs rely on (shapes, paging,
//! errors), tenancy, idempotency keys, the atomic pop, limits and a store that does not answer.

mod access;
mod chats;
mod conversations;
mod errors;
mod extensions;
mod replies;
mod writes;

use persist::Pipeline;
use persist::memory::MemoryBackend;
use persist_serve::Server;
use serde_json::Value;

pub(crate) use crate::support::{ACME, GLOBEX, keys};

/// A running server and a client of it.
struct Api {
    base: String,
    http: reqwest::Client,
    key: &'static str,
}

impl Api {
    async fn start(server: Server) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(server.serve(listener, std::future::pending()));
        Self { base, http: reqwest::Client::new(), key: ACME }
    }

    fn as_key(&self, key: &'static str) -> Self {
        Self { base: self.base.clone(), http: self.http.clone(), key }
    }

    async fn send(&self, method: &str, path: &str, body: Option<String>, headers: &[(&str, &str)]) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(self.key);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.header("content-type", "application/json").body(body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.send(method, path, body.map(|b| b.to_string()), &[]).await
    }

    async fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, body) = self.call(method, path, body).await;
        assert_eq!(status, 200, "{method} {path}: {body}");
        body
    }

    /// Every item, following `last_id` and `has_more` as the SDKs' auto-paging does.
    async fn all_items(&self, conversation: &str, order: &str, limit: u32) -> Vec<Value> {
        let mut items = Vec::new();
        let mut after = String::new();
        loop {
            let path = format!("/v1/conversations/{conversation}/items?order={order}&limit={limit}{after}");
            let page = self.ok("GET", &path, None).await;
            assert_eq!(page["object"], "list");
            let data = page["data"].as_array().unwrap().clone();
            assert!(data.len() <= limit as usize);
            items.extend(data);
            if !page["has_more"].as_bool().unwrap() {
                return items;
            }
            after = format!("&after={}", page["last_id"].as_str().unwrap());
        }
    }
}

async fn every_backend() -> Vec<(&'static str, Pipeline, Option<tempfile::TempDir>)> {
    let mut stores = vec![("memory", Pipeline::new(MemoryBackend::new()), None)];
    let dir = tempfile::tempdir().unwrap();
    let sqlite = persist::sqlite::SqliteBackend::open(dir.path().join("serve.db")).await.unwrap();
    stores.push(("sqlite", Pipeline::new(sqlite), Some(dir)));
    if let Some(postgres) = postgres().await {
        stores.push(("postgres", Pipeline::new(postgres), None));
    }
    stores
}

/// A fresh schema on `$PERSIST_POSTGRES_URL` (named as the test kit names its own, so that a later
/// test process drops it once this one is gone); required when `CI` is set, skipped otherwise.
async fn postgres() -> Option<persist::postgres::PostgresBackend> {
    let url =
        std::env::var("PERSIST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let schema = persist_testkit::schemas::new_name();
    let connected =
        persist::postgres::PostgresBackend::builder(&url).schema(&schema).max_connections(8).connect().await;
    match connected {
        Ok(backend) => Some(backend),
        Err(error) if std::env::var_os("CI").is_some() => panic!("PostgreSQL at {url} is required in CI: {error}"),
        Err(error) => {
            eprintln!("SKIPPED the PostgreSQL run: {error}; set PERSIST_POSTGRES_URL");
            None
        }
    }
}

/// A pipeline and a server of it, for the tests that also write as a Rust host would.
async fn shared() -> (Pipeline, Api) {
    let pipeline = Pipeline::new(MemoryBackend::new());
    let api = Api::start(Server::new(pipeline.clone(), keys())).await;
    (pipeline, api)
}

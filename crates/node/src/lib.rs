//! persist in Node, in process: the native addon of the npm package `persist-store`.
//!
//! The addon's surface is two classes and JSON text, on purpose: `NativeStore` opens a store
//! from its URL and answers `call(op, args)` with a promise, and `NativeStream` is a followed
//! reply or the change feed, read with `next()`. Arguments and answers cross as JSON strings:
//! the work (the store's call, building and serializing the answer) runs on napi's tokio
//! runtime, and the event loop's only share is V8's `JSON.parse`, the fastest way a large
//! page becomes JavaScript objects. The package's JavaScript (`npm/persist-store`) gives each
//! call a method, its types (`index.d.ts`) and the error classes an error's `code` names.
//!
//! Every call builds the typed requests of the same pipeline the Rust crates use: UI messages
//! go through the Vercel AI SDK converter ([`persist::convert::vercel_ui`]), replies through
//! [`persist::live`], a followed reply as the SDK's UI message stream through
//! [`persist::live::UiMessageStream`].

mod args;
mod calls;
mod chat;
mod errors;
mod live;
mod streams;

use std::sync::Arc;
use std::time::Duration;

use napi_derive::napi;
use persist::sqlite::Durability;
use persist::{Context, OpenStore, PersistError, Pipeline, Scoped, StoreUrl, TenantId};
use serde_json::Value;

pub use crate::streams::NativeStream;

/// How the store is opened (the options of `Store.open`).
#[derive(Clone, Copy, Default)]
struct Settings {
    busy_timeout: Option<Duration>,
    durability: Option<Durability>,
}

impl Settings {
    /// The options object of `Store.open`, checked.
    fn of(options: &Value) -> persist::Result<Self> {
        let busy_timeout = match options.get("busyTimeoutMs") {
            None | Some(Value::Null) => None,
            Some(value) => match value.as_f64() {
                Some(ms) if ms >= 0.0 && ms.is_finite() => Some(Duration::from_secs_f64(ms / 1000.0)),
                _ => {
                    return Err(PersistError::invalid(
                        "busyTimeoutMs",
                        "busyTimeoutMs must be a number of ms, 0 or more",
                    ));
                }
            },
        };
        let durability = options.get("durability").and_then(Value::as_str).map(str::parse::<Durability>).transpose()?;
        Ok(Self { busy_timeout, durability })
    }
}

/// The store's state: opened on the first call, closed once.
enum State {
    Unopened,
    Open(OpenStore),
    Closed,
}

/// What every handle of one store shares (a tenant's handle too).
struct Shared {
    url: StoreUrl,
    settings: Settings,
    state: tokio::sync::Mutex<State>,
}

impl Shared {
    /// The store's pipeline, opening it on first use.
    async fn pipeline(&self) -> persist::Result<Pipeline> {
        let mut state = self.state.lock().await;
        match &*state {
            State::Open(store) => Ok(store.pipeline().clone()),
            State::Closed => Err(PersistError::Backend { message: "the store was closed".into(), source: None }),
            State::Unopened => {
                let settings = self.settings;
                let store = self
                    .url
                    .connect_with(|mut builder| {
                        if let Some(timeout) = settings.busy_timeout {
                            builder = builder.busy_timeout(timeout);
                        }
                        if let Some(durability) = settings.durability {
                            builder = builder.durability(durability);
                        }
                        builder
                    })
                    .await?;
                let pipeline = store.pipeline().clone();
                *state = State::Open(store);
                Ok(pipeline)
            }
        }
    }

    /// Closes the store; later calls fail.
    async fn close(&self) {
        let previous = std::mem::replace(&mut *self.state.lock().await, State::Closed);
        if let State::Open(store) = previous {
            store.close().await;
        }
    }
}

/// A persist store, opened from its URL on the first call; see the package's `index.d.ts`.
#[napi]
pub struct NativeStore {
    shared: Arc<Shared>,
    tenant: Option<TenantId>,
}

impl std::fmt::Debug for NativeStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NativeStore").field("url", &self.shared.url).field("tenant", &self.tenant).finish()
    }
}

impl NativeStore {
    /// This handle's tenant view of the store.
    async fn scoped(&self) -> persist::Result<Scoped> {
        let pipeline = self.shared.pipeline().await?;
        Ok(pipeline.scoped(Context::new().for_tenant(self.tenant.clone())))
    }
}

/// `text` as the JSON object of a call's arguments (`what` names it in the error).
fn arguments(text: &str) -> persist::Result<Value> {
    match serde_json::from_str::<Value>(text) {
        Ok(value @ Value::Object(_)) => Ok(value),
        Ok(Value::Null) => Ok(Value::Object(Default::default())),
        _ => Err(PersistError::invalid("arguments", "the arguments must be a JSON object")),
    }
}

#[napi]
impl NativeStore {
    /// A store at `url` (`sqlite:` file, `postgres://`, `memory:`), opened by its first call;
    /// `options` is JSON: `{"tenant", "busyTimeoutMs", "durability"}`.
    #[napi(constructor)]
    pub fn new(url: String, options: String) -> napi::Result<Self> {
        let made = (|| {
            let options = arguments(&options)?;
            let url = StoreUrl::parse(&url)?;
            url.check_folder()?;
            let tenant = options.get("tenant").and_then(Value::as_str).map(TenantId::new).transpose()?;
            let settings = Settings::of(&options)?;
            Ok(Self {
                shared: Arc::new(Shared { url, settings, state: tokio::sync::Mutex::new(State::Unopened) }),
                tenant,
            })
        })();
        made.map_err(|error| errors::to_js(&error))
    }

    /// The same store, as `tenant` sees it.
    #[napi]
    pub fn with_tenant(&self, tenant: String) -> napi::Result<NativeStore> {
        let tenant = TenantId::new(tenant).map_err(|error| errors::to_js(&error))?;
        Ok(Self { shared: self.shared.clone(), tenant: Some(tenant) })
    }

    /// The store's URL, without a password.
    #[napi(getter)]
    pub fn url(&self) -> String {
        self.shared.url.to_string()
    }

    /// This handle's tenant.
    #[napi(getter)]
    pub fn tenant(&self) -> Option<String> {
        self.tenant.as_ref().map(|tenant| tenant.as_str().to_owned())
    }

    /// Runs the call `op` with `args` (a JSON object) and answers its JSON.
    #[napi]
    pub async fn call(&self, op: String, args: String) -> napi::Result<String> {
        let answer = async {
            let args = arguments(&args)?;
            if op == "close" {
                self.shared.close().await;
                return Ok(Value::Null);
            }
            calls::run(self.scoped().await?, &op, args).await
        }
        .await;
        match answer {
            Ok(value) => Ok(value.to_string()),
            Err(error) => Err(errors::to_js(&error)),
        }
    }

    /// A stream of `kind` (`"parts"`, `"ui"`: a reply followed; `"feed"`: the change feed)
    /// with `args` (a JSON object), opened by its first `next()`.
    #[napi]
    pub fn follow(&self, kind: String, args: String) -> napi::Result<NativeStream> {
        let opened = arguments(&args).and_then(|args| {
            streams::Opening::of(&kind, args, self.shared.clone(), Context::new().for_tenant(self.tenant.clone()))
        });
        opened.map(NativeStream::new).map_err(|error| errors::to_js(&error))
    }
}

/// Whether a store of this process has the SQLite file at `path` open.
#[napi]
pub fn sqlite_open_in_process(path: String) -> bool {
    persist::sqlite::is_open_in_process(std::path::Path::new(&path))
}

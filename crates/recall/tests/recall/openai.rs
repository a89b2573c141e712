//! `OpenAiEmbedder` against a stand-in embeddings endpoint the test starts: what it sends, how
//! it orders and checks what it is answered, each failure's kind, its timeout; and under
//! `AutoEmbedLayer`, a message stored with its vector when the endpoint works and without one
//! when it does not.

#![cfg(feature = "openai")]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use persist::args::Add;
use persist::memory::MemoryBackend;
use persist::read::ListMessages;
use persist::recall::{AutoEmbedLayer, Embedder, OpenAiEmbedder};
use persist::vector::{Embedding, Nearest};
use persist::{Content, PersistError, Pipeline, Role, ThreadId};
use serde_json::{Value, json};

/// What the stand-in answers.
#[derive(Clone, Copy)]
enum Mode {
    /// Each input's vector (`[its length, 1, index]`, or `dimensions` numbers), `data` reversed.
    Vectors,
    /// Vectors one number short of the `dimensions` asked for.
    ShortVectors,
    /// This status, with an OpenAI-style error.
    Status(u16),
    /// Never answers.
    Silent,
}

#[derive(Clone)]
struct StandIn {
    mode: Arc<Mutex<Mode>>,
    /// Each request's headers and JSON body.
    seen: Arc<Mutex<Vec<(HeaderMap, Value)>>>,
}

impl StandIn {
    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    fn seen(&self) -> Vec<(HeaderMap, Value)> {
        self.seen.lock().unwrap().clone()
    }
}

async fn embeddings(State(stand_in): State<StandIn>, headers: HeaderMap, body: Bytes) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    stand_in.seen.lock().unwrap().push((headers, body.clone()));
    let mode = *stand_in.mode.lock().unwrap();
    let inputs: Vec<String> =
        body["input"].as_array().into_iter().flatten().map(|t| t.as_str().unwrap_or_default().to_owned()).collect();
    let vector = |index: usize, text: &str, short: bool| -> Vec<f32> {
        match body["dimensions"].as_u64() {
            Some(n) => {
                let n = n as usize - usize::from(short);
                (0..n).map(|i| (text.len() + i + index) as f32).collect()
            }
            None => vec![text.len() as f32, 1.0, index as f32],
        }
    };
    match mode {
        Mode::Vectors | Mode::ShortVectors => {
            let short = matches!(mode, Mode::ShortVectors);
            let mut data: Vec<Value> = inputs
                .iter()
                .enumerate()
                .map(|(i, text)| json!({"object": "embedding", "index": i, "embedding": vector(i, text, short)}))
                .collect();
            // Out of order: the embedder orders by `index`.
            data.reverse();
            let answer = json!({"object": "list", "data": data, "model": body["model"],
                                "usage": {"prompt_tokens": 1, "total_tokens": 1}});
            ([(header::CONTENT_TYPE, "application/json")], answer.to_string()).into_response()
        }
        Mode::Status(status) => {
            let answer = json!({"error": {"message": "bad model", "type": "invalid_request_error", "code": null}});
            (StatusCode::from_u16(status).unwrap(), [(header::CONTENT_TYPE, "application/json")], answer.to_string())
                .into_response()
        }
        Mode::Silent => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            StatusCode::OK.into_response()
        }
    }
}

/// A stand-in endpoint on a free port, and its base URL (`http://127.0.0.1:PORT/v1`).
async fn stand_in(mode: Mode) -> (StandIn, String) {
    let state = StandIn { mode: Arc::new(Mutex::new(mode)), seen: Arc::default() };
    let app = Router::new().route("/v1/embeddings", post(embeddings)).with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (state, format!("http://{address}/v1/"))
}

fn texts(texts: &[&str]) -> Vec<String> {
    texts.iter().map(|t| (*t).to_owned()).collect()
}

#[tokio::test]
async fn vectors_come_back_in_the_order_of_the_texts_with_what_the_api_asks_sent() {
    let (stand_in, base) = stand_in(Mode::Vectors).await;
    let embedder = OpenAiEmbedder::new(&base, "text-embedding-3-small").unwrap().with_api_key("sk-test-0123456789");
    assert_eq!(embedder.model(), "text-embedding-3-small");
    let vectors = embedder.embed(&texts(&["a", "bbb", "cc"])).await.unwrap();
    assert_eq!(vectors, [[1.0, 1.0, 0.0], [3.0, 1.0, 1.0], [2.0, 1.0, 2.0]], "by index, not by the answer's order");

    let seen = stand_in.seen();
    assert_eq!(seen.len(), 1);
    let (headers, body) = &seen[0];
    assert_eq!(headers[header::AUTHORIZATION], "Bearer sk-test-0123456789");
    assert_eq!(headers[header::CONTENT_TYPE], "application/json");
    assert_eq!(
        body,
        &json!({"model": "text-embedding-3-small", "input": ["a", "bbb", "cc"], "encoding_format": "float"})
    );

    // No key, no header; no text, no request.
    let keyless = OpenAiEmbedder::new(&base, "m").unwrap();
    keyless.embed(&texts(&["x"])).await.unwrap();
    assert!(!stand_in.seen()[1].0.contains_key(header::AUTHORIZATION));
    assert_eq!(keyless.embed(&[]).await.unwrap(), Vec::<Vec<f32>>::new());
    assert_eq!(stand_in.seen().len(), 2, "an empty call sends nothing");
}

#[tokio::test]
async fn dimensions_are_sent_and_every_vector_is_checked_to_have_them() {
    let (stand_in, base) = stand_in(Mode::Vectors).await;
    let embedder = OpenAiEmbedder::new(&base, "m").unwrap().with_dimensions(4);
    let vectors = embedder.embed(&texts(&["one", "two"])).await.unwrap();
    assert_eq!(vectors.iter().map(Vec::len).collect::<Vec<_>>(), [4, 4]);
    assert_eq!(stand_in.seen()[0].1["dimensions"], 4);

    stand_in.set(Mode::ShortVectors);
    let error = embedder.embed(&texts(&["one", "two"])).await.unwrap_err();
    assert!(matches!(error, PersistError::Backend { .. }), "{error}");
    assert!(error.to_string().contains("3 numbers, not the 4 asked for"), "{error}");
}

#[tokio::test]
async fn a_busy_or_failing_endpoint_is_temporary_and_a_refusal_says_why() {
    let (stand_in, base) = stand_in(Mode::Status(500)).await;
    let embedder = OpenAiEmbedder::new(&base, "m").unwrap();
    for status in [500, 503, 429] {
        stand_in.set(Mode::Status(status));
        let error = embedder.embed(&texts(&["x"])).await.unwrap_err();
        assert!(matches!(error, PersistError::Temporary { .. }), "{status}: {error}");
        assert!(error.is_temporary() && error.to_string().contains(&status.to_string()), "{error}");
    }

    stand_in.set(Mode::Status(400));
    let error = embedder.embed(&texts(&["x"])).await.unwrap_err();
    assert!(matches!(error, PersistError::Backend { .. }), "{error}");
    assert!(!error.is_temporary());
    let text = error.to_string();
    assert!(text.contains("400") && text.contains("bad model"), "{text}");
}

#[tokio::test]
async fn an_endpoint_that_never_answers_times_out_in_time() {
    let (_stand_in, base) = stand_in(Mode::Silent).await;
    let embedder = OpenAiEmbedder::new(&base, "m").unwrap().with_timeout(Duration::from_millis(300));
    let started = Instant::now();
    let error = embedder.embed(&texts(&["x"])).await.unwrap_err();
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(300) && took < Duration::from_secs(3), "{took:?}");
    assert!(matches!(error, PersistError::Temporary { .. }), "{error}");
    assert!(error.to_string().contains("did not answer within 300 ms"), "{error}");
}

#[tokio::test]
async fn an_endpoint_that_cannot_be_reached_is_temporary() {
    // A port that was free a moment ago: nothing listens there.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let embedder = OpenAiEmbedder::new(format!("http://{address}/v1"), "m").unwrap();
    let error = embedder.embed(&texts(&["x"])).await.unwrap_err();
    assert!(matches!(error, PersistError::Temporary { .. }), "{error}");
    assert!(error.to_string().contains("cannot be reached"), "{error}");
}

#[tokio::test]
async fn under_auto_embed_a_message_is_stored_with_its_vector_or_without_but_never_lost() {
    let (stand_in, base) = stand_in(Mode::Vectors).await;
    let embedder = OpenAiEmbedder::new(&base, "m").unwrap().with_dimensions(8);
    let pipeline = Pipeline::builder().layer(AutoEmbedLayer::new(embedder.clone())).build(MemoryBackend::new());
    let thread = ThreadId::new("t1").unwrap();
    let nearest = || {
        let query = Embedding::new("m", (0..8).map(|i| i as f32 + 1.0).collect::<Vec<f32>>());
        Nearest::new(query).in_thread(thread.clone()).with_limit(10)
    };

    let first = pipeline.add(Add::new(thread.clone(), Role::User, Content::text("stored with"))).await.unwrap();
    let found = pipeline.nearest(nearest()).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].message.id, first.message.id);

    stand_in.set(Mode::Status(503));
    let second = pipeline.add(Add::new(thread.clone(), Role::User, Content::text("stored without"))).await.unwrap();
    let listed = pipeline.list(ListMessages::new(thread.clone())).await.unwrap();
    assert_eq!(listed.items.iter().map(|m| m.content.to_text()).collect::<Vec<_>>(), ["stored with", "stored without"]);
    let found = pipeline.nearest(nearest()).await.unwrap();
    assert_eq!(found.len(), 1, "the second has no vector");
    assert_ne!(found[0].message.id, second.message.id);
}

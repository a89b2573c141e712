//! The change feed as Server-Sent Events (`examples/sse_server.rs`) across two app instances
//! sharing one PostgreSQL store: a client of one instance receives the writes made through the
//! other, in order, and after a dropped connection it resumes with exactly the events it missed.
//!
//! The server is `$PERSIST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/test`);
//! the test works in a fresh schema, dropped at the end. In CI (`CI` set) an unreachable server
//! fails the test; elsewhere it is skipped with a notice naming the variable.

#[allow(dead_code, unreachable_pub)] // the example's `main` and `open_store` are not used here
#[path = "../../../examples/sse_server.rs"]
mod sse_server;

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use persist::feed::{FeedEvent, ReadFeed};
use persist::postgres::PostgresBackend;
use persist::read::GetMessage;
use persist::{MessageId, PersistOp, Pipeline, Status, ThreadId};
use sqlx::{AssertSqlSafe, Connection, PgConnection};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio::time::timeout;

const URL_VARIABLE: &str = "PERSIST_POSTGRES_URL";

/// How long a client waits for an answer or an event.
const WAIT: Duration = Duration::from_secs(10);

fn url() -> String {
    std::env::var(URL_VARIABLE).unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A connection for bookkeeping, or `None` (with a notice) outside CI when there is no server.
async fn admin() -> Option<PgConnection> {
    let url = url();
    let why = match timeout(Duration::from_secs(5), PgConnection::connect(&url)).await {
        Ok(Ok(conn)) => return Some(conn),
        Ok(Err(e)) => e.to_string(),
        Err(_) => "timed out".to_owned(),
    };
    assert!(std::env::var_os("CI").is_none(), "PostgreSQL at {url} is required in CI: {why}");
    // Past the test harness's capture: the notice shows in every run.
    use std::io::Write;
    let notice = format!("SKIPPED the SSE feed test: no PostgreSQL at {url} ({why}); set {URL_VARIABLE} to run it");
    let _ = writeln!(std::io::stderr(), "{notice}");
    None
}

async fn drop_schema(schema: &str) {
    if let Some(mut conn) = admin().await {
        // A test-made name only: persist_test_sse_ and hex.
        let drop = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
        let _ = sqlx::query(AssertSqlSafe(drop)).execute(&mut conn).await;
        let _ = conn.close().await;
    }
}

/// Lowercase hex unique to this run: the schema's name and the thread's.
fn unique() -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_nanos());
    format!("{:x}_{nanos:x}", std::process::id())
}

/// Runs `test` with a fresh schema's name and a fresh thread id (`thread` and a suffix), in a
/// task of its own, so the schema is dropped whether it passes or panics; nothing without a
/// server, outside CI.
async fn in_fresh_schema<F: Future<Output = ()> + Send + 'static>(
    thread: &str,
    test: impl FnOnce(String, String) -> F,
) {
    let Some(conn) = admin().await else { return };
    let _ = conn.close().await;
    let suffix = unique();
    let schema = format!("persist_test_sse_{suffix}");
    let outcome = tokio::spawn(test(schema.clone(), format!("{thread}-{suffix}"))).await;
    drop_schema(&schema).await;
    if let Err(failure) = outcome {
        if failure.is_panic() {
            std::panic::resume_unwind(failure.into_panic());
        }
        panic!("the test did not finish: {failure}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_of_one_instance_follows_writes_made_through_another_and_resumes_where_it_stopped() {
    in_fresh_schema("t", two_instances).await;
}

async fn two_instances(schema: String, thread: String) {
    let a = Instance::start(&schema).await;
    let b = Instance::start(&schema).await;
    let http = reqwest::Client::builder()
        // The servers are on this machine, whatever proxy the environment names.
        .no_proxy()
        .build()
        .expect("an HTTP client");
    let thread_id = ThreadId::new(&thread).expect("a valid thread id");
    let events_url = |instance: &Instance| format!("http://{}/threads/{thread}/events", instance.addr);

    // 1. A client follows the thread on B from its start; a turn is written through A.
    let mut following = follow(&http, &events_url(&b), None).await;
    let (user, reply) = post_turn(&http, a.addr, &thread, "hello streaming world").await;
    let expected = feed_after(&a.pipeline, &thread_id, 0).await;
    let last = expected.last().expect("the turn's events are in the feed").position;
    let received = receive_through(&mut following, last).await;
    assert_eq!(received, expected, "B's client receives the events of the write through A, in order, each once");
    assert!(received.windows(2).all(|pair| pair[0].position < pair[1].position), "positions increase: {received:?}");
    // What they are: the user's message, the reply reserved, then one event per token of it.
    assert!(received.len() >= 3, "an add, a reserve and the reply's tokens: {received:?}");
    let (added, reserved, tokens) = (&received[0], &received[1], &received[2..]);
    assert_eq!(
        (added.change.op, added.change.seq, added.change.message_id.as_ref()),
        (PersistOp::Add, Some(1), Some(&user))
    );
    assert_eq!(
        (reserved.change.op, reserved.change.seq, reserved.change.message_id.as_ref()),
        (PersistOp::Reserve, Some(2), Some(&reply))
    );
    assert!(
        tokens.iter().all(
            |event| event.change.op == PersistOp::UpdateContent && event.change.message_id.as_ref() == Some(&reply)
        ),
        "then the reply's content updates: {tokens:?}"
    );
    let stored = a
        .pipeline
        .get(GetMessage::new(thread_id.clone(), reply.clone()))
        .await
        .expect("reading the reply")
        .expect("the reply exists");
    assert_eq!(stored.status, Status::Complete, "the last token finalized the reply");
    assert_eq!(
        tokens.last().map(|event| event.change.version),
        Some(stored.version),
        "the last event is the final version"
    );

    // 2. The connection drops after position `last`; a second turn is written through A; the
    //    client reconnects to B with `Last-Event-ID` and receives exactly what it missed. Its URL
    //    still asks for the thread's start, as a reconnecting EventSource's does: the header wins.
    drop(following);
    post_turn(&http, a.addr, &thread, "are you still there").await;
    let missed = feed_after(&a.pipeline, &thread_id, last).await;
    assert!(missed.iter().all(|event| event.position > last), "read after {last}: {missed:?}");
    let head = missed.last().expect("the second turn's events are in the feed").position;
    let resume_url = format!("{}?after=0", events_url(&b));
    let mut resumed = follow(&http, &resume_url, Some(&last.to_string())).await;
    let received = receive_through(&mut resumed, head).await;
    assert_eq!(received, missed, "the resumed client receives the events after {last}, in order, each once");
    let more = timeout(Duration::from_millis(500), resumed.next()).await;
    assert!(more.is_err(), "nothing follows the missed events (no event twice): {more:?}");
    drop(resumed);

    // 3. The other way round: a client of A follows from the head; a turn is written through B.
    let mut on_a = follow(&http, &events_url(&a), Some(&head.to_string())).await;
    let (user, _) = post_turn(&http, b.addr, &thread, "third turn").await;
    let written = feed_after(&b.pipeline, &thread_id, head).await;
    let newest = written.last().expect("the third turn's events are in the feed").position;
    let received = receive_through(&mut on_a, newest).await;
    assert_eq!(received, written, "A's client receives the events of the write through B");
    let added = &received[0];
    assert_eq!(
        (added.change.op, added.change.seq, added.change.message_id.as_ref()),
        (PersistOp::Add, Some(5), Some(&user))
    );
    drop(on_a);

    // 4. The reload a client does after a gap: the head, then every message of the thread.
    let transcript = get_json(&http, &format!("http://{}/threads/{thread}/messages", b.addr)).await;
    let messages = transcript["messages"].as_array().expect("the messages, as an array");
    assert_eq!(messages.len(), 6, "three turns of two messages: {transcript}");
    assert!(transcript["head"].as_u64().is_some_and(|reloaded| reloaded >= newest), "the head: {transcript}");

    // 5. Refused: a `Last-Event-ID` that is no position, a position beyond the feed's head.
    for bad in ["soon", "999999999"] {
        let response = request(&http, &events_url(&b), Some(bad)).await;
        assert_eq!(response.status().as_u16(), 400, "Last-Event-ID: {bad}");
    }

    drop(http);
    a.stop().await;
    b.stop().await;
}

/// One app instance: its own backend handle (its own pool, as another process would have) on
/// the shared schema, served on a port of its own.
struct Instance {
    pipeline: Pipeline,
    backend: PostgresBackend,
    addr: SocketAddr,
    server: JoinHandle<()>,
}

impl Instance {
    async fn start(schema: &str) -> Self {
        let backend = PostgresBackend::builder(url())
            .schema(schema)
            .max_connections(8)
            .connect()
            .await
            .expect("connecting to PostgreSQL");
        let pipeline = Pipeline::new(backend.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding a port");
        let addr = listener.local_addr().expect("the port bound");
        let app = sse_server::app(pipeline.clone());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serving");
        });
        Self { pipeline, backend, addr, server }
    }

    async fn stop(self) {
        self.server.abort();
        let _ = self.server.await;
        let _ = timeout(WAIT, self.backend.close()).await;
    }
}

/// The thread's events after `after`, as the feed holds them.
async fn feed_after(pipeline: &Pipeline, thread: &ThreadId, after: u64) -> Vec<FeedEvent> {
    let query = ReadFeed::thread(thread.clone()).after(after).with_limit(1000);
    let page = pipeline.read_feed(query).await.expect("reading the feed");
    assert!(!page.has_more, "a test thread's events fit one page");
    page.events
}

/// `POST /threads/{thread}/messages`: the ids of the user's message and of the reply.
async fn post_turn(http: &reqwest::Client, addr: SocketAddr, thread: &str, text: &str) -> (MessageId, MessageId) {
    let url = format!("http://{addr}/threads/{thread}/messages");
    let body = serde_json::json!({ "text": text }).to_string();
    let sent = http.post(url.as_str()).header("content-type", "application/json").body(body).send();
    let response = timeout(WAIT, sent).await.expect("an answer in time").expect("posting a turn");
    let status = response.status();
    let bytes = response.bytes().await.expect("the answer's body");
    assert!(status.is_success(), "POST {url} answered {status}: {}", String::from_utf8_lossy(&bytes));
    let answer: serde_json::Value = serde_json::from_slice(&bytes).expect("a JSON answer");
    let id = |key: &str| {
        let id = answer[key].as_str().unwrap_or_else(|| panic!("no {key} id in {answer}"));
        MessageId::new(id).expect("a valid message id")
    };
    (id("user"), id("reply"))
}

/// `GET url` as JSON.
async fn get_json(http: &reqwest::Client, url: &str) -> serde_json::Value {
    let response = request(http, url, None).await;
    let status = response.status();
    let bytes = response.bytes().await.expect("the answer's body");
    assert!(status.is_success(), "GET {url} answered {status}: {}", String::from_utf8_lossy(&bytes));
    serde_json::from_slice(&bytes).expect("a JSON answer")
}

/// `GET url`, with a `Last-Event-ID` header when given; answers once the headers arrived.
async fn request(http: &reqwest::Client, url: &str, last_event_id: Option<&str>) -> reqwest::Response {
    let mut request = http.get(url);
    if let Some(id) = last_event_id {
        request = request.header("Last-Event-ID", id);
    }
    timeout(WAIT, request.send()).await.expect("an answer in time").expect("a GET")
}

/// Opens the event stream at `url`.
async fn follow(http: &reqwest::Client, url: &str, last_event_id: Option<&str>) -> EventStream {
    let response = request(http, url, last_event_id).await;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        panic!("GET {url} answered {status}: {body}");
    }
    let content_type = response.headers().get("content-type").and_then(|value| value.to_str().ok());
    assert_eq!(content_type, Some("text/event-stream"), "GET {url}");
    EventStream { response, buffer: Vec::new() }
}

/// The feed events a stream sends up to position `last`, each within [`WAIT`].
async fn receive_through(stream: &mut EventStream, last: u64) -> Vec<FeedEvent> {
    let mut events: Vec<FeedEvent> = Vec::new();
    while events.last().is_none_or(|event| event.position < last) {
        let received = timeout(WAIT, stream.next())
            .await
            .unwrap_or_else(|_| panic!("no event within {WAIT:?} after {events:?}"))
            .expect("the stream goes on");
        events.push(received.feed_event());
    }
    events
}

/// One Server-Sent Event as received.
#[derive(Debug)]
struct Received {
    id: Option<String>,
    name: Option<String>,
    data: Option<String>,
}

impl Received {
    /// The feed event it carries, checking that its SSE id is its position and its SSE event
    /// name its op.
    fn feed_event(&self) -> FeedEvent {
        let data = self.data.as_deref().unwrap_or_else(|| panic!("an event without data: {self:?}"));
        let event: FeedEvent =
            serde_json::from_str(data).unwrap_or_else(|e| panic!("not a feed event ({e}): {self:?}"));
        assert_eq!(self.id.as_deref(), Some(event.position.to_string().as_str()), "the id is the position");
        assert_eq!(self.name.as_deref(), Some(event.change.op.to_string().as_str()), "the event name is the op");
        event
    }
}

/// An open event stream, read chunk by chunk as it arrives.
struct EventStream {
    response: reqwest::Response,
    /// What arrived of the events not returned yet.
    buffer: Vec<u8>,
}

impl EventStream {
    /// The next event, keep-alive comments skipped; `None` when the response ends. Nothing is
    /// lost when the future is dropped before it answers.
    async fn next(&mut self) -> Option<Received> {
        loop {
            // Events end with a blank line.
            while let Some(end) = self.buffer.windows(2).position(|pair| pair == b"\n\n") {
                let block: Vec<u8> = self.buffer.drain(..end + 2).collect();
                if let Some(event) = parse_event(&block[..end]) {
                    return Some(event);
                }
            }
            let chunk = self.response.chunk().await.expect("reading the event stream")?;
            self.buffer.extend_from_slice(&chunk);
        }
    }
}

/// The fields of one event's lines; `None` for comments alone (a keep-alive).
fn parse_event(block: &[u8]) -> Option<Received> {
    let text = std::str::from_utf8(block).expect("an event stream is UTF-8");
    let mut event = Received { id: None, name: None, data: None };
    for line in text.lines().filter(|line| !line.starts_with(':')) {
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        // One space after the colon is part of the syntax, not of the value.
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "id" => event.id = Some(value.to_owned()),
            "event" => event.name = Some(value.to_owned()),
            // Data over several lines is one value, the lines joined by newlines.
            "data" => {
                event.data = Some(match event.data.take() {
                    Some(data) => format!("{data}\n{value}"),
                    None => value.to_owned(),
                });
            }
            _ => {}
        }
    }
    (event.id.is_some() || event.name.is_some() || event.data.is_some()).then_some(event)
}

/// Two `POST /api/chat` to one thread at once, through two instances: one generates, the other
/// is `409 Conflict` and writes nothing; the winner's `POST` sent again follows its reply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_chat_posts_to_one_thread_generate_one_reply() {
    in_fresh_schema("chat", one_generation).await;
}

async fn one_generation(schema: String, thread: String) {
    let a = Instance::start(&schema).await;
    let b = Instance::start(&schema).await;
    let http = reqwest::Client::builder().no_proxy().build().expect("an HTTP client");
    let post = |addr: SocketAddr, turn: &str| {
        let body = serde_json::json!({
            "id": thread,
            "messages": [{"id": turn, "role": "user", "parts": [{"type": "text", "text": "hello"}]}],
            "persist": {"tokens": 5, "delay_ms": 40},
        });
        http.post(format!("http://{addr}/api/chat"))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
    };
    for round in 0..3 {
        let (first, second) = tokio::join!(post(a.addr, &format!("u{round}a")), post(b.addr, &format!("u{round}b")));
        let (first, second) = (first.expect("an answer"), second.expect("an answer"));
        let mut statuses = [first.status().as_u16(), second.status().as_u16()];
        statuses.sort_unstable();
        assert_eq!(statuses, [200, 409], "round {round}: one generates, the other is refused");
        let winner = if first.status().is_success() { format!("u{round}a") } else { format!("u{round}b") };
        let (winning, losing) = if first.status().is_success() { (first, second) } else { (second, first) };
        assert!(losing.text().await.unwrap().contains("still being generated"));
        // Sent again while it generates: the same reply, followed.
        let again = post(a.addr, &winner).await.expect("an answer");
        assert_eq!(again.status().as_u16(), 200, "a retried POST follows its reply");
        let (streamed, retried) = (winning.text().await.unwrap(), again.text().await.unwrap());
        assert!(streamed.contains("\"type\":\"finish\"") && retried.contains("\"type\":\"finish\""), "{retried}");
    }
    let listing = persist::read::ListMessages::new(ThreadId::new(&thread).unwrap()).include_reserved(true);
    let messages = a.pipeline.list(listing).await.expect("the thread").items;
    let roles: Vec<&str> = messages.iter().map(|m| m.role.as_str()).collect();
    assert_eq!(roles, ["user", "assistant", "user", "assistant", "user", "assistant"], "one turn a round");
    assert!(messages.iter().all(|m| m.status == Status::Complete), "{messages:?}");
    a.stop().await;
    b.stop().await;
}

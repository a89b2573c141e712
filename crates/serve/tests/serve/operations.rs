//! `Server::serve` in production: slow clients hold no request slot (header and body deadlines,
//! admission after the body), a cap on open connections, a shutdown bounded in time that ends
//! the event streams, and keys replaced while it serves.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use persist::layer::from_fn;
use persist::memory::MemoryBackend;
use persist::{PersistOp, Pipeline, TenantId};
use persist_serve::{ApiKeys, Auth, Limits, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const ACME: &str = "sk-acme-0123456789abcdef";
const GLOBEX: &str = "sk-globex-0123456789abcdef";
const INITECH: &str = "sk-initech-0123456789abcdef";

/// Generous bounds: the machines running these tests are slow and shared.
const PROMPTLY: Duration = Duration::from_secs(5);

fn keys(pairs: &[(&str, &str)]) -> ApiKeys {
    pairs
        .iter()
        .fold(ApiKeys::new(), |keys, (tenant, key)| keys.with_key(TenantId::new(*tenant).unwrap(), key).unwrap())
}

fn server(pipeline: Pipeline, limits: Limits) -> Server {
    Server::new(pipeline, Auth::Keys(keys(&[("acme", ACME), ("globex", GLOBEX)]))).with_limits(limits)
}

/// Serves `server` on a port of its own until `shutdown` completes: its address, and the
/// serving task.
async fn start(
    server: Server,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> (String, tokio::task::JoinHandle<std::io::Result<()>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    (address, tokio::spawn(server.serve(listener, shutdown)))
}

/// A request as raw HTTP/1.1 on a connection of its own (closed after the answer): its status
/// and body.
async fn call(address: &str, method: &str, path: &str, key: &str, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(address).await.unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let answer = read_all(&mut stream).await;
    (status_of(&answer), answer.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default())
}

/// Everything the server sends on `stream` until it closes it (a reset is a close too).
async fn read_all(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    String::from_utf8_lossy(&answer).into_owned()
}

fn status_of(answer: &str) -> u16 {
    answer.split(' ').nth(1).and_then(|status| status.parse().ok()).unwrap_or(0)
}

/// A connection that sent a request's headers and the first byte of its 100-byte body.
async fn slow_body(address: &str) -> TcpStream {
    let mut stream = TcpStream::connect(address).await.unwrap();
    let head = format!(
        "POST /v1/conversations HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {ACME}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream
}

/// A connection that sent part of a request's headers.
async fn slow_headers(address: &str) -> TcpStream {
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream.write_all(format!("POST /v1/conversations HTTP/1.1\r\nHost: {address}\r\n").as_bytes()).await.unwrap();
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_hold_no_request_slot_and_are_dropped_after_their_deadline() {
    let limits = Limits::default()
        .with_max_concurrent_requests(4)
        .with_header_timeout(Duration::from_secs(1))
        .with_body_timeout(Duration::from_secs(1));
    let (address, _served) = start(server(Pipeline::new(MemoryBackend::new()), limits), std::future::pending()).await;
    // Twice as many slow uploaders as there are request slots, and as many slow-header sockets.
    let mut uploaders = Vec::new();
    let mut silent = Vec::new();
    for _ in 0..8 {
        uploaders.push(slow_body(&address).await);
        silent.push(slow_headers(&address).await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let health = tokio::time::timeout(PROMPTLY, call(&address, "GET", "/health", ACME, "")).await;
    assert_eq!(health.expect("the probe answers").0, 200);
    let created = tokio::time::timeout(PROMPTLY, call(&address, "POST", "/v1/conversations", ACME, "{}")).await;
    let (status, body) = created.expect("a normal request answers");
    assert_eq!(status, 200, "the slow clients hold no request slot: {body}");
    for mut stream in uploaders {
        let answer = tokio::time::timeout(PROMPTLY, read_all(&mut stream)).await.expect("answered and closed");
        assert_eq!(status_of(&answer), 408, "{answer}");
        assert!(answer.contains("request_timeout") && answer.to_ascii_lowercase().contains("connection: close"));
    }
    for mut stream in silent {
        let answer = tokio::time::timeout(PROMPTLY, read_all(&mut stream)).await.expect("closed after the deadline");
        assert!(answer.is_empty() || status_of(&answer) == 408, "{answer}");
    }
    // The slots were never taken: four requests at once still answer.
    let calls: Vec<_> = (0..4)
        .map(|_| {
            let address = address.clone();
            tokio::spawn(async move { call(&address, "GET", "/v1/persist/conversations", ACME, "").await })
        })
        .collect();
    for answered in calls {
        let (status, body) = answered.await.unwrap();
        assert_eq!(status, 200, "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_at_work_take_the_slots_and_the_probes_answer_outside_them() {
    // Every store call but the readiness ping waits while the gate is shut.
    let shut = Arc::new(AtomicBool::new(true));
    let open = Arc::new(tokio::sync::Notify::new());
    let waiting = Arc::new(AtomicUsize::new(0));
    let (gate, opened, waiters) = (Arc::clone(&shut), Arc::clone(&open), Arc::clone(&waiting));
    let pipeline = Pipeline::builder()
        .layer(from_fn(move |args: persist::PersistArgs, next| {
            let (gate, opened, waiters) = (Arc::clone(&gate), Arc::clone(&opened), Arc::clone(&waiters));
            async move {
                if args.op() != PersistOp::Ping {
                    waiters.fetch_add(1, Ordering::SeqCst);
                    loop {
                        let notified = opened.notified();
                        if !gate.load(Ordering::SeqCst) {
                            break;
                        }
                        notified.await;
                    }
                }
                next.run(args).await
            }
        }))
        .build(MemoryBackend::new());
    let limits = Limits::default().with_max_concurrent_requests(4).with_store_timeout(Duration::from_secs(60));
    let (address, _served) = start(server(pipeline, limits), std::future::pending()).await;
    let working: Vec<_> = (0..4)
        .map(|_| {
            let address = address.clone();
            tokio::spawn(async move { call(&address, "POST", "/v1/conversations", ACME, "{}").await })
        })
        .collect();
    // Once the four are in the store, each holding a slot, a fifth request is refused at once.
    for _ in 0..300 {
        if waiting.load(Ordering::SeqCst) >= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(waiting.load(Ordering::SeqCst), 4, "four requests reached the store");
    let refused = tokio::time::timeout(PROMPTLY, call(&address, "GET", "/v1/persist/conversations", ACME, "")).await;
    assert_eq!(refused.expect("a refusal is at once").0, 429, "the fifth request is 429 while four work");
    for probe in ["/health", "/ready"] {
        let answered = tokio::time::timeout(PROMPTLY, call(&address, "GET", probe, ACME, "")).await;
        assert_eq!(answered.expect("answered outside the limit").0, 200, "{probe}");
    }
    shut.store(false, Ordering::SeqCst);
    open.notify_waiters();
    for work in working {
        let (status, body) = tokio::time::timeout(PROMPTLY, work).await.expect("answered").unwrap();
        assert_eq!(status, 200, "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_wait_until_one_closes() {
    let limits = Limits::default().with_max_connections(2).with_header_timeout(Duration::from_secs(5));
    let (address, _served) = start(server(Pipeline::new(MemoryBackend::new()), limits), std::future::pending()).await;
    let first = TcpStream::connect(&address).await.unwrap();
    let mut second = TcpStream::connect(&address).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let third = tokio::spawn({
        let address = address.clone();
        async move { call(&address, "GET", "/health", ACME, "").await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!third.is_finished(), "a third connection waits while two are open");
    drop(first);
    let answered = tokio::time::timeout(PROMPTLY, third).await.expect("answered once one closed").unwrap();
    assert_eq!(answered.0, 200);
    // The idle connection is closed after the header deadline.
    let closed = tokio::time::timeout(Duration::from_secs(15), read_all(&mut second)).await;
    assert_eq!(closed.expect("closed after 5 s idle"), "");
}

/// A server shut down with `shutdown_timeout`, a request sent but for its body (with
/// `half_sent`: accepted before the stream is answered) and then an event stream of a
/// conversation open: what shuts it down, the stream, the half-sent request and the serving task.
async fn streaming(
    shutdown_timeout: Duration,
    half_sent: bool,
) -> (tokio::sync::oneshot::Sender<()>, TcpStream, Option<TcpStream>, tokio::task::JoinHandle<std::io::Result<()>>) {
    let limits = Limits::default()
        .with_shutdown_timeout(shutdown_timeout)
        .with_header_timeout(Duration::from_secs(120))
        .with_body_timeout(Duration::from_secs(120));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async move {
        let _ = stopped.await;
    };
    let (address, served) = start(server(Pipeline::new(MemoryBackend::new()), limits), shutdown).await;
    let items = r#"{"items": [{"role": "user", "content": "Where is my order?"}]}"#;
    let (status, created) = call(&address, "POST", "/v1/conversations", ACME, items).await;
    assert_eq!(status, 200, "{created}");
    let id = serde_json::from_str::<serde_json::Value>(&created).unwrap()["id"].as_str().unwrap().to_owned();
    let half_sent = match half_sent {
        true => Some(slow_body(&address).await),
        false => None,
    };
    let mut events = TcpStream::connect(&address).await.unwrap();
    let get = format!(
        "GET /v1/persist/conversations/{id}/events HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {ACME}\r\n\r\n"
    );
    events.write_all(get.as_bytes()).await.unwrap();
    let mut head = [0; 12];
    events.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    (stop, events, half_sent, served)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_ends_the_event_streams_at_once() {
    // A minute for the requests in flight: the stream is not one of them.
    let (stop, mut events, _, served) = streaming(Duration::from_secs(60), false).await;
    stop.send(()).unwrap();
    let returned = tokio::time::timeout(Duration::from_secs(10), served).await;
    returned.expect("the stream ended and serve returned").unwrap().unwrap();
    let rest = tokio::time::timeout(PROMPTLY, read_all(&mut events)).await.expect("the stream's connection closed");
    assert!(rest.contains("event: add"), "the stream sent what was stored before it ended: {rest}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_closes_the_connections_still_busy_after_its_timeout() {
    // The half-sent request's body would be waited for two minutes.
    let (stop, _events, half_sent, served) = streaming(Duration::from_secs(1), true).await;
    let mut half_sent = half_sent.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.send(()).unwrap();
    let returned = tokio::time::timeout(Duration::from_secs(10), served).await;
    returned.expect("serve returns once its shutdown timeout passed").unwrap().unwrap();
    let answer = tokio::time::timeout(PROMPTLY, read_all(&mut half_sent)).await.expect("the busy connection closed");
    assert_eq!(answer, "", "the half-sent request was not answered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_streams_ends_the_event_streams_of_a_server_left_running() {
    let server = server(Pipeline::new(MemoryBackend::new()), Limits::default());
    let (address, _served) = start(server.clone(), std::future::pending()).await;
    let (_, created) = call(&address, "POST", "/v1/conversations", ACME, "{}").await;
    let id = serde_json::from_str::<serde_json::Value>(&created).unwrap()["id"].as_str().unwrap().to_owned();
    let mut events = TcpStream::connect(&address).await.unwrap();
    let get = format!(
        "GET /v1/persist/conversations/{id}/events HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {ACME}\r\n\r\n"
    );
    events.write_all(get.as_bytes()).await.unwrap();
    let mut head = [0; 12];
    events.read_exact(&mut head).await.unwrap();
    server.close_streams();
    // The stream's body ends (its last chunk), the connection stays for another request.
    let ended = tokio::time::timeout(PROMPTLY, async {
        let mut seen = Vec::new();
        let mut buffer = [0; 1024];
        while !seen.ends_with(b"0\r\n\r\n") {
            let read = events.read(&mut buffer).await.unwrap();
            assert!(read > 0, "the connection stays open");
            seen.extend_from_slice(&buffer[..read]);
        }
    })
    .await;
    ended.expect("the stream ended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_stream_outlives_the_header_deadline() {
    let limits =
        Limits::default().with_header_timeout(Duration::from_secs(1)).with_body_timeout(Duration::from_secs(1));
    let (address, _served) = start(server(Pipeline::new(MemoryBackend::new()), limits), std::future::pending()).await;
    let (_, created) = call(&address, "POST", "/v1/conversations", ACME, "{}").await;
    let id = serde_json::from_str::<serde_json::Value>(&created).unwrap()["id"].as_str().unwrap().to_owned();
    let mut events = TcpStream::connect(&address).await.unwrap();
    let get = format!(
        "GET /v1/persist/conversations/{id}/events HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {ACME}\r\n\r\n"
    );
    events.write_all(get.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let items = r#"{"items": [{"role": "user", "content": "still there?"}]}"#;
    let (status, _) = call(&address, "POST", &format!("/v1/conversations/{id}/items"), ACME, items).await;
    assert_eq!(status, 200);
    let followed = tokio::time::timeout(PROMPTLY, async {
        let mut seen = String::new();
        let mut buffer = [0; 4096];
        while !seen.contains("event: add") {
            let read = events.read(&mut buffer).await.unwrap();
            assert!(read > 0, "the stream was closed: {seen}");
            seen.push_str(&String::from_utf8_lossy(&buffer[..read]));
        }
    })
    .await;
    followed.expect("the write arrived on the stream, open past the deadlines");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_replaced_while_it_serves() {
    let server = server(Pipeline::new(MemoryBackend::new()), Limits::default());
    let (address, _served) = start(server.clone(), std::future::pending()).await;
    let list = async |key: &str| call(&address, "GET", "/v1/persist/conversations", key, "").await.0;
    assert_eq!((list(ACME).await, list(GLOBEX).await, list(INITECH).await), (200, 200, 401));
    server.reload_keys(keys(&[("acme", ACME), ("initech", INITECH)])).unwrap();
    assert_eq!((list(ACME).await, list(GLOBEX).await, list(INITECH).await), (200, 401, 200));
    let refused = server.reload_keys(ApiKeys::new()).unwrap_err();
    assert!(refused.to_string().contains("kept"), "{refused}");
    assert_eq!((list(ACME).await, list(INITECH).await), (200, 200), "no keys: the keys in use stay");
    let open = Server::new(Pipeline::new(MemoryBackend::new()), Auth::Open(None));
    assert!(open.reload_keys(keys(&[("acme", ACME)])).is_err(), "a server without keys takes none");
}

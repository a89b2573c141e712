//! `persist serve` run as operators run it, by its binary: SIGTERM ends the event streams and
//! exits within `--shutdown-timeout`, what was acknowledged stored; SIGHUP reloads the keys
//! file (a bad one keeps the keys in use); `--pool-size` bounds the PostgreSQL connections.

#![cfg(unix)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use crate::support;
use crate::support::served::{Served, head};
use crate::support::{Schema, ok, path_str, postgres_url};

const ACME: &str = "sk-acme-0123456789abcdef";
const GLOBEX: &str = "sk-globex-0123456789abcdef";
const INITECH: &str = "sk-initech-0123456789abcdef";

/// Reads `stream` until the server closes it, failing after `limit`.
fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> String {
    stream.set_read_timeout(Some(limit)).unwrap();
    let mut seen = Vec::new();
    let mut buffer = [0; 4096];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return String::from_utf8_lossy(&seen).into_owned(),
            Ok(read) => seen.extend_from_slice(&buffer[..read]),
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => {
                return String::from_utf8_lossy(&seen).into_owned();
            }
            Err(error) => panic!("not closed within {limit:?} ({error}): {}", String::from_utf8_lossy(&seen)),
        }
    }
}

/// `persist serve` on a SQLite file with a conversation of two acknowledged writes, a request
/// sent but for its body (with `half_sent`), then the conversation's event stream open: the
/// server, the file's URL, the conversation, the stream and the half-sent request.
fn serving_a_stream(
    dir: &tempfile::TempDir,
    shutdown_timeout: &str,
    half_sent: bool,
) -> (Served, String, String, TcpStream, Option<TcpStream>) {
    let url = format!("sqlite:{}", path_str(&dir.path().join("chat.db")));
    let args = [
        "--url",
        &url,
        "serve",
        "--no-auth",
        "--addr",
        "127.0.0.1:0",
        "--shutdown-timeout",
        shutdown_timeout,
        "--header-timeout",
        "2m",
        "--body-timeout",
        "2m",
    ];
    let served = Served::start(&args, &[]);
    let create = r#"{"items": [{"role": "user", "content": "Where is my order?"}]}"#;
    let (status, created) = served.call("POST", "/v1/conversations", None, create);
    assert_eq!(status, 200, "{created}");
    let id = serde_json::from_str::<serde_json::Value>(&created).unwrap()["id"].as_str().unwrap().to_owned();
    let reply = r#"{"items": [{"type": "message", "role": "assistant", "content": "It ships tomorrow."}]}"#;
    let (status, written) = served.call("POST", &format!("/v1/conversations/{id}/items"), None, reply);
    assert_eq!(status, 200, "{written}");
    // A body that never comes: it would hold the process for its two-minute deadline. Sent
    // first, it is accepted before the stream is answered.
    let half_sent = half_sent.then(|| {
        let mut stream = TcpStream::connect(&served.addr).unwrap();
        let post = head(&served.addr, "POST", &format!("/v1/conversations/{id}/items"), None, 200);
        stream.write_all(format!("{post}{{\"items\": [").as_bytes()).unwrap();
        stream
    });
    let mut events = TcpStream::connect(&served.addr).unwrap();
    let get = format!("GET /v1/persist/conversations/{id}/events HTTP/1.1\r\nHost: {}\r\n\r\n", served.addr);
    events.write_all(get.as_bytes()).unwrap();
    events.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut status_line = [0; 12];
    events.read_exact(&mut status_line).unwrap();
    assert_eq!(&status_line, b"HTTP/1.1 200");
    (served, url, id, events, half_sent)
}

#[test]
fn sigterm_exits_within_the_shutdown_timeout_with_what_was_acknowledged_stored() {
    let dir = tempfile::tempdir().unwrap();
    let (mut served, url, id, mut events, half_sent) = serving_a_stream(&dir, "2s", true);
    let mut half_sent = half_sent.unwrap();
    std::thread::sleep(Duration::from_millis(300));
    served.signal("TERM");
    assert!(served.exits_within(Duration::from_secs(30)), "a clean exit: {}", served.log());
    let streamed = read_until_closed(&mut events, Duration::from_secs(10));
    assert!(streamed.contains("event: add"), "{streamed}");
    let refused = read_until_closed(&mut half_sent, Duration::from_secs(10));
    assert!(!refused.contains("200 OK"), "the half-sent request wrote nothing: {refused}");
    let log = served.log();
    assert!(log.contains("closed the connections still busy after the shutdown timeout"), "{log}");
    // Reopened, the store holds both acknowledged writes, and nothing of the half-sent one.
    let shown = ok(&["--url", &url, "show", &id, "--json"]);
    assert!(shown.contains("Where is my order?") && shown.contains("It ships tomorrow."), "{shown}");
    assert_eq!(shown.matches(r#""kind":"message""#).count(), 2, "{shown}");
}

#[test]
fn sigterm_ends_the_event_streams_at_once() {
    let dir = tempfile::tempdir().unwrap();
    // A minute for the requests in flight: an event stream is not one, it ends at once.
    let (mut served, _, _, mut events, _) = serving_a_stream(&dir, "1m", false);
    served.signal("TERM");
    assert!(served.exits_within(Duration::from_secs(30)), "a clean exit: {}", served.log());
    read_until_closed(&mut events, Duration::from_secs(10));
    assert!(served.log().contains("every request in flight was answered"), "{}", served.log());
}

#[test]
fn sighup_reloads_the_keys_file_and_a_bad_one_keeps_the_keys_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keys");
    std::fs::write(&file, format!("acme:{ACME}\n")).unwrap();
    let args = ["--url", "memory:", "serve", "--addr", "127.0.0.1:0", "--keys-file", path_str(&file)];
    let served = Served::start(&args, &[("PERSIST_SERVE_KEYS", &format!("globex:{GLOBEX}"))]);
    let status = |key: &str| served.call("GET", "/v1/persist/conversations", Some(key), "").0;
    assert_eq!((status(ACME), status(GLOBEX), status(INITECH)), (200, 200, 401));
    std::fs::write(&file, format!("acme:{ACME}\n# added\ninitech:{INITECH}\n")).unwrap();
    served.signal("HUP");
    assert!(Served::eventually(Duration::from_secs(15), || status(INITECH) == 200), "{}", served.log());
    assert_eq!((status(ACME), status(GLOBEX)), (200, 200), "the other keys still serve");
    assert!(served.log().contains("reloaded the API keys"), "{}", served.log());
    std::fs::write(&file, format!("acme:{ACME}\nthis line is no key\n")).unwrap();
    served.signal("HUP");
    let warned = || served.log().lines().any(|line| line.contains("WARN") && line.contains("kept the API keys in use"));
    assert!(Served::eventually(Duration::from_secs(15), warned), "{}", served.log());
    let log = served.log();
    assert!(log.contains("line 2: not TENANT:KEY"), "the log says why: {log}");
    assert!(!log.contains(ACME) && !log.contains(INITECH), "no key is logged: {log}");
    assert_eq!((status(ACME), status(GLOBEX), status(INITECH)), (200, 200, 200), "the keys in use stay");
    std::fs::remove_file(&file).unwrap();
    served.signal("HUP");
    let missing = || served.log().contains("reading the keys file");
    assert!(Served::eventually(Duration::from_secs(15), missing), "{}", served.log());
    assert_eq!(status(INITECH), 200, "a missing file keeps them too");
}

#[test]
fn pool_size_bounds_the_postgresql_connections() {
    let Some(server) = postgres_url("persist serve --pool-size") else {
        return;
    };
    let schema = Schema::new(server.clone());
    // The connections of this instance name themselves after the test's schema.
    let url = format!("{}&application_name={}", schema.url(), schema.name);
    let args = ["--url", &url, "serve", "--no-auth", "--addr", "127.0.0.1:0", "--pool-size", "2"];
    let served = Arc::new(Served::start(&args, &[]));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (done, server, name) = (Arc::clone(&done), server.clone(), schema.name.clone());
        std::thread::spawn(move || {
            support::block_on(async move {
                use sqlx::Connection;
                let mut conn = sqlx::PgConnection::connect(&server).await.unwrap();
                let mut most = 0_i64;
                while !done.load(std::sync::atomic::Ordering::SeqCst) {
                    let open: i64 =
                        sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1")
                            .bind(&name)
                            .fetch_one(&mut conn)
                            .await
                            .unwrap();
                    most = most.max(open);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                most
            })
        })
    };
    let body =
        r#"{"items": [{"role": "user", "content": "Where is my order?"}, {"role": "assistant", "content": "Here."}]}"#;
    for _ in 0..3 {
        let clients: Vec<_> = (0..16)
            .map(|_| {
                let served = Arc::clone(&served);
                std::thread::spawn(move || served.call("POST", "/v1/conversations", None, body))
            })
            .collect();
        for client in clients {
            let (status, answer) = client.join().unwrap();
            assert_eq!(status, 200, "{answer}");
        }
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let most = sampler.join().unwrap();
    assert!((1..=2).contains(&most), "{most} connections open at once; --pool-size 2");
}

#[test]
fn help_names_each_production_setting_and_its_variable() {
    let help = ok(&["serve", "--help"]);
    for setting in [
        "--header-timeout",
        "PERSIST_SERVE_HEADER_TIMEOUT",
        "--body-timeout",
        "PERSIST_SERVE_BODY_TIMEOUT",
        "--max-connections",
        "PERSIST_SERVE_MAX_CONNECTIONS",
        "--shutdown-timeout",
        "PERSIST_SERVE_SHUTDOWN_TIMEOUT",
        "--pool-size",
        "PERSIST_POOL_SIZE",
        "SIGHUP",
    ] {
        assert!(help.contains(setting), "{setting} is not in the help: {help}");
    }
}

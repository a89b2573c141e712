//! `persist serve` through a PostgreSQL failover, as operators run one (`.ci/patroni`: etcd,
//! three Patroni nodes, HAProxy sending connections to the primary): two instances behind the
//! cluster's endpoint, 32 writers sending each request with an `Idempotency-Key` until it is
//! acknowledged (to the other instance after a failure), a follower of one conversation's
//! events resuming after its `Last-Event-ID`; the primary killed twice and switched over once.
//! Every acknowledged request is stored once, in order, never half; the follower sees every
//! event once, in order; the time each fault left writes unanswered is printed.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::served::Served;

const WRITERS: usize = 32;

/// The cluster's endpoint: `$PERSIST_PATRONI_URL` (default HAProxy's, `.ci/patroni`), or `None`
/// outside CI when it does not answer.
fn cluster() -> Option<String> {
    let url = std::env::var("PERSIST_PATRONI_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5450/test".into());
    let answers = crate::support::block_on(async {
        use sqlx::Connection;
        match sqlx::PgConnection::connect(&url).await {
            Ok(conn) => conn.close().await.map_err(|e| e.to_string()),
            Err(error) => Err(error.to_string()),
        }
    });
    match answers {
        Ok(()) => Some(url),
        Err(why) if std::env::var_os("CI").is_some() => {
            panic!("the cluster .ci/patroni starts is required in CI: {why}")
        }
        Err(why) => {
            eprintln!("SKIPPED the failover run: no cluster at {url} ({why}); run .ci/patroni");
            None
        }
    }
}

/// Runs `.ci/patroni ARGS`; answers what it printed.
fn patroni(args: &[&str]) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../.ci/patroni");
    let output = Command::new("bash").arg(script).args(args).output().unwrap();
    assert!(output.status.success(), ".ci/patroni {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// A request to `addr` on a connection of its own: its status (0 when the connection failed)
/// and body.
fn request(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    let attempt = || -> std::io::Result<(u16, String)> {
        let mut stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        let extra: String = headers.iter().map(|(name, value)| format!("{name}: {value}\r\n")).collect();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes())?;
        stream.write_all(body.as_bytes())?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        let status = answer.split(' ').nth(1).and_then(|status| status.parse().ok()).unwrap_or(0);
        Ok((status, answer.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default()))
    };
    attempt().unwrap_or((0, String::new()))
}

/// The texts of a conversation's items, oldest first, every page.
fn texts(addr: &str, conversation: &str) -> Vec<String> {
    let mut texts = Vec::new();
    let mut after = String::new();
    loop {
        let path = format!("/v1/conversations/{conversation}/items?order=asc&limit=100{after}");
        let (status, body) = request(addr, "GET", &path, &[], "");
        assert_eq!(status, 200, "{body}");
        let page: serde_json::Value = serde_json::from_str(&body).unwrap();
        for item in page["data"].as_array().unwrap() {
            texts.push(item["content"][0]["text"].as_str().unwrap_or_default().to_owned());
        }
        if page["has_more"] != true {
            return texts;
        }
        after = format!("&after={}", page["last_id"].as_str().unwrap());
    }
}

/// A follower of one conversation's events: reconnects after its last id, to the other instance
/// when one fails. Answers the ids it got, and how many were adds.
fn follow(
    addrs: [String; 2],
    conversation: String,
    stop: Arc<AtomicBool>,
    wanted: Arc<Mutex<usize>>,
) -> (Vec<u64>, usize) {
    let (mut ids, mut adds, mut turn) = (Vec::<u64>::new(), 0, 0);
    while !(stop.load(Ordering::SeqCst) && adds >= *wanted.lock().unwrap()) {
        let addr = &addrs[turn % 2];
        turn += 1;
        let Ok(mut stream) = TcpStream::connect(addr) else {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        };
        stream.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
        let last = ids.last().map(|id| format!("Last-Event-ID: {id}\r\n")).unwrap_or_default();
        // HTTP/1.0: the stream's body is the connection's rest, unchunked.
        let head = format!(
            "GET /v1/persist/conversations/{conversation}/events HTTP/1.0\r\nHost: {addr}\r\nAccept: text/event-stream\r\n{last}\r\n"
        );
        if stream.write_all(head.as_bytes()).is_err() {
            continue;
        }
        let mut lines = BufReader::new(stream);
        let (mut line, mut event, mut id) = (String::new(), String::new(), None::<u64>);
        loop {
            line.clear();
            match lines.read_line(&mut line) {
                Ok(0) => break,
                Ok(_) => {}
                // Quiet: done once stopped and caught up, else wait on.
                Err(_) if stop.load(Ordering::SeqCst) && adds >= *wanted.lock().unwrap() => break,
                Err(_) => continue,
            }
            let line = line.trim_end();
            if let Some(name) = line.strip_prefix("event: ") {
                event = name.to_owned();
            } else if let Some(position) = line.strip_prefix("id: ") {
                id = Some(position.parse().unwrap());
            } else if line.is_empty() {
                // The event is whole: dispatched.
                if let Some(id) = id.take() {
                    assert!(
                        ids.last().is_none_or(|last| id > *last),
                        "event {id} after {:?}: once each, in order",
                        ids.last()
                    );
                    ids.push(id);
                    adds += usize::from(event == "add");
                }
                event.clear();
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    (ids, adds)
}

#[test]
fn serve_keeps_every_acknowledged_write_through_a_failover() {
    let Some(url) = cluster() else { return };
    let schema = format!("persist_failover_{}", std::process::id());
    let store = format!("{url}?schema={schema}");
    let args = ["--url", &store, "serve", "--no-auth", "--addr", "127.0.0.1:0"];
    let instances = [Served::start(&args, &[]), Served::start(&args, &[])];
    let addrs = [instances[0].addr.clone(), instances[1].addr.clone()];
    let conversations: Vec<String> = (0..WRITERS)
        .map(|_| {
            let (status, body) = request(&addrs[0], "POST", "/v1/conversations", &[], r#"{"items": []}"#);
            assert_eq!(status, 200, "{body}");
            serde_json::from_str::<serde_json::Value>(&body).unwrap()["id"].as_str().unwrap().to_owned()
        })
        .collect();
    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let acks = Arc::new(Mutex::new(Vec::<Duration>::new()));
    let writers: Vec<_> = conversations
        .iter()
        .enumerate()
        .map(|(w, conversation)| {
            let (addrs, conversation, stop, acks) = (addrs.clone(), conversation.clone(), stop.clone(), acks.clone());
            std::thread::spawn(move || {
                let (mut acked, mut failed, mut turn) = (0_usize, 0_usize, w);
                while !stop.load(Ordering::SeqCst) {
                    let key = format!("w{w}-{acked}");
                    let body = format!(
                        r#"{{"items": [{{"type": "message", "role": "user", "content": "{key}"}},
                                       {{"type": "message", "role": "assistant", "content": "re {key}"}}]}}"#
                    );
                    let path = format!("/v1/conversations/{conversation}/items");
                    let since = Instant::now();
                    loop {
                        let (status, answer) =
                            request(&addrs[turn % 2], "POST", &path, &[("Idempotency-Key", &key)], &body);
                        match status {
                            200 => break,
                            0 | 500..=599 => {
                                failed += 1;
                                turn += 1;
                                assert!(
                                    since.elapsed() < Duration::from_secs(120),
                                    "w{w}: unanswered for 2 min: {answer}"
                                );
                                std::thread::sleep(Duration::from_millis(100));
                            }
                            _ => panic!("w{w} {key}: {status} {answer}"),
                        }
                    }
                    acks.lock().unwrap().push(started.elapsed());
                    acked += 1;
                    std::thread::sleep(Duration::from_millis(20));
                }
                (acked, failed)
            })
        })
        .collect();
    let wanted = Arc::new(Mutex::new(usize::MAX));
    let follower = {
        let (addrs, conversation, stop, wanted) =
            (addrs.clone(), conversations[0].clone(), stop.clone(), wanted.clone());
        std::thread::spawn(move || follow(addrs, conversation, stop, wanted))
    };
    // The faults, each once writes flow again after the one before.
    let flowing = |after: Duration| {
        let deadline = Instant::now() + Duration::from_secs(90);
        while !acks.lock().unwrap().iter().any(|at| *at > after + Duration::from_millis(500)) {
            assert!(Instant::now() < deadline, "no write acknowledged for 90 s");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let mut faults = Vec::new();
    std::thread::sleep(Duration::from_secs(2));
    for fault in ["kill", "kill", "switchover"] {
        // Each fault on a cluster whole again: a primary and a synchronous standby that has
        // every acknowledged commit (the one Patroni promotes).
        patroni(&["healthy"]);
        let primary = patroni(&["primary"]);
        let at = started.elapsed();
        eprintln!("[{at:?}] {fault} of node {primary}");
        match fault {
            "kill" => patroni(&["kill", &primary]),
            _ => patroni(&["switchover"]),
        };
        flowing(at);
        eprintln!("[{:?}] writes acknowledged again", started.elapsed());
        faults.push((format!("{fault} of node {primary}"), at));
        if fault == "kill" {
            patroni(&["start", &primary]);
        }
    }
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::SeqCst);
    let mut results = Vec::new();
    for writer in writers {
        results.push(writer.join().unwrap());
    }
    // Every acknowledged request once, in order, both of its items.
    for (w, (conversation, (acked, _))) in conversations.iter().zip(&results).enumerate() {
        let expected: Vec<String> = (0..*acked).flat_map(|n| [format!("w{w}-{n}"), format!("re w{w}-{n}")]).collect();
        assert_eq!(texts(&addrs[w % 2], conversation), expected, "conversation of writer {w}");
    }
    *wanted.lock().unwrap() = 2 * results[0].0;
    let (ids, adds) = follower.join().unwrap();
    assert_eq!(adds, 2 * results[0].0, "the follower saw every add once");
    // Figures: for each fault, the longest time no write was acknowledged after it.
    let acks = acks.lock().unwrap();
    let total: usize = results.iter().map(|(acked, _)| acked).sum();
    let failed: usize = results.iter().map(|(_, failed)| failed).sum();
    eprintln!(
        "{total} requests acknowledged by {WRITERS} writers in {:?} ({failed} attempts failed and were sent again); the follower got {} events",
        started.elapsed(),
        ids.len()
    );
    for (at_fault, (fault, at)) in faults.iter().enumerate() {
        let until = faults.get(at_fault + 1).map_or(Duration::MAX, |(_, next)| *next);
        let from = at.saturating_sub(Duration::from_millis(500));
        let mut window: Vec<Duration> = acks.iter().copied().filter(|ack| *ack >= from && *ack < until).collect();
        window.sort();
        let gap = window.windows(2).map(|pair| pair[1] - pair[0]).max().unwrap_or_default();
        eprintln!("{fault}: no write acknowledged for {gap:?} at most");
    }
    drop(instances);
    crate::support::block_on(async {
        use sqlx::Connection;
        if let Ok(mut conn) = sqlx::PgConnection::connect(&url).await {
            let drop = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
            let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(drop)).execute(&mut conn).await;
        }
    });
}

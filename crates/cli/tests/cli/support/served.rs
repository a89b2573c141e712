//! A running `persist serve` as its operators see it: started by its binary, its log read as it
//! comes (a full pipe would stall it), signalled, and called over raw HTTP/1.1.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A running `persist serve`: its address, the line that named it, its log so far; killed
/// when dropped.
pub(crate) struct Served {
    child: Child,
    /// `HOST:PORT` of its API.
    pub(crate) addr: String,
    /// The start's line, which names the API's `http://…` address.
    pub(crate) banner: String,
    log: Arc<Mutex<String>>,
    reader: Option<JoinHandle<()>>,
}

impl Served {
    /// Starts `persist ARGS` (a `serve` command line) with `env`, and waits for its address.
    pub(crate) fn start(args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_persist"));
        command.args(args).env_remove("PERSIST_URL").env_remove("PERSIST_SERVE_KEYS").stderr(Stdio::piped());
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("the binary runs");
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let log = Arc::new(Mutex::new(String::new()));
        let mut line = String::new();
        while !line.contains("http://") {
            line.clear();
            let read = stderr.read_line(&mut line).unwrap();
            assert!(read > 0, "persist serve ended before it served: {}", log.lock().unwrap());
            log.lock().unwrap().push_str(&line);
        }
        let addr = line.split("http://").nth(1).and_then(|rest| rest.split('/').next()).unwrap();
        let addr = addr.trim_end_matches(|c: char| !c.is_ascii_alphanumeric()).to_owned();
        let shared = Arc::clone(&log);
        let reader = std::thread::spawn(move || {
            let mut line = String::new();
            while stderr.read_line(&mut line).is_ok_and(|read| read > 0) {
                shared.lock().unwrap().push_str(&line);
                line.clear();
            }
        });
        Self { child, addr, banner: line, log, reader: Some(reader) }
    }

    /// Sends the signal `name` (`TERM`, `HUP`, …).
    pub(crate) fn signal(&self, name: &str) {
        let sent = Command::new("kill").args(["-s", name, &self.child.id().to_string()]).status().unwrap();
        assert!(sent.success(), "kill -s {name}");
    }

    /// Its log so far.
    pub(crate) fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Sends SIGTERM and answers the whole log once the process exited (within a minute).
    pub(crate) fn stop(mut self) -> String {
        self.signal("TERM");
        let started = Instant::now();
        while self.child.try_wait().unwrap().is_none() {
            assert!(started.elapsed() < Duration::from_secs(60), "still running: {}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        self.reader.take().unwrap().join().unwrap();
        self.log()
    }

    /// Waits up to `limit` for the process to exit (after a signal): whether it exited
    /// successfully. Fails the test if it still runs then.
    pub(crate) fn exits_within(&mut self, limit: Duration) -> bool {
        let started = Instant::now();
        while started.elapsed() < limit {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("persist serve still runs {limit:?} after the signal: {}", self.log());
    }

    /// Waits up to `limit` for `check` to hold, checking every 100 ms.
    pub(crate) fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
        let started = Instant::now();
        while started.elapsed() < limit {
            if check() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        check()
    }

    /// A request to its API: see [`call`].
    pub(crate) fn call(&self, method: &str, path: &str, key: Option<&str>, body: &str) -> (u16, String) {
        call(&self.addr, method, path, key, body)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A request as raw HTTP/1.1 to `addr` on a connection of its own, closed after the answer
/// (with `key` as a bearer key): its status and body.
pub(crate) fn call(addr: &str, method: &str, path: &str, key: Option<&str>, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    stream.write_all(head(addr, method, path, key, body.len()).as_bytes()).unwrap();
    stream.write_all(body.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer.split(' ').nth(1).and_then(|status| status.parse().ok()).unwrap_or(0);
    (status, answer.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default())
}

/// A request's head, its connection closed after the answer.
pub(crate) fn head(addr: &str, method: &str, path: &str, key: Option<&str>, length: usize) -> String {
    let auth = key.map(|key| format!("Authorization: Bearer {key}\r\n")).unwrap_or_default();
    format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n"
    )
}

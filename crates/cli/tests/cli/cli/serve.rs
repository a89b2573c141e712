//! `persist serve` without keys: the hosts it answers and the bodies it takes.

/// A request to `addr` as raw HTTP/1.1, and the status of its answer.
fn status_of(addr: &str, request: &str) -> u16 {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer.split(' ').nth(1).and_then(|status| status.parse().ok()).unwrap_or_else(|| panic!("{answer}"))
}

/// A process killed when dropped, even by a failed assertion.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn serve_without_keys_answers_its_hosts_and_json_bodies_only() {
    use std::io::BufRead;
    let server = std::process::Command::new(env!("CARGO_BIN_EXE_persist"))
        .args(["--url", "memory:", "serve", "--no-auth", "--addr", "127.0.0.1:0", "--allow-host", "chat.internal"])
        .env("PERSIST_SERVE_ALLOW_HOSTS", "other.internal")
        .env_remove("PERSIST_SERVE_KEYS")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the binary runs");
    let mut server = Running(server);
    let mut stderr = std::io::BufReader::new(server.0.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("http://") {
        line.clear();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "persist serve ended before it served");
    }
    let addr = line.split("http://").nth(1).and_then(|rest| rest.split('/').next()).unwrap().to_owned();
    let get =
        |host: &str| format!("GET /v1/persist/conversations HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    let statuses: Vec<u16> = [&addr, "localhost", "chat.internal:8080", "rebind.example", "other.internal"]
        .iter()
        .map(|host| status_of(&addr, &get(host)))
        .collect();
    let post = |content_type: &str| {
        format!(
            "POST /v1/conversations HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {content_type}\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
        )
    };
    assert_eq!(statuses, [200, 200, 200, 403, 403], "--allow-host adds a name (the flag overrides the variable)");
    let posted = (status_of(&addr, &post("text/plain")), status_of(&addr, &post("application/json")));
    assert_eq!(posted, (415, 200));
}

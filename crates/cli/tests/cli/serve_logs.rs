//! `persist serve` as an operator reads it: help that lists what applies to it, key errors that
//! say where the key is, JSON lines and nothing else under `--log-format json` (the start's and
//! a failure's too), one access line per request that a filter keeps apart from the store's
//! traces, and `GET /metrics` on an address of its own.

#![cfg(unix)]

use serde_json::Value;

use crate::support;
use crate::support::served::{Served, call};
use crate::support::{path_str, run};

/// `HOST:PORT` of an `http://HOST:PORT/…` URL.
fn host_of(url: &str) -> String {
    url.trim_start_matches("http://").split('/').next().unwrap().to_owned()
}

/// A conversation made, read and listed: three requests.
fn three_requests(addr: &str) {
    let (status, created) = call(addr, "POST", "/v1/conversations", None, "{}");
    assert_eq!(status, 200, "{created}");
    let created: Value = serde_json::from_str(&created).unwrap();
    let id = created["id"].as_str().unwrap();
    assert_eq!(call(addr, "GET", &format!("/v1/conversations/{id}"), None, "").0, 200);
    assert_eq!(call(addr, "GET", &format!("/v1/conversations/{id}/items"), None, "").0, 200);
}

#[test]
fn help_lists_what_applies_to_serve_and_the_summary_names_it() {
    let summary = String::from_utf8(run(&["--help"]).stdout).unwrap();
    assert!(summary.lines().next().unwrap().contains("serve"), "{summary}");
    let help = String::from_utf8(run(&["serve", "--help"]).stdout).unwrap();
    assert!(!help.contains("--across-tenants") && !help.contains("--json"), "{help}");
    assert!(help.contains("--metrics-addr") && help.contains("persist_serve::access=info"), "{help}");
    for args in [&["--url", "memory:", "--json", "serve", "--no-auth"][..], &["--url", "memory:", "serve", "--json"]] {
        let refused = run(args);
        assert_eq!(refused.status.code(), Some(2), "{args:?}");
        assert!(String::from_utf8_lossy(&refused.stderr).contains("--json does not apply to `serve`"));
    }
    let refused = run(&["--url", "memory:", "serve", "--no-auth", "--across-tenants"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--across-tenants does not apply to `serve`"));
    let misspelt = run(&["--url", "memory:", "serve", "--no-auth", "--log-level", "verbose"]);
    assert_eq!(misspelt.status.code(), Some(2), "a misspelt level is no target");
}

#[test]
fn a_bad_key_is_named_by_its_entry_in_the_variable_and_its_line_in_the_file() {
    let mut command = support::persist();
    let output = command
        .env("PERSIST_SERVE_KEYS", "acme:sk-acme-0123456789abcdef, globex:too-short")
        .args(["--url", "memory:", "serve"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("$PERSIST_SERVE_KEYS, entry 2: a key of globex is shorter"), "{stderr}");
    assert!(!stderr.contains("line") && !stderr.contains("too-short"), "{stderr}");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keys");
    std::fs::write(&file, "# keys\nacme sk-acme-0123456789abcdef\n").unwrap();
    let mut command = support::persist();
    let output = command.env_remove("PERSIST_SERVE_KEYS").args(["--url", "memory:", "serve"]);
    let output = output.args(["--keys-file", path_str(&file)]).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("keys: line 2: not TENANT:KEY"), "{stderr}");
}

#[test]
fn json_logs_are_json_lines_only_with_one_access_line_per_request_and_metrics_apart() {
    let args = ["--url", "memory:", "serve", "--no-auth", "--addr", "127.0.0.1:0"];
    let served = Served::start(&[&args[..], &["--metrics-addr", "127.0.0.1:0", "--log-format", "json"]].concat(), &[]);
    let banner: Value = serde_json::from_str(&served.banner).expect("the start is a JSON line");
    let (api, metrics) = (host_of(banner["fields"]["url"].as_str().unwrap()), banner["fields"]["metrics"].clone());
    let metrics = host_of(metrics.as_str().expect("the metrics' address"));
    three_requests(&api);
    let (status, scraped) = call(&metrics, "GET", "/metrics", None, "");
    assert_eq!(status, 200);
    let created = "persist_serve_requests_total{method=\"POST\",route=\"/v1/conversations\",status=\"200\"} 1";
    assert!(scraped.contains(created), "{scraped}");
    assert!(scraped.contains("persist_ops_total{op=\"restore\",outcome=\"ok\"} 1"), "the store's calls: {scraped}");
    assert_eq!(call(&api, "GET", "/metrics", None, "").0, 404, "never on the API's address");
    let log = served.stop();

    let lines: Vec<Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not a JSON line: {line}")))
        .collect();
    let access: Vec<&Value> = lines.iter().filter(|line| line["target"] == "persist_serve::access").collect();
    assert_eq!(access.len(), 4, "one line per request: {log}");
    assert!(access.iter().all(|line| line["level"] == "INFO" && line["fields"]["request_id"].is_string()));
    let traced: Vec<&Value> = lines.iter().filter(|line| line["span"]["name"] == "persist").collect();
    let said = |op: &str| traced.iter().find(|line| line["span"]["op"] == op).map(|line| &line["fields"]["message"]);
    assert_eq!(said("get_thread").expect("a read is traced"), "persist read", "{log}");
    assert_eq!(said("restore").expect("a write is traced"), "persist write", "{log}");
}

#[test]
fn a_filter_keeps_the_access_lines_and_drops_the_store_traces() {
    let args = ["--url", "memory:", "serve", "--no-auth", "--addr", "127.0.0.1:0"];
    // `--log`: `--log-level`'s other name.
    let served = Served::start(&[&args[..], &["--log", "warn,persist_serve::access=info"]].concat(), &[]);
    three_requests(&host_of(served.banner.split("http://").nth(1).unwrap()));
    let log = served.stop();
    let access = log.lines().filter(|line| line.contains(" INFO persist_serve::access: answered")).count();
    assert_eq!(access, 3, "{log}");
    assert!(!log.contains("persist write") && !log.contains("persist read"), "no store trace: {log}");
}

#[test]
fn a_failure_under_json_logs_is_a_json_line_too() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let output = run(&["--url", "memory:", "serve", "--no-auth", "--addr", &addr, "--log-format", "json"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    let lines: Vec<Value> = stderr.lines().map(|line| serde_json::from_str(line).expect("a JSON line")).collect();
    let last = lines.last().expect("the failure");
    assert_eq!(last["level"], "ERROR");
    assert!(last["fields"]["error"].as_str().unwrap().contains(&format!("listening on {addr}")), "{stderr}");
}

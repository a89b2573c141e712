//! What goes wrong: one-line errors with their exit codes, and no secret printed by help or errors.

use super::{fails, seed};
use crate::support::{block_on, ok, path_str, persist, run};

#[test]
fn failures_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.db");
    block_on(seed(&store, 0)).unwrap();
    let store = path_str(&store);

    let (stderr, code) = fails(&["--url", "mysql://db/chat", "threads"]);
    assert!(stderr.contains("unsupported store URL"), "{stderr}");
    assert_eq!(code, 1);

    let missing = dir.path().join("missing.db");
    let (stderr, _) = fails(&["--url", path_str(&missing), "threads"]);
    assert!(stderr.contains("no store at"), "{stderr}");
    assert!(!missing.exists(), "a read never creates a store");

    let (stderr, _) = fails(&["--url", store, "import", path_str(&dir.path().join("nothing.jsonl"))]);
    assert!(stderr.contains("nothing.jsonl"), "{stderr}");

    let future = dir.path().join("future.jsonl");
    std::fs::write(&future, "{\"kind\":\"header\",\"schema_version\":4}\n{\"kind\":\"thread\"}\n").unwrap();
    let (stderr, _) = fails(&["--url", store, "import", path_str(&future)]);
    assert!(stderr.contains("unsupported schema_version 4 (this persist reads 1 to 3)"), "{stderr}");

    // An endless line: refused at the limit, with its number, memory bounded by the limit.
    let (stderr, code) = fails(&["--url", store, "import", "/dev/zero", "--max-line-bytes", "100000"]);
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("line 1 is longer than the limit of 100000 bytes"), "{stderr}");
    assert_eq!(code, 1);

    let not_export = dir.path().join("other.jsonl");
    std::fs::write(&not_export, "{\"hello\":1}\n").unwrap();
    fails(&["--url", store, "import", path_str(&not_export)]);

    let (_, code) = fails(&["threads"]);
    assert_eq!(code, 2, "no store given");
    let output = run(&["--url", store, "prune"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "prune without a rule: {stderr}");
    assert!(stderr.contains("<--idle-for <DURATION>|--keep-latest <N>|--covered>"), "one of the rules: {stderr}");
    let (stderr, _) = fails(&["--url", store, "show", "general"]);
    assert!(stderr.contains("--tenant"), "a tenant's thread needs --tenant: {stderr}");
    assert!(ok(&["--help"]).contains("memory:"), "--help names every kind of store");
    fails(&["--url", store, "show", "no-such-thread"]);
    fails(&["--url", store, "export"]);
    fails(&["--url", store, "threads", "--after", "not a cursor"]);
}

#[test]
fn no_password_or_key_is_printed_by_help_or_errors() {
    const PASSWORD: &str = "s3cret-pw-4711";
    const API_KEY: &str = "sk-acme-secret-0123456789";
    let url = format!("postgres://app:{PASSWORD}@127.0.0.1:1/chat");
    let shards = format!("a=postgres://app:{PASSWORD}@127.0.0.1:1/a,b=postgres://app:{PASSWORD}@127.0.0.1:1/b");
    let keys_file = format!("/run/secrets/{PASSWORD}.keys");
    let run_with = |args: &[&str]| {
        let mut command = persist();
        command
            .env("PERSIST_URL", &url)
            .env("PERSIST_SHARDS", &shards)
            .env("PERSIST_SERVE_KEYS", format!("acme:{API_KEY}"))
            .env("PERSIST_SERVE_KEYS_FILE", &keys_file)
            .env_remove("PERSIST_ENCRYPTION_KEYS");
        let output = command.args(args).output().expect("the binary runs");
        let printed = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        assert!(
            !printed.contains(PASSWORD) && !printed.contains(API_KEY),
            "persist {args:?} printed a secret: {printed}"
        );
        printed
    };
    for help in [&["--help"][..], &["serve", "--help"], &["move-tenant", "--help"], &["threads", "-h"]] {
        let printed = run_with(help);
        assert!(printed.contains("PERSIST_URL"), "the variable is named, its value is not: {printed}");
    }
    assert!(run_with(&["move-tenant", "--help"]).contains("PERSIST_SHARDS"));
    assert!(run_with(&["serve", "--help"]).contains("PERSIST_SERVE_KEYS_FILE"));
    // Errors that name the store: an unreachable server, a malformed URL, the URL as a flag.
    let refused = run_with(&["threads"]);
    assert!(refused.contains("error:") && refused.contains("127.0.0.1:1"), "{refused}");
    run_with(&["--url", &format!("postgres://app:{PASSWORD}@127.0.0.1:notaport/chat"), "threads"]);
    run_with(&["--url", &format!("mysql://app:{PASSWORD}@127.0.0.1/chat"), "threads"]);
    run_with(&["--url", &url, "check"]);
    let mut serve = persist();
    let output = serve
        .env("PERSIST_URL", &url)
        .env("PERSIST_SERVE_KEYS", format!("acme:{API_KEY}"))
        .args(["serve", "--addr", "127.0.0.1:0"])
        .output()
        .expect("the binary runs");
    let printed = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && printed.contains("error:"), "{printed}");
    assert!(!printed.contains(PASSWORD) && !printed.contains(API_KEY), "{printed}");
    run_with(&["move-tenant", "acme", "--to", "b"]);
}

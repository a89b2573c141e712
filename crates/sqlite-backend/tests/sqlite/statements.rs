//! The backend's statements are prepared once and kept (rusqlite's and sqlx's statement
//! caches). SQLite prepares a statement again, on its next step, whenever a parameter that its
//! plan read the value of is bound anew, and a bare `LIMIT ?` is such a parameter: every read of
//! a page paid a full parse and plan (17% of a branch page's time in a profile). `LIMIT +?`
//! reads the same value at run time, planned once.

use rusqlite::{Connection, StatementStatus};

/// How many times `sql` was prepared again over ten runs with a new limit each.
fn reprepares(sql: &str) -> i32 {
    let conn = Connection::open_in_memory().unwrap();
    conn.execute_batch(
        "CREATE TABLE m (thread INTEGER, seq INTEGER, PRIMARY KEY (thread, seq));
         WITH RECURSIVE s(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM s WHERE x < 50)
         INSERT INTO m SELECT 1, x FROM s;",
    )
    .unwrap();
    let mut last = 0;
    for limit in 1..=10_i64 {
        let mut statement = conn.prepare_cached(sql).unwrap();
        let rows = statement.query_map((1, limit), |row| row.get::<_, i64>(0)).unwrap().count();
        assert_eq!(rows as i64, limit);
        last = statement.get_status(StatementStatus::RePrepare);
    }
    last
}

#[test]
fn a_bare_limit_parameter_is_planned_again_on_every_bind_and_a_unary_plus_one_is_not() {
    assert_eq!(reprepares("SELECT seq FROM m WHERE thread = ?1 ORDER BY seq DESC LIMIT ?2"), 10);
    assert_eq!(reprepares("SELECT seq FROM m WHERE thread = ?1 ORDER BY seq DESC LIMIT +?2"), 0);
}

/// Every statement of the backend binds its limits as `LIMIT +?N` (the migrations, which run
/// once, aside).
#[test]
fn no_statement_of_the_backend_binds_a_bare_limit() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found = Vec::new();
    let mut dirs = vec![src];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|ext| ext == "rs") && !path.ends_with("migrations.rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                found.extend(
                    text.lines()
                        .filter(|line| line.contains("LIMIT ?"))
                        .map(|line| format!("{}: {line}", path.display())),
                );
            }
        }
    }
    assert!(found.is_empty(), "bind limits as `LIMIT +?N`: {found:#?}");
}

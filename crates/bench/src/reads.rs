//! SQLite reads side by side with the same queries hand-written with rusqlite on a held
//! connection: the latest 50 messages of a thread, and one message by id, in a store of 100k
//! messages on 100 threads written interleaved (as messages arrive), decoded into the same
//! `Message` values; interleaved in chunks of 100 reads within each round, medians of the
//! rounds' ratios.

use std::path::Path;
use std::time::{Duration, Instant};

use persist::read::{GetMessage, ListMessages};
use persist::sqlite::SqliteBackend;
use persist::{
    Backend, Content, IdempotencyKey, Message, MessageId, Metadata, Order, Role, Status, ThreadId, Timestamp,
};

use crate::Options;
use crate::measure::median;
use crate::report::{Row, Target};
use crate::workload::TEXT;

const THREADS: usize = 100;

/// Fills a migrated database with `per_thread` messages on each of `THREADS` threads, one
/// thread after another for each seq (arrival order), with rusqlite in one transaction.
fn fill(path: &Path, per_thread: usize) {
    let mut conn = rusqlite::Connection::open(path).expect("rusqlite open");
    conn.busy_timeout(std::time::Duration::from_secs(5)).expect("busy timeout");
    let tx = conn.transaction().expect("a transaction");
    let content = Content::text(format!("{TEXT} {TEXT} {TEXT}")).as_json().into_owned();
    let now = Timestamp::now().as_micros();
    {
        let mut thread = tx
            .prepare("INSERT INTO threads (tenant, thread_id, created_at, updated_at) VALUES ('', ?1, ?2, ?2)")
            .expect("prepare");
        let mut message = tx
            .prepare(
                "INSERT INTO persist_messages (thread, message_id, seq, role, content, version, created_at) \
                 VALUES ((SELECT key FROM threads WHERE tenant = '' AND thread_id = ?1), ?2, ?3, 0, ?4, 1, ?5)",
            )
            .expect("prepare");
        for t in 0..THREADS {
            thread.execute(rusqlite::params![format!("r-{t}"), now]).expect("thread");
        }
        for seq in 1..=per_thread {
            for t in 0..THREADS {
                let id = format!("m-{t}-{seq}");
                message.execute(rusqlite::params![format!("r-{t}"), id, seq as i64, content, now]).expect("message");
            }
        }
    }
    tx.commit().expect("commit");
}

/// A row as our backend decodes it, by hand: the same `Message`.
fn decode(row: &rusqlite::Row<'_>) -> rusqlite::Result<Message> {
    let text = |i: usize| row.get::<_, String>(i);
    // NULL for what most messages hold: `{}`, complete, an update time equal to creation's.
    let metadata = match row.get::<_, Option<String>>(5)? {
        Some(text) => Metadata::try_from(serde_json::from_str::<serde_json::Value>(&text).expect("metadata JSON"))
            .expect("metadata"),
        None => Metadata::default(),
    };
    let key: Option<String> = row.get(8)?;
    let created_at = Timestamp::from_micros(row.get(9)?);
    Ok(Message {
        thread_id: ThreadId::new(text(0)?).expect("id"),
        id: MessageId::new(text(1)?).expect("id"),
        seq: row.get::<_, i64>(2)? as u64,
        role: match row.get_ref(3)? {
            rusqlite::types::ValueRef::Integer(0) => Role::User,
            rusqlite::types::ValueRef::Integer(1) => Role::Assistant,
            rusqlite::types::ValueRef::Integer(2) => Role::System,
            rusqlite::types::ValueRef::Integer(3) => Role::Tool,
            _ => Role::new(&text(3)?).expect("role"),
        },
        content: Content::from_json(text(4)?).expect("content"),
        metadata,
        status: row.get::<_, Option<String>>(6)?.map_or(Status::Complete, |s| Status::parse(&s).expect("status")),
        version: row.get::<_, i64>(7)? as u64,
        idempotency_key: key.map(|k| IdempotencyKey::new(k).expect("key")),
        created_at,
        updated_at: row.get::<_, Option<i64>>(10)?.map_or(created_at, Timestamp::from_micros),
        parent_seq: persist::branch::parent_from_stored(
            row.get::<_, i64>(2)? as u64,
            row.get::<_, Option<i64>>(11)?.map(|parent| parent as u64),
        ),
    })
}

const COLUMNS: &str = "?1 AS thread_id, message_id, seq, role, content, metadata, status, version, idempotency_key, \
                       created_at, updated_at, parent_seq";

pub(crate) fn run(options: &Options) -> Vec<Row> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("reads.db");
    let per_thread = options.scale(1000, 100);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a runtime");
    // Migrated, then closed: a handle dropped without `close` still holds the file a moment.
    rt.block_on(async { SqliteBackend::open(&path).await.expect("open").close().await });
    fill(&path, per_thread);
    let backend = rt.block_on(SqliteBackend::open(&path)).expect("open");
    let list_sql = format!(
        "SELECT {COLUMNS} FROM persist_messages \
          WHERE thread = (SELECT key FROM threads WHERE tenant = '' AND thread_id = ?1) AND status IS NULL \
         ORDER BY seq DESC LIMIT 50"
    );
    let get_sql = format!(
        "SELECT {COLUMNS} FROM persist_messages \
          WHERE thread = (SELECT key FROM threads WHERE tenant = '' AND thread_id = ?1) AND message_id = ?2"
    );
    let mut conn = Some(rusqlite::Connection::open(&path).expect("rusqlite open"));
    let thread = |i: usize| ThreadId::new(format!("r-{}", (i * 37) % THREADS)).unwrap();
    let id = move |i: usize| MessageId::new(format!("m-{}-{}", (i * 37) % THREADS, 1 + (i * 7) % per_thread)).unwrap();
    let n = options.scale(2000, 200);
    let (mut ours_list, mut hand_list, mut ours_get, mut hand_get) = (vec![], vec![], vec![], vec![]);
    for _round in 0..options.scale(5, 2) {
        // Both in a task on the runtime's workers (where a server's handlers run), in chunks
        // of 100 reads, the first of each pair alternating, so the machine's drift hits both
        // alike.
        let (backend, held) = (backend.clone(), conn.take().expect("the rusqlite connection"));
        let (list_sql, get_sql) = (list_sql.clone(), get_sql.clone());
        let (held, spent) = rt
            .block_on(rt.spawn(async move {
                let mut spent = [Duration::ZERO; 4];
                for chunk in 0..n.div_ceil(100) {
                    let reads = chunk * 100..(chunk * 100 + 100).min(n);
                    for turn in 0..2 {
                        let start = Instant::now();
                        if (chunk + turn) % 2 == 0 {
                            for i in reads.clone() {
                                let query = ListMessages::new(thread(i)).with_order(Order::Desc).with_limit(50);
                                assert_eq!(backend.list(query).await.expect("list").items.len(), 50);
                            }
                            spent[0] += start.elapsed();
                        } else {
                            let mut list = held.prepare_cached(&list_sql).expect("prepare");
                            for i in reads.clone() {
                                let rows = list.query_map([thread(i).as_str()], decode).expect("query");
                                let rows: Vec<Message> = rows.collect::<Result<_, _>>().expect("rows");
                                assert_eq!(rows.len(), 50);
                            }
                            spent[1] += start.elapsed();
                        }
                    }
                    // Five gets a listing, the same way.
                    for turn in 0..2 {
                        let start = Instant::now();
                        if (chunk + turn) % 2 == 0 {
                            for i in reads.start * 5..reads.end * 5 {
                                assert!(backend.get(GetMessage::new(thread(i), id(i))).await.expect("get").is_some());
                            }
                            spent[2] += start.elapsed();
                        } else {
                            let mut get = held.prepare_cached(&get_sql).expect("prepare");
                            for i in reads.start * 5..reads.end * 5 {
                                let found = get.query_row([thread(i).as_str(), id(i).as_str()], decode).expect("get");
                                std::hint::black_box(found);
                            }
                            spent[3] += start.elapsed();
                        }
                    }
                }
                (held, spent)
            }))
            .expect("the reads");
        conn = Some(held);
        ours_list.push(n as f64 / spent[0].as_secs_f64());
        hand_list.push(n as f64 / spent[1].as_secs_f64());
        ours_get.push((n * 5) as f64 / spent[2].as_secs_f64());
        hand_get.push((n * 5) as f64 / spent[3].as_secs_f64());
    }
    let ratio = |ours: &[f64], hand: &[f64]| median(&mut ours.iter().zip(hand).map(|(o, h)| o / h).collect::<Vec<_>>());
    let total = THREADS * per_thread;
    vec![
        Row::new(
            format!("sqlite: rusqlite, latest 50 of a thread ({total} messages), held connection"),
            n as u64,
            median(&mut hand_list.clone()),
        ),
        Row::new(
            format!("sqlite: ours, latest 50 of a thread ({total} messages)"),
            n as u64,
            median(&mut ours_list.clone()),
        )
        .ratio(ratio(&ours_list, &hand_list), "reads/s, ours / rusqlite")
        .target(Target::RatioAtLeast(0.6)),
        Row::new("sqlite: rusqlite, one message by id, held connection", (n * 5) as u64, median(&mut hand_get.clone())),
        Row::new("sqlite: ours, one message by id", (n * 5) as u64, median(&mut ours_get.clone()))
            .ratio(ratio(&ours_get, &hand_get), "reads/s, ours / rusqlite")
            .target(Target::RatioAtLeast(0.6)),
    ]
}

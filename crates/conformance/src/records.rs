//! Records (gated on `records`): opaque values per tenant, space and key, read by one space or a
//! prefix of spaces, by key then space (bytewise) both ways with paging, keys and an upper key;
//! inserts that keep a live record, touches, deletes of one record and of whole spaces; expiry
//! that hides, is written over and is swept; tenants apart; bad input refused with nothing
//! written.

use persist_core::records::{MAX_NAME_BYTES, ReadRecords, Record, RecordWrite, WriteRecords};
use persist_core::{Backend, PersistError, PersistResult, TenantId, Timestamp};

use crate::fixture::{assert_err, ctx, gate, tenant, write};
use crate::{Factory, Outcome};

async fn apply<B: Backend>(b: &B, tenant: Option<&TenantId>, writes: Vec<RecordWrite>) -> Result<u64, PersistError> {
    match write(b, WriteRecords::new(writes).with_context(ctx(tenant))).await? {
        PersistResult::RecordsWritten(written) => Ok(written.changed),
        other => panic!("write_records answered {other:?}"),
    }
}

/// Every page of `query`, followed to the end.
async fn read_all<B: Backend>(b: &B, tenant: Option<&TenantId>, query: ReadRecords) -> Vec<Record> {
    let mut query = query.with_context(ctx(tenant));
    let mut all = Vec::new();
    loop {
        let page = b.records(query.clone()).await.expect("read_records");
        let next = query.next_page(&page);
        all.extend(page.items);
        match next {
            Some(next) => query = next,
            None => return all,
        }
    }
}

fn names(records: &[Record]) -> Vec<(String, String)> {
    records.iter().map(|r| (r.space.clone(), r.key.clone())).collect()
}

fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected.iter().map(|(space, key)| (space.to_string(), key.to_string())).collect()
}

/// Records of two spaces under one prefix and one beside it: a space reads its own by key (both
/// orders, pages of two), a prefix reads its spaces by key then space, bytewise (`B` < `a` <
/// `é`); keys and an upper key narrow a read; values come back byte for byte.
pub async fn check_records_read_by_space_and_prefix<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    gate!(store, records);
    let b = store.b().as_ref();
    let every_byte: Vec<u8> = (0..=255).collect();
    let writes = vec![
        RecordWrite::put("g/t1/", "a", b"1".to_vec()),
        RecordWrite::put("g/t1/", "é", every_byte.clone()),
        RecordWrite::put("g/t1/", "B", Vec::new()),
        RecordWrite::put("g/t1/child", "a", b"2".to_vec()),
        RecordWrite::put("g/t2/", "c", b"3".to_vec()),
        RecordWrite::put("h/", "a", b"4".to_vec()),
    ];
    assert_eq!(apply(b, None, writes).await.expect("put"), 6);
    for limit in [1, 2, 100] {
        let space = read_all(b, None, ReadRecords::space("g/t1/").with_limit(limit)).await;
        assert_eq!(names(&space), pairs(&[("g/t1/", "B"), ("g/t1/", "a"), ("g/t1/", "é")]), "limit {limit}");
        let newest = read_all(b, None, ReadRecords::space("g/t1/").newest_first().with_limit(limit)).await;
        assert_eq!(names(&newest), pairs(&[("g/t1/", "é"), ("g/t1/", "a"), ("g/t1/", "B")]), "limit {limit}");
        let prefixed = read_all(b, None, ReadRecords::prefix("g/t1").with_limit(limit)).await;
        let expected = [("g/t1/", "B"), ("g/t1/", "a"), ("g/t1/child", "a"), ("g/t1/", "é")];
        assert_eq!(names(&prefixed), pairs(&expected), "by key then space, limit {limit}");
        let down = read_all(b, None, ReadRecords::prefix("g/").newest_first().with_limit(limit)).await;
        let expected = [("g/t1/", "é"), ("g/t2/", "c"), ("g/t1/child", "a"), ("g/t1/", "a"), ("g/t1/", "B")];
        assert_eq!(names(&down), pairs(&expected), "limit {limit}");
    }
    let page = b.records(ReadRecords::space("g/t1/").with_limit(2)).await.expect("read");
    assert!(page.has_more && page.items.len() == 2);
    let found = read_all(b, None, ReadRecords::space("g/t1/").with_keys(vec!["é".into(), "zz".into()])).await;
    assert_eq!(found.iter().map(|r| r.value.clone()).collect::<Vec<_>>(), [every_byte]);
    assert!(found[0].expires_at.is_none());
    let below = read_all(b, None, ReadRecords::prefix("g/").newest_first().with_before(Some("c".into()))).await;
    assert_eq!(names(&below), pairs(&[("g/t1/child", "a"), ("g/t1/", "a"), ("g/t1/", "B")]));
    assert!(read_all(b, None, ReadRecords::space("g/t1")).await.is_empty(), "a space is not a prefix");
    assert!(read_all(b, None, ReadRecords::prefix("g/t3")).await.is_empty());
    store.finish().await
}

/// A put replaces, an insert keeps a live record (and counts none), a delete removes one record,
/// a delete of spaces every record of the spaces under its prefix and no other; the changes of
/// one write apply in order (two puts of one record: the last stays), each counted.
pub async fn check_records_put_insert_and_delete<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    gate!(store, records);
    let b = store.b().as_ref();
    let value = |space: &str, key: &str| {
        let query = ReadRecords::space(space).with_keys(vec![key.to_owned()]);
        async move { read_all(b, None, query).await.pop().map(|r| r.value) }
    };
    apply(b, None, vec![RecordWrite::put("s/1", "k", b"old".to_vec())]).await.expect("put");
    assert_eq!(apply(b, None, vec![RecordWrite::insert("s/1", "k", b"new".to_vec())]).await.expect("insert"), 0);
    assert_eq!(value("s/1", "k").await.as_deref(), Some(&b"old"[..]), "an insert keeps a live record");
    assert_eq!(apply(b, None, vec![RecordWrite::put("s/1", "k", b"new".to_vec())]).await.expect("put"), 1);
    assert_eq!(value("s/1", "k").await.as_deref(), Some(&b"new"[..]));
    let in_order = vec![
        RecordWrite::put("s/1", "x", b"1".to_vec()),
        RecordWrite::delete("s/1", "x"),
        RecordWrite::insert("s/1", "x", b"2".to_vec()),
        RecordWrite::put("s/10", "y", b"3".to_vec()),
        RecordWrite::put("s/2", "z", b"4".to_vec()),
        RecordWrite::delete("s/2", "absent"),
    ];
    assert_eq!(apply(b, None, in_order).await.expect("write"), 5);
    assert_eq!(value("s/1", "x").await.as_deref(), Some(&b"2"[..]), "the changes applied in order");
    let inserts =
        vec![RecordWrite::insert("s/1", "x", b"kept?".to_vec()), RecordWrite::insert("s/1", "y", b"5".to_vec())];
    assert_eq!(apply(b, None, inserts).await.expect("inserts"), 1, "only the absent one");
    assert_eq!(value("s/1", "x").await.as_deref(), Some(&b"2"[..]));
    let twice = vec![RecordWrite::put("s/1", "y", b"6".to_vec()), RecordWrite::put("s/1", "y", b"7".to_vec())];
    assert_eq!(apply(b, None, twice).await.expect("puts"), 2, "each put counts");
    assert_eq!(value("s/1", "y").await.as_deref(), Some(&b"7"[..]), "the last put stays");
    assert_eq!(apply(b, None, vec![RecordWrite::delete_spaces("s/1")]).await.expect("delete spaces"), 4);
    assert_eq!(names(&read_all(b, None, ReadRecords::prefix("s/")).await), pairs(&[("s/2", "z")]));
    store.finish().await
}

/// A record past its expiry is answered by no read, is written over by an insert, and is deleted
/// by a sweep (which leaves live records); a touch moves the expiry of a live record only.
pub async fn check_records_expire<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    gate!(store, records);
    let b = store.b().as_ref();
    let now = Timestamp::now().as_micros();
    let past = Some(Timestamp::from_micros(now - 1_000_000));
    let later = Some(Timestamp::from_micros(now + 3_600_000_000));
    let writes = vec![
        RecordWrite::put("e", "gone", b"1".to_vec()).expiring(past),
        RecordWrite::put("e", "kept", b"2".to_vec()).expiring(later),
        RecordWrite::put("e", "forever", b"3".to_vec()),
    ];
    apply(b, None, writes).await.expect("put");
    let keys = |records: Vec<Record>| records.into_iter().map(|r| r.key).collect::<Vec<_>>();
    assert_eq!(keys(read_all(b, None, ReadRecords::space("e")).await), ["forever", "kept"]);
    let found = read_all(b, None, ReadRecords::space("e").with_keys(vec!["kept".into()])).await;
    assert_eq!(found[0].expires_at, later);
    let touch = |key: &str, at| RecordWrite::Touch { space: "e".into(), key: key.into(), expires_at: at };
    assert_eq!(apply(b, None, vec![touch("gone", None)]).await.expect("touch"), 0, "an expired record stays expired");
    assert_eq!(apply(b, None, vec![touch("kept", past)]).await.expect("touch"), 1);
    assert_eq!(keys(read_all(b, None, ReadRecords::space("e")).await), ["forever"]);
    assert_eq!(apply(b, None, vec![RecordWrite::Sweep]).await.expect("sweep"), 2);
    let again = RecordWrite::insert("e", "gone", b"4".to_vec());
    assert_eq!(apply(b, None, vec![again]).await.expect("insert"), 1, "an expired record is written over");
    assert_eq!(keys(read_all(b, None, ReadRecords::space("e")).await), ["forever", "gone"]);
    store.finish().await
}

/// One space and key in two tenants (and in none) are three records: each reads, deletes and
/// sweeps only its own.
pub async fn check_records_are_per_tenant<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    gate!(store, records);
    let b = store.b().as_ref();
    let (acme, globex) = (tenant("acme"), tenant("globex"));
    for (who, name) in [(Some(&acme), "acme"), (Some(&globex), "globex"), (None, "none")] {
        apply(b, who, vec![RecordWrite::put("p/", "k", name.as_bytes().to_vec())]).await.expect("put");
    }
    for (who, name) in [(Some(&acme), "acme"), (Some(&globex), "globex"), (None, "none")] {
        let found = read_all(b, who, ReadRecords::prefix("p")).await;
        assert_eq!(found.len(), 1, "{name}");
        assert_eq!((found[0].value.as_slice(), found[0].tenant.as_ref()), (name.as_bytes(), who));
    }
    assert_eq!(apply(b, Some(&acme), vec![RecordWrite::delete_spaces("p")]).await.expect("delete"), 1);
    assert!(read_all(b, Some(&acme), ReadRecords::prefix("p")).await.is_empty());
    assert_eq!(read_all(b, Some(&globex), ReadRecords::prefix("p")).await.len(), 1);
    assert_eq!(read_all(b, None, ReadRecords::prefix("p")).await.len(), 1);
    store.finish().await
}

/// No change, an empty space or prefix, a space or key too long or holding U+0000, a limit of
/// 0: `InvalidInput` naming the field, and a write with one bad change writes none of them.
pub async fn check_records_refuse_bad_input<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    gate!(store, records);
    let b = store.b().as_ref();
    let good = || RecordWrite::put("ok", "k", b"v".to_vec());
    assert_err!(apply(b, None, Vec::new()).await, PersistError::InvalidInput { field: "writes", .. });
    let bad = [
        (RecordWrite::put("", "k", Vec::new()), "space"),
        (RecordWrite::put("s", "k\0", Vec::new()), "key"),
        (RecordWrite::put("s\0", "k", Vec::new()), "space"),
        (RecordWrite::put("s", "k".repeat(MAX_NAME_BYTES + 1), Vec::new()), "key"),
        (RecordWrite::delete_spaces(""), "prefix"),
    ];
    for (change, named) in bad {
        match apply(b, None, vec![good(), change.clone()]).await {
            Err(PersistError::InvalidInput { field, .. }) => assert_eq!(field, named, "{change:?}"),
            other => panic!("{change:?} answered {other:?}"),
        }
    }
    assert!(read_all(b, None, ReadRecords::space("ok")).await.is_empty(), "nothing written");
    let zero = b.records(ReadRecords::space("ok").with_limit(0)).await;
    assert_err!(zero, PersistError::InvalidInput { field: "limit", .. });
    let empty = b.records(ReadRecords::prefix("")).await;
    assert_err!(empty, PersistError::InvalidInput { field: "space", .. });
    store.finish().await
}

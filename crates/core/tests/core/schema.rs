//! Where a store's schema stands.

use persist_core::PersistError;
use persist_core::schema::{SchemaMigration, SchemaStatus};

fn known() -> Vec<SchemaMigration> {
    (1..=3).map(|v| SchemaMigration::new(v, format!("step {v}"))).collect()
}

#[test]
fn a_status_says_what_is_pending_and_refuses_a_store_behind_ahead_failed_or_changed() {
    let current = SchemaStatus::new([1, 2, 3], known());
    assert!(current.is_current() && current.pending.is_empty());
    assert!(current.require_current("chat.db").is_ok());
    let behind = SchemaStatus::new([1], known());
    assert_eq!(behind.pending, vec![SchemaMigration::new(2, "step 2"), SchemaMigration::new(3, "step 3")]);
    let error = behind.require_current("chat.db").unwrap_err();
    assert!(matches!(error, PersistError::Unsupported { .. }));
    let said = error.to_string();
    assert!(said.contains("chat.db: schema version 1, this build needs 3 (pending: 2 step 2, 3 step 3)"), "{said}");
    // A version skipped below the newest applied is pending too.
    let gap = SchemaStatus::new([1, 3], known());
    assert_eq!((gap.applied, gap.pending.clone()), (3, vec![SchemaMigration::new(2, "step 2")]));
    assert!(!gap.is_current());
    let ahead = SchemaStatus::new([1, 2, 3, 7], known());
    assert!(ahead.is_ahead() && !ahead.is_current() && ahead.pending.is_empty());
    assert!(ahead.require_current("chat.db").unwrap_err().to_string().contains("newer than this build's 3"));
    let failed = SchemaStatus::new([1, 2], known()).with_failed(vec![3]);
    assert!(failed.require_current("chat.db").unwrap_err().to_string().contains("migration 3 is recorded as failed"));
    let changed = SchemaStatus::new([1, 2, 3], known()).with_changed(vec![2]);
    assert!(!changed.is_current());
    assert!(changed.require_current("chat.db").unwrap_err().to_string().contains("migration 2 in the store differs"));
    let new = SchemaStatus::new([], known());
    assert_eq!((new.applied, new.pending.len()), (0, 3));
    // From a store's records: a failed row, a changed checksum.
    let known_sums = || known().into_iter().map(|m| (m.clone(), vec![m.version as u8]));
    let records = vec![(1, true, vec![1]), (2, true, vec![9]), (3, false, vec![3])];
    let read = SchemaStatus::from_records(records, known_sums());
    assert_eq!((read.applied, read.failed.clone(), read.changed.clone()), (2, vec![3], vec![2]));
    assert_eq!(read.pending, vec![SchemaMigration::new(3, "step 3")]);
    assert!(
        SchemaStatus::from_records(vec![(1, true, vec![1]), (2, true, vec![2]), (3, true, vec![3])], known_sums())
            .is_current()
    );
}

#[test]
fn a_migration_with_work_left_is_pending_before_the_ones_after_it() {
    let step = |v| SchemaMigration::new(v, format!("step {v}"));
    // The newest applied: it goes back to pending.
    let last = SchemaStatus::new([1, 2, 3], known()).with_work_left(step(3));
    assert_eq!((last.applied, last.pending.clone()), (2, vec![step(3)]));
    // A later migration not applied yet stays pending after it.
    let later_pending = SchemaStatus::new([1, 2], known()).with_work_left(step(2));
    assert_eq!((later_pending.applied, later_pending.pending.clone()), (1, vec![step(2), step(3)]));
    // Applied after it (its SQL ran in the same migration run): the store is below it still.
    let later_applied = SchemaStatus::new([1, 2, 3], known()).with_work_left(step(2));
    assert_eq!((later_applied.applied, later_applied.pending.clone()), (1, vec![step(2)]));
    // Not recorded, or an older one pending, failed, changed, ahead: as it was.
    let not_yet = SchemaStatus::new([1], known());
    assert_eq!(not_yet.clone().with_work_left(step(2)), not_yet);
    let gap = SchemaStatus::new([1, 3], known());
    assert_eq!(gap.clone().with_work_left(step(3)), gap);
    let ahead = SchemaStatus::new([1, 2, 3, 7], known());
    assert_eq!(ahead.clone().with_work_left(step(3)), ahead);
}

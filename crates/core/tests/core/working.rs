//! Working memory: merge patches, versions and sizes.

use serde_json::{Value, json};

use persist_core::working::{MAX_DOCUMENT_BYTES, WriteMemory, merge_patch};
use persist_core::{Metadata, PersistError, ResourceId};

/// The examples of RFC 7396, appendix A.
#[test]
fn merge_patch_follows_the_rfc() {
    let cases = [
        (json!({"a": "b"}), json!({"a": "c"}), json!({"a": "c"})),
        (json!({"a": "b"}), json!({"b": "c"}), json!({"a": "b", "b": "c"})),
        (json!({"a": "b"}), json!({"a": null}), json!({})),
        (json!({"a": "b", "b": "c"}), json!({"a": null}), json!({"b": "c"})),
        (json!({"a": ["b"]}), json!({"a": "c"}), json!({"a": "c"})),
        (json!({"a": "c"}), json!({"a": ["b"]}), json!({"a": ["b"]})),
        (json!({"a": {"b": "c"}}), json!({"a": {"b": "d", "c": null}}), json!({"a": {"b": "d"}})),
        (json!({"a": [{"b": "c"}]}), json!({"a": [1]}), json!({"a": [1]})),
        (json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"])),
        (json!({"a": "b"}), json!(["c"]), json!(["c"])),
        (json!({"a": "foo"}), json!(null), json!(null)),
        (json!({"a": "foo"}), json!("bar"), json!("bar")),
        (json!({"e": null}), json!({"a": 1}), json!({"e": null, "a": 1})),
        (json!([1, 2]), json!({"a": "b", "c": null}), json!({"a": "b"})),
        (json!({}), json!({"a": {"bb": {"ccc": null}}}), json!({"a": {"bb": {}}})),
    ];
    for (mut target, patch, expected) in cases {
        merge_patch(&mut target, &patch);
        assert_eq!(target, expected, "{patch}");
    }
}

#[test]
fn a_write_checks_its_version_and_its_size() {
    let user = ResourceId::new("u").unwrap();
    let doc = |v: Value| Metadata::try_from(v).unwrap();
    let patch = WriteMemory::patch(user.clone(), doc(json!({"b": 2}))).with_expected_version(3);
    assert!(matches!(patch.apply(None, 0), Err(PersistError::DocumentConflict { expected: 3, actual: 0, .. })));
    assert_eq!(patch.apply(Some(&doc(json!({"a": 1}))), 3).unwrap(), (doc(json!({"a": 1, "b": 2})), 4));
    let restore = WriteMemory::restore(user.clone(), doc(json!({"r": 1})), 7);
    assert_eq!(restore.apply(None, 0).unwrap(), (doc(json!({"r": 1})), 7));
    assert!(matches!(restore.apply(None, 7), Err(PersistError::DocumentConflict { expected: 7, actual: 7, .. })));
    assert!(WriteMemory::restore(user.clone(), doc(json!({})), 0).validate().is_err());
    let big = doc(json!({"x": "y".repeat(MAX_DOCUMENT_BYTES)}));
    assert!(matches!(
        WriteMemory::replace(user.clone(), big.clone()).validate(),
        Err(PersistError::InvalidInput { field: "document", .. })
    ));
    let half = doc(json!({"x": "y".repeat(MAX_DOCUMENT_BYTES / 2 + 10)}));
    let grows = WriteMemory::patch(user, doc(json!({"z": "y".repeat(MAX_DOCUMENT_BYTES / 2 + 10)})));
    assert!(grows.validate().is_ok());
    assert!(matches!(grows.apply(Some(&half), 1), Err(PersistError::InvalidInput { field: "document", .. })));
}

//! What a format carried that persist's parts, role and status have no place for, kept in the
//! message's metadata under the format's key and written back by its export.
//!
//! The value under the key is an object:
//!
//! ```text
//! {
//!   "fields": { … },   the message's own fields persist has no place for, as they were
//!   "form":   { … },   how the message was written where the format allows several ways
//!   "parts":  [ { "fields": { … }, "form": { … } }, … ]   the same, per part of the content
//! }
//! ```
//!
//! An empty object or list is left out, and so is the key when nothing is kept.
//!
//! The fields are found by writing the persist form back and comparing ([`extras`]): whatever
//! the original has that the written one lacks is kept, and export fills it back in ([`fill`]),
//! never over what persist itself holds. So a block whose typed part would not write back as
//! it was is kept whole as [`Part::Other`](persist_core::Part::Other) ([`typed_or_other`]), and a
//! message that would not is kept whole under `form.original` ([`Kept::complete`]).

use serde_json::{Map, Value};

use persist_core::{Metadata, Part};

/// What is kept of one message, or of one part (whose `parts` stay empty).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Kept {
    /// Fields the format has and persist does not, as they were.
    pub(crate) fields: Map<String, Value>,
    /// How the element was written where the format allows several ways (a string for one text
    /// block, an `arguments` text that is not compact JSON, where an opaque block sat, …).
    pub(crate) form: Map<String, Value>,
    /// One per part of the content, in order.
    pub(crate) parts: Vec<Kept>,
}

impl Kept {
    /// A part's kept form alone.
    pub(crate) fn with_form(form: Map<String, Value>) -> Self {
        Self { form, ..Self::default() }
    }

    /// What `metadata` keeps under `key`; anything not of the shape above reads as nothing kept
    /// (metadata a host rewrote must not make an export fail).
    pub(crate) fn read(metadata: &Metadata, key: &str) -> Self {
        metadata.get(key).map(Self::from_value).unwrap_or_default()
    }

    fn from_value(value: &Value) -> Self {
        let object = |key: &str| value.get(key).and_then(Value::as_object).cloned().unwrap_or_default();
        let parts = match value.get("parts") {
            Some(Value::Array(parts)) => parts.iter().map(Self::from_value).collect(),
            _ => Vec::new(),
        };
        Self { fields: object("fields"), form: object("form"), parts }
    }

    fn to_value(&self) -> Value {
        let mut value = Map::new();
        if !self.fields.is_empty() {
            value.insert("fields".into(), Value::Object(self.fields.clone()));
        }
        if !self.form.is_empty() {
            value.insert("form".into(), Value::Object(self.form.clone()));
        }
        if self.parts.iter().any(|part| !part.is_empty()) {
            value.insert("parts".into(), self.parts.iter().map(Self::to_value).collect());
        }
        Value::Object(value)
    }

    /// Whether nothing is kept.
    pub(crate) fn is_empty(&self) -> bool {
        self.fields.is_empty() && self.form.is_empty() && self.parts.iter().all(Self::is_empty)
    }

    /// Metadata holding what is kept under `key`, or no key when nothing is.
    pub(crate) fn into_metadata(self, key: &str) -> Metadata {
        if self.is_empty() { Metadata::new() } else { Metadata::new().with(key, self.to_value()) }
    }

    /// What is kept of part `index` of content that has `count` parts: nothing when the content
    /// no longer has the parts it was imported with (what was kept described other parts).
    pub(crate) fn part(&self, index: usize, count: usize) -> Option<&Kept> {
        if self.parts.len() == count { self.parts.get(index) } else { None }
    }

    /// The form kept for `key`, as text.
    pub(crate) fn form_str(&self, key: &str) -> Option<&str> {
        self.form.get(key).and_then(Value::as_str)
    }

    /// The element imported whole because its persist form did not write back as it was.
    pub(crate) fn original(&self) -> Option<&Value> {
        self.form.get("original")
    }

    /// `self` completed with the fields of `original` that `written` (the element written back
    /// from its persist form and `self`) lacks; or, when `written` cannot be completed into
    /// `original`, `original` itself, kept whole.
    pub(crate) fn complete(mut self, original: &Value, written: Option<Value>) -> Self {
        match written.as_ref().and_then(|written| extras(original, written)) {
            Some(fields) => {
                self.fields = fields;
                self
            }
            None => {
                let mut form = Map::new();
                form.insert("original".into(), original.clone());
                Self::with_form(form)
            }
        }
    }
}

/// What `original` has beyond `written`: its keys `written` lacks, as they were, and inside an
/// object both have, that object's own such keys. `None` when `written` has a key `original`
/// lacks, or a value `original` gives otherwise: `written` cannot be completed into `original`.
pub(crate) fn extras(original: &Value, written: &Value) -> Option<Map<String, Value>> {
    let (Value::Object(original), Value::Object(written)) = (original, written) else {
        return (original == written).then(Map::new);
    };
    let mut extra = Map::new();
    for (key, value) in written {
        let own = original.get(key)?;
        if own.is_object() && value.is_object() {
            let inner = extras(own, value)?;
            if !inner.is_empty() {
                extra.insert(key.clone(), Value::Object(inner));
            }
        } else if own != value {
            return None;
        }
    }
    for (key, value) in original {
        if !written.contains_key(key) {
            extra.insert(key.clone(), value.clone());
        }
    }
    Some(extra)
}

/// Fills `written` with `fields` kept by [`extras`]: a key `written` lacks is added, an object
/// both have is filled in turn, and a value `written` has is left as it is (what persist holds
/// now wins over what was kept).
pub(crate) fn fill(written: &mut Value, fields: &Map<String, Value>) {
    let Value::Object(object) = written else { return };
    for (key, value) in fields {
        match object.get_mut(key) {
            None => {
                object.insert(key.clone(), value.clone());
            }
            Some(inner @ Value::Object(_)) if value.is_object() => {
                if let Value::Object(more) = value {
                    fill(inner, more);
                }
            }
            Some(_) => {}
        }
    }
}

/// `block` as the typed part `read` finds in it, with what the block has beyond the part as
/// `write` writes it back; or, when `read` finds none or the part does not write back as the
/// block was (an unknown kind, a field of the wrong type), the block whole as [`Part::Other`].
///
/// `read` answers the part and its form (how it was written); `write` writes a part back with
/// what is kept of it.
pub(crate) fn typed_or_other(
    block: &Value,
    read: impl FnOnce(&Value) -> Option<(Part, Map<String, Value>)>,
    write: impl FnOnce(&Part, &Kept) -> Option<Value>,
) -> (Part, Kept) {
    if let Some((part, form)) = read(block) {
        let kept = Kept::with_form(form);
        if let Some(fields) = write(&part, &kept).and_then(|written| extras(block, &written)) {
            return (part, Kept { fields, ..kept });
        }
    }
    (Part::Other(block.clone()), Kept::default())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn extras_are_what_the_written_value_lacks_and_fill_puts_them_back() {
        let original = json!({"type": "image_url", "image_url": {"url": "u", "detail": "high"}, "x": [1]});
        let written = json!({"type": "image_url", "image_url": {"url": "u"}});
        let extra = extras(&original, &written).unwrap();
        assert_eq!(Value::Object(extra.clone()), json!({"image_url": {"detail": "high"}, "x": [1]}));
        let mut back = written;
        fill(&mut back, &extra);
        assert_eq!(back, original);
    }

    #[test]
    fn a_written_value_the_original_does_not_have_has_no_extras() {
        let original = json!({"type": "text", "text": "a"});
        assert_eq!(extras(&original, &json!({"type": "text", "text": "b"})), None);
        assert_eq!(extras(&original, &json!({"type": "text", "text": "a", "more": 1})), None);
        assert_eq!(extras(&json!([1]), &json!([1, 2])), None);
        assert_eq!(extras(&json!("s"), &json!("s")), Some(Map::new()));
    }

    #[test]
    fn fill_never_replaces_what_is_written() {
        let mut written = json!({"state": "streaming", "meta": {"a": 1}});
        let kept = json!({"state": "done", "meta": {"a": 2, "b": 3}, "new": true});
        fill(&mut written, kept.as_object().unwrap());
        assert_eq!(written, json!({"state": "streaming", "meta": {"a": 1, "b": 3}, "new": true}));
    }

    #[test]
    fn kept_round_trips_through_metadata_and_nothing_kept_is_no_key() {
        let mut kept = Kept::default();
        kept.fields.insert("status".into(), json!("completed"));
        kept.parts = vec![Kept::default(), Kept::with_form(json!({"arguments": "{ }"}).as_object().unwrap().clone())];
        let metadata = kept.clone().into_metadata("k");
        assert_eq!(
            metadata.get("k"),
            Some(&json!({"fields": {"status": "completed"}, "parts": [{}, {"form": {"arguments": "{ }"}}]}))
        );
        assert_eq!(Kept::read(&metadata, "k"), kept);
        assert!(Kept::default().into_metadata("k").is_empty());
        assert_eq!(Kept::read(&Metadata::new().with("k", json!("not an object")), "k"), Kept::default());
        assert_eq!(kept.part(1, 2).and_then(|part| part.form_str("arguments")), Some("{ }"));
        assert_eq!(kept.part(1, 3), None, "the content changed since the import");
    }

    #[test]
    fn a_block_that_does_not_write_back_is_kept_whole() {
        let read = |block: &Value| Some((Part::text(block["text"].as_str()?), Map::new()));
        let write = |part: &Part, _: &Kept| Some(json!({"type": "text", "text": part.as_text()?}));
        let (part, kept) = typed_or_other(&json!({"type": "text", "text": "hi", "cache": 1}), read, write);
        assert_eq!((part, Value::Object(kept.fields)), (Part::text("hi"), json!({"cache": 1})));
        let odd = json!({"type": "other", "text": "hi"});
        assert_eq!(typed_or_other(&odd, read, write).0, Part::Other(odd.clone()));
        let unread = json!({"type": "text", "text": 3});
        assert_eq!(typed_or_other(&unread, read, write), (Part::Other(unread.clone()), Kept::default()));
    }

    #[test]
    fn an_element_that_does_not_write_back_is_kept_whole() {
        let original = json!({"role": "user", "content": "hi"});
        let kept = Kept::default().complete(&original, Some(json!({"role": "user", "content": [{"type": "text"}]})));
        assert_eq!(kept.original(), Some(&original));
        let kept = Kept::default().complete(&original, Some(json!({"role": "user"})));
        assert_eq!(kept.original(), None);
        assert_eq!(Value::Object(kept.fields), json!({"content": "hi"}));
    }
}

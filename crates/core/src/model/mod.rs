//! The data every part names: ids, JSON and its rules, content, metadata, embeddings, messages
//! and threads, pages of them, the one error type and the operation labels. Nothing here knows
//! of requests or of the pipeline. (Ids and the error refer to each other: an id that does not validate is a
//! `PersistError`, and an error names the ids it concerns.)

/// Serializes each type as its text (`Display`) and deserializes it by parsing that text
/// (`FromStr`, its error the deserializer's): for values whose text form is their wire form
/// (cursors, commit positions).
macro_rules! serde_as_text {
    ($($type:ty),+) => {$(
        impl serde::Serialize for $type {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $type {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str> as serde::Deserialize<'de>>::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    )+};
}

/// A setter per field, `with_…`, documented as setting it: `field: Type => with_field`.
macro_rules! field_setters {
    ($($field:ident: $type:ty => $setter:ident),+ $(,)?) => {$(
        #[doc = concat!("Sets [`", stringify!($field), "`](Self::", stringify!($field), ").")]
        pub fn $setter(mut self, $field: $type) -> Self {
            self.$field = $field;
            self
        }
    )+};
}

pub(crate) mod content;
pub(crate) mod embedding;
pub(crate) mod error;
pub(crate) mod id;
pub(crate) mod id_checks;
pub(crate) mod json;
pub(crate) mod json_numbers;
pub(crate) mod message;
pub(crate) mod metadata;
pub(crate) mod offset;
#[macro_use]
pub(crate) mod op;
#[macro_use]
pub(crate) mod page;
pub(crate) mod part;
pub(crate) mod place;

pub use self::content::Content;
pub use self::json::MAX_JSON_DEPTH;
pub use self::message::{MAX_ROLE_BYTES, Message, Role, Status, Thread, Timestamp};
pub use self::metadata::Metadata;
pub use self::part::{Part, ToolCallRef, ToolNames, ToolResultRef};
pub use self::place::PartOffset;

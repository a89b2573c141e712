//! Encryption keys for stores sealed by `EncryptLayer`: read from the environment, never from
//! the command line (where the process list and the shell's history would show them).

use persist::encrypt::{EncryptLayer, KeyRing};
use persist::{Content, Message, Thread};
use serde_json::Value;

use crate::error::{CliError, CliResult};

/// The variable holding the keys, in the format of `KeyRing::from_env`: `id:base64,id:base64,…`
/// (32-byte keys; the last one seals).
pub(crate) const KEYS_VAR: &str = "PERSIST_ENCRYPTION_KEYS";

/// How the app's `EncryptLayer` is configured beyond its keys: which metadata keys it seals,
/// and whether it seals titles. The CLI must be told the same to seal what an import writes
/// and to open what it reads.
#[derive(Debug, Clone, Default)]
pub(crate) struct Sealing {
    /// `--seal-metadata`.
    pub(crate) metadata: Vec<String>,
    /// `--seal-titles`.
    pub(crate) titles: bool,
    /// `--allow-clear-values`.
    pub(crate) allow_clear: bool,
}

/// The layer the keys of `$PERSIST_ENCRYPTION_KEYS` make, configured as `sealing` says;
/// `None` when the variable is unset or empty.
///
/// # Errors
///
/// A usage error when the variable holds no valid key text, or when `sealing` asks for
/// something without keys to do it with.
pub(crate) fn from_env(sealing: &Sealing) -> CliResult<Option<EncryptLayer>> {
    let text = match std::env::var(KEYS_VAR) {
        Ok(text) => text,
        Err(std::env::VarError::NotPresent) => String::new(),
        // Never taken as unset: an import would then write clear values into a sealed store.
        Err(std::env::VarError::NotUnicode(_)) => {
            return Err(CliError::usage(format!("{KEYS_VAR} is not UTF-8 text")));
        }
    };
    layer(&text, sealing)
}

fn layer(text: &str, sealing: &Sealing) -> CliResult<Option<EncryptLayer>> {
    if text.trim().is_empty() {
        if !sealing.metadata.is_empty() || sealing.titles || sealing.allow_clear {
            return Err(CliError::usage(format!(
                "--seal-metadata, --seal-titles and --allow-clear-values need the keys: set {KEYS_VAR}"
            )));
        }
        return Ok(None);
    }
    // The error names the entry's shape, never the key text.
    let ring = KeyRing::from_text(text).map_err(|e| CliError::usage(format!("{KEYS_VAR}: {e}")))?;
    let layer = EncryptLayer::new(ring)
        .seal_metadata(sealing.metadata.iter().cloned())
        .seal_titles(sealing.titles)
        .allow_clear_values(sealing.allow_clear);
    Ok(Some(layer))
}

/// Whether `value` is a value sealed by `EncryptLayer`: `{"persist:sealed": "v1.…"}`.
pub(crate) fn is_sealed(value: &Value) -> bool {
    value.as_object().is_some_and(|object| object.len() == 1 && object.contains_key("persist:sealed"))
}

/// Whether `content` is sealed.
pub(crate) fn content_is_sealed(content: &Content) -> bool {
    serde_json::from_str::<Value>(&content.as_json()).is_ok_and(|value| is_sealed(&value))
}

/// Whether a thread title is sealed (`persist:sealed:v1.…`).
pub(crate) fn title_is_sealed(title: &str) -> bool {
    title.starts_with("persist:sealed:")
}

/// Whether `message` holds a sealed value (its content, or a metadata value).
pub(crate) fn message_is_sealed(message: &Message) -> bool {
    content_is_sealed(&message.content) || message.metadata.as_map().values().any(is_sealed)
}

/// Whether `thread` holds a sealed value (its title, or a metadata value).
pub(crate) fn thread_is_sealed(thread: &Thread) -> bool {
    thread.title.as_deref().is_some_and(title_is_sealed) || thread.metadata.as_map().values().any(is_sealed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "k1:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";

    #[test]
    fn keys_make_a_layer_and_bad_text_is_a_usage_error() {
        assert!(layer("", &Sealing::default()).unwrap().is_none());
        assert!(
            layer(KEY, &Sealing { metadata: vec!["email".into()], titles: true, allow_clear: true }).unwrap().is_some()
        );
        let error = layer("k1:not-base64", &Sealing::default()).unwrap_err();
        assert_eq!(error.exit_code(), 2);
        assert!(error.to_string().starts_with("PERSIST_ENCRYPTION_KEYS: invalid"), "{error}");
        assert!(!error.to_string().contains("not-base64"), "the key text is never echoed: {error}");
        let without = layer(" ", &Sealing { metadata: Vec::new(), titles: true, allow_clear: false }).unwrap_err();
        assert!(without.to_string().contains("need the keys"), "{without}");
    }
}

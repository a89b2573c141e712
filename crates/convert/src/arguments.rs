//! OpenAI's tool-call `arguments`: JSON held as a text, which [`Part::ToolCall`](persist_core::Part)
//! holds as JSON.

use serde_json::{Map, Value};

/// The arguments `text` holds, and the form to keep: the text itself when writing the JSON
/// back compactly would not give it byte for byte (spaces, newlines, key order). Text that is
/// not JSON (a call whose stream was cut short) is held as a JSON string.
pub(crate) fn read_arguments(text: &str) -> (Value, Map<String, Value>) {
    let arguments = serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()));
    let mut form = Map::new();
    if write_arguments(&arguments, None) != text {
        form.insert("arguments".into(), text.into());
    }
    (arguments, form)
}

/// The text of `arguments`: the `kept` text when it still holds these arguments (they were not
/// changed since the import), the compact JSON otherwise.
pub(crate) fn write_arguments(arguments: &Value, kept: Option<&str>) -> String {
    if let Some(text) = kept {
        let holds = match serde_json::from_str::<Value>(text) {
            Ok(parsed) => parsed == *arguments,
            Err(_) => arguments.as_str() == Some(text),
        };
        if holds {
            return text.to_owned();
        }
    }
    arguments.to_string()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn compact_arguments_keep_no_form_and_others_keep_their_text() {
        assert_eq!(read_arguments(r#"{"city":"Paris"}"#), (json!({"city": "Paris"}), Map::new()));
        let spaced = "{\n\"location\": \"Boston, MA\"\n}";
        let (arguments, form) = read_arguments(spaced);
        assert_eq!(arguments, json!({"location": "Boston, MA"}));
        assert_eq!(write_arguments(&arguments, form["arguments"].as_str()), spaced);
        let cut = r#"{"city":"Pa"#;
        let (arguments, form) = read_arguments(cut);
        assert_eq!(arguments, json!(cut));
        assert_eq!(write_arguments(&arguments, form["arguments"].as_str()), cut);
    }

    #[test]
    fn changed_arguments_are_written_as_they_are_now() {
        let spaced = "{ \"city\": \"Paris\" }";
        assert_eq!(write_arguments(&json!({"city": "Lyon"}), Some(spaced)), r#"{"city":"Lyon"}"#);
        assert_eq!(write_arguments(&json!("not json"), None), r#""not json""#);
    }
}

//! The extensions' paging cursors as they travel: persist's cursor text (which holds `+` and
//! `:`, so a `+` pasted into a URL as it is would arrive as a space) sent as URL-safe base64
//! without padding, so `?after=<next_cursor>` works as it is, encoded or not.

use std::fmt::Display;
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::http::error::ApiError;

/// What a page's `next_cursor` says for persist's `cursor`.
pub(crate) fn encode(cursor: &impl Display) -> String {
    URL_SAFE_NO_PAD.encode(cursor.to_string())
}

/// The cursor an `after` names: one [`encode`] made (a cursor in persist's own text, as a
/// server before this form answered, is read too), or 400 naming `after`.
pub(crate) fn decode<T: FromStr>(after: &str) -> Result<T, ApiError> {
    let text = URL_SAFE_NO_PAD.decode(after).ok().and_then(|bytes| String::from_utf8(bytes).ok());
    text.and_then(|text| text.parse().ok())
        .or_else(|| after.parse().ok())
        .ok_or_else(|| ApiError::invalid("after", format!("Invalid 'after': '{after}' is not a cursor.")))
}

#[cfg(test)]
mod tests {
    use persist_core::read::ThreadCursor;

    use super::*;

    #[test]
    fn a_cursor_travels_url_safe_and_back() {
        let text = "1795692856299719+4:acmeconv_01a217a283eb754fa114aed670e1d1bc";
        let cursor: ThreadCursor = text.parse().unwrap();
        let sent = encode(&cursor);
        assert!(sent.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "{sent}");
        assert_eq!(decode::<ThreadCursor>(&sent).unwrap().to_string(), text);
        // The raw text an earlier server answered still pages.
        assert_eq!(decode::<ThreadCursor>(text).unwrap().to_string(), text);
        assert!(decode::<ThreadCursor>("not a cursor").is_err());
    }
}

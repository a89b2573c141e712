//! The numbers of JSON text as they were written: what a parser without arbitrary precision
//! cannot tell apart once it has read them (an integer beyond 64 bits from a double, a whole
//! double written with an exponent from an integer).

/// The byte ranges of the numbers of JSON `text`, in order: every token outside a string that
/// starts with `-` or a digit (the text is JSON already; nothing is validated).
///
/// # Example
///
/// ```
/// let text = r#"{"a1e5": [1, -2.5e3], "b": "7"}"#;
/// let numbers: Vec<&str> = persist_core::raw::json_numbers(text).map(|at| &text[at]).collect();
/// assert_eq!(numbers, ["1", "-2.5e3"]);
/// ```
pub fn json_numbers(text: &str) -> impl Iterator<Item = std::ops::Range<usize>> + '_ {
    let bytes = text.as_bytes();
    let (mut at, mut in_string) = (0, false);
    std::iter::from_fn(move || {
        while at < bytes.len() {
            let byte = bytes[at];
            if in_string {
                match byte {
                    b'\\' => at += 1,
                    b'"' => in_string = false,
                    _ => {}
                }
                at += 1;
            } else if byte == b'"' {
                in_string = true;
                at += 1;
            } else if byte == b'-' || byte.is_ascii_digit() {
                let start = at;
                while at < bytes.len() && matches!(bytes[at], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9') {
                    at += 1;
                }
                return Some(start..at);
            } else {
                at += 1;
            }
        }
        None
    })
}

/// The first integer of JSON `text` beyond 64 bits (below `-2**63` or above `2**64 - 1`), which a
/// parser without arbitrary precision reads as a double, changed.
pub fn integer_beyond_64_bits(text: &str) -> Option<&str> {
    json_numbers(text).map(|at| &text[at]).find(|token| {
        !token.contains(['.', 'e', 'E']) && token.parse::<i64>().is_err() && token.parse::<u64>().is_err()
    })
}

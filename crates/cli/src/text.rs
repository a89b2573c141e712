//! Parsing command-line values (durations, filters, ids) and formatting times and tables.

use std::time::Duration;

use persist::read::ThreadCursor;
use persist::{AgentId, ProviderId, RuntimeId, TenantId, ThreadId, Timestamp};
use serde_json::Value;

/// Parses a duration: numbers with a unit each, `ms`, `s`, `m`, `h`, `d` or `w` (`30d`, `12h`,
/// `90m`, `1h30m`, `250ms`).
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let invalid =
        || format!("invalid duration `{text}`: expected a number and a unit (ms, s, m, h, d, w), e.g. 30d, 12h");
    let mut total: u64 = 0;
    let mut digits = String::new();
    let mut chars = text.trim().chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let millis: u64 = match c {
            'm' if chars.next_if_eq(&'s').is_some() => 1,
            's' => 1_000,
            'm' => 60_000,
            'h' => 3_600_000,
            'd' => 86_400_000,
            'w' => 604_800_000,
            _ => return Err(invalid()),
        };
        let amount: u64 = digits.parse().map_err(|_| invalid())?;
        total = amount.checked_mul(millis).and_then(|ms| total.checked_add(ms)).ok_or_else(invalid)?;
        digits.clear();
    }
    if !digits.is_empty() || text.trim().is_empty() {
        return Err(invalid());
    }
    Ok(Duration::from_millis(total))
}

/// Parses a thread filter `key=value`: the value is JSON when it parses as JSON (`n=1`,
/// `vip=true`, `tags=["a"]`), a string otherwise (`user=u1`).
pub(crate) fn parse_filter(text: &str) -> Result<(String, Value), String> {
    let (key, value) = text.split_once('=').ok_or_else(|| format!("invalid filter `{text}`: expected KEY=VALUE"))?;
    if key.is_empty() {
        return Err(format!("invalid filter `{text}`: the key is empty"));
    }
    let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_owned()));
    Ok((key.to_owned(), value))
}

/// Parses a thread listing's cursor, as `persist threads` prints it.
pub(crate) fn parse_cursor(text: &str) -> Result<ThreadCursor, String> {
    text.parse().map_err(|e: persist::PersistError| e.to_string())
}

/// Parses a search's cursor.
pub(crate) fn parse_search_cursor(text: &str) -> Result<persist::search::SearchCursor, String> {
    text.parse().map_err(|e: persist::PersistError| e.to_string())
}

/// Parses a role: the four persist names in any case (`Assistant` is `assistant`); any other
/// role as written (roles of an app's own are matched exactly, as stored).
pub(crate) fn parse_role(text: &str) -> Result<persist::Role, String> {
    let known = ["user", "assistant", "system", "tool"].into_iter().find(|name| name.eq_ignore_ascii_case(text));
    persist::Role::new(known.unwrap_or(text)).map_err(|e| e.to_string())
}

/// Parses a thread id.
pub(crate) fn parse_thread(text: &str) -> Result<ThreadId, String> {
    ThreadId::new(text).map_err(|e| e.to_string())
}

/// Parses a tenant id.
pub(crate) fn parse_tenant(text: &str) -> Result<TenantId, String> {
    TenantId::new(text).map_err(|e| e.to_string())
}

/// Parses an agent id.
pub(crate) fn parse_agent(text: &str) -> Result<AgentId, String> {
    AgentId::new(text).map_err(|e| e.to_string())
}

/// Parses a provider id.
pub(crate) fn parse_provider(text: &str) -> Result<ProviderId, String> {
    ProviderId::new(text).map_err(|e| e.to_string())
}

/// Parses a runtime id.
pub(crate) fn parse_runtime(text: &str) -> Result<RuntimeId, String> {
    RuntimeId::new(text).map_err(|e| e.to_string())
}

/// A time as `YYYY-MM-DDTHH:MM:SSZ` (UTC).
pub(crate) fn format_time(time: Timestamp) -> String {
    time.to_rfc3339()
}

/// `word` as one word of a shell command line: as it is when it holds nothing a shell reads,
/// in single quotes otherwise (a cursor holding a tenant or thread id with a space, printed
/// to be pasted after `--after`).
pub(crate) fn shell_word(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_-+:.,/@%=".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        return word.to_owned();
    }
    format!("'{}'", word.replace('\'', "'\\''"))
}

/// `text` without control characters but line breaks (each becomes a space): what a message
/// holds, printed to a terminal, must not move its cursor or change its colours.
pub(crate) fn printable(text: &str) -> String {
    text.chars().map(|c| if c.is_control() && c != '\n' { ' ' } else { c }).collect()
}

/// `text` cut to `max` characters (an ellipsis marks the cut), on one line.
pub(crate) fn clip(text: &str, max: usize) -> String {
    let flat: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if flat.chars().count() <= max {
        return flat;
    }
    let mut cut: String = flat.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// Rows as columns padded to their widest cell, two spaces apart.
pub(crate) fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, (cell, width)) in row.iter().zip(&widths).enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            if i + 1 < row.len() {
                line.extend(std::iter::repeat_n(' ', width - cell.chars().count()));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30d").unwrap(), Duration::from_secs(30 * 86_400));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("90m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        for bad in ["", "30", "d", "3x", "-1d", "99999999999999999999w"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn roles_of_persist_in_any_case_others_as_written() {
        assert_eq!(parse_role("Assistant").unwrap().as_str(), "assistant");
        assert_eq!(parse_role("TOOL").unwrap().as_str(), "tool");
        assert_eq!(parse_role("Critic").unwrap().as_str(), "Critic");
        assert!(parse_role("").is_err());
    }

    #[test]
    fn filters() {
        assert_eq!(parse_filter("user=u1").unwrap(), ("user".to_owned(), Value::String("u1".into())));
        assert_eq!(parse_filter("n=1").unwrap(), ("n".to_owned(), serde_json::json!(1)));
        assert!(parse_filter("nokey").is_err());
        assert!(parse_filter("=v").is_err());
    }

    #[test]
    fn times() {
        assert_eq!(format_time(Timestamp::from_micros(0)), "1970-01-01T00:00:00Z");
        assert_eq!(format_time(Timestamp::from_micros(951_782_400_000_000)), "2000-02-29T00:00:00Z");
        assert_eq!(format_time(Timestamp::from_micros(-1)), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn shell_words_paste_back() {
        assert_eq!(shell_word("17:3+3:acmet"), "17:3+3:acmet");
        assert_eq!(shell_word("17:3+3:a bz"), "'17:3+3:a bz'");
        assert_eq!(shell_word("it's"), "'it'\\''s'");
        assert_eq!(printable("a\u{1b}[31mb\tc\nd\u{7}"), "a [31mb c\nd ");
    }

    #[test]
    fn tables_pad_columns() {
        let rows = vec![vec!["a".to_owned(), "bb".to_owned()], vec!["ccc".to_owned(), "d".to_owned()]];
        assert_eq!(table(&["x", "y"], &rows), "x    y\na    bb\nccc  d\n");
    }
}

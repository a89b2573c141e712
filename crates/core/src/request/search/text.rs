//! What a search reads of a message and how it reads a query: the text a message is indexed
//! by, its words, a parsed [`SearchQuery`], and the snippet and rank of a hit. Backends whose
//! engine indexes text (FTS5, `tsvector`) match with the engine and use this module for the
//! rest; the in-memory backend matches with it too.

use std::ops::Range;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::model::Content;
use crate::model::error::{PersistError, Result};

/// How much of a message's text is indexed: its first 65,536 characters (every backend cuts at
/// the same character; a word cut there is indexed as cut).
pub const MAX_INDEXED_CHARS: usize = 65_536;

/// The longest query accepted, in bytes.
pub const MAX_QUERY_BYTES: usize = 1024;

/// The most terms (words and phrases) a query may hold.
pub const MAX_QUERY_TERMS: usize = 16;

/// The text a message is found by: the `text` of every block of type `text`, and the `output`
/// of every block of type `tool_result` when it is a string (or, when it is an array, the `text`
/// of its blocks of type `text`), in the order they appear, joined by line breaks; content that
/// is a JSON string is its own text. Reasoning, tool calls, files and other blocks are not
/// indexed. Cut at [`MAX_INDEXED_CHARS`]. `None` when the message has no such text.
///
/// A block is read by its `type` and field alone (a `text` block with extra fields, such as a
/// provider's cache marker, is indexed), which is what the SQL backends' triggers read too.
///
/// # Example
///
/// ```
/// use persist::search::indexed_text;
/// use persist::{Content, Part};
/// use serde_json::json;
///
/// let content = Content::from_parts([
///     Part::reasoning("not indexed"),
///     Part::text("Lisbon is sunny"),
///     Part::tool_result("call_1", json!("22 degrees")),
/// ]);
/// assert_eq!(indexed_text(&content).as_deref(), Some("Lisbon is sunny\n22 degrees"));
/// ```
pub fn indexed_text(content: &Content) -> Option<String> {
    let value = content.to_value();
    let mut pieces: Vec<&str> = Vec::new();
    match &value {
        Value::String(text) => pieces.push(text),
        Value::Array(blocks) => {
            for block in blocks {
                match block.get("type").and_then(Value::as_str) {
                    Some("text") => pieces.extend(block.get("text").and_then(Value::as_str)),
                    Some("tool_result") => match block.get("output") {
                        Some(Value::String(text)) => pieces.push(text),
                        Some(Value::Array(inner)) => pieces.extend(inner.iter().filter_map(|b| {
                            (b.get("type").and_then(Value::as_str) == Some("text"))
                                .then(|| b.get("text").and_then(Value::as_str))
                                .flatten()
                        })),
                        _ => {}
                    },
                    _ => {}
                }
            }
        }
        _ => {}
    }
    if pieces.is_empty() {
        return None;
    }
    let joined = pieces.join("\n");
    Some(match joined.char_indices().nth(MAX_INDEXED_CHARS) {
        Some((cut, _)) => joined[..cut].to_owned(),
        None => joined,
    })
}

/// The words of `text`, each with its byte range in `text`: maximal runs of letters and digits
/// (Unicode's alphabetic and numeric characters); everything else separates words.
pub fn words(text: &str) -> impl Iterator<Item = Range<usize>> + '_ {
    let mut chars = text.char_indices().peekable();
    std::iter::from_fn(move || {
        let (start, _) = chars.by_ref().find(|(_, c)| c.is_alphanumeric())?;
        let mut end = text.len();
        while let Some(&(at, c)) = chars.peek() {
            if !c.is_alphanumeric() {
                end = at;
                break;
            }
            chars.next();
        }
        Some(start..end)
    })
}

/// A word as it is compared: lowercased.
fn fold(word: &str) -> String {
    word.to_lowercase()
}

/// One term of a query: a word, or a phrase of words that must follow each other; the last
/// word may be a prefix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SearchTerm {
    /// The words, lowercased, in order (one for a plain word).
    pub words: Vec<String>,
    /// Whether the last word matches any word it begins (`weath*`).
    pub prefix: bool,
}

impl SearchTerm {
    fn matches_word(&self, index: usize, word: &str) -> bool {
        let wanted = &self.words[index];
        if self.prefix && index + 1 == self.words.len() { word.starts_with(wanted.as_str()) } else { word == wanted }
    }

    /// How many times the term occurs in `words` (already folded).
    fn occurrences(&self, words: &[String]) -> usize {
        let n = self.words.len();
        if words.len() < n {
            return 0;
        }
        (0..=words.len() - n).filter(|&at| (0..n).all(|i| self.matches_word(i, &words[at + i]))).count()
    }

    /// Whether any word of the term matches `word` (for highlighting).
    fn touches(&self, word: &str) -> bool {
        (0..self.words.len()).any(|i| self.matches_word(i, word))
    }
}

/// A search query, parsed.
///
/// The rules, the same on every backend:
///
/// - **Words**: the query's words (runs of letters and digits) must all occur in a message's
///   [indexed text](indexed_text), in any order (AND). Case does not matter; accents do
///   (`café` does not find `cafe`); there is no stemming (`run` does not find `running`, unless
///   a PostgreSQL store is configured with a stemming text search configuration).
/// - **Phrases**: words in double quotes (`"rate limit"`) must occur one after the other;
///   words joined by punctuation (`e-mail`, `rate_limit`) are a phrase too, as the text they
///   come from is indexed as separate words. A quote left open runs to the end of the query.
/// - **Prefixes**: a word followed by `*` (`weath*`) matches every word it begins; in a phrase,
///   only the last word can be a prefix (`"rate lim*"`).
/// - Nothing else is an operator: `AND`, `OR`, `NOT`, `-`, `:` and parentheses are words or
///   separators.
///
/// # Errors
///
/// [`parse`](Self::parse) answers `InvalidInput` naming `query` for a query with no word, longer
/// than [`MAX_QUERY_BYTES`] or with more than [`MAX_QUERY_TERMS`] terms.
///
/// # Example
///
/// ```
/// use persist::search::SearchQuery;
///
/// let query = SearchQuery::parse(r#"Lisbon "rate lim*" e-mail"#)?;
/// let words: Vec<_> = query.terms().iter().map(|t| (t.words.join(" "), t.prefix)).collect();
/// assert_eq!(words, [("lisbon".into(), false), ("rate lim".into(), true), ("e mail".into(), false)]);
/// assert!(query.matches("Sent an E-mail about the rate limiter in Lisbon."));
/// assert!(!query.matches("Sent an e-mail about the limit rate in Lisbon."));
/// # Ok::<_, persist::PersistError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchQuery {
    terms: Vec<SearchTerm>,
}

impl SearchQuery {
    /// Parses `text` by the rules above.
    ///
    /// # Errors
    ///
    /// `InvalidInput` naming `query`: no word, too long, too many terms.
    pub fn parse(text: &str) -> Result<Self> {
        if text.len() > MAX_QUERY_BYTES {
            return Err(PersistError::invalid(
                "query",
                format!("is {} bytes, more than the {MAX_QUERY_BYTES} a search accepts", text.len()),
            ));
        }
        let mut terms = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix('"') {
                let (phrase, next) = match after.find('"') {
                    Some(end) => (&after[..end], &after[end + 1..]),
                    None => (after, ""),
                };
                let prefix = phrase.trim_end().ends_with('*');
                push_term(&mut terms, phrase, prefix);
                rest = next;
                continue;
            }
            let end = rest.find(|c: char| c.is_whitespace() || c == '"').unwrap_or(rest.len());
            let chunk = &rest[..end];
            push_term(&mut terms, chunk, chunk.ends_with('*'));
            rest = rest[end..].trim_start_matches(char::is_whitespace);
        }
        if terms.is_empty() {
            return Err(PersistError::invalid("query", "has no word to search for"));
        }
        if terms.len() > MAX_QUERY_TERMS {
            return Err(PersistError::invalid(
                "query",
                format!("has {} terms, more than the {MAX_QUERY_TERMS} a search accepts", terms.len()),
            ));
        }
        Ok(Self { terms })
    }

    /// The terms, in the query's order.
    pub fn terms(&self) -> &[SearchTerm] {
        &self.terms
    }

    /// Whether `text` holds every term (the in-memory backend's match; the SQL backends' engines
    /// apply the same rules).
    pub fn matches(&self, text: &str) -> bool {
        let folded: Vec<String> = words(text).map(|r| fold(&text[r])).collect();
        self.terms.iter().all(|term| term.occurrences(&folded) > 0)
    }

    /// The hit's [`Snippet`] and rank for a message whose indexed text is `text`.
    pub(crate) fn describe(&self, text: &str) -> (Snippet, f32) {
        let spans: Vec<Range<usize>> = words(text).collect();
        let folded: Vec<String> = spans.iter().map(|r| fold(&text[r.clone()])).collect();
        (self.snippet(text, &spans, &folded), self.rank(&folded))
    }

    /// How densely `words` hold the terms: the mean over terms of `tf / (tf + k)`, where `tf`
    /// counts the term's occurrences and `k` grows with the text's length (BM25's term-frequency
    /// part, without its corpus statistics, so every backend computes the same number).
    fn rank(&self, words: &[String]) -> f32 {
        let k = 1.2 * (0.25 + 0.75 * words.len() as f32 / 64.0);
        let sum: f32 = self
            .terms
            .iter()
            .map(|term| {
                let tf = term.occurrences(words) as f32;
                tf / (tf + k)
            })
            .sum();
        sum / self.terms.len() as f32
    }

    /// Up to [`SNIPPET_WORDS`] words around the first word a term touches, every touched word
    /// highlighted.
    fn snippet(&self, text: &str, spans: &[Range<usize>], folded: &[String]) -> Snippet {
        let touched = |i: usize| self.terms.iter().any(|t| t.touches(&folded[i]));
        let first = (0..spans.len()).find(|&i| touched(i)).unwrap_or(0);
        if spans.is_empty() {
            return Snippet { text: String::new(), highlights: Vec::new() };
        }
        let from = first.saturating_sub(SNIPPET_WORDS / 4);
        let to = (from + SNIPPET_WORDS).min(spans.len());
        let start = if from == 0 { 0 } else { spans[from].start };
        let end = if to == spans.len() { text.len() } else { spans[to - 1].end };
        let mut out = String::new();
        if start > 0 {
            out.push('…');
        }
        let offset = out.len();
        out.push_str(&text[start..end]);
        if end < text.len() {
            out.push('…');
        }
        let highlights = (from..to)
            .filter(|&i| touched(i))
            .map(|i| spans[i].start - start + offset..spans[i].end - start + offset)
            .collect();
        Snippet { text: out, highlights }
    }
}

/// How many words a snippet holds at most.
pub const SNIPPET_WORDS: usize = 32;

fn push_term(terms: &mut Vec<SearchTerm>, text: &str, prefix: bool) {
    let words: Vec<String> = words(text).map(|r| fold(&text[r])).collect();
    if !words.is_empty() {
        terms.push(SearchTerm { words, prefix });
    }
}

/// An excerpt of a hit's text around what matched, and where the matched words are in it.
///
/// # Example
///
/// ```
/// use persist::search::Snippet;
///
/// let snippet = Snippet::new("sunny in Lisbon", vec![9..15]);
/// assert_eq!(snippet.marked("**", "**"), "sunny in **Lisbon**");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Snippet {
    /// The excerpt, with `…` where it starts after the text's start or ends before its end.
    pub text: String,
    /// The byte ranges of the matched words in [`text`](Self::text), in order.
    pub highlights: Vec<Range<usize>>,
}

impl Snippet {
    /// A snippet of `text` with `highlights`.
    pub fn new(text: impl Into<String>, highlights: Vec<Range<usize>>) -> Self {
        Self { text: text.into(), highlights }
    }

    /// The text with each highlighted word between `open` and `close`.
    pub fn marked(&self, open: &str, close: &str) -> String {
        let mut out = String::with_capacity(self.text.len() + self.highlights.len() * (open.len() + close.len()));
        let mut at = 0;
        for range in &self.highlights {
            let (Some(before), Some(word)) = (self.text.get(at..range.start), self.text.get(range.clone())) else {
                continue;
            };
            out.push_str(before);
            out.push_str(open);
            out.push_str(word);
            out.push_str(close);
            at = range.end;
        }
        out.push_str(self.text.get(at..).unwrap_or_default());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snippets_highlight_what_matched_and_ranks_order_density() {
        let q = SearchQuery::parse("lisbon").unwrap();
        let long = format!("{} Lisbon is sunny {}", "word ".repeat(40), "tail ".repeat(40));
        let (snippet, rank) = q.describe(&long);
        assert!(snippet.text.starts_with('…') && snippet.text.ends_with('…'), "{}", snippet.text);
        assert_eq!(snippet.highlights.len(), 1);
        assert_eq!(&snippet.text[snippet.highlights[0].clone()], "Lisbon");
        let (_, dense) = q.describe("Lisbon, Lisbon");
        assert!(dense > rank && dense < 1.0);
        let (short, _) = q.describe("in lisbon");
        assert_eq!(short.marked("[", "]"), "in [lisbon]");
    }
}

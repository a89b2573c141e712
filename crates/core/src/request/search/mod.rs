//! Full-text search across conversations: [`Search`], a read through the pipeline like any
//! other, answering a [`Page`] of [`SearchHit`]s.
//!
//! # What is found
//!
//! A message is found by its [indexed text](indexed_text) (text blocks and tool results; not
//! reasoning, tool calls or files) once it is complete or interrupted: a placeholder still
//! `Reserved` is not found until its content is finished. Messages of deleted threads are not
//! found; a deleted or purged message leaves the index in the write that removes it. Every
//! message of a thread is searched, whichever branch it is on.
//!
//! The query's rules (words, case, phrases, prefixes) are [`SearchQuery`]'s. Hits come newest
//! first (by the message's `created_at`, ties by thread id, tenant and `seq`, descending,
//! bytewise), which is the same order on every backend and lets a cursor page through a search
//! while messages are being written. Each hit carries a [`Snippet`] around what matched and a
//! `rank` (how densely the message holds the query's terms, computed the same way everywhere);
//! sort a page by rank for "best first" within it.
//!
//! # Scope
//!
//! A search reaches one thread ([`SearchScope::Thread`]), the context's tenant's threads (the
//! default), or, for operators and never through a [`Scoped`](crate::Scoped) handle, every
//! tenant's ([`SearchScope::AcrossTenants`]). Another tenant's messages are never found, as
//! another tenant's thread reads as absent.
//!
//! # Backends
//!
//! SQLite keeps an FTS5 index, PostgreSQL a GIN index over a `tsvector` of the same text, each
//! written in the transaction of the write that changes a message; the in-memory backend scans.
//! Where the engines' tokenizers differ from [`words`] (the reference):
//!
//! - **PostgreSQL** splits the text on punctuation and white space as its database locale
//!   classifies them, then lets its parser split what is left. In a database whose `LC_CTYPE`
//!   is `C`, letters beyond ASCII are not lowercased, and punctuation beyond ASCII (`“`, `—`)
//!   joins the words it touches; in one whose collation is ICU's, the ASCII symbols
//!   `$ + < = > ^ ` | ~` are not punctuation to it, and the parser may read them with what
//!   follows (`x+3`: `x`, `+3`). A word longer than 2,047 bytes is not indexed; a `tsvector`
//!   keeps at most 256 positions of a word and none past the 16,383rd word of a message, so in
//!   a long text a phrase holding a word seen more often than that, or lying past that point,
//!   may be missed or match words that do not follow each other. A non-default text search
//!   configuration (a builder option) stems words and drops its stop words.
//! - **SQLite** (FTS5's `unicode61` tokenizer, diacritics kept) splits on what Unicode 6.1 calls
//!   neither a letter nor a number, and lowercases by Unicode 6.1's simple case folding.
//! - **Beyond letters and digits of the common scripts** the reference's classes (Rust's
//!   alphabetic and numeric) and the engines' differ: combining marks of some scripts
//!   (Devanagari vowel signs), enclosed letters (`Ⓐ`), letters whose lowercase is two
//!   characters (`İ`). A word holding them may be found on one backend and not another.
//!
//! SQLite's index keys each message by its row id in the `messages` table: a tool that renumbers
//! rows (`.dump` without `--preserve-rowids` and a reload; `VACUUM` keeps them, which a test
//! checks) leaves the index pointing at other rows: rebuild it by opening the file once with
//! `search_index(false)`, then with `search_index(true)`.
//!
//! A store whose content an encryption layer seals cannot be searched (its index would hold
//! nothing, or clear text): `EncryptLayer` answers a search `Unsupported`.
//!
//! # Example
//!
//! ```
//! use persist::memory::MemoryBackend;
//! use persist::search::Search;
//! use persist::{args::Add, Content, Context, Pipeline, Role, TenantId, ThreadId};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let pipeline = Pipeline::builder().build(MemoryBackend::new());
//! let me = pipeline.scoped(Context::new().with_tenant(TenantId::new("acme")?));
//! let thread = ThreadId::new("trip")?;
//! me.add(Add::new(thread.clone(), Role::Assistant, Content::text("Lisbon will be sunny on Friday."))).await?;
//!
//! let page = me.search(Search::new("sunny lisbon")).await?;
//! assert_eq!(page.items.len(), 1);
//! assert_eq!(page.items[0].thread_id, thread);
//! assert_eq!(page.items[0].snippet.marked("[", "]"), "[Lisbon] will be [sunny] on Friday.");
//! # Ok::<_, persist::PersistError>(())
//! # }).unwrap();
//! ```

mod text;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use self::text::{
    MAX_INDEXED_CHARS, MAX_QUERY_BYTES, MAX_QUERY_TERMS, SNIPPET_WORDS, SearchQuery, SearchTerm, Snippet, indexed_text,
    words,
};
use crate::context::{Context, context_setter};
use crate::model::error::{PersistError, Result};
use crate::model::id::{MessageId, TenantId, ThreadId};
use crate::model::id_checks::tenant_key;
use crate::model::page::{Page, lookahead, validate_limit};
use crate::model::{Message, Role, Timestamp};
use crate::request::filter::MessageFilter;

/// The default page size of a search.
pub const DEFAULT_SEARCH_LIMIT: u32 = 20;

/// Which threads a [`Search`] reaches.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum SearchScope {
    /// One thread of the context's tenant.
    Thread(ThreadId),
    /// Every thread of the context's tenant (those without a tenant when it names none).
    #[default]
    Tenant,
    /// Every tenant's threads: for operators, never through a [`Scoped`](crate::Scoped) handle.
    AcrossTenants,
}

/// Searches messages' text; see the [module docs](self).
///
/// # Example
///
/// ```
/// use persist::search::{Search, SearchScope};
/// use persist::{Role, ThreadId, Timestamp};
///
/// let query = Search::new("\"rate limit\" retry*")
///     .in_thread(ThreadId::new("t1")?)
///     .with_roles([Role::Assistant])
///     .since(Timestamp::from_micros(0))
///     .with_limit(10);
/// assert_eq!(query.scope, SearchScope::Thread(ThreadId::new("t1")?));
/// assert_eq!(query.query()?.terms().len(), 2);
/// # Ok::<_, persist::PersistError>(())
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Search {
    /// The query, as the user typed it (see [`SearchQuery`] for its rules).
    pub text: String,
    /// Which threads are searched.
    pub scope: SearchScope,
    /// Which of their messages: roles, time range, thread metadata.
    pub filter: MessageFilter,
    /// Continue after this cursor (from the previous page).
    pub cursor: Option<SearchCursor>,
    /// Page size, 1 to [`MAX_PAGE_LIMIT`](crate::read::MAX_PAGE_LIMIT) (default
    /// [`DEFAULT_SEARCH_LIMIT`]).
    pub limit: u32,
    /// Who is asking: its tenant's threads are searched.
    pub context: Context,
}

impl Search {
    /// The first page of the context's tenant's messages matching `text`.
    pub fn new(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            scope: SearchScope::Tenant,
            filter: MessageFilter::new(),
            cursor: None,
            limit: DEFAULT_SEARCH_LIMIT,
            context: Context::new(),
        }
    }

    /// Searches `scope`.
    pub fn with_scope(mut self, scope: SearchScope) -> Self {
        self.scope = scope;
        self
    }

    /// Searches one thread.
    pub fn in_thread(self, thread_id: ThreadId) -> Self {
        self.with_scope(SearchScope::Thread(thread_id))
    }

    /// Searches every tenant's threads (`true`: operators only), or only the context's tenant's.
    pub fn across_tenants(self, across: bool) -> Self {
        self.with_scope(if across { SearchScope::AcrossTenants } else { SearchScope::Tenant })
    }

    message_filter_setters!(filter);

    page_setters!(cursor: SearchCursor, limit);

    context_setter!(tenant);

    /// Whether the search reaches every tenant's threads.
    pub fn is_across_tenants(&self) -> bool {
        self.scope == SearchScope::AcrossTenants
    }

    /// The thread searched, for a search of one thread.
    pub fn thread_id(&self) -> Option<&ThreadId> {
        match &self.scope {
            SearchScope::Thread(thread) => Some(thread),
            _ => None,
        }
    }

    /// Checks the request and parses its query; backends call this first.
    ///
    /// # Errors
    ///
    /// [`PersistError::InvalidInput`] for a query [`SearchQuery::parse`] refuses (naming
    /// `query`), a limit of 0 or over the maximum (`limit`), a time range that holds no instant
    /// (`until`), a cursor of another tenant's search (`cursor`), or a filter no metadata can hold
    /// (`thread_filter`).
    pub fn query(&self) -> Result<SearchQuery> {
        let parsed = SearchQuery::parse(&self.text)?;
        validate_limit(self.limit)?;
        self.filter.validate()?;
        if let Some(cursor) = &self.cursor
            && !self.is_across_tenants()
            && cursor.tenant.as_ref() != self.tenant()
        {
            return Err(PersistError::invalid("cursor", "continues another tenant's search"));
        }
        Ok(parsed)
    }

    /// Checks the request ([`query`](Self::query) without its answer).
    ///
    /// # Errors
    ///
    /// As [`query`](Self::query).
    pub fn validate(&self) -> Result<()> {
        self.query().map(drop)
    }

    page_setters!(fetch);

    /// Whether a message passes the search's filters other than its text and thread metadata
    /// (role, time range, cursor, status): what a backend that scans applies.
    pub fn admits(&self, tenant: Option<&TenantId>, message: &Message) -> bool {
        message.status != crate::model::Status::Reserved
            && self.filter.admits(message)
            && self.cursor.as_ref().is_none_or(|cursor| cursor.is_after(tenant, message))
    }

    /// The page answered from up to [`fetch_limit`](Self::fetch_limit) matching messages, each
    /// with its thread's tenant, newest first (ties by thread id, tenant and seq, descending).
    ///
    /// # Errors
    ///
    /// As [`query`](Self::query).
    pub fn page(&self, fetched: Vec<(Option<TenantId>, Message)>) -> Result<Page<SearchHit, SearchCursor>> {
        let query = self.query()?;
        let hits = fetched.into_iter().map(|(tenant, message)| SearchHit::of(&query, tenant, message)).collect();
        Ok(lookahead(hits, self.limit, SearchCursor::after))
    }
}

/// The order of hits: newest first, ties by thread id, tenant and seq, descending, bytewise.
pub fn newest_first(a: &(Option<TenantId>, Message), b: &(Option<TenantId>, Message)) -> std::cmp::Ordering {
    key(&b.0, &b.1).cmp(&key(&a.0, &a.1))
}

fn key<'a>(tenant: &'a Option<TenantId>, m: &'a Message) -> (Timestamp, &'a str, &'a str, u64) {
    (m.created_at, m.thread_id.as_str(), tenant_key(tenant.as_ref()), m.seq)
}

/// One message a [`Search`] found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SearchHit {
    /// The tenant of the message's thread, if any.
    pub tenant: Option<TenantId>,
    /// The thread.
    pub thread_id: ThreadId,
    /// The message.
    pub message_id: MessageId,
    /// The message's position in its thread.
    pub seq: u64,
    /// Who wrote it.
    pub role: Role,
    /// When it was written.
    pub created_at: Timestamp,
    /// An excerpt around what matched.
    pub snippet: Snippet,
    /// How densely the message holds the query's terms, between 0 and 1 (higher is better); the
    /// same number on every backend.
    pub rank: f32,
}

impl SearchHit {
    fn of(query: &SearchQuery, tenant: Option<TenantId>, message: Message) -> Self {
        let text = indexed_text(&message.content).unwrap_or_default();
        let (snippet, rank) = query.describe(&text);
        Self {
            tenant,
            thread_id: message.thread_id,
            message_id: message.id,
            seq: message.seq,
            role: message.role,
            created_at: message.created_at,
            snippet,
            rank,
        }
    }
}

/// Where a search's page stopped: its last hit's `(created_at, thread, tenant, seq)`. Serialized
/// as an opaque string, safe to hand to clients.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SearchCursor {
    created_at: Timestamp,
    thread_id: ThreadId,
    tenant: Option<TenantId>,
    seq: u64,
}

impl SearchCursor {
    /// The cursor just past the message `seq` of `(tenant, thread_id)` created at `created_at`.
    pub fn new(created_at: Timestamp, tenant: Option<TenantId>, thread_id: ThreadId, seq: u64) -> Self {
        Self { created_at, thread_id, tenant, seq }
    }

    fn after(hit: &SearchHit) -> Self {
        Self::new(hit.created_at, hit.tenant.clone(), hit.thread_id.clone(), hit.seq)
    }

    /// The last hit's creation time.
    pub fn created_at(&self) -> Timestamp {
        self.created_at
    }

    /// The last hit's thread.
    pub fn thread_id(&self) -> &ThreadId {
        &self.thread_id
    }

    /// The last hit's tenant.
    pub fn tenant(&self) -> Option<&TenantId> {
        self.tenant.as_ref()
    }

    /// The last hit's seq.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Whether `message` (of `tenant`) comes after the cursor in the search's order.
    pub fn is_after(&self, tenant: Option<&TenantId>, message: &Message) -> bool {
        let tenant = tenant_key(tenant);
        let mine = (self.created_at, self.thread_id.as_str(), tenant_key(self.tenant.as_ref()), self.seq);
        (message.created_at, message.thread_id.as_str(), tenant, message.seq) < mine
    }
}

impl fmt::Display for SearchCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let micros = self.created_at.as_micros();
        let tenant = tenant_key(self.tenant.as_ref());
        let marker = if self.tenant.is_some() { "+" } else { "-" };
        write!(f, "{micros}:{}{marker}{}:{tenant}{}", self.seq, tenant.len(), self.thread_id)
    }
}

impl FromStr for SearchCursor {
    type Err = PersistError;

    fn from_str(s: &str) -> Result<Self> {
        let malformed = || PersistError::invalid("cursor", "is not a cursor this library issued");
        let (micros, rest) = s.split_once(':').ok_or_else(malformed)?;
        let (head, rest) = rest.split_once(':').ok_or_else(malformed)?;
        let (seq, has_tenant, len) = match (head.split_once('+'), head.split_once('-')) {
            (Some((seq, len)), _) => (seq, true, len),
            (None, Some((seq, len))) => (seq, false, len),
            _ => return Err(malformed()),
        };
        let micros: i64 = micros.parse().map_err(|_| malformed())?;
        let seq: u64 = seq.parse().map_err(|_| malformed())?;
        let len: usize = len.parse().map_err(|_| malformed())?;
        if !rest.is_char_boundary(len.min(rest.len())) || len > rest.len() || (!has_tenant && len != 0) {
            return Err(malformed());
        }
        let (tenant, thread) = rest.split_at(len);
        let tenant = if has_tenant { Some(TenantId::new(tenant).map_err(|_| malformed())?) } else { None };
        let thread_id = ThreadId::new(thread).map_err(|_| malformed())?;
        Ok(Self::new(Timestamp::from_micros(micros), tenant, thread_id, seq))
    }
}

serde_as_text!(SearchCursor);

//! Opening a store from its URL, as the `persist` command line does: one string in a config
//! file or an environment variable names the store, whichever backend holds it.
//!
//! | URL | store | feature |
//! |---|---|---|
//! | `sqlite:PATH`, `sqlite://PATH` (`sqlite:///abs/path`), or a `PATH` ending in `.db`, `.sqlite` or `.sqlite3` | a SQLite file (created when missing) | `sqlite` |
//! | `postgres://…`, `postgresql://…` | a PostgreSQL database; `schema=NAME` in the query string picks the schema (default `public`), every other parameter goes to the driver | `postgres` |
//! | `memory:` | an empty in-process store, gone with the process | `memory` |
//!
//! The same URL names the same store here and in the command line (`persist threads --store
//! URL`).

use std::fmt;
use std::path::{Path, PathBuf};

use persist_core::{PersistError, Pipeline, Result};

/// Where a store is, parsed from its URL; see the [module docs](self).
///
/// # Example
///
/// ```
/// use persist::StoreUrl;
///
/// let url = StoreUrl::parse("postgres://app:secret@db/chat?schema=support&sslmode=disable")?;
/// assert_eq!(
///     url,
///     StoreUrl::Postgres { url: "postgres://app:secret@db/chat?sslmode=disable".into(), schema: Some("support".into()) }
/// );
/// assert_eq!(url.to_string(), "postgres://app@db/chat?sslmode=disable&schema=support", "no password shown");
/// assert_eq!(StoreUrl::parse("data/chat.db")?, StoreUrl::Sqlite("data/chat.db".into()));
/// assert!(StoreUrl::parse("mysql://db/chat").is_err());
/// # Ok::<_, persist::PersistError>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreUrl {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL database.
    Postgres {
        /// The connection URL as the driver reads it: the URL without `schema=`.
        url: String,
        /// The schema of the store, when the URL named one (`public` otherwise).
        schema: Option<String>,
    },
    /// An empty in-process store.
    Memory,
}

impl StoreUrl {
    /// Parses a store URL (surrounding white space ignored).
    ///
    /// # Errors
    ///
    /// [`PersistError::InvalidInput`] naming `url` for a URL of no backend persist has, or a
    /// `sqlite:` without a path; the message never shows a password.
    pub fn parse(url: &str) -> Result<Self> {
        let url = url.trim();
        if let Some(rest) = url.strip_prefix("sqlite:") {
            let path = rest.strip_prefix("//").unwrap_or(rest);
            if path.is_empty() {
                return Err(PersistError::invalid("url", format!("invalid store URL {url}: no file after `sqlite:`")));
            }
            return Ok(Self::Sqlite(PathBuf::from(path)));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let (url, schema) = take_schema(url);
            return Ok(Self::Postgres { url, schema });
        }
        if url == "memory:" {
            return Ok(Self::Memory);
        }
        let is_sqlite_file = Path::new(url)
            .extension()
            .and_then(|ext| ext.to_str())
            .is_some_and(|ext| matches!(ext, "db" | "sqlite" | "sqlite3"));
        if is_sqlite_file && !url.contains("://") {
            return Ok(Self::Sqlite(PathBuf::from(url)));
        }
        Err(PersistError::invalid(
            "url",
            format!(
                "unsupported store URL {:?}: expected sqlite:PATH, a PATH ending in .db, postgres://… or memory:",
                redact(url)
            ),
        ))
    }

    /// `InvalidInput` naming `url` when the URL is a SQLite file in a folder that does not exist:
    /// persist creates the file, not its folders. Opening checks it; a host that opens later
    /// (on its first call) checks it first, to tell the caller where the URL is given.
    ///
    /// # Errors
    ///
    /// As said, the message naming the folder.
    pub fn check_folder(&self) -> Result<()> {
        let Self::Sqlite(path) = self else { return Ok(()) };
        let folder = path.parent().filter(|folder| !folder.as_os_str().is_empty());
        match folder.filter(|folder| !folder.is_dir()) {
            None => Ok(()),
            Some(folder) => Err(PersistError::invalid(
                "url",
                format!(
                    "{self}: the folder {} does not exist (persist creates the file, not its folders)",
                    folder.display()
                ),
            )),
        }
    }

    /// Opens the store: a SQLite file (created when missing), a PostgreSQL schema (made when
    /// missing, migrated as [`PostgresBackend::builder`](crate::postgres::PostgresBackend)'s
    /// defaults do), or an empty in-process store, each with its backend's defaults, as a
    /// [`Pipeline`] without layers. For other settings, match on the URL and use the
    /// backend's builder.
    ///
    /// # Example
    ///
    /// ```
    /// use persist::{args::Add, Content, Role, StoreUrl, ThreadId};
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let dir = tempfile::tempdir().unwrap();
    /// let url = format!("sqlite:{}", dir.path().join("chat.db").display());
    /// let store = StoreUrl::parse(&url)?.open().await?;
    /// store.add(Add::new(ThreadId::new("t1")?, Role::User, Content::text("hi"))).await?;
    /// # Ok::<_, persist::PersistError>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// `Unsupported` when the backend's cargo feature is off (naming the feature); whatever the
    /// backend answers when it cannot open or connect.
    pub async fn open(&self) -> Result<Pipeline> {
        Ok(self.connect().await?.pipeline)
    }

    /// Opens the store as [`open`](Self::open) does, keeping what closes it: for a host that
    /// ends its use of the store before the process ends (a writer flushed and stopped, a
    /// pool's connections closed).
    ///
    /// # Example
    ///
    /// ```
    /// use persist::StoreUrl;
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let dir = tempfile::tempdir().unwrap();
    /// let store = StoreUrl::parse(&format!("sqlite:{}", dir.path().join("chat.db").display()))?.connect().await?;
    /// store.pipeline().ping().await?;
    /// store.close().await;
    /// assert!(store.pipeline().ping().await.is_err(), "closed");
    /// # Ok::<_, persist::PersistError>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open).
    pub async fn connect(&self) -> Result<OpenStore> {
        self.connect_configured(
            #[cfg(feature = "sqlite")]
            |builder| builder,
        )
        .await
    }

    /// Opens the store as [`connect`](Self::connect) does, a SQLite file with the settings
    /// `sqlite` makes on its builder (its busy timeout, its durability, its limits); the other
    /// backends as `connect` opens them.
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// use persist::StoreUrl;
    /// use persist::sqlite::Durability;
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let dir = tempfile::tempdir().unwrap();
    /// let url = StoreUrl::parse(&format!("sqlite:{}", dir.path().join("chat.db").display()))?;
    /// let store = url
    ///     .connect_with(|sqlite| sqlite.busy_timeout(Duration::from_secs(30)).durability(Durability::Full))
    ///     .await?;
    /// store.pipeline().ping().await?;
    /// # Ok::<_, persist::PersistError>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open).
    #[cfg(feature = "sqlite")]
    pub async fn connect_with(
        &self,
        sqlite: impl FnOnce(persist_sqlite::SqliteBackendBuilder) -> persist_sqlite::SqliteBackendBuilder,
    ) -> Result<OpenStore> {
        self.connect_configured(sqlite).await
    }

    async fn connect_configured(
        &self,
        #[cfg(feature = "sqlite")] sqlite: impl FnOnce(
            persist_sqlite::SqliteBackendBuilder,
        ) -> persist_sqlite::SqliteBackendBuilder,
    ) -> Result<OpenStore> {
        match self {
            #[cfg(feature = "sqlite")]
            Self::Sqlite(path) => {
                self.check_folder()?;
                let backend = sqlite(persist_sqlite::SqliteBackend::builder(path)).open().await?;
                Ok(OpenStore { pipeline: Pipeline::new(backend.clone()), backend: Backend::Sqlite(backend) })
            }
            #[cfg(feature = "postgres")]
            Self::Postgres { url, schema } => {
                let mut builder = persist_postgres::PostgresBackend::builder(url.as_str());
                if let Some(schema) = schema {
                    builder = builder.schema(schema.as_str());
                }
                let backend = builder.connect().await?;
                Ok(OpenStore { pipeline: Pipeline::new(backend.clone()), backend: Backend::Postgres(backend) })
            }
            #[cfg(feature = "memory")]
            Self::Memory => Ok(OpenStore {
                pipeline: Pipeline::new(persist_memory::MemoryBackend::new()),
                backend: Backend::Nothing,
            }),
            #[allow(unreachable_patterns)] // every backend's feature on
            other => Err(PersistError::Unsupported {
                what: format!("opening {other}: this build of persist lacks the `{}` feature", other.feature()).into(),
            }),
        }
    }

    /// The cargo feature of the `persist` crate that opens this store.
    pub fn feature(&self) -> &'static str {
        match self {
            Self::Sqlite(_) => "sqlite",
            Self::Postgres { .. } => "postgres",
            Self::Memory => "memory",
        }
    }
}

/// A store opened from its URL ([`StoreUrl::connect`]): its pipeline, and the close of its
/// backend.
#[derive(Clone)]
pub struct OpenStore {
    pipeline: Pipeline,
    backend: Backend,
}

#[derive(Clone)]
enum Backend {
    #[cfg(feature = "sqlite")]
    Sqlite(persist_sqlite::SqliteBackend),
    #[cfg(feature = "postgres")]
    Postgres(persist_postgres::PostgresBackend),
    /// Nothing to close (an in-process store: gone with its last handle).
    Nothing,
}

impl fmt::Debug for OpenStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenStore").finish_non_exhaustive()
    }
}

impl OpenStore {
    /// The store, as a [`Pipeline`] without layers (clone it, or build a stack on
    /// [`Pipeline::into_service`]).
    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    /// Closes the backend: SQLite's writer finishes what was queued and stops, PostgreSQL's
    /// pool closes its connections; later calls fail. An in-process store has nothing to close.
    pub async fn close(&self) {
        match &self.backend {
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(backend) => backend.close().await,
            #[cfg(feature = "postgres")]
            Backend::Postgres(backend) => backend.close().await,
            Backend::Nothing => {}
        }
    }
}

/// Opens the store at `url`; see [`StoreUrl::parse`] and [`StoreUrl::open`].
///
/// # Example
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let store = persist::open("memory:").await?;
/// # let _ = store;
/// # Ok::<_, persist::PersistError>(())
/// # }).unwrap();
/// ```
///
/// # Errors
///
/// As [`StoreUrl::parse`] and [`StoreUrl::open`].
pub async fn open(url: &str) -> Result<Pipeline> {
    StoreUrl::parse(url)?.open().await
}

/// The URL without a password (as [`redact`] writes it), `schema=` last.
impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite(path) => write!(f, "sqlite:{}", path.display()),
            Self::Postgres { url, schema: None } => f.write_str(&redact(url)),
            Self::Postgres { url, schema: Some(schema) } => {
                let url = redact(url);
                let joint = if url.contains('?') { '&' } else { '?' };
                write!(f, "{url}{joint}schema={schema}")
            }
            Self::Memory => f.write_str("memory:"),
        }
    }
}

/// Never shows a password.
impl fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("StoreUrl").field(&self.to_string()).finish()
    }
}

/// Splits `schema=NAME` off a PostgreSQL URL's query string.
fn take_schema(url: &str) -> (String, Option<String>) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_owned(), None);
    };
    let mut schema = None;
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        match pair.strip_prefix("schema=") {
            Some(name) => schema = Some(name.to_owned()),
            None => kept.push(pair),
        }
    }
    let url = if kept.is_empty() { base.to_owned() } else { format!("{base}?{}", kept.join("&")) };
    (url, schema)
}

/// `url` without a password: `user:secret@host` becomes `user@host`, and a `password=`
/// parameter is dropped.
///
/// # Example
///
/// ```
/// assert_eq!(persist::store_url::redact("postgres://app:secret@db:5432/chat"), "postgres://app@db:5432/chat");
/// ```
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (rest, query) = match rest.split_once('?') {
        Some((rest, query)) => (rest, Some(query)),
        None => (rest, None),
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
            format!("{user}@{host}")
        }
        None => authority.to_owned(),
    };
    let mut redacted = format!("{scheme}://{authority}{path}");
    if let Some(query) = query {
        let kept: Vec<&str> = query.split('&').filter(|pair| !pair.starts_with("password=")).collect();
        if !kept.is_empty() {
            redacted.push('?');
            redacted.push_str(&kept.join("&"));
        }
    }
    redacted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_their_backend() {
        assert_eq!(StoreUrl::parse("sqlite:chat.db").unwrap(), StoreUrl::Sqlite("chat.db".into()));
        assert_eq!(StoreUrl::parse("sqlite://chat").unwrap(), StoreUrl::Sqlite("chat".into()));
        assert_eq!(StoreUrl::parse("sqlite:///tmp/chat").unwrap(), StoreUrl::Sqlite("/tmp/chat".into()));
        assert_eq!(StoreUrl::parse(" data/chat.db ").unwrap(), StoreUrl::Sqlite("data/chat.db".into()));
        assert_eq!(StoreUrl::parse("memory:").unwrap(), StoreUrl::Memory);
        assert_eq!(
            StoreUrl::parse("postgres://u:p@h/db?sslmode=disable&schema=s1").unwrap(),
            StoreUrl::Postgres { url: "postgres://u:p@h/db?sslmode=disable".into(), schema: Some("s1".into()) }
        );
        assert_eq!(
            StoreUrl::parse("postgresql://h/db").unwrap(),
            StoreUrl::Postgres { url: "postgresql://h/db".into(), schema: None }
        );
        for bad in ["mysql://h/db", "chat.txt", "", "sqlite:"] {
            assert!(matches!(StoreUrl::parse(bad), Err(PersistError::InvalidInput { field: "url", .. })), "{bad}");
        }
        let refused = StoreUrl::parse("mysql://app:hunter2@h/db").unwrap_err().to_string();
        assert!(!refused.contains("hunter2"), "{refused}");
    }

    #[test]
    fn passwords_are_never_shown() {
        assert_eq!(redact("postgres://app:secret@db:5432/chat"), "postgres://app@db:5432/chat");
        assert_eq!(redact("postgres://db/chat?password=x&schema=s"), "postgres://db/chat?schema=s");
        assert_eq!(redact("postgres://app@db/chat"), "postgres://app@db/chat");
        assert_eq!(redact("sqlite:chat.db"), "sqlite:chat.db");
        let url = StoreUrl::parse("postgres://app:secret@db/chat?password=x&schema=s").unwrap();
        assert_eq!(url.to_string(), "postgres://app@db/chat?schema=s");
        assert!(!format!("{url:?}").contains("secret"));
    }

    #[cfg(not(feature = "postgres"))]
    #[tokio::test]
    async fn a_backend_left_out_of_the_build_is_named() {
        let refused = crate::open("postgres://db/chat").await.unwrap_err();
        assert!(matches!(refused, PersistError::Unsupported { .. }) && refused.to_string().contains("`postgres`"));
    }

    #[cfg(feature = "sqlite")]
    #[tokio::test]
    async fn a_sqlite_url_opens_the_file_the_command_line_opens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chat.db");
        for url in [format!("sqlite:{}", path.display()), path.display().to_string()] {
            let store = crate::open(&url).await.unwrap();
            let thread = persist_core::ThreadId::new("t").unwrap();
            let add = persist_core::args::Add::new(thread, persist_core::Role::User, persist_core::Content::text("hi"));
            store.add(add).await.unwrap();
        }
        let reopened = crate::open(&format!("sqlite://{}", path.display())).await.unwrap();
        let page = reopened.list(persist_core::read::ListMessages::new(persist_core::ThreadId::new("t").unwrap()));
        assert_eq!(page.await.unwrap().items.len(), 2, "one file for every spelling");
    }
}

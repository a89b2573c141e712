//! Where a store's schema stands against the migrations a backend build carries.

/// Where a store's schema stands against the migrations a backend build carries: what
/// `SqliteBackendBuilder::schema_status` and `PostgresBackendBuilder::schema_status` answer
/// without changing anything, and what opening with `migrate(false)` requires to be current.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SchemaStatus {
    /// The newest migration applied to the store (0: none, a store not made yet).
    pub applied: i64,
    /// The newest migration this build carries.
    pub latest: i64,
    /// The migrations this build carries that the store lacks, oldest first (one skipped below
    /// `applied` included). A migration whose work goes on after its SQL is recorded (SQLite's
    /// version 17 copies messages in batches; PostgreSQL's version 13 gives the threads stored
    /// before it their second of activity in batches and builds an index concurrently) stays
    /// pending, and `applied` below it, until that work is done.
    pub pending: Vec<SchemaMigration>,
    /// Migrations the store records as failed part-way: it needs repair before any build opens
    /// it.
    pub failed: Vec<i64>,
    /// Migrations the store records with other SQL than this build's (their checksums differ):
    /// this build refuses the store.
    pub changed: Vec<i64>,
    /// Whether the store is still written in the form an earlier build reads, where this build
    /// writes a more compact one: the case of a store migrated from an earlier version, until
    /// `persist migrate finish` (`SqliteBackendBuilder::finish`, `PostgresBackendBuilder::finish`)
    /// is run once no instance of an earlier build uses it. A store this build created is never
    /// unfinished.
    pub unfinished: bool,
}

/// One migration of a backend's schema.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SchemaMigration {
    /// Its version: 1, 2, 3…
    pub version: i64,
    /// What it does, in a few words (its file's name).
    pub description: String,
}

impl SchemaMigration {
    /// Migration `version`, described by `description`.
    pub fn new(version: i64, description: impl Into<String>) -> Self {
        Self { version, description: description.into() }
    }
}

impl SchemaStatus {
    /// The status of a store that applied the migrations `applied` (their versions, each
    /// recorded as a success) for a build whose migrations are `known`: those of `known` not
    /// applied are pending.
    pub fn new(applied: impl IntoIterator<Item = i64>, known: impl IntoIterator<Item = SchemaMigration>) -> Self {
        let applied: Vec<i64> = applied.into_iter().collect();
        let known: Vec<SchemaMigration> = known.into_iter().collect();
        let latest = known.iter().map(|migration| migration.version).max().unwrap_or(0);
        let pending = known.into_iter().filter(|migration| !applied.contains(&migration.version)).collect();
        let applied = applied.into_iter().max().unwrap_or(0);
        Self { applied, latest, pending, failed: Vec::new(), changed: Vec::new(), unfinished: false }
    }

    /// The status of a store whose migrations table records `recorded` (version, whether it
    /// succeeded, checksum of its SQL) for a build carrying `known` (each with its checksum):
    /// pending, failed and changed migrations found.
    pub fn from_records(
        recorded: impl IntoIterator<Item = (i64, bool, Vec<u8>)>,
        known: impl IntoIterator<Item = (SchemaMigration, Vec<u8>)>,
    ) -> Self {
        let recorded: Vec<(i64, bool, Vec<u8>)> = recorded.into_iter().collect();
        let known: Vec<(SchemaMigration, Vec<u8>)> = known.into_iter().collect();
        let failed = recorded.iter().filter(|(_, succeeded, _)| !succeeded).map(|(version, ..)| *version).collect();
        let changed = recorded
            .iter()
            .filter(|(version, succeeded, checksum)| {
                *succeeded && known.iter().any(|(migration, sum)| migration.version == *version && sum != checksum)
            })
            .map(|(version, ..)| *version)
            .collect();
        let applied = recorded.iter().filter(|(_, succeeded, _)| *succeeded).map(|(version, ..)| *version);
        Self::new(applied, known.into_iter().map(|(migration, _)| migration)).with_failed(failed).with_changed(changed)
    }

    /// The same, with the migrations the store records as failed.
    pub fn with_failed(mut self, versions: Vec<i64>) -> Self {
        self.failed = versions;
        self
    }

    /// The same, with the migrations the store records with other SQL than this build's.
    pub fn with_changed(mut self, versions: Vec<i64>) -> Self {
        self.changed = versions;
        self
    }

    /// The same, saying whether the store is still written as an earlier build reads it (see
    /// [`unfinished`](Self::unfinished)).
    pub fn with_unfinished(mut self, unfinished: bool) -> Self {
        self.unfinished = unfinished;
        self
    }

    /// The same, with `migration`, recorded as applied, counted as pending: its SQL ran, but the
    /// work it leaves to the build that applied it (SQLite's version 17 copies messages in
    /// batches; PostgreSQL's version 13 builds an index concurrently) is not done, so the store
    /// is not at that version yet. Only for a store that records `migration` and is otherwise
    /// in order (nothing newer than this build, nothing older than `migration` pending, nothing
    /// failed or changed): `applied` goes back to just below it, and it joins `pending`, first
    /// (a later migration, applied or not, stays behind it).
    pub fn with_work_left(mut self, migration: SchemaMigration) -> Self {
        let recorded =
            self.applied >= migration.version && !self.pending.iter().any(|m| m.version == migration.version);
        if recorded
            && !self.is_ahead()
            && self.pending.iter().all(|m| m.version > migration.version)
            && self.failed.is_empty()
            && self.changed.is_empty()
        {
            self.applied = migration.version - 1;
            self.pending.insert(0, migration);
        }
        self
    }

    /// Whether the store is at this build's schema: nothing to apply, nothing newer, nothing
    /// failed or changed.
    pub fn is_current(&self) -> bool {
        self.applied == self.latest && self.pending.is_empty() && self.failed.is_empty() && self.changed.is_empty()
    }

    /// Whether a newer build migrated the store past what this one knows.
    pub fn is_ahead(&self) -> bool {
        self.applied > self.latest
    }

    /// What is wrong with the store for this build, in a few words; `None` when it is current.
    pub fn problem(&self) -> Option<String> {
        if let Some(version) = self.failed.first() {
            return Some(format!(
                "migration {version} is recorded as failed part-way: repair the store (its `_sqlx_migrations` row) \
                 before opening it"
            ));
        }
        if !self.changed.is_empty() {
            let versions: Vec<String> = self.changed.iter().map(i64::to_string).collect();
            return Some(format!(
                "migration {} in the store differs from this build's: another build of persist made it",
                versions.join(", ")
            ));
        }
        if self.is_ahead() {
            return Some(format!(
                "schema version {}, newer than this build's {}: a newer version of persist migrated it; upgrade \
                 this one",
                self.applied, self.latest
            ));
        }
        if self.pending.is_empty() {
            return None;
        }
        let pending: Vec<String> = self.pending.iter().map(|m| format!("{} {}", m.version, m.description)).collect();
        Some(format!(
            "schema version {}, this build needs {} (pending: {}); migrate it first (`persist migrate up`, or open \
             it with `migrate(true)`)",
            self.applied,
            self.latest,
            pending.join(", ")
        ))
    }

    /// Refuses a store that is not at this build's schema, saying why and what to do:
    /// `Unsupported`, naming `store` (a file, a schema).
    ///
    /// # Errors
    ///
    /// `Unsupported` when the store is behind (migrations pending), ahead (a newer build
    /// migrated it), or holds a failed or changed migration.
    pub fn require_current(&self, store: &str) -> crate::model::error::Result<()> {
        match self.problem() {
            None => Ok(()),
            Some(problem) => {
                Err(crate::model::error::PersistError::Unsupported { what: format!("{store}: {problem}").into() })
            }
        }
    }
}

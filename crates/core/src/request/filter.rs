//! [`MessageFilter`]: which messages a read across threads keeps, the one value
//! [`Search`](crate::search::Search), [`Nearest`](crate::vector::Nearest) and the recall built
//! on them share, with its one check.

use crate::model::error::{PersistError, Result};
use crate::model::{Message, Metadata, Role, Timestamp};

/// Which messages a read across threads keeps, whatever its scope: their roles, the time range
/// of their creation, and what their thread's metadata holds.
///
/// Each request that carries one sets it through its own builder methods (`with_roles`,
/// `since`, `until`, `with_thread_filter`, `for_resource`, or `with_filter` for the whole),
/// which are this type's.
///
/// # Example
///
/// ```
/// use persist::read::MessageFilter;
/// use persist::{Role, Timestamp};
///
/// let filter = MessageFilter::new().for_resource("user_id", "u_42").with_roles([Role::User]);
/// assert!(filter.validate().is_ok());
/// let empty = MessageFilter::new().since(Timestamp::from_micros(5)).until(Timestamp::from_micros(5));
/// assert!(empty.validate().is_err());
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct MessageFilter {
    /// Only messages of these roles (any role when empty).
    pub roles: Vec<Role>,
    /// Only messages created at or after this instant.
    pub since: Option<Timestamp>,
    /// Only messages created before this instant.
    pub until: Option<Timestamp>,
    /// Only messages of threads whose metadata contains every key of this object with an equal
    /// value (as [`ListThreads::with_filter`](crate::read::ListThreads::with_filter)).
    pub thread_filter: Metadata,
}

/// The builder methods of a [`MessageFilter`] (`with_roles`, `since`, `until`,
/// `with_thread_filter`, `for_resource`), and of a request holding one in its field `filter`
/// (`message_filter_setters!(filter)`, with `with_filter`): for request types of crates built on
/// this one too.
#[doc(hidden)]
#[macro_export]
macro_rules! message_filter_setters {
    ($($field:ident)?) => {
        /// Only messages of `roles` (any role when empty).
        pub fn with_roles(mut self, roles: impl IntoIterator<Item = $crate::Role>) -> Self {
            self$(.$field)?.roles = roles.into_iter().collect();
            self
        }

        /// Only messages created at or after `since`.
        pub fn since(mut self, since: $crate::Timestamp) -> Self {
            self$(.$field)?.since = Some(since);
            self
        }

        /// Only messages created before `until`.
        pub fn until(mut self, until: $crate::Timestamp) -> Self {
            self$(.$field)?.until = Some(until);
            self
        }

        /// Only messages of threads whose metadata contains `filter`.
        pub fn with_thread_filter(mut self, filter: $crate::Metadata) -> Self {
            self$(.$field)?.thread_filter = filter;
            self
        }

        /// Only messages of the threads whose metadata `key` is `value` (a user's or a
        /// resource's threads, as the host marks them).
        pub fn for_resource(mut self, key: impl Into<String>, value: impl Into<serde_json::Value>) -> Self {
            let filter = std::mem::take(&mut self$(.$field)?.thread_filter);
            self$(.$field)?.thread_filter = filter.with(key, value.into());
            self
        }

        $(
            /// Replaces the whole filter (see [`MessageFilter`]($crate::read::MessageFilter)).
            pub fn with_filter(mut self, filter: $crate::read::MessageFilter) -> Self {
                self.$field = filter;
                self
            }
        )?
    };
}

impl MessageFilter {
    /// No filter: every message.
    pub fn new() -> Self {
        Self::default()
    }

    message_filter_setters!();

    /// Whether it keeps every message.
    pub fn is_empty(&self) -> bool {
        self.roles.is_empty() && self.since.is_none() && self.until.is_none() && self.thread_filter.is_empty()
    }

    /// Checks the filter; the requests that carry it call this in their own check.
    ///
    /// # Errors
    ///
    /// [`PersistError::InvalidInput`] for a time range that holds no instant (`until`), or a
    /// thread filter no metadata can hold (`thread_filter`).
    pub fn validate(&self) -> Result<()> {
        if let (Some(since), Some(until)) = (self.since, self.until)
            && until <= since
        {
            return Err(PersistError::invalid("until", "is not after `since`: the range holds no instant"));
        }
        let filter = &self.thread_filter;
        filter.check_depth().map_err(|_| PersistError::invalid("thread_filter", "is nested too deep"))?;
        if filter.has_nul() {
            return Err(crate::request::write::nul("thread_filter"));
        }
        Ok(())
    }

    /// Whether a message passes the role and time filters: what a backend that scans applies
    /// (its thread's metadata is [`admits_thread`](Self::admits_thread)'s).
    pub fn admits(&self, message: &Message) -> bool {
        self.admits_fields(&message.role, message.created_at)
    }

    /// [`admits`](Self::admits) of a message of `role` created at `created_at`.
    pub fn admits_fields(&self, role: &Role, created_at: Timestamp) -> bool {
        (self.roles.is_empty() || self.roles.contains(role))
            && self.since.is_none_or(|since| created_at >= since)
            && self.until.is_none_or(|until| created_at < until)
    }

    /// Whether a thread of `metadata` passes the thread filter.
    pub fn admits_thread(&self, metadata: &Metadata) -> bool {
        metadata.contains(&self.thread_filter)
    }

    /// The roles' names, `None` for any role: what a query binds.
    pub fn role_names(&self) -> Option<Vec<&str>> {
        (!self.roles.is_empty()).then(|| self.roles.iter().map(Role::as_str).collect())
    }

    /// The thread filter, `None` when it keeps every thread: what a query binds.
    pub fn thread_metadata(&self) -> Option<&Metadata> {
        (!self.thread_filter.is_empty()).then_some(&self.thread_filter)
    }

    /// The time range in microseconds (`since`, `until`): what a query binds.
    pub fn micros(&self) -> (Option<i64>, Option<i64>) {
        (self.since.map(Timestamp::as_micros), self.until.map(Timestamp::as_micros))
    }
}

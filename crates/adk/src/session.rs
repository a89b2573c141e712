//! The session a [`PersistSessionService`](crate::PersistSessionService) answers, and how state
//! is kept in thread metadata.

use std::collections::HashMap;

use adk_core::Event;
use adk_core::identity::AdkIdentity;
use adk_session::{Events, Session, State};
use chrono::{DateTime, Utc};
use persist_core::Metadata;
use serde_json::{Value, json};

/// The metadata key prefix of a state key: `state:<key>` holds `{"value": …}` (wrapped, so a
/// state value of `null` is kept: a metadata patch's `null` removes its key).
const STATE_PREFIX: &str = "state:";

/// The metadata patch that sets every key of `delta`.
pub(crate) fn state_patch(delta: &HashMap<String, Value>) -> Metadata {
    delta.iter().fold(Metadata::new(), |patch, (key, value)| {
        patch.with(format!("{STATE_PREFIX}{key}"), json!({"value": value}))
    })
}

/// The state kept in `metadata`.
pub(crate) fn state_of(metadata: &Metadata) -> HashMap<String, Value> {
    metadata
        .as_map()
        .iter()
        .filter_map(|(key, kept)| Some((key.strip_prefix(STATE_PREFIX)?.to_owned(), kept.get("value")?.clone())))
        .collect()
}

/// A session read from the store: its identity, its state (the app's, the user's and its own,
/// with their prefixes), its events and when it last changed.
pub(crate) struct StoredSession {
    pub(crate) identity: AdkIdentity,
    pub(crate) state: StateMap,
    pub(crate) events: EventList,
    pub(crate) updated_at: DateTime<Utc>,
}

impl Session for StoredSession {
    fn id(&self) -> &str {
        self.identity.session_id.as_ref()
    }

    fn app_name(&self) -> &str {
        self.identity.app_name.as_ref()
    }

    fn user_id(&self) -> &str {
        self.identity.user_id.as_ref()
    }

    fn state(&self) -> &dyn State {
        &self.state
    }

    fn events(&self) -> &dyn Events {
        &self.events
    }

    fn last_update_time(&self) -> DateTime<Utc> {
        self.updated_at
    }
}

/// A session's state as read; [`set`](State::set) changes this copy only (the runner writes
/// state through events' deltas).
pub(crate) struct StateMap(pub(crate) HashMap<String, Value>);

impl State for StateMap {
    fn get(&self, key: &str) -> Option<Value> {
        self.0.get(key).cloned()
    }

    fn set(&mut self, key: String, value: Value) {
        self.0.insert(key, value);
    }

    fn all(&self) -> HashMap<String, Value> {
        self.0.clone()
    }
}

/// A session's events as read, oldest first.
pub(crate) struct EventList(pub(crate) Vec<Event>);

impl Events for EventList {
    fn all(&self) -> Vec<Event> {
        self.0.clone()
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn at(&self, index: usize) -> Option<&Event> {
        self.0.get(index)
    }
}

/// Without the function calls of invocations that died: an event whose calls its own
/// invocation never answered (no later event of that invocation) although a later invocation
/// ran, as a process killed while its tool ran leaves it. A model given such a call without its
/// response refuses the request. Calls of long-running tools (answered in a later invocation)
/// are kept.
pub(crate) fn without_dead_calls(events: Vec<Event>) -> Vec<Event> {
    let mut last_of: HashMap<&str, usize> = HashMap::new();
    for (index, event) in events.iter().enumerate() {
        last_of.insert(event.invocation_id.as_str(), index);
    }
    let newest_invocation = events.last().map(|event| event.invocation_id.clone());
    let dead: Vec<bool> = events
        .iter()
        .enumerate()
        .map(|(index, event)| {
            let calls = event.llm_response.content.as_ref().is_some_and(|content| content.has_function_calls());
            calls
                && event.long_running_tool_ids.is_empty()
                && last_of.get(event.invocation_id.as_str()) == Some(&index)
                && newest_invocation.as_deref() != Some(event.invocation_id.as_str())
        })
        .collect();
    events.into_iter().zip(dead).filter_map(|(event, dead)| (!dead).then_some(event)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_through_metadata_null_included() {
        let delta = HashMap::from([("a".to_owned(), json!(1)), ("gone".to_owned(), Value::Null)]);
        let mut metadata = Metadata::new().with("adk.kind", json!("session"));
        metadata.merge(&state_patch(&delta));
        assert_eq!(state_of(&metadata), delta);
    }
}

//! The conformance suite for persist backends and layer stacks.
//!
//! Every rule of the persist contract is one `pub async fn check_…(factory)`, grouped by
//! topic in the modules below, and [`conformance_tests!`] stamps out one named `#[test]` per
//! check, so a failure names the rule it broke. Memory, SQLite and PostgreSQL run it, and so
//! does every reference stack of layers: a layer that should not change behaviour provably
//! does not. So does a minimal backend (the required [`Backend`] methods alone, no optional
//! capability, as a host's own backend may be): it shows which groups apply to such a backend,
//! and that the composed operations work on it or refuse clearly.
//!
//! # Running it on your backend
//!
//! Implement [`Factory`] (fresh isolated storage per check, and a way to open a handle on it),
//! then, in a test file:
//!
//! ```
//! use persist_conformance::{BoxError, Factory};
//! use persist::memory::MemoryBackend;
//!
//! struct MemoryFactory;
//!
//! impl Factory for MemoryFactory {
//!     type Backend = MemoryBackend;
//!     type Storage = MemoryBackend;
//!
//!     async fn create(&self) -> Result<MemoryBackend, BoxError> {
//!         Ok(MemoryBackend::new())
//!     }
//!
//!     async fn open(&self, storage: &MemoryBackend) -> Result<MemoryBackend, BoxError> {
//!         Ok(storage.clone())
//!     }
//! }
//!
//! persist_conformance::conformance_tests!(MemoryFactory);
//! # fn main() {}
//! ```
//!
//! `cargo test` then lists `identity::check_same_message_id_in_two_threads_is_two_messages`,
//! `concurrency::check_fifty_concurrent_adds_make_fifty_messages`, and so on.
//!
//! The checks are compiled once, in this crate: the macro runs a factory through a
//! type-erased adapter, its backend a [`BoxBackend`](persist_core::raw::BoxBackend) (every
//! method the backend's own), so a test binary compiles that adapter alone, however many
//! factories it stamps the suite for.
//!
//! The checks' writes alternate between [`Backend::apply`] and
//! [`Backend::apply_now`] (a write handed back then goes to
//! `apply`, as a pipeline's terminal does), so a backend that answers some writes at once is
//! held to the same contract on both paths.
//!
//! # Capabilities
//!
//! Checks that need an optional [`Capabilities`](persist_core::Capabilities) flag
//! (`durable` for reopen checks, `shared_storage` for races between two independently opened
//! handles, and each gated group's own, such as `feed` or `branches`) return
//! [`Outcome::Skipped`] on a backend without it and print
//! `SKIPPED <check>: <reason>`; they never pass silently.
//!
//! # What is covered
//!
//! [`CHECKS`] lists every check by group and name (211 in all):
//!
//! | group | what it proves |
//! |---|---|
//! | [`identity`] | a message is `(thread, id)`: the same id in two threads is two messages; no op reads or writes across threads; reused ids never overwrite |
//! | [`tenancy`] | a thread is `(tenant, id)`: one id in two tenants is two independent threads (messages, seqs, tombstones, keys, bindings); another tenant's id answers exactly as an unused one; listing and stranded search per tenant, across tenants for operators |
//! | [`add`] | seq/version/status/timestamps, thread creation and counters, exact round trip of content and metadata (every number as written: doubles bit for bit, whole doubles still doubles, 64-bit integers) |
//! | [`reserve`] | placeholders (`Reserved`, `[]`, seq now), finalizing in place, streaming updates, appending updates (streamed text and reasoning each one part), `NotFound` |
//! | [`update`] | atomic metadata merge (null removes), role, thread title/metadata, `NotFound` |
//! | [`delete`] | ids returned, counters, tombstones refuse later writes, deleting what is gone |
//! | [`idempotency`] | keys and identical explicit ids deduplicate without a new seq; different payload is `AlreadyExists`; a key outlives its message (a retry after a delete, a truncation or a clear answers the first call and writes nothing) |
//! | [`turns`] | a whole turn in one write: consecutive seqs, a reservation last, idempotent as a whole (turn key, own keys, ids), refused whole (bad message, taken id or key, reused turn key, deleted thread, limits), one feed event per message, never interleaved with racing writers |
//! | [`truncate`] | every message after a seq removed atomically, ids answered in order, seqs never reused, the thread's version expected and bumped, adds racing a truncation (two handles) |
//! | [`lifecycle`] | fork (copy up to a seq, resumable, refusals, per tenant, racing writes to its source) and retention (idle threads, latest messages, dry run, batches, per tenant), through a pipeline over the backend; pop, retention, cleanup and fork on a backend with no optional capability, what needs one refused `Unsupported`; purge (erased tombstone, freed id); a thread delete expecting what it read (its time, its summaries and bindings) |
//! | [`restore`] | a thread written exactly as another store held it (ids, seq gaps, versions, status, keys, times, title, `last_seq`), idempotent and resumable, never moving a live thread back, refused whole on any conflict; session bindings restored, the newest winning (gated on `restore`) |
//! | [`feed`] | the change feed: one event per committed change (none for a deduplicated or refused write), in commit order, a thread delete as one event, resumable exactly after any position, scoped by tenant, and a subscriber woken by another handle's writes (gated on `feed`) |
//! | [`live`] | a reply followed from an offset to its end as it ended, from another handle; a stop reaches the generator; both confined to the tenant; a heartbeat keeps a reservation from being stranded (gated on `feed`) |
//! | [`live_writer`] | a live reply's writer in any language: appends written once at the writer's offsets (a repeat answers, a gap and other parts refused), one generation per thread (a dead writer's settled), a stop ends a leased reply and is told to its writer, followers settle a silent writer's reply, all confined to the tenant (gated on `feed`) |
//! | [`branches`] | a thread is a tree: writes follow the active branch unless they name a parent, a parent starts a sibling branch (edit, regenerate) that becomes active, the old one stays readable, switches are versioned thread updates, a switch to an empty branch makes the next message a root, branches page by seq (all roles or some), deletes splice, racing switches/appends/regenerates keep a tree, restores keep parents and the leaf (gated on `branches`) |
//! | [`branch_ops`] | branches in the operations built on messages: a fork copies a tree as it is or one branch as a line, `keep_latest` and `pop` count along the active branch, feed events of inserts name their parent, `ToolCallsLayer` checks along the branch a write extends (gated on `branches`) |
//! | [`summaries`] | summaries as data: a summary stands for a range of its thread and moves no message, the compacted read answers the latest summary of a branch and what follows it, the same range twice is one summary, range rules, retention of covered messages keeps the compacted read, truncations and thread deletes take summaries along, summaries racing appends through two handles, tenancy, leases with one holder at a time, forks carry summaries, a summary replaced in place (gated on `summaries`) |
//! | [`compaction_run`] | a compaction run never splits a tool call from its results and settles a reply its generator left (gated on `summaries`) |
//! | [`versions`] | expected-version preconditions on update, update_content and delete |
//! | [`concurrency`] | 50 concurrent adds, concurrent merges, concurrent retries, through one and two handles, appends to one reply through two handles (the two-handle races in three tenants at once, on one thread id) |
//! | [`once`] | values set once per tenant and name: the first stays, racing writers through two handles all get the one that won |
//! | [`pagination`] | seq cursors both ways, `has_more`, reserved filtering, role filtering (full pages, both orders, bounds, placeholders, a role no message has), stability under concurrent adds |
//! | [`threads`] | newest first, metadata filter, cursor paging, counters consistent with messages |
//! | [`vectors`] | embeddings and recall: nearest first by cosine (ties by thread and seq), scopes (thread, tenant, a user's threads by metadata) and filters (roles, time, status), never another tenant's, a model's dimensions fixed per tenant and every mismatch refused, vectors written in their message's own write (an add's, a turn's) or refused with it, vectors removed with their messages (deletes, truncation, clear, purge, a change of content), hybrid recall fused with full text and neighbours, a thread's vectors listed as stored with their messages' role, status and creation time; an embed is one event of the feed, and every change of a vector, a role, a status, a thread's metadata or liveness has one (those gated on `feed` too) (gated on `vectors`) |
//! | [`vector_index`] | persist-recall's `VectorIndex` over the backend answers every `nearest` exactly as its scan (random stores and filters, after every write that moves vectors, another handle's writes, over its budget, started again from its files) (gated on `vectors` and `feed`) |
//! | [`working`] | working memory: a document per tenant and resource, patched (JSON merge patch) and replaced inside the store's write, versioned, compare-and-set with an expected version, racing patches through two handles never lost, tenants apart, bad input refused, each write an event of its resource in the change feed (gated on `working_memory`) |
//! | [`records`] | records: opaque values per tenant, space and key, read by a space or a prefix of spaces by key then space (bytewise) both ways with paging, inserts that keep a live record, touches, deletes of a record and of whole spaces, expiry that hides, is written over and is swept, tenants apart, bad input refused with nothing written (gated on `records`) |
//! | [`search`] | full-text search: the query rules (any order, case, phrases, prefixes, punctuation, no stemming, accents kept), text and tool results indexed (not reasoning, tool calls or placeholders), the index following every write (replace, delete, truncate, purge), newest-first cursor paging (ties bytewise), scopes and filters, bad input, another handle's writes (gated on `search`) |
//! | [`bad_input`] | every kind of bad input gets its own typed error and leaves the store unchanged |
//! | [`sessions`] | bindings per (agent, thread): upsert keeps `created_at`, reset, provider/runtime guard with reasons, compare-and-set invalidate, races, deleted threads, a thread's bindings listed with their state (gated on `sessions`) |
//! | [`maintenance`] | finding stranded reservations: only old ones, oldest first, limited |
//! | [`durability`] | acknowledged writes, tombstones, keys and bindings survive reopening (gated on `durable`) |
//! | [`model`] | seeded random operation sequences agree with a reference model after every step |

#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

use std::future::Future;

use persist_core::Backend;
pub use persist_core::BoxError;

pub mod add;
pub mod bad_input;
pub mod branch_ops;
pub mod branches;
pub mod compaction_run;
pub mod concurrency;
pub mod delete;
pub mod durability;
mod erased;
pub mod feed;
mod fixture;
pub mod idempotency;
pub mod identity;
pub mod lifecycle;
pub mod live;
pub mod live_writer;
pub mod maintenance;
pub mod model;
pub mod once;
pub mod pagination;
pub mod records;
pub mod reserve;
pub mod restore;
pub mod search;
pub mod sessions;
pub mod summaries;
pub mod tenancy;
pub mod threads;
pub mod tool_calls;
pub mod truncate;
pub mod turns;
pub mod update;
pub mod vector_index;
pub mod vectors;
pub mod versions;
pub mod working;

/// Makes isolated storage for each check and opens handles on it.
///
/// `create` is called once per check and must return storage no other check sees (a fresh
/// in-memory store, a temporary file, a new schema). `open` opens a handle on that storage;
/// calling it twice gives two **independent** handles (two pools, two connections) when the
/// backend declares [`Capabilities::shared_storage`](persist_core::Capabilities::shared_storage), and after every handle is dropped,
/// `open` again is a **reopen** (checked when it declares [`Capabilities::durable`](persist_core::Capabilities::durable)).
pub trait Factory: Send + Sync {
    /// The backend under test (a backend, or a `Pipeline` stacking layers over one).
    type Backend: Backend;
    /// What identifies one isolated storage (a store, a path, a schema name).
    type Storage: Send + Sync;

    /// Fresh, isolated storage.
    fn create(&self) -> impl Future<Output = Result<Self::Storage, BoxError>> + Send;

    /// A new handle on `storage`.
    fn open(&self, storage: &Self::Storage) -> impl Future<Output = Result<Self::Backend, BoxError>> + Send;

    /// Releases `storage` after a check (drop a schema, …). The default does nothing; a
    /// temporary directory cleans itself up when dropped.
    fn dispose(&self, storage: Self::Storage) -> impl Future<Output = ()> + Send {
        async move { drop(storage) }
    }
}

/// The error a [`Factory::create`] returns when its storage cannot be reached here (e.g. no
/// database server outside CI): every check then reports itself skipped instead of failing.
/// Print a notice saying how to point the factory at storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unavailable(pub String);

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "storage unavailable: {}", self.0)
    }
}

impl std::error::Error for Unavailable {}

/// How a check ended (a failed check panics with what it found, like any test).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every assertion held.
    Passed,
    /// The backend lacks a capability the check needs.
    Skipped(&'static str),
}

/// Calls `$callback!` with `($($args)*)` followed by every check, as `group { check, … }`.
/// The single list of checks: [`conformance_tests!`] and [`CHECKS`] are both made from it.
#[doc(hidden)]
#[macro_export]
macro_rules! __for_each_check {
    ($callback:ident, $($args:tt)*) => {
        $crate::$callback! { ($($args)*)
            identity {
                check_same_message_id_in_two_threads_is_two_messages,
                check_update_content_never_crosses_threads,
                check_update_and_delete_never_cross_threads,
                check_reused_id_with_new_payload_does_not_overwrite,
                check_generated_ids_are_unique_and_time_ordered,
            }
            tenancy {
                check_same_thread_id_in_two_tenants_is_two_threads,
                check_tenants_threads_of_one_id_are_independent,
                check_session_bindings_are_per_tenant,
                check_another_tenants_id_answers_as_an_unused_id,
                check_no_tenant_is_a_namespace_of_its_own,
                check_threads_are_listed_per_tenant_and_across_for_operators,
                check_stranded_reservations_are_found_per_tenant,
            }
            add {
                check_add_assigns_seq_version_and_status,
                check_add_creates_thread_and_counts,
                check_content_and_metadata_round_trip_exactly,
                check_numbers_round_trip_exactly,
                check_text_contents_round_trip,
                check_custom_roles_round_trip,
            }
            reserve {
                check_reserve_gives_placeholder_with_seq,
                check_update_content_finalizes_in_place,
                check_streaming_updates_keep_reserved_until_final,
                check_update_content_of_missing_message_is_not_found,
                check_appending_updates_join_the_content,
                check_streamed_reasoning_stays_one_part,
                check_a_complete_message_takes_only_final_replacements,
                check_an_interrupted_reply_keeps_its_text,
            }
            update {
                check_metadata_merge_sets_replaces_and_removes,
                check_update_role,
                check_update_thread_title_and_metadata,
                check_update_of_missing_target_is_not_found,
            }
            delete {
                check_delete_message_returns_its_id,
                check_delete_thread_returns_every_id_and_leaves_tombstone,
                check_writes_to_deleted_thread_fail,
                check_deleting_what_is_gone_answers_empty,
                check_seq_is_never_reused_after_delete,
            }
            idempotency {
                check_idempotency_key_dedups_add,
                check_idempotency_key_dedups_reserve,
                check_identical_explicit_id_dedups,
                check_different_payload_with_same_id_is_already_exists,
                check_idempotency_keys_are_per_thread,
                check_a_key_outlives_its_message,
                check_repeats_compare_numbers_by_value,
                check_reused_key_with_another_request_is_refused,
            }
            truncate {
                check_truncate_removes_every_message_after_a_seq,
                check_truncate_expects_the_threads_version,
                check_truncate_of_what_is_gone_answers_empty,
                check_an_update_cannot_target_messages_after_a_seq,
                check_truncate_racing_adds_loses_nothing_acknowledged,
            }
            lifecycle {
                check_fork_copies_a_thread_up_to_a_seq,
                check_fork_resumes_without_duplicates,
                check_fork_run_again_keeps_the_source_order,
                check_fork_refuses_what_it_cannot_copy_into,
                check_fork_stays_in_its_tenant,
                check_fork_racing_writes_to_its_source,
                check_prune_deletes_idle_threads_and_keeps_the_latest,
                check_prune_confined_to_a_tenant,
                check_purge_erases_a_thread_and_keeps_it_dead,
                check_purge_can_free_the_id,
                check_purge_of_a_deleted_thread_erases_its_tombstone,
                check_a_thread_delete_can_expect_no_write_since,
                check_a_thread_delete_can_expect_its_summaries_and_bindings,
                check_composed_operations_work_or_refuse_by_capability,
                check_pop_and_clear_keep_the_thread,
                check_pop_keeps_a_message_written_meanwhile,
                check_fork_resumes_up_to_its_recorded_seq_and_refuses_look_alikes,
            }
            tool_calls {
                check_tool_results_answer_earlier_calls,
                check_unanswered_calls_are_interrupted_or_refused,
                check_provider_history_has_no_orphans,
                check_provider_history_leaves_out_blank_replies,
                check_turns_are_checked_message_by_message,
            }
            turns {
                check_a_turn_is_written_whole_with_consecutive_seqs,
                check_a_repeated_turn_answers_the_same_messages,
                check_a_refused_turn_writes_nothing,
                check_a_turn_records_one_event_per_message,
                check_racing_turns_are_never_interleaved,
            }
            restore {
                check_restore_copies_a_thread_exactly,
                check_restore_is_idempotent_and_resumable,
                check_restore_into_a_live_thread_never_moves_it_back,
                check_restore_refuses_conflicts_and_writes_nothing,
                check_restore_writes_bindings_and_the_newest_wins,
            }
            feed {
                check_feed_records_each_committed_write_in_order,
                check_feed_tells_thread_deletes_truncations_and_restores,
                check_feed_follows_a_thread_id_across_a_freed_and_reused_id,
                check_feed_resumes_exactly_after_a_position,
                check_feed_is_scoped_by_tenant,
                check_feed_subscriber_sees_another_handles_writes,
            }
            live {
                check_feed_events_carry_what_an_append_added,
                check_a_reply_is_followed_from_an_offset_to_its_end,
                check_a_followed_reply_ends_as_its_reply_did,
                check_a_stop_reaches_the_generator_through_another_handle,
                check_follow_and_stop_are_confined_to_the_tenant,
                check_a_heartbeat_keeps_a_reservation_from_being_stranded,
            }
            live_writer {
                check_a_live_reply_is_written_once_at_the_writers_offsets,
                check_one_reply_is_generated_per_thread,
                check_a_stop_ends_a_leased_reply_and_tells_its_writer,
                check_followers_settle_a_reply_whose_writer_went_silent,
                check_a_writer_is_confined_to_its_tenant,
            }
            branches {
                check_a_thread_without_parents_is_one_line,
                check_a_regenerated_reply_is_a_sibling_and_loses_nothing,
                check_an_edit_starts_a_branch_at_any_point,
                check_a_switch_moves_the_active_leaf_like_a_versioned_update,
                check_a_switch_to_an_empty_branch_makes_the_next_message_a_root,
                check_a_message_the_thread_does_not_have_is_not_found,
                check_a_branch_pages_by_seq_both_ways,
                check_a_branch_lists_by_role,
                check_deletes_splice_messages_out_of_their_branch,
                check_a_switch_racing_an_append_keeps_a_tree,
                check_racing_regenerates_both_become_siblings,
                check_a_restore_keeps_the_tree,
            }
            branch_ops {
                check_a_fork_of_a_tree_keeps_its_shape,
                check_a_fork_copies_one_branch,
                check_keep_latest_counts_along_the_active_branch,
                check_feed_events_name_the_branch_change,
                check_tool_calls_are_checked_along_their_branch,
                check_pop_takes_the_latest_of_the_active_branch,
            }
            summaries {
                check_a_summary_stands_for_its_range_and_moves_nothing,
                check_the_same_range_twice_is_one_summary,
                check_range_rules,
                check_the_compacted_read_follows_the_branch,
                check_retention_of_covered_messages_keeps_the_compacted_read,
                check_truncations_and_deletes_take_summaries_along,
                check_summaries_racing_appends_through_two_handles,
                check_summaries_are_confined_to_their_tenant,
                check_a_lease_has_one_holder_at_a_time,
                check_a_fork_carries_the_summaries_of_what_it_copies,
                check_a_summary_is_replaced_in_place,
            }
            compaction_run {
                check_a_compaction_keeps_tool_calls_with_their_results,
                check_a_compaction_settles_a_reply_its_generator_left,
            }
            versions {
                check_expected_version_on_update_content,
                check_expected_version_on_update,
                check_expected_version_on_delete,
            }
            concurrency {
                check_fifty_concurrent_adds_make_fifty_messages,
                check_concurrent_metadata_merges_all_survive,
                check_concurrent_retries_with_one_key_create_one_message,
                check_concurrent_writers_on_many_threads,
                check_two_handles_racing_adds,
                check_two_handles_racing_merges,
                check_two_handles_racing_retries,
                check_two_handles_racing_appends,
            }
            once {
                check_set_once_keeps_the_first_value,
            }
            pagination {
                check_list_pages_ascending,
                check_list_pages_descending,
                check_list_excludes_reserved_unless_asked,
                check_list_filters_by_role,
                check_list_respects_both_bounds,
                check_pagination_is_stable_under_concurrent_adds,
                check_list_of_missing_thread_is_empty,
            }
            threads {
                check_threads_newest_first,
                check_threads_metadata_filter,
                check_threads_cursor_paging,
                check_threads_exclude_deleted,
                check_thread_counters_match_messages,
                check_threads_filter_compares_numbers_by_value,
            }
            bad_input {
                check_meaningless_updates_are_invalid,
                check_bad_page_limits_are_invalid,
                check_unknown_thread_for_update_is_not_found,
                check_failed_writes_leave_the_store_unchanged,
                check_overly_nested_json_is_invalid,
                check_nul_is_refused_naming_its_field,
                check_json_too_deep_for_the_stack_is_invalid,
            }
            sessions {
                check_bind_then_resolve_resumes,
                check_bind_upsert_keeps_created_at,
                check_reset_makes_the_next_resolve_fresh,
                check_reset_then_bind_resumes_the_new_session,
                check_provider_or_runtime_change_is_fresh_with_reason,
                check_invalidate_is_compare_and_set,
                check_concurrent_binds_leave_one_complete_binding,
                check_bindings_are_keyed_by_agent_and_thread,
                check_deleted_thread_drops_and_refuses_bindings,
                check_bad_binding_input_writes_nothing,
                check_bindings_are_listed_per_thread_with_their_state,
            }
            search {
                check_search_follows_the_query_rules,
                check_search_reads_text_and_tool_results,
                check_search_follows_every_write,
                check_search_pages_newest_first,
                check_search_breaks_ties_bytewise,
                check_search_scopes_and_filters,
                check_search_refuses_bad_input,
                check_search_finds_another_handles_writes,
            }
            vectors {
                check_nearest_ranks_by_cosine_within_its_scope,
                check_nearest_never_leaves_its_tenant,
                check_mismatched_models_and_dimensions_are_refused,
                check_vectors_go_with_their_messages,
                check_embeddings_are_written_with_their_messages,
                check_hybrid_recall_fuses_vectors_and_text,
                check_embeddings_are_listed_as_stored,
                check_an_embed_is_an_event_of_the_feed,
                check_every_change_of_a_vector_is_in_the_feed,
            }
            vector_index {
                check_the_vector_index_answers_as_the_scan,
                check_the_vector_index_keeps_to_its_budget,
                check_the_vector_index_reads_its_files_after_a_restart,
            }
            working {
                check_working_memory_patches_and_replaces,
                check_working_memory_expected_version_is_compare_and_set,
                check_racing_patches_are_never_lost,
                check_working_memory_is_per_tenant,
                check_working_memory_refuses_bad_input,
                check_working_memory_lists_by_tenant_and_resource,
                check_working_memory_writes_are_in_the_feed,
            }
            records {
                check_records_read_by_space_and_prefix,
                check_records_put_insert_and_delete,
                check_records_expire,
                check_records_are_per_tenant,
                check_records_refuse_bad_input,
            }
            maintenance {
                check_stranded_finds_only_old_reservations,
                check_a_slow_stream_is_not_stranded,
                check_cleanup_marks_stranded_replies_interrupted,
                check_ping_answers_while_serving,
            }
            durability {
                check_acknowledged_writes_survive_reopen,
                check_tombstones_survive_reopen,
                check_session_bindings_survive_reopen,
            }
            model {
                check_random_operations_match_reference_model,
            }
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __stamp_tests {
    (($factory:expr) $($group:ident { $($check:ident),* $(,)? })*) => {
        $(
            #[allow(unused_imports)]
            mod $group {
                use super::*;
                $(
                    #[test]
                    fn $check() {
                        $crate::__private::run(
                            concat!(stringify!($group), "::", stringify!($check)),
                            $crate::__private::checks::$group::$check,
                            &$crate::__private::Erased::new($factory),
                        );
                    }
                )*
            }
        )*
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __run_checks {
    (($factory:expr) $($group:ident { $($check:ident),* $(,)? })*) => {
        $($(
            $crate::__private::run(
                concat!(stringify!($group), "::", stringify!($check)),
                $crate::__private::checks::$group::$check,
                &$crate::__private::Erased::new($factory),
            );
        )*)*
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __list_checks {
    (() $($group:ident { $($check:ident),* $(,)? })*) => {
        &[$($((stringify!($group), stringify!($check)),)*)*]
    };
}

/// Every check as `(group, name)`, in the order [`conformance_tests!`] stamps them.
pub const CHECKS: &[(&str, &str)] = __for_each_check!(__list_checks,);

/// Runs every conformance check in turn for the [`Factory`] expression given, in one test (a
/// fresh runtime each), panicking at the first that fails: for a harness that watches a
/// backend across the whole suite (the statements it sends, say), where
/// [`conformance_tests!`] would spread the checks over many tests run in parallel.
#[macro_export]
macro_rules! run_all_checks {
    ($factory:expr) => {
        $crate::__for_each_check!(__run_checks, $factory);
    };
}

/// Stamps out one `#[test]` per conformance check for the [`Factory`] expression given.
///
/// Put it at the top of a test file (or in a module of its own per backend or stack); it
/// creates one module per group, one test per check. See the [crate docs](crate).
#[macro_export]
macro_rules! conformance_tests {
    ($factory:expr) => {
        $crate::__for_each_check!(__stamp_tests, $factory);
    };
}

#[doc(hidden)]
pub mod __private {
    use crate::Outcome;
    pub use crate::erased::{Check, Erased, checks};

    /// Runs one check on a fresh multi-threaded runtime (races need real parallelism).
    pub fn run(name: &str, check: Check, factory: &Erased) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .enable_all()
            .build()
            .expect("conformance: build a tokio runtime");
        match runtime.block_on(check(factory)) {
            Outcome::Passed => {}
            Outcome::Skipped(reason) => {
                // Written to the real stderr, past the test harness's capture, so a skip is
                // seen in every run, not only when something fails.
                use std::io::Write;
                let _ = writeln!(std::io::stderr(), "SKIPPED {name}: {reason}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_documented_count_is_the_real_count() {
        let docs = include_str!("lib.rs");
        let claim = format!("({} in all)", super::CHECKS.len());
        assert!(docs.contains(&claim), "update the count in the crate docs to {claim}");
    }
}

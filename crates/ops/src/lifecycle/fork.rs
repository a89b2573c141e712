//! Forks ([`PipelineExt::fork`](crate::PipelineExt::fork)): composed of ordinary requests
//! sent through the whole stack (see [`lifecycle`](crate::lifecycle)).

use std::collections::{HashMap, HashSet};

use serde_json::json;

use crate::lifecycle::vectors::ThreadVectors;
use crate::lifecycle::{FORKED_FROM, Fork, ForkReport};
use persist_core::Context;
use persist_core::Pipeline;
use persist_core::args::{Add, Reserve, Update, UpdateContent};
use persist_core::branch::{Branch, Parent, Switch};
use persist_core::read::{GetThread, ListMessages, MAX_PAGE_LIMIT};
use persist_core::summary::{ListSummaries, Summarize};
use persist_core::vector::{Embed, Embedding};
use persist_core::{Message, Metadata, Status, Thread};
use persist_core::{MessageId, ThreadId};
use persist_core::{PersistError, Result};

/// The refusal of a fork run again whose source completed `late` after later messages were
/// copied.
fn late_message(fork: &Fork, late: &Message) -> PersistError {
    PersistError::invalid(
        "target",
        format!(
            "message {} (seq {}) of {} was completed after {} copied later messages: copied now, it would follow \
             them; truncate {} before the first of them (`Delete::after`) and fork again to bring it in its place",
            late.id, late.seq, fork.source, fork.target, fork.target
        ),
    )
}

/// An interrupted message copied to `target` as it is: reserved with its id, role, metadata
/// and key, then marked interrupted with its content (an `add` would make it complete).
/// Answers whether it was copied before (`true`: nothing written), and the copy as stored.
async fn copy_interrupted(
    pipeline: &Pipeline,
    target: &ThreadId,
    message: &Message,
    parent: Parent,
    context: Context,
) -> Result<(bool, Message)> {
    let mut reserve = Reserve::new(target.clone(), message.role.clone())
        .with_id(message.id.clone())
        .with_metadata(message.metadata.clone())
        .with_parent(parent)
        .with_context(context.clone());
    if let Some(key) = &message.idempotency_key {
        reserve = reserve.with_idempotency_key(key.clone());
    }
    let slot = pipeline.reserve(reserve).await?.message;
    if slot.status != Status::Reserved {
        return Ok((true, slot));
    }
    // Reserved by this run or by one cut short before its mark.
    let mark = UpdateContent::new(target.clone(), slot.id, message.content.clone())
        .with_finalize(false)
        .with_interrupt(true)
        .with_expected_version(slot.version)
        .with_context(context);
    Ok((false, pipeline.update_content(mark).await?.message))
}

/// Writes `embeddings` (the source message's vectors) to `copy`, its copy in the fork, when the
/// copy holds the source's content (a copy changed since an earlier run holds other words:
/// the vectors described the source's). Answers how many it wrote.
async fn copy_vectors(
    pipeline: &Pipeline,
    fork: &Fork,
    source: &Message,
    copy: &Message,
    embeddings: Vec<Embedding>,
) -> Result<usize> {
    if embeddings.is_empty() || copy.content != source.content {
        return Ok(0);
    }
    let mut written = 0;
    for embedding in embeddings {
        let embed = Embed::new(fork.target.clone(), copy.id.clone(), embedding)
            .with_expected_version(copy.version)
            .with_context(fork.context.renewed());
        match pipeline.embed(embed).await {
            Ok(_) => written += 1,
            // Changed since it was copied: its vectors would describe what it no longer holds.
            Err(PersistError::VersionConflict { .. }) => return Ok(written),
            Err(error) => return Err(error),
        }
    }
    Ok(written)
}

/// See [`PipelineExt::fork`](crate::PipelineExt::fork).
pub(crate) async fn fork(pipeline: &Pipeline, mut fork: Fork) -> Result<ForkReport> {
    // Its reads see its writes, whichever copy of the store answers them.
    fork.context = fork.context.consistent();
    let context = || fork.context.renewed();
    if fork.source == fork.target {
        return Err(PersistError::invalid("target", "a thread cannot be forked into itself"));
    }
    let Some(source) = pipeline.get_thread(GetThread::new(fork.source.clone()).with_context(context())).await? else {
        return Err(PersistError::not_found(&fork.source, None));
    };
    if source.is_deleted() {
        return Err(PersistError::ThreadDeleted { thread_id: fork.source.clone() });
    }
    let target = pipeline.get_thread(GetThread::new(fork.target.clone()).with_context(context())).await?;
    // A fork resumed goes on up to the seq (and along the branch) it recorded when it started.
    let resumed = match &target {
        Some(target) => check_fork_target(pipeline, &fork, target).await?,
        None => None,
    };
    let leaf = match (&resumed, &fork.branch) {
        (Some((_, recorded)), _) => recorded.clone(),
        (None, Some(Branch::EndingAt(id))) => Some(id.clone()),
        (None, Some(_)) => active_end(pipeline, &fork).await?,
        (None, None) => None,
    };
    // A branch with no message yet: nothing to copy.
    if fork.branch.is_some() && leaf.is_none() {
        return Ok(ForkReport::default());
    }
    let up_to = resumed.as_ref().map(|(seq, _)| *seq).or(fork.up_to).unwrap_or(source.last_seq).min(source.last_seq);
    let mut origin = json!({ "thread": fork.source.as_str(), "seq": up_to });
    if let Some(leaf) = &leaf {
        origin["leaf"] = json!(leaf.as_str());
    }
    let mut report = ForkReport { up_to, ..ForkReport::default() };
    let mut recorded = resumed.is_some();
    let branch = leaf.map(Branch::EndingAt);
    // An earlier run's copies: a message not among them below the last one's seq is late.
    let (copied, copied_until) = match target {
        Some(_) => refuse_late_messages(pipeline, &fork, up_to, branch.as_ref()).await?,
        None => (HashSet::new(), 0),
    };
    // A fork of a whole tree keeps its shape: each copy follows the copy of its parent (of
    // the nearest ancestor copied, past reservations still streaming), and the fork's active
    // branch ends where the source's does.
    let tree = pipeline.capabilities().branches && branch.is_none();
    let mut attach: HashMap<u64, Option<MessageId>> = HashMap::new();
    let (mut last, mut branched) = (None::<MessageId>, false);
    // The source's seq of each message copied (or found copied), in seq order.
    let mut copied_from: Vec<(u64, MessageId)> = Vec::new();
    // The source's vectors, read along the listing (both in seq order); none when the stack
    // keeps none or refuses to read them (an encryption layer that keeps vectors sealed: a
    // source behind it holds none).
    let mut vectors = ThreadVectors::new(pipeline, fork.source.clone(), context()).refused_as_none();
    let mut listing = ListMessages::new(fork.source.clone())
        .before(up_to.saturating_add(1))
        .include_reserved(tree)
        .with_limit(MAX_PAGE_LIMIT)
        .with_context(context());
    if let Some(branch) = branch {
        listing = listing.on_branch(branch);
    }
    loop {
        let page = pipeline.list(listing.clone()).await?;
        for message in &page.items {
            let parent_copy = message.parent_seq.and_then(|seq| attach.get(&seq).cloned().flatten());
            // Reservations still streaming are not copied.
            if message.status == Status::Reserved {
                attach.insert(message.seq, parent_copy);
                continue;
            }
            // Completed between the check above and this page: it would land after later copies.
            if message.seq < copied_until && !copied.contains(&message.id) {
                return Err(late_message(&fork, message));
            }
            let parent = match parent_copy {
                _ if !tree || parent_copy == last => Parent::Active,
                Some(id) => Parent::Message(id),
                None => Parent::Root,
            };
            branched |= !parent.is_active();
            let copy = if message.status == Status::Interrupted {
                copy_interrupted(pipeline, &fork.target, message, parent, context()).await
            } else {
                let mut add = Add::new(fork.target.clone(), message.role.clone(), message.content.clone())
                    .with_id(message.id.clone())
                    .with_metadata(message.metadata.clone())
                    .with_parent(parent)
                    .with_context(context());
                if let Some(key) = &message.idempotency_key {
                    add = add.with_idempotency_key(key.clone());
                }
                pipeline.add(add).await.map(|added| (added.deduplicated, added.message))
            };
            let embeddings = vectors.of_message(pipeline, message).await?;
            match copy {
                Ok((already, stored)) => {
                    if already {
                        report.already += 1;
                    } else {
                        report.copied += 1;
                    }
                    report.vectors += copy_vectors(pipeline, &fork, message, &stored, embeddings).await?;
                }
                // Copied by an earlier run, and changed since in the source or the fork.
                Err(PersistError::AlreadyExists { .. } | PersistError::IdempotencyKeyReused { .. }) => {
                    report.already += 1
                }
                Err(error) => return Err(error),
            }
            attach.insert(message.seq, Some(message.id.clone()));
            copied_from.push((message.seq, message.id.clone()));
            last = Some(message.id.clone());
            if !recorded {
                let mark = Update::thread(fork.target.clone())
                    .with_metadata(Metadata::new().with(FORKED_FROM, origin.clone()))
                    .with_context(context());
                pipeline.update(mark).await?;
                recorded = true;
            }
        }
        match listing.next_page(&page) {
            Some(next) => listing = next,
            None => break,
        }
    }
    (report.summaries, report.summaries_behind) = copy_summaries(pipeline, &fork, up_to, &copied_from).await?;
    let source_leaf = source.active_leaf.filter(|&leaf| leaf <= up_to);
    if let Some(Some(leaf)) = source_leaf.and_then(|leaf| attach.get(&leaf)).filter(|leaf| branched && **leaf != last) {
        let switch = Update::thread(fork.target.clone()).with_switch(Switch::To(leaf.clone()));
        pipeline.update(switch.with_context(context())).await?;
    }
    Ok(report)
}

/// Writes to `fork.target` each summary of the source whose last message is among the copies
/// (`copied_from`: each copied message's seq in the source, ascending), its range mapped to
/// the copies' seqs: from the first copy at or after its first seq, through the copy of its
/// last message. Summaries ending past `up_to`, or at a message not copied (another branch
/// than the one forked), are left. Idempotent per range, as every summary: a fork run again
/// writes none twice. Answers how many it wrote (not found written), and how many end before
/// the first copy (in history the new thread does not have). A store that keeps no summaries
/// has none to copy: nothing is asked of it.
async fn copy_summaries(
    pipeline: &Pipeline,
    fork: &Fork,
    up_to: u64,
    copied_from: &[(u64, MessageId)],
) -> Result<(usize, usize)> {
    let Some(&(first_copied, _)) = copied_from.first() else { return Ok((0, 0)) };
    if !pipeline.capabilities().summaries {
        return Ok((0, 0));
    }
    let mut summaries = Vec::new();
    let mut listing = ListSummaries::new(fork.source.clone()).with_limit(MAX_PAGE_LIMIT);
    loop {
        let page = pipeline.summaries(listing.clone().with_context(fork.context.renewed())).await?;
        summaries.extend(page.items.iter().filter(|summary| summary.through_seq <= up_to).cloned());
        match listing.next_page(&page) {
            Some(next) => listing = next,
            None => break,
        }
    }
    let behind = summaries.iter().filter(|summary| summary.through_seq < first_copied).count();
    if summaries.len() == behind {
        return Ok((0, behind));
    }
    let in_target: HashMap<MessageId, u64> = all_messages(pipeline, &fork.target, &fork.context, None, None)
        .await?
        .into_iter()
        .map(|message| (message.id, message.seq))
        .collect();
    let copy_of = |source_seq: u64| copied_from.binary_search_by_key(&source_seq, |(seq, _)| *seq);
    let mut written = 0;
    for summary in summaries {
        let Ok(last) = copy_of(summary.through_seq) else { continue };
        let first = copy_of(summary.from_seq).unwrap_or_else(|at| at);
        let seq_of = |index: usize| copied_from.get(index).and_then(|(_, id)| in_target.get(id)).copied();
        let (Some(from), Some(through)) = (seq_of(first), seq_of(last)) else { continue };
        let copy = Summarize::new(fork.target.clone(), through, summary.content)
            .from_seq(from)
            .with_metadata(summary.metadata)
            .with_context(fork.context.renewed());
        if !pipeline.summarize(copy).await?.deduplicated {
            written += 1;
        }
    }
    Ok((written, behind))
}

/// Refuses to resume a fork when a message of the source up to `up_to` is missing from it
/// while a later one was copied: it was completed after an earlier run (a reservation then
/// streaming), and copied now it would land after the later one.
/// Answers the ids the target holds and the source seq of the last of them (0: none).
async fn refuse_late_messages(
    pipeline: &Pipeline,
    fork: &Fork,
    up_to: u64,
    branch: Option<&Branch>,
) -> Result<(HashSet<MessageId>, u64)> {
    let copied = all_messages(pipeline, &fork.target, &fork.context, None, None).await?;
    let copied: HashSet<MessageId> = copied.into_iter().map(|message| message.id).collect();
    let source = all_messages(pipeline, &fork.source, &fork.context, Some(up_to), branch).await?;
    let Some(last_copied) = source.iter().rposition(|message| copied.contains(&message.id)) else {
        return Ok((copied, 0));
    };
    match source[..last_copied].iter().find(|message| !copied.contains(&message.id)) {
        None => Ok((copied, source[last_copied].seq)),
        Some(late) => Err(late_message(fork, late)),
    }
}

/// The complete messages of `thread` (up to seq `up_to`, of `branch`), in order (every page).
async fn all_messages(
    pipeline: &Pipeline,
    thread: &ThreadId,
    context: &Context,
    up_to: Option<u64>,
    branch: Option<&Branch>,
) -> Result<Vec<Message>> {
    let mut listing = ListMessages::new(thread.clone()).with_limit(MAX_PAGE_LIMIT).with_context(context.renewed());
    if let Some(up_to) = up_to {
        listing = listing.before(up_to.saturating_add(1));
    }
    if let Some(branch) = branch {
        listing = listing.on_branch(branch.clone());
    }
    Ok(persist_core::raw::list_every(pipeline, listing).await?.items)
}

/// The last message of the source's active branch, when the fork starts (`None`: no
/// message).
async fn active_end(pipeline: &Pipeline, fork: &Fork) -> Result<Option<MessageId>> {
    let last = ListMessages::new(fork.source.clone())
        .on_branch(Branch::Active)
        .include_reserved(true)
        .with_order(persist_core::read::Order::Desc)
        .with_limit(1)
        .with_context(fork.context.renewed());
    Ok(pipeline.list(last).await?.items.into_iter().next().map(|message| message.id))
}

/// An existing target is fine when it is this fork: recorded (its origin names the source;
/// answers the seq it recorded, and the last message of the branch it copies), or still in
/// progress before the origin was recorded (its messages are, in order, the first complete
/// messages of the source, of its branch, at least one).
async fn check_fork_target(
    pipeline: &Pipeline,
    fork: &Fork,
    target: &Thread,
) -> Result<Option<(u64, Option<MessageId>)>> {
    if target.is_deleted() {
        return Err(PersistError::ThreadDeleted { thread_id: fork.target.clone() });
    }
    let not_a_fork = || {
        PersistError::invalid("target", format!("thread {} exists and is not a fork of {}", fork.target, fork.source))
    };
    if let Some(recorded) = target.metadata.get(FORKED_FROM) {
        let thread = recorded.get("thread").and_then(serde_json::Value::as_str);
        let seq = recorded.get("seq").and_then(serde_json::Value::as_u64);
        let leaf = recorded.get("leaf").and_then(serde_json::Value::as_str).map(MessageId::new).transpose();
        let same_branch = |leaf: &Option<MessageId>| match (&fork.branch, leaf) {
            (None, None) | (Some(Branch::Active), Some(_)) => true,
            (Some(Branch::EndingAt(wanted)), Some(leaf)) => wanted == leaf,
            _ => false,
        };
        return match (thread, seq, leaf) {
            (Some(thread), Some(seq), Ok(leaf))
                if thread == fork.source.as_str() && fork.up_to.is_none_or(|up| up == seq) && same_branch(&leaf) =>
            {
                Ok(Some((seq, leaf)))
            }
            _ => Err(not_a_fork()),
        };
    }

    let page = |thread: &ThreadId| {
        ListMessages::new(thread.clone()).with_limit(MAX_PAGE_LIMIT).with_context(fork.context.renewed())
    };
    let copied = pipeline.list(page(&fork.target).include_reserved(true)).await?;
    if copied.items.is_empty() || copied.has_more {
        return Err(not_a_fork());
    }
    let mut source = page(&fork.source);
    if let Some(branch) = &fork.branch {
        source = source.on_branch(branch.clone());
    }
    let source = pipeline.list(source).await?;
    let mut originals = source.items.iter().map(|m| &m.id);
    if copied.items.iter().any(|copy| originals.next() != Some(&copy.id)) {
        return Err(not_a_fork());
    }
    Ok(None)
}

//! [`PipelineExt::branch_from_turn`](crate::PipelineExt::branch_from_turn): the active branch
//! ended before a user turn, by a switch the store keeps.

use crate::lifecycle::BranchFromTurn;
use persist_core::args::Update;
use persist_core::branch::{Branch, Switch};
use persist_core::read::{ListMessages, MAX_PAGE_LIMIT};
use persist_core::{MessageId, PersistError, Pipeline, Result, Role};

/// See [`PipelineExt::branch_from_turn`](crate::PipelineExt::branch_from_turn).
pub(crate) async fn branch_from_turn(pipeline: &Pipeline, mut request: BranchFromTurn) -> Result<Option<MessageId>> {
    // The switch names a message the read found: that read sees the writes before it.
    request.context = request.context.consistent();
    let path = ListMessages::new(request.thread_id.clone())
        .on_branch(Branch::Active)
        .with_limit(MAX_PAGE_LIMIT)
        .with_context(request.context.renewed());
    let path = persist_core::raw::list_every(pipeline, path).await?.items;
    let users = path.iter().enumerate().filter(|(_, message)| message.role == Role::User);
    let turns = users.clone().count();
    let index = usize::try_from(request.turn).ok().and_then(|turn| turn.checked_sub(1));
    let Some((at, _)) = index.and_then(|index| users.clone().nth(index)) else {
        return Err(PersistError::invalid(
            "turn",
            format!("turn {}: the active branch has {turns} user turns (numbered from 1)", request.turn),
        ));
    };
    let end = at.checked_sub(1).map(|before| path[before].id.clone());
    let switch = end.clone().map_or(Switch::Empty, Switch::To);
    pipeline
        .update(Update::thread(request.thread_id).with_switch(switch).with_context(request.context.renewed()))
        .await?;
    Ok(end)
}

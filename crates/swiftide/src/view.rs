//! What the model is given ([`View::Model`](crate::View::Model)): no call without its output,
//! no output without its call.

use std::collections::HashSet;

use swiftide_core::chat_completion::{ChatMessage, ToolCall};

/// Leaves out of `items` (each with what it carries along, an anchor for the history):
///
/// - a tool call that has no output and that a later user message follows: the run that made
///   it ended before its tool answered (a process killed while the tool ran, a tool that asked
///   for feedback which never came), and a provider refuses a call without its output. A call
///   with nothing but the agent's own messages after it stays, so swiftide's agent can still
///   run it (what it does with an open call when it resumes);
/// - an assistant message left with neither text nor calls by the rule above (one the model
///   answered empty stays: swiftide's agent stops on it);
/// - a tool output whose call is not before it since the last summary (swiftide gives the
///   model nothing before a summary but system messages, so such an output would answer
///   nothing).
pub(crate) fn for_model<A>(items: Vec<(ChatMessage, A)>) -> Vec<(ChatMessage, A)> {
    let answered: HashSet<String> = items
        .iter()
        .filter_map(|(item, _)| match item {
            ChatMessage::ToolOutput(call, _) => Some(call.id().to_owned()),
            _ => None,
        })
        .collect();
    let last_user = items.iter().rposition(|(item, _)| matches!(item, ChatMessage::User(_)));
    let mut calls_since_summary: HashSet<String> = HashSet::new();
    let mut kept = Vec::with_capacity(items.len());
    for (index, (item, anchor)) in items.into_iter().enumerate() {
        let item = match item {
            ChatMessage::Assistant(text, Some(calls)) => {
                let ended = last_user.is_some_and(|user| user > index);
                let dead = |call: &ToolCall| ended && !answered.contains(call.id());
                calls_since_summary.extend(calls.iter().filter(|call| !dead(call)).map(|call| call.id().to_owned()));
                if calls.iter().any(dead) {
                    let calls: Vec<ToolCall> = calls.into_iter().filter(|call| !dead(call)).collect();
                    if text.is_none() && calls.is_empty() {
                        continue;
                    }
                    ChatMessage::Assistant(text, (!calls.is_empty()).then_some(calls))
                } else {
                    ChatMessage::Assistant(text, Some(calls))
                }
            }
            ChatMessage::ToolOutput(call, _) if !calls_since_summary.contains(call.id()) => continue,
            ChatMessage::Summary(text) => {
                calls_since_summary.clear();
                ChatMessage::Summary(text)
            }
            other => other,
        };
        kept.push((item, anchor));
    }
    kept
}

#[cfg(test)]
mod tests {
    use swiftide_core::chat_completion::ToolOutput;

    use super::*;

    fn call(id: &str) -> ToolCall {
        ToolCall::builder().id(id).name("lookup").build().unwrap()
    }

    fn view(items: &[ChatMessage]) -> Vec<ChatMessage> {
        for_model(items.iter().cloned().map(|item| (item, ())).collect()).into_iter().map(|(item, ())| item).collect()
    }

    #[test]
    fn a_call_a_later_prompt_left_behind_is_not_given() {
        let killed = [
            ChatMessage::User("look it up".into()),
            ChatMessage::Assistant(Some("Looking.".into()), Some(vec![call("dead")])),
            ChatMessage::User("never mind, hi".into()),
        ];
        assert_eq!(
            view(&killed),
            vec![
                ChatMessage::User("look it up".into()),
                ChatMessage::Assistant(Some("Looking.".into()), None),
                ChatMessage::User("never mind, hi".into()),
            ]
        );
        let only_call = [
            ChatMessage::Assistant(None, Some(vec![call("dead"), call("done")])),
            ChatMessage::ToolOutput(call("done"), ToolOutput::text("ok")),
            ChatMessage::User("next".into()),
        ];
        assert_eq!(
            view(&only_call),
            vec![
                ChatMessage::Assistant(None, Some(vec![call("done")])),
                ChatMessage::ToolOutput(call("done"), ToolOutput::text("ok")),
                ChatMessage::User("next".into()),
            ]
        );
    }

    #[test]
    fn an_open_call_at_the_end_stays_for_the_agent_to_run() {
        let open = [ChatMessage::User("look it up".into()), ChatMessage::Assistant(None, Some(vec![call("open")]))];
        assert_eq!(view(&open), open.to_vec());
        let empty = [ChatMessage::User("hi".into()), ChatMessage::Assistant(None, None)];
        assert_eq!(view(&empty), empty.to_vec(), "an empty answer stays: the agent stops on it");
    }

    #[test]
    fn an_output_without_its_call_since_the_summary_is_not_given() {
        let items = [
            ChatMessage::System("Be brief.".into()),
            ChatMessage::Assistant(None, Some(vec![call("before")])),
            ChatMessage::Summary("They looked something up.".into()),
            ChatMessage::ToolOutput(call("before"), ToolOutput::text("found")),
            ChatMessage::ToolOutput(call("nowhere"), ToolOutput::text("?")),
            ChatMessage::User("thanks".into()),
        ];
        assert_eq!(
            view(&items),
            vec![
                ChatMessage::System("Be brief.".into()),
                ChatMessage::Assistant(None, Some(vec![call("before")])),
                ChatMessage::Summary("They looked something up.".into()),
                ChatMessage::User("thanks".into()),
            ]
        );
    }
}

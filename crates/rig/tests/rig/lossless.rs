//! rig's messages are stored as persist's typed parts and read back equal.

use persist::read::ListMessages;
use persist::{Part, Pipeline, Role, ThreadId};
use persist_rig::{PersistMemory, View};
use rig_core::completion::{AssistantContent, Message};
use rig_core::memory::ConversationMemory;
use rig_core::message::{
    AssistantMessage, CallId, ProviderCallId, ToolCall, ToolFunction, ToolName, ToolResultContent, UserContent,
};
use serde_json::json;

fn name(name: &str) -> ToolName {
    ToolName::new(name).expect("a tool name")
}

fn call_id(id: &str) -> CallId {
    CallId::from(ProviderCallId::new(id).expect("a call id"))
}

/// Every kind of message and block a run writes, with the fields typed parts have no place for.
fn messages() -> Vec<Message> {
    let reasoning: AssistantContent =
        serde_json::from_value(json!({"type": "reasoning", "text": "The user wants a sum.", "redacted": true}))
            .expect("a reasoning block");
    // A call the provider sent without an id: rig issues one of its own.
    let local = ToolCall::from_wire("", ToolFunction::new(name("add"), json!({"x": 2, "y": 3})));
    let local_id = local.id.clone();
    vec![
        Message::system("Answer briefly."),
        Message::user("What is 1 + 2, and 2 + 3?"),
        Message::Assistant(AssistantMessage::new(vec![
            reasoning,
            AssistantContent::text("Let me add.").with_native(json!({"id": "msg_1", "phase": "commentary"})),
            AssistantContent::tool_call("call_1", name("add"), json!({"x": 1, "y": 2})),
            AssistantContent::ToolCall(local),
            // Arguments that are not JSON, as a model may send.
            AssistantContent::ToolCall(ToolCall::new(call_id("call_3"), ToolFunction::parse(name("add"), "{x: 1"))),
        ])),
        Message::User {
            content: vec![
                UserContent::tool_result(call_id("call_1"), name("add"), vec![ToolResultContent::text("3")]),
                UserContent::tool_result(local_id, name("add"), vec![ToolResultContent::json(json!({"sum": 5}))]),
            ],
        },
        Message::tool_result(call_id("call_3"), name("add"), "the arguments were not JSON"),
        Message::assistant("1 + 2 = 3 and 2 + 3 = 5."),
    ]
}

#[tokio::test]
async fn rig_messages_are_typed_parts_and_read_back_equal() {
    let pipeline = Pipeline::new(persist_memory::MemoryBackend::new());
    let memory = PersistMemory::new(&pipeline).with_view(View::Transcript);
    let id = "lossless".into();
    // (The id rig issues a call without one is random: one set of messages, compared with itself.)
    let written = messages();
    memory.append(&id, written.clone()).await.unwrap();
    assert_eq!(memory.load(&id).await.unwrap(), written, "read back equal");

    // Stored as typed parts other readers understand.
    let stored = pipeline.list(ListMessages::new(ThreadId::new("lossless").unwrap())).await.unwrap().items;
    let roles: Vec<Role> = stored.iter().map(|m| m.role.clone()).collect();
    assert_eq!(roles, [Role::System, Role::User, Role::Assistant, Role::User, Role::User, Role::Assistant]);
    let parts = stored[2].content.parts();
    assert!(matches!(&parts[0], Part::Reasoning { text } if text == "The user wants a sum."));
    assert!(matches!(&parts[1], Part::Text { text } if text == "Let me add."));
    assert_eq!(parts[2].as_tool_call().map(|c| (c.id, c.name)), Some(("call_1", "add")));
    let results = stored[3].content.tool_results();
    assert_eq!(results[0].as_tool_result().map(|r| r.call_id), Some("call_1"));
    // Each call pairs with its result by id, the one rig issued included.
    let calls = stored[2].content.tool_calls();
    assert_eq!(calls[1].as_tool_call().map(|c| c.id), results[1].as_tool_result().map(|r| r.call_id));
}

#[tokio::test]
async fn the_model_view_is_the_summary_and_the_tail() {
    use persist::summary::Summarize;
    let pipeline = Pipeline::new(persist_memory::MemoryBackend::new());
    let memory = PersistMemory::new(&pipeline);
    let id = "long".into();
    memory.append(&id, vec![Message::user("My name is Alice."), Message::assistant("Hello, Alice!")]).await.unwrap();
    memory.append(&id, vec![Message::user("I live in Lisbon."), Message::assistant("Noted.")]).await.unwrap();
    let thread = ThreadId::new("long").unwrap();
    pipeline
        .summarize(Summarize::new(thread, 2, persist::Content::text("The user is Alice.")))
        .await
        .expect("a summary");
    let view = memory.load(&id).await.unwrap();
    assert_eq!(
        view,
        [
            Message::System { content: "The user is Alice.".into() },
            Message::user("I live in Lisbon."),
            Message::assistant("Noted.")
        ]
    );
    let all = PersistMemory::new(&pipeline).with_view(View::Transcript).load(&id).await.unwrap();
    assert_eq!(all.len(), 4, "the transcript keeps everything");
}

/// A conversation another format wrote (here the Responses API's items, as `persist serve`
/// stores them) reads as rig's messages: the call with its arguments, the result with its
/// call's tool name.
#[tokio::test]
async fn a_conversation_another_format_wrote_reads_as_rig_messages() {
    use persist::args::AppendTurn;
    use persist::convert::openai_responses;
    let pipeline = Pipeline::new(persist_memory::MemoryBackend::new());
    let items = [
        json!({"role": "user", "content": "What is 1 + 2?"}),
        json!({"type": "function_call", "call_id": "call_7", "name": "add", "arguments": "{\"x\":1,\"y\":2}"}),
        json!({"type": "function_call_output", "call_id": "call_7", "output": "3"}),
        json!({"role": "assistant", "content": "1 + 2 = 3"}),
    ];
    let turn = openai_responses::import(&items).expect("Responses items");
    pipeline.append_turn(AppendTurn::of(ThreadId::new("from-openai").unwrap(), turn)).await.unwrap();
    let loaded = PersistMemory::new(&pipeline).with_view(View::Transcript).load(&"from-openai".into()).await.unwrap();
    let call = loaded.iter().find_map(|m| match m {
        Message::Assistant(a) => a.tool_calls().next().cloned(),
        _ => None,
    });
    let call = call.expect("the call reads as rig's");
    assert_eq!(call.id.to_string(), "call_7");
    assert_eq!(call.function.name.as_str(), "add");
    assert_eq!(serde_json::Value::Object(call.function.arguments.clone()), json!({"x": 1, "y": 2}));
    let result = loaded.iter().find_map(|m| match m {
        Message::User { content } => content.iter().find_map(|c| match c {
            UserContent::ToolResult(result) => Some(result.clone()),
            _ => None,
        }),
        _ => None,
    });
    let result = result.expect("the result reads as rig's");
    assert_eq!((result.call.to_string(), result.name.as_str()), ("call_7".to_owned(), "add"));
    assert_eq!(result.content.first().and_then(ToolResultContent::as_text), Some("3"));
    assert_eq!(loaded.len(), 4, "{loaded:?}");
}

//! What is read chunk by chunk: a reply followed as persist's parts or as the AI SDK's UI
//! message stream, and the change feed. Each is opened by its first `next()` and read by one
//! caller at a time (the package's async iterators).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;

use persist::feed::{ReadFeed, Subscription};
use persist::live::{FollowParts, PartChunk, PartOffset, PartStream, UiMessageStream};
use persist::{Content, Context, MessageId, Part, PersistError, PipelineExt, Result, ThreadId};
use serde_json::{Map, Value, json};

use crate::Shared;
use crate::args::{millis, optional, thread_of};
use crate::live::{newest_reply, offset_of};

/// What a stream reads, before its first `next()`.
pub(crate) struct Opening {
    shared: Arc<Shared>,
    context: Context,
    what: What,
}

enum What {
    /// A reply's parts from an offset; `ui`: as the UI message stream. No reply id: the
    /// thread's newest reply (a stream with nothing when it has none).
    Reply { thread: ThreadId, reply: Option<MessageId>, from: PartOffset, ui: bool },
    /// The change feed of a thread or of the tenant, after a position.
    Feed { thread: Option<ThreadId>, after: u64 },
}

impl Opening {
    /// The stream of `kind` (`parts`, `ui`, `feed`) with its arguments.
    pub(crate) fn of(kind: &str, args: Value, shared: Arc<Shared>, context: Context) -> Result<Self> {
        let what = match kind {
            "parts" | "ui" => What::Reply {
                thread: thread_of(&args)?,
                reply: crate::args::message_of(&args, "replyId")?,
                from: offset_of(&args)?,
                ui: kind == "ui",
            },
            "feed" => What::Feed {
                thread: optional(&args, "threadId")?.map(ThreadId::new).transpose()?,
                after: match args.get("after") {
                    None | Some(Value::Null) => 0,
                    Some(value) => value.as_u64().ok_or_else(|| {
                        PersistError::invalid("after", "after must be a feed position (a whole number)")
                    })?,
                },
            },
            other => return Err(PersistError::invalid("kind", format!("no stream is named {other:?}"))),
        };
        Ok(Self { shared, context, what })
    }

    async fn open(&self) -> Result<Reading> {
        let store = self.shared.pipeline().await?.scoped(self.context.clone());
        match &self.what {
            What::Reply { thread, reply, from, ui } => {
                let reply = match reply {
                    Some(reply) => reply.clone(),
                    None => match newest_reply(&store, thread).await? {
                        Some(reply) => reply,
                        None => return Ok(Reading::Ended),
                    },
                };
                let parts = store.follow_parts(FollowParts::new(thread.clone(), reply.clone()).from(*from)).await?;
                Ok(if *ui {
                    Reading::Ui(Box::new(UiMessageStream::new(parts, reply)))
                } else {
                    Reading::Parts(Box::new(parts))
                })
            }
            What::Feed { thread, after } => {
                let query = thread.clone().map_or_else(ReadFeed::tenant, ReadFeed::thread).after(*after);
                Ok(Reading::Feed(Box::new(store.subscribe(query).await?)))
            }
        }
    }
}

enum Reading {
    Unopened(Opening),
    Parts(Box<PartStream>),
    Ui(Box<UiMessageStream>),
    Feed(Box<Subscription>),
    Ended,
}

/// A followed reply or the change feed; see the package's `index.d.ts`.
#[napi_derive::napi]
pub struct NativeStream {
    reading: Arc<tokio::sync::Mutex<Reading>>,
    /// Set by `close`: a `next()` waiting answers null at once, later ones too.
    closed: Arc<(AtomicBool, Notify)>,
}

impl std::fmt::Debug for NativeStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NativeStream").field("closed", &self.closed.0.load(Ordering::Relaxed)).finish()
    }
}

impl NativeStream {
    pub(crate) fn new(opening: Opening) -> Self {
        let reading = Arc::new(tokio::sync::Mutex::new(Reading::Unopened(opening)));
        Self { reading, closed: Arc::new((AtomicBool::new(false), Notify::new())) }
    }
}

#[napi_derive::napi]
impl NativeStream {
    /// The next chunk as JSON, or null after the last (a feed has no last: it waits).
    #[napi]
    pub async fn next(&self) -> napi::Result<Option<String>> {
        let (reading, closed) = (self.reading.clone(), self.closed.clone());
        let read = async move {
            let mut reading = reading.lock().await;
            next(&mut reading).await
        };
        let closing = async {
            let notified = closed.1.notified();
            if !closed.0.load(Ordering::Acquire) {
                notified.await;
            }
        };
        tokio::select! {
            () = closing => Ok(None),
            chunk = read => chunk.map(|chunk| chunk.map(|chunk| chunk.to_string())).map_err(|error| crate::errors::to_js(&error)),
        }
    }

    /// Ends the stream: a `next()` waiting and every later one answer null.
    #[napi]
    pub fn close(&self) {
        self.closed.0.store(true, Ordering::Release);
        self.closed.1.notify_waiters();
    }
}

async fn next(reading: &mut Reading) -> Result<Option<Value>> {
    loop {
        match reading {
            Reading::Ended => return Ok(None),
            Reading::Unopened(opening) => *reading = opening.open().await?,
            Reading::Parts(stream) => {
                let chunk = part_chunk(stream).await?;
                if chunk.is_none() {
                    *reading = Reading::Ended;
                }
                return Ok(chunk);
            }
            Reading::Ui(stream) => {
                let Some((chunk, offset)) = stream.next().await? else {
                    *reading = Reading::Ended;
                    return Ok(None);
                };
                return Ok(Some(json!({"chunk": chunk, "offset": offset.map(|offset| offset.to_string())})));
            }
            Reading::Feed(subscription) => return Ok(Some(change(subscription).await?)),
        }
    }
}

/// The next chunk of a followed reply, and where a client that has it resumes.
async fn part_chunk(stream: &mut PartStream) -> Result<Option<Value>> {
    let Some(chunk) = stream.next().await? else { return Ok(None) };
    let offset = stream.offset().to_string();
    let block = |part: &Part| Content::from_parts([part.clone()]).to_value()[0].clone();
    Ok(Some(match chunk {
        PartChunk::Part { index, part } => {
            json!({"type": "part", "index": index, "part": block(&part), "offset": offset})
        }
        PartChunk::Delta { index, added, .. } => {
            json!({"type": "delta", "index": index, "part": block(&added), "offset": offset})
        }
        PartChunk::Replaced { parts } => {
            json!({"type": "replaced", "parts": Content::from_parts(parts).to_value(), "offset": offset})
        }
        PartChunk::End(end) => json!({"type": "end", "end": end, "offset": offset}),
        _ => json!({"type": "unknown", "offset": offset}),
    }))
}

/// The next change of the feed: its position, time and what changed (camelCase keys).
async fn change(subscription: &mut Subscription) -> Result<Value> {
    let event = subscription.next().await?;
    let change = serde_json::to_value(&event.change).map_err(|error| PersistError::backend("a feed event", error))?;
    let mut answer = Map::new();
    answer.insert("position".into(), json!(event.position));
    answer.insert("at".into(), millis(event.at));
    if let Value::Object(fields) = change {
        for (key, value) in fields {
            answer.entry(camel(&key)).or_insert(value);
        }
    }
    Ok(Value::Object(answer))
}

/// `snake_case` as `camelCase`.
fn camel(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    let mut upper = false;
    for c in key.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

//! Commands that only read: `threads`, `show`, `check`, `sessions`.

use std::collections::HashMap;
use std::io::Write;

use persist::branch::{Branches, ListBranches};
use persist::read::{GetThread, ThreadCursor};
use persist::session::{ListBindings, Resolution, Resolve};
use persist::summary::{ReadCompacted, Summary};
use persist::{AgentId, Message, Metadata, Part, ProviderId, RuntimeId, Thread, ThreadId};
use serde_json::{Value, json};

use super::{MessagePages, Scope, describe_thread, stdout};
use crate::error::{CliError, CliResult};
use crate::jsonl::{binding_line, message_line, summary_line, thread_line, write_line};
use crate::keys;
use crate::store::Store;
use crate::text::{clip, format_time, printable, shell_word, table};

/// What `threads` lists.
#[derive(Debug)]
pub(crate) struct ThreadsOptions {
    /// Page size.
    pub(crate) limit: u32,
    /// Where the page starts (a cursor printed by an earlier page).
    pub(crate) after: Option<ThreadCursor>,
    /// Metadata every listed thread contains.
    pub(crate) filter: Vec<(String, Value)>,
}

/// `persist threads`: one page of threads, newest first, and the cursor of the next page.
pub(crate) async fn threads(store: &Store, scope: &Scope, options: ThreadsOptions, json: bool) -> CliResult {
    // A later page or a filter may be empty where the tenant's threads are not: no hint then.
    let narrowed = options.after.is_some() || !options.filter.is_empty();
    let filter = options.filter.into_iter().fold(Metadata::new(), |filter, (key, value)| filter.with(key, value));
    let listing = scope.listing().with_limit(options.limit).with_cursor(options.after).with_filter(filter);
    let page = store.keyed().threads(listing).await?;
    let next = page.next_cursor.filter(|_| page.has_more);
    let mut out = stdout();
    if json {
        for thread in &page.items {
            write_line(&mut out, &thread_line(thread))?;
        }
        if let Some(cursor) = &next {
            write_line(&mut out, &json!({ "kind": "next_cursor", "cursor": cursor.to_string() }))?;
        }
    } else if page.items.is_empty() {
        writeln!(out, "no threads{}", empty_hint(store, scope, narrowed).await?)?;
    } else {
        let rows: Vec<Vec<String>> = page
            .items
            .iter()
            .map(|thread| {
                vec![
                    thread.id.to_string(),
                    thread.tenant.as_ref().map_or_else(|| "-".to_owned(), ToString::to_string),
                    clip(&shown_title(thread.title.as_deref()), 40),
                    thread.message_count.to_string(),
                    format_time(thread.updated_at),
                ]
            })
            .collect();
        out.write_all(table(&["ID", "TENANT", "TITLE", "MESSAGES", "UPDATED_AT"], &rows).as_bytes())?;
        if let Some(cursor) = &next {
            writeln!(out, "next page: --after {}", shell_word(&cursor.to_string()))?;
        }
    }
    out.flush()?;
    super::refuse_unreadable(&page.unreadable)
}

/// Why an empty first page of threads may not mean an empty store: without `--tenant`, only
/// the threads without a tenant are listed; when some tenant has threads, say how to reach them.
async fn empty_hint(store: &Store, scope: &Scope, narrowed: bool) -> CliResult<&'static str> {
    if narrowed || scope.across_tenants || scope.tenant.is_some() {
        return Ok("");
    }
    let any = persist::read::ListThreads::new().across_tenants(true).with_limit(1);
    let page = store.keyed().threads(any).await?;
    Ok(if page.items.is_empty() && page.unreadable.is_empty() {
        ""
    } else {
        " without a tenant (tenants' threads are listed with --tenant NAME, or --across-tenants)"
    })
}

/// A title as `threads` and `show` print it: a sealed one as `(sealed)`, none as `-`.
fn shown_title(title: Option<&str>) -> String {
    match title {
        Some(title) if keys::title_is_sealed(title) => "(sealed)".to_owned(),
        Some(title) => title.to_owned(),
        None => "-".to_owned(),
    }
}

/// `persist show THREAD`: the thread's transcript, `#seq role [status] text` per message of its
/// active branch (with `all`, of every branch, each message naming its parent), a message with
/// alternatives marked `(i/n)`.
pub(crate) async fn show(store: &Store, scope: &Scope, thread_id: ThreadId, all: bool, json: bool) -> CliResult {
    let name = describe_thread(&thread_id, scope.tenant.as_ref());
    let query = GetThread::new(thread_id).with_context(scope.context());
    // A thread id is a tenant's: without --tenant, only the threads without one are reached.
    let hint = if scope.tenant.is_none() {
        " among the threads without a tenant (a tenant's needs --tenant NAME)"
    } else {
        ""
    };
    let thread =
        store.keyed().get_thread(query).await?.ok_or_else(|| CliError::failed(format!("no thread {name}{hint}")))?;
    if let Some(deleted_at) = thread.deleted_at {
        return Err(CliError::failed(format!("thread {name} was deleted at {}", format_time(deleted_at))));
    }
    let mut out = stdout();
    if json {
        write_line(&mut out, &thread_line(&thread))?;
    } else {
        writeln!(out, "{}", heading(&thread))?;
    }
    let mut pages = if all { MessagePages::of(&thread) } else { MessagePages::active_branch_of(&thread) };
    // A thread of one branch (one leaf, as most are) has no alternatives to mark: the siblings
    // are read only when there are others.
    let branched =
        !json && branches(store.keyed(), &thread, ListBranches::leaves(thread.id.clone())).await?.items.len() > 1;
    // Read once for the whole transcript (a read of each message's siblings cost a pass over
    // the thread per message: quadratic on long branched threads).
    let alternatives = if branched && !all { alternatives(store.keyed(), &thread).await? } else { HashMap::new() };
    let mut shown = 0;
    while let Some(page) = pages.next_page(store.keyed()).await? {
        for message in &page {
            if json {
                write_line(&mut out, &message_line(message))?;
                continue;
            }
            let mut line = transcript_line(message);
            if all {
                let parent = message.parent_seq.map_or_else(|| "root".to_owned(), |parent| format!("after #{parent}"));
                line = line.replacen(']', &format!("] ({parent})"), 1);
            } else if let Some((at, n)) = alternatives.get(&message.seq) {
                line = line.replacen(']', &format!("] ({at}/{n})"), 1);
            }
            writeln!(out, "{line}")?;
        }
        // Those that did not open, where they are missing, then an error once all is shown.
        for item in &pages.unreadable[shown..] {
            if !json {
                let id = item.message_id.as_ref().map_or_else(String::new, ToString::to_string);
                writeln!(out, "message {id}: does not open ({})", item.reason)?;
            }
        }
        shown = pages.unreadable.len();
    }
    out.flush()?;
    super::refuse_unreadable(&pages.unreadable)
}

/// `persist show --compacted`: the thread's heading, its latest summary (`summary #from..#to`
/// and its text), then the messages of the active branch after it; with `--json`, the thread's
/// line, the summary's, and the messages'.
pub(crate) async fn show_compacted(store: &Store, scope: &Scope, thread_id: ThreadId, json: bool) -> CliResult {
    let name = describe_thread(&thread_id, scope.tenant.as_ref());
    let query = GetThread::new(thread_id.clone()).with_context(scope.context());
    let thread = store.keyed().get_thread(query).await?.ok_or_else(|| CliError::failed(format!("no thread {name}")))?;
    if thread.is_deleted() {
        return Err(CliError::failed(format!("thread {name} was deleted")));
    }
    let read = ReadCompacted::new(thread_id).include_reserved(true).with_context(scope.context());
    let found = store.keyed().compacted(read).await?;
    let mut out = stdout();
    if json {
        write_line(&mut out, &thread_line(&thread))?;
        if let Some(summary) = &found.summary {
            write_line(&mut out, &summary_line(summary))?;
        }
        for message in &found.messages {
            write_line(&mut out, &message_line(message))?;
        }
    } else {
        writeln!(out, "{}", heading(&thread))?;
        match &found.summary {
            Some(summary) => writeln!(out, "{}", summary_text(summary))?,
            None => writeln!(out, "(no summary: every message of the active branch follows)")?,
        }
        for message in &found.messages {
            writeln!(out, "{}", transcript_line(message))?;
        }
        for item in &found.unreadable {
            let what = item.message_id.as_ref().map_or_else(|| "the summary".to_owned(), |id| format!("message {id}"));
            writeln!(out, "{what}: does not open ({})", item.reason)?;
        }
    }
    out.flush()?;
    super::refuse_unreadable(&found.unreadable)
}

/// `summary #from..#to (compactor, when named): text`.
fn summary_text(summary: &Summary) -> String {
    let by = summary
        .metadata
        .get(persist::compaction::COMPACTOR_KEY)
        .and_then(Value::as_str)
        .map_or_else(String::new, |name| format!(" ({name})"));
    let text = if keys::content_is_sealed(&summary.content) {
        format!("(sealed: set {} to read it)", keys::KEYS_VAR)
    } else {
        summary.content.to_text()
    };
    format!("summary #{}..#{}{by}: {text}", summary.from_seq, summary.through_seq)
}

/// Where each message with siblings (messages of the same parent) stands among them, by seq:
/// `(its place from 1, how many)`; from one pass over the thread's messages.
async fn alternatives(pipeline: &persist::Pipeline, thread: &Thread) -> CliResult<HashMap<u64, (usize, usize)>> {
    let mut children: HashMap<Option<u64>, Vec<u64>> = HashMap::new();
    let mut pages = MessagePages::of(thread);
    while let Some(page) = pages.next_page(pipeline).await? {
        for message in &page {
            children.entry(message.parent_seq).or_default().push(message.seq);
        }
    }
    let mut places = HashMap::new();
    for seqs in children.into_values().filter(|seqs| seqs.len() > 1) {
        // Pages come in seq order: each list is sorted.
        for (at, seq) in seqs.iter().enumerate() {
            places.insert(*seq, (at + 1, seqs.len()));
        }
    }
    Ok(places)
}

/// A `branches` read of `thread`, in its tenant.
async fn branches(pipeline: &persist::Pipeline, thread: &Thread, query: ListBranches) -> CliResult<Branches> {
    let context = persist::Context::new().for_tenant(thread.tenant.clone());
    Ok(pipeline.branches(query.with_context(context)).await?)
}

fn heading(thread: &Thread) -> String {
    let title = thread
        .title
        .as_deref()
        .map(|title| format!(" \"{}\"", clip(&shown_title(Some(title)), 80)))
        .unwrap_or_default();
    let leaf = thread.active_leaf.map_or_else(String::new, |leaf| format!(", active branch ends at #{leaf}"));
    format!(
        "thread {}{title}: {} messages, last seq {}{leaf}, updated {}",
        describe_thread(&thread.id, thread.tenant.as_ref()),
        thread.message_count,
        thread.last_seq,
        format_time(thread.updated_at)
    )
}

/// `#seq role [status] text`: each part of the content in turn (text as it is, reasoning, tool
/// calls and results, files marked as such), content that is not blocks as its JSON; the lines
/// of a long text are indented under the first.
fn transcript_line(message: &Message) -> String {
    let text = if keys::content_is_sealed(&message.content) {
        format!("(sealed: set {} to read it)", keys::KEYS_VAR)
    } else if message.content.is_placeholder() {
        String::new()
    } else {
        message.content.parts().iter().map(shown_part).collect::<Vec<_>>().join("")
    };
    let text = printable(&text).lines().collect::<Vec<_>>().join("\n    ");
    format!("#{} {} [{}] {text}", message.seq, message.role, message.status.as_str())
}

/// A part as `show` prints it.
fn shown_part(part: &Part) -> String {
    match part {
        Part::Text { text } => text.clone(),
        Part::Reasoning { text } => format!("(reasoning: {text}) "),
        Part::ToolCall { id, name, arguments } => format!("[call {id}: {name}({arguments})] "),
        Part::ToolResult { call_id, output, is_error: false } => format!("[result of {call_id}: {output}] "),
        Part::ToolResult { call_id, output, is_error: true } => format!("[{call_id} failed: {output}] "),
        Part::File { media_type, uri, name, .. } => {
            format!("[file {}{media_type} {uri}] ", name.as_ref().map_or_else(String::new, |name| format!("{name} ")))
        }
        // A block of another kind: its text when it has one (a text block with more fields, a
        // provider's `output_text`), a plain string as it is, anything else as its JSON.
        Part::Other(Value::String(text)) => text.clone(),
        Part::Other(value) => match value.get("text").and_then(Value::as_str) {
            Some(text) => text.to_owned(),
            None => serde_json::to_string(value).unwrap_or_default(),
        },
        // A kind of part this build does not know yet: its block, as stored.
        other => serde_json::to_string(&other.to_block()).unwrap_or_default(),
    }
}

/// `persist check`: each thread's `message_count` against its messages, `last_seq` against
/// the highest seq; on SQLite, the file's `integrity_check` and counters too.
pub(crate) async fn check(store: &Store, scope: &Scope, json: bool) -> CliResult {
    let mut problems = Vec::new();
    let (mut threads, mut messages) = (0u64, 0u64);
    let mut thread_pages = scope.threads();
    while let Some(page) = thread_pages.next_page(&store.pipeline).await? {
        for thread in page {
            threads += 1;
            messages += check_thread(store, &thread, &mut problems).await?;
        }
    }
    if let Some(sqlite) = store.sqlite() {
        // The file's structure, and counters of every thread of every tenant, tombstones too.
        let report = sqlite.check().await?;
        problems.extend(report.structure.into_iter().map(|problem| format!("sqlite integrity_check: {problem}")));
        problems.extend(report.counters.into_iter().map(|problem| format!("sqlite counters: {problem}")));
    }
    let mut out = stdout();
    if json {
        write_line(&mut out, &json!({ "threads": threads, "messages": messages, "problems": problems }))?;
    } else {
        for problem in &problems {
            writeln!(out, "{problem}")?;
        }
        let verdict = if problems.is_empty() { "ok".to_owned() } else { format!("{} problems", problems.len()) };
        writeln!(out, "checked {threads} threads, {messages} messages: {verdict}")?;
    }
    out.flush()?;
    if problems.is_empty() { Ok(()) } else { Err(CliError::failed(format!("check found {} problems", problems.len()))) }
}

/// Checks one thread against its messages; answers how many it has.
async fn check_thread(store: &Store, thread: &Thread, problems: &mut Vec<String>) -> CliResult<u64> {
    let name = describe_thread(&thread.id, thread.tenant.as_ref());
    let (mut count, mut highest) = (0u64, 0u64);
    let mut pages = MessagePages::of(thread);
    while let Some(page) = pages.next_page(&store.pipeline).await? {
        for message in page {
            if message.thread_id != thread.id {
                problems.push(format!("thread {name}: message {} names thread {}", message.id, message.thread_id));
            }
            if message.seq <= highest {
                problems.push(format!("thread {name}: seq {} listed after seq {highest}", message.seq));
            }
            highest = highest.max(message.seq);
            count += 1;
        }
    }
    if thread.message_count != count {
        problems.push(format!("thread {name}: message_count {} but {count} messages", thread.message_count));
    }
    if thread.last_seq < highest {
        problems.push(format!("thread {name}: last_seq {} below the highest seq {highest}", thread.last_seq));
    }
    Ok(count)
}

/// What `sessions` resolves.
#[derive(Debug)]
pub(crate) struct SessionQuery {
    /// The thread.
    pub(crate) thread: ThreadId,
    /// The agent and the provider about to run, to resolve; `None` lists every binding.
    pub(crate) resolve: Option<(AgentId, ProviderId)>,
    /// The runtime about to run it.
    pub(crate) runtime: Option<RuntimeId>,
}

/// `persist sessions THREAD`: the thread's bindings, every agent's with its state; with
/// `--agent A --provider P`, whether that agent's session can be resumed, and which.
pub(crate) async fn sessions(store: &Store, scope: &Scope, query: SessionQuery, json: bool) -> CliResult {
    let Some((agent, provider)) = query.resolve else {
        return list_bindings(store, scope, &query.thread, json).await;
    };
    let mut ask = Resolve::new(agent, query.thread, provider).with_context(scope.context());
    if let Some(runtime) = query.runtime {
        ask = ask.with_runtime(runtime);
    }
    let resolution = store.pipeline.resolve(ask).await?;
    let mut out = stdout();
    if json {
        write_line(&mut out, &resolution)?;
    } else {
        match &resolution {
            Resolution::Resume(binding) => {
                writeln!(out, "resume session {}", binding.session_id)?;
                writeln!(out, "  provider  {}", binding.provider)?;
                writeln!(out, "  runtime   {}", binding.runtime_id.as_ref().map_or("-", |r| r.as_str()))?;
                writeln!(out, "  work dir  {}", binding.work_dir.as_deref().unwrap_or("-"))?;
                writeln!(out, "  bound     {}", format_time(binding.created_at))?;
                writeln!(out, "  updated   {}", format_time(binding.updated_at))?;
            }
            Resolution::Fresh { reason, work_dir } => {
                writeln!(out, "start fresh ({reason}): {}", reason.user_message())?;
                if let Some(dir) = work_dir {
                    writeln!(out, "  work dir  {dir}")?;
                }
            }
            other => writeln!(out, "{other:?}")?,
        }
    }
    out.flush()?;
    Ok(())
}

/// Every binding of `thread`: a table, or one JSON line each.
async fn list_bindings(store: &Store, scope: &Scope, thread: &ThreadId, json: bool) -> CliResult {
    let query = ListBindings::new(thread.clone()).with_context(scope.context());
    let bindings = store.pipeline.bindings(query).await?;
    let mut out = stdout();
    if json {
        for binding in &bindings {
            write_line(&mut out, &binding_line(binding))?;
        }
    } else if bindings.is_empty() {
        writeln!(out, "no session bindings for thread {}", describe_thread(thread, scope.tenant.as_ref()))?;
    } else {
        let rows = bindings.iter().map(|stored| {
            let b = &stored.binding;
            vec![
                b.agent_id.to_string(),
                stored.state.as_str().to_owned(),
                b.session_id.to_string(),
                b.provider.to_string(),
                b.runtime_id.as_ref().map_or_else(|| "-".to_owned(), ToString::to_string),
                b.work_dir.clone().unwrap_or_else(|| "-".to_owned()),
                format_time(b.updated_at),
            ]
        });
        let header = ["AGENT", "STATE", "SESSION", "PROVIDER", "RUNTIME", "WORK_DIR", "UPDATED_AT"];
        write!(out, "{}", table(&header, &rows.collect::<Vec<_>>()))?;
    }
    out.flush()?;
    Ok(())
}

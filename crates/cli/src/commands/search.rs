//! `persist search QUERY`: one page of the messages whose text matches, newest first.

use std::io::Write;

use persist::search::{Search, SearchCursor};
use persist::{Role, ThreadId};
use serde_json::json;

use super::{Scope, stdout};
use crate::error::CliResult;
use crate::jsonl::write_line;
use crate::store::Store;
use crate::text::{clip, format_time, shell_word, table};

/// What `search` asks.
#[derive(Debug)]
pub(crate) struct SearchOptions {
    /// The query (see `persist::search::SearchQuery` for its rules).
    pub(crate) query: String,
    /// Only this thread.
    pub(crate) thread: Option<ThreadId>,
    /// Only these roles.
    pub(crate) roles: Vec<Role>,
    /// Page size.
    pub(crate) limit: u32,
    /// Where the page starts (a cursor printed by an earlier page).
    pub(crate) after: Option<SearchCursor>,
}

/// `persist search`: one page of hits of the scope (a tenant, the threads without one, or every
/// tenant's with `--across-tenants`), with the cursor of the next page. Through the keys when they
/// are given: a store they seal holds no text to find, and the layer says so.
pub(crate) async fn search(store: &Store, scope: &Scope, options: SearchOptions, json: bool) -> CliResult {
    let context = if scope.across_tenants { persist::Context::new() } else { scope.context() };
    let mut query = Search::new(options.query)
        .across_tenants(scope.across_tenants)
        .with_roles(options.roles)
        .with_limit(options.limit)
        .with_cursor(options.after)
        .with_context(context);
    if let Some(thread) = options.thread {
        query = query.in_thread(thread);
    }
    let page = store.keyed().search(query).await?;
    let next = page.next_cursor.filter(|_| page.has_more);
    let mut out = stdout();
    if json {
        for hit in &page.items {
            let mut line = serde_json::to_value(hit)?;
            line["kind"] = json!("hit");
            line["marked"] = json!(hit.snippet.marked("**", "**"));
            write_line(&mut out, &line)?;
        }
        if let Some(cursor) = &next {
            write_line(&mut out, &json!({ "kind": "next_cursor", "cursor": cursor.to_string() }))?;
        }
    } else if page.items.is_empty() {
        writeln!(out, "no messages found")?;
    } else {
        let rows: Vec<Vec<String>> = page
            .items
            .iter()
            .map(|hit| {
                vec![
                    hit.thread_id.to_string(),
                    hit.tenant.as_ref().map_or_else(|| "-".to_owned(), ToString::to_string),
                    format!("#{}", hit.seq),
                    hit.role.to_string(),
                    format_time(hit.created_at),
                    clip(&hit.snippet.marked("**", "**").replace('\n', " "), 80),
                ]
            })
            .collect();
        out.write_all(table(&["THREAD", "TENANT", "SEQ", "ROLE", "CREATED_AT", "TEXT"], &rows).as_bytes())?;
        if let Some(cursor) = &next {
            writeln!(out, "next page: --after {}", shell_word(&cursor.to_string()))?;
        }
    }
    out.flush()?;
    Ok(())
}

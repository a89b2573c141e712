//! `move-tenant`: moves a tenant of a deployment of several shards (`persist::shard::Shards`) to
//! another shard while the app runs, through `Shards::move_tenant`.
//!
//! The store of `--url` is the deployment's directory; `--shard NAME=URL` names each shard as
//! the app names it. Every request the move sends is a transaction and each step is recorded
//! in the tenant's placement record before it runs, so a run stopped anywhere (Ctrl-C, a kill,
//! a lost connection) is finished by running the same command again.

use std::io::Write;
use std::time::Duration;

use persist::TenantId;
use persist::shard::{MoveOptions, Moved, Shards};
use serde_json::json;

use super::{RUN_AGAIN, interruptible, stdout};
use crate::error::{CliError, CliResult};
use crate::jsonl::write_line;
use crate::store::{Mode, Store, redact};

/// What `move-tenant` was asked.
#[derive(Debug)]
pub(crate) struct MoveRequest {
    /// The tenant (`None`: the threads without a tenant).
    pub(crate) tenant: Option<TenantId>,
    /// The shard to move it to: a name, or the URL given for one.
    pub(crate) to: String,
    /// Each shard as `NAME=URL`.
    pub(crate) shards: Vec<String>,
    /// The app's placement TTL.
    pub(crate) placement_ttl: Duration,
    /// The longest time writes are refused.
    pub(crate) max_switch: Duration,
    /// How long a run's claim outlives it.
    pub(crate) claim_ttl: Duration,
}

/// The shards of `--shard`: each `NAME=URL`, names given once.
fn shard_list(given: &[String]) -> CliResult<Vec<(String, String)>> {
    let mut shards: Vec<(String, String)> = Vec::new();
    for entry in given {
        let Some((name, url)) = entry.split_once('=').filter(|(name, url)| !name.is_empty() && !url.is_empty()) else {
            return Err(CliError::usage(format!("invalid --shard `{}`: expected NAME=URL", redact(entry))));
        };
        if shards.iter().any(|(named, _)| named == name) {
            return Err(CliError::usage(format!("--shard names {name:?} twice")));
        }
        shards.push((name.to_owned(), url.to_owned()));
    }
    if shards.is_empty() {
        return Err(CliError::usage("no shards: pass --shard NAME=URL for each (or set PERSIST_SHARDS)"));
    }
    Ok(shards)
}

/// `persist --url DIRECTORY move-tenant TENANT --shard NAME=URL … --to NAME`.
pub(crate) async fn move_tenant(directory_url: &str, request: MoveRequest, json: bool) -> CliResult {
    let listed = shard_list(&request.shards)?;
    let to = match listed.iter().find(|(name, url)| *name == request.to || *url == request.to) {
        Some((name, _)) => name.clone(),
        None => {
            return Err(CliError::usage(format!("--to {}: no --shard has that name or URL", redact(&request.to))));
        }
    };
    let mut opened = vec![Store::open(directory_url, Mode::Existing).await?];
    for (name, url) in &listed {
        // The shard moved to may be new: a SQLite file is created.
        let mode = if *name == to { Mode::CreateIfMissing } else { Mode::Existing };
        match Store::open(url, mode).await {
            Ok(store) => opened.push(store),
            Err(error) => {
                close(&opened).await;
                return Err(CliError::failed(format!("shard {name:?}: {error}")));
            }
        }
    }
    let result = run(&opened, &listed, &to, &request, json).await;
    close(&opened).await;
    result
}

async fn close(stores: &[Store]) {
    for store in stores {
        store.close().await;
    }
}

async fn run(opened: &[Store], listed: &[(String, String)], to: &str, request: &MoveRequest, json: bool) -> CliResult {
    // Values as stored: sealed ones are carried sealed, as the app's layer wrote them.
    let mut builder = Shards::builder(opened[0].pipeline.clone()).placement_ttl(request.placement_ttl);
    for ((name, _), store) in listed.iter().zip(&opened[1..]) {
        builder = builder.shard(name, store.pipeline.clone());
    }
    let shards = builder.build()?;
    let options = MoveOptions::new().max_switch(request.max_switch).claim_ttl(request.claim_ttl);
    let tenant = request.tenant.as_ref();
    let moved = interruptible(RUN_AGAIN, async { Ok(shards.move_tenant(tenant, to, options).await?) }).await?;
    report(tenant, &moved, json)
}

fn report(tenant: Option<&TenantId>, moved: &Moved, json: bool) -> CliResult {
    let who = tenant.map_or_else(|| "the threads without a tenant".to_owned(), |tenant| format!("tenant {tenant}"));
    let mut out = stdout();
    if json {
        let report = json!({
            "tenant": tenant.map(TenantId::as_str),
            "from": moved.from,
            "to": moved.to,
            "already": moved.already,
            "copied": moved.copied,
            "passes": moved.passes,
            "switches": moved.switches,
            "refused_ms": moved.refused_for.map(|refused| refused.as_millis() as u64),
            "carried": moved.carried,
            "erased": moved.erased,
        });
        write_line(&mut out, &report)?;
    } else if moved.already {
        writeln!(out, "{who} is on shard {:?} already", moved.to)?;
    } else {
        writeln!(out, "moved {who} from shard {:?} to {:?}", moved.from, moved.to)?;
        writeln!(out, "copied {} threads ({} copying passes, then the switch)", moved.copied, moved.passes)?;
        if let Some(refused) = moved.refused_for {
            writeln!(out, "writes refused for {} ms ({} switches)", refused.as_millis(), moved.switches)?;
        }
        writeln!(
            out,
            "verified against the old shard: {} threads written there late carried over, {} erased from it",
            moved.carried, moved.erased
        )?;
    }
    out.flush()?;
    Ok(())
}

//! An agent host's loop with session bindings: resolve, then resume or start fresh (telling the
//! user why), and bind only once the provider confirmed the session.
//!
//! Run: `cargo run --example agent_loop`

use persist::memory::MemoryBackend;
use persist::session::{Bind, ResetSession, Resolution, Resolve};
use persist::{AgentId, Pipeline, ProviderId, RuntimeId, SessionId, ThreadId};

/// Stands in for a provider CLI: resumes a session or starts one, and reports its id.
fn run_provider(resume: Option<&SessionId>, turn: usize) -> SessionId {
    match resume {
        Some(id) => id.clone(),
        None => SessionId::new(format!("sess-{turn}")).unwrap(),
    }
}

#[tokio::main]
async fn main() -> Result<(), persist::PersistError> {
    let store = Pipeline::new(MemoryBackend::new());
    let (agent, thread) = (AgentId::new("support-bot")?, ThreadId::new("chat-42")?);
    let provider = ProviderId::new("claude-cli")?;
    let runtimes = ["host-a", "host-a", "host-b", "host-b"];

    for (turn, runtime) in runtimes.iter().enumerate() {
        if turn == 3 {
            store.reset_session(ResetSession::new(agent.clone(), thread.clone())).await?;
            println!("(the user asked to start over)");
        }
        let runtime = RuntimeId::new(*runtime)?;
        let ask = Resolve::new(agent.clone(), thread.clone(), provider.clone()).with_runtime(runtime.clone());
        let (session, work_dir) = match store.resolve(ask).await? {
            Resolution::Resume(binding) => {
                println!("turn {turn} on {runtime}: resuming {}", binding.session_id);
                (run_provider(Some(&binding.session_id), turn), binding.work_dir)
            }
            Resolution::Fresh { reason, work_dir } => {
                println!("turn {turn} on {runtime}: fresh ({reason}) -> tell the user: {}", reason.user_message());
                (run_provider(None, turn), work_dir)
            }
            // A kind of resolution this host does not know yet: the safe answer is a new session.
            _ => (run_provider(None, turn), None),
        };
        // The provider confirmed the session: only now is it bound.
        let work_dir = work_dir.unwrap_or_else(|| "/srv/agents/chat-42".to_owned());
        store
            .bind(
                Bind::new(agent.clone(), thread.clone(), session, provider.clone())
                    .with_runtime(runtime)
                    .with_work_dir(work_dir),
            )
            .await?;
    }
    Ok(())
}

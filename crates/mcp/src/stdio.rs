//! [`McpServer::serve_stdio`] and [`McpServer::serve_streams`]: MCP over a pair of byte streams,
//! one JSON-RPC message a line (MCP's stdio transport).
//!
//! rmcp's service holds the session: the `initialize` handshake, and every request and
//! notification, its checks and errors unchanged. Once the client has said it is initialized
//! (`notifications/initialized`), a plain tool call (see [`PlainCall`]) is answered here
//! directly, on a task of its own, with its answer written once; rmcp writes a tool's answer
//! three times. The answers of both are written to the output a whole line at a time, in the
//! order they are ready, as JSON-RPC allows.

use std::io;

use serde::Deserialize;
use tokio::io::{AsyncBufReadExt as _, AsyncRead, AsyncWrite, AsyncWriteExt as _, BufReader, BufWriter};
use tokio::sync::mpsc;

use crate::McpServer;
use crate::plain::PlainCall;

/// The bytes in flight on the in-process pipe between the client's lines and rmcp's service.
const RMCP_PIPE: usize = 64 * 1024;

impl McpServer {
    /// Serves one client over this process's standard input and output until it closes them
    /// (what a desktop agent's configuration launches). Nothing else may write to standard
    /// output: logs go to standard error.
    ///
    /// # Errors
    ///
    /// The transport's, when the client's first message is not an MCP initialization or the
    /// streams fail.
    pub async fn serve_stdio(self) -> io::Result<()> {
        let (input, output) = rmcp::transport::stdio_pipes();
        self.serve_streams(input, output).await
    }

    /// Serves one client over `input` and `output`, one JSON-RPC message a line, until the
    /// client closes `input` and every answer is written: [`serve_stdio`](Self::serve_stdio)
    /// over any pair of streams (a socket, a pipe to a child, an in-process pipe in a test).
    ///
    /// # Errors
    ///
    /// As [`serve_stdio`](Self::serve_stdio)'s.
    pub async fn serve_streams<R, W>(self, input: R, output: W) -> io::Result<()>
    where
        R: AsyncRead + Send + Unpin + 'static,
        W: AsyncWrite + Send + Unpin + 'static,
    {
        use rmcp::ServiceExt as _;
        let (ours, rmcps) = tokio::io::duplex(RMCP_PIPE);
        let (from_rmcp, to_rmcp) = tokio::io::split(ours);
        let (lines, to_write) = mpsc::unbounded_channel();
        let writer = tokio::spawn(write(to_write, output));
        let relay = tokio::spawn(relay(from_rmcp, lines.clone()));
        let reader = tokio::spawn(read(self.clone(), input, to_rmcp, lines));
        let served = async {
            let running = self.serve(rmcps).await.map_err(io::Error::other)?;
            running.waiting().await.map_err(io::Error::other)?;
            Ok(())
        }
        .await;
        // rmcp's service has ended: the client closed its input (the reader has ended too), or
        // the session failed, and nothing more is read. The answers under way are written.
        reader.abort();
        let _ = relay.await;
        let written = writer.await.unwrap_or_else(|joined| Err(io::Error::other(joined)));
        served.and(written)
    }
}

/// A message's method, when it has one: until the client says it is initialized, every
/// call is rmcp's.
#[derive(Deserialize)]
struct Method {
    method: Option<String>,
}

/// Reads the client's lines until its input closes: a plain tool call once the client is
/// initialized is answered on a task of its own, anything else is rmcp's.
async fn read<R, P>(server: McpServer, input: R, mut to_rmcp: P, lines: mpsc::UnboundedSender<Vec<u8>>)
where
    R: AsyncRead + Unpin,
    P: AsyncWrite + Unpin,
{
    let mut input = BufReader::new(input);
    let mut initialized = false;
    let mut line = Vec::new();
    loop {
        line.clear();
        match input.read_until(b'\n', &mut line).await {
            Ok(0) => break,
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(%error, "reading the client's input failed");
                break;
            }
        }
        if initialized {
            if let Some(call) = PlainCall::parse(&line) {
                let (server, lines) = (server.clone(), lines.clone());
                tokio::spawn(async move {
                    let mut answer = call.answer(&server, server.own_context()).await;
                    answer.push(b'\n');
                    // Only a writer that failed has gone: its error ends the serving.
                    let _ = lines.send(answer);
                });
                continue;
            }
        } else {
            initialized = serde_json::from_slice::<Method>(&line)
                .is_ok_and(|message| message.method.as_deref() == Some("notifications/initialized"));
        }
        if to_rmcp.write_all(&line).await.is_err() {
            // rmcp's service has ended.
            return;
        }
    }
    let _ = to_rmcp.shutdown().await;
}

/// rmcp's lines, each whole, to the writer.
async fn relay<R: AsyncRead + Unpin>(from_rmcp: R, lines: mpsc::UnboundedSender<Vec<u8>>) {
    let mut from_rmcp = BufReader::new(from_rmcp);
    loop {
        let mut line = Vec::new();
        match from_rmcp.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) if lines.send(line).is_ok() => {}
            Ok(_) => return,
        }
    }
}

/// Writes every line sent until every sender has gone, flushing when none is waiting.
async fn write<W: AsyncWrite + Unpin>(mut lines: mpsc::UnboundedReceiver<Vec<u8>>, output: W) -> io::Result<()> {
    let mut output = BufWriter::new(output);
    while let Some(line) = lines.recv().await {
        output.write_all(&line).await?;
        while let Ok(line) = lines.try_recv() {
            output.write_all(&line).await?;
        }
        output.flush().await?;
    }
    Ok(())
}

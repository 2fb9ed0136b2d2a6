//! The echo-limit server: the least a tokio server must do for this protocol
//! (read NDJSON lines, parse each with serde_json, answer
//! `{"jsonrpc":"2.0","id":ID,"result":{}}`), the best case the bench compares
//! `portcullis serve` with. Run as its own process by the hidden
//! `portcullis-bench echo-server`, like the server.
//!
//! Per connection one task reads lines from a buffered reader and writes the
//! answers into a buffered writer that is flushed when no further input is
//! already buffered, so pipelined requests are answered in one write.

use std::io::Write;
use std::process::ExitCode;

use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{TcpListener, TcpStream};

use super::EchoServerArgs;

/// Longest line accepted, as `serve`'s default `max_frame_bytes`.
const MAX_LINE: usize = 131_072;

/// The part of a request the echo server reads: its `id`, kept raw so it is
/// echoed byte for byte. Every other member is still parsed (validated) and skipped.
#[derive(Deserialize)]
struct Request<'a> {
    /// The request id; absent for a notification.
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
}

/// `portcullis-bench echo-server`: binds, prints `listening on ADDR` to `out`,
/// and serves until killed (or until stdin closes, with `--stop-on-stdin-eof`).
pub fn run_cli(args: &EchoServerArgs, out: &mut dyn Write) -> ExitCode {
    if !args.listen.ip().is_loopback() {
        let _ = writeln!(std::io::stderr(), "error: the echo server listens on loopback addresses only");
        return ExitCode::FAILURE;
    }
    let threads = args.threads.map_or_else(super::cores, |n| usize::try_from(n).unwrap_or(1));
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "error: cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let listener = match runtime.block_on(TcpListener::bind(args.listen)) {
        Ok(listener) => listener,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "error: cannot listen on {}: {e}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    let addr = listener.local_addr().unwrap_or(args.listen);
    let _ = writeln!(out, "listening on {addr}");
    let _ = out.flush();
    if args.stop_on_stdin_eof {
        let _ = std::thread::Builder::new().name("stdin-eof".into()).spawn(|| {
            let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
            std::process::exit(0);
        });
    }
    match runtime.block_on(serve(listener)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Accepts connections forever, one task each.
///
/// # Errors
/// Never returns but for an accept error that is not about one connection.
pub async fn serve(listener: TcpListener) -> std::io::Result<()> {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(connection(stream));
            }
            // Out of file descriptors and the like: wait a little, go on.
            Err(e) if is_transient(&e) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
            Err(e) => return Err(e),
        }
    }
}

fn is_transient(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionReset, Interrupted, WouldBlock};
    matches!(e.kind(), ConnectionAborted | ConnectionReset | Interrupted | WouldBlock) || e.raw_os_error().is_some()
}

/// Serves one connection until it closes.
async fn connection(stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let (read, write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut writer = BufWriter::new(write);
    let mut line = Vec::with_capacity(256);
    loop {
        line.clear();
        match (&mut reader).take(MAX_LINE as u64 + 1).read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if line.len() > MAX_LINE {
            return;
        }
        let answer = answer(&line);
        if let Some(answer) = answer
            && writer.write_all(answer.as_bytes()).await.is_err()
        {
            return;
        }
        if reader.buffer().is_empty() && writer.flush().await.is_err() {
            return;
        }
    }
}

/// The answer line (with its `\n`) to one request line; `None` for a blank
/// line or a notification.
fn answer(line: &[u8]) -> Option<String> {
    let trimmed = line.trim_ascii();
    if trimmed.is_empty() {
        return None;
    }
    match serde_json::from_slice::<Request<'_>>(trimmed) {
        Ok(Request { id: Some(id) }) => Some(format!("{{\"jsonrpc\":\"2.0\",\"id\":{},\"result\":{{}}}}\n", id.get())),
        Ok(Request { id: None }) => None,
        Err(_) => Some(
            "{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32700,\"message\":\"parse error\"}}\n".to_owned(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;

    #[test]
    fn answers_echo_the_raw_id() {
        let line = br#"{"jsonrpc":"2.0","id":"a b","method":"ping","params":{}}"#;
        assert_eq!(answer(line).as_deref(), Some("{\"jsonrpc\":\"2.0\",\"id\":\"a b\",\"result\":{}}\n"));
        assert_eq!(
            answer(b"{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"x\"}\r\n").as_deref(),
            Some("{\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{}}\n")
        );
    }

    #[test]
    fn notifications_and_blank_lines_get_nothing_and_garbage_a_parse_error() {
        assert_eq!(answer(b"{\"jsonrpc\":\"2.0\",\"method\":\"x\"}"), None);
        assert_eq!(answer(b"  \r\n"), None);
        assert!(answer(b"{nope").is_some_and(|a| a.contains("-32700")));
    }

    #[tokio::test]
    async fn serves_over_tcp() -> std::io::Result<()> {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let addr = listener.local_addr()?;
        let server = tokio::spawn(serve(listener));
        let mut stream = TcpStream::connect(addr).await?;
        stream.write_all(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\n{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"ping\"}\n").await?;
        let mut reader = BufReader::new(stream);
        let mut first = String::new();
        let mut second = String::new();
        let read = async {
            reader.read_line(&mut first).await?;
            reader.read_line(&mut second).await
        };
        tokio::time::timeout(std::time::Duration::from_secs(10), read).await.map_err(std::io::Error::other)??;
        assert_eq!(first, "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n");
        assert_eq!(second, "{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{}}\n");
        server.abort();
        Ok(())
    }
}

//! `portcullis admin` (docs/cli.md, docs/operations.md): the admin API of a
//! running server from a terminal, over hyper's HTTP/1.1 client (the crate
//! the admin listener serves with; plain HTTP, so no TLS stack).

use std::io::Write;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use portcullis_admin::{ApiError, BroadcastResult, KickResult, SessionInfo};
use serde_json::{Value, json};

use crate::cli::{AdminAction, AdminArgs};

/// How long one admin request may take.
const TIMEOUT: Duration = Duration::from_secs(15);

/// Why `portcullis admin` failed; each prints as one line.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdminError {
    /// The listener could not be reached or the exchange failed.
    #[error("cannot reach the admin listener at {addr}: {reason}")]
    Unreachable {
        /// The address.
        addr: String,
        /// What failed.
        reason: String,
    },
    /// `401`: no token, or the wrong one.
    #[error(
        "the admin listener refused the token (401): give the server's --admin-token or set PORTCULLIS_ADMIN_TOKEN"
    )]
    Unauthorized,
    /// Another non-success status.
    #[error("the admin listener answered {status}: {message}")]
    Status {
        /// The status.
        status: StatusCode,
        /// Its `error` text.
        message: String,
    },
    /// The answer was not what the API describes.
    #[error("unexpected answer from the admin listener: {0}")]
    Unexpected(String),
    /// `kick`: the account has no session.
    #[error("no session of {0} to kick")]
    NoSuchSession(String),
    /// `broadcast`: the params are not a JSON object.
    #[error("the params of broadcast must be a JSON object: {0}")]
    BadParams(String),
    /// Writing the output failed.
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
}

/// Runs one `portcullis admin` action, printing its result to `out`.
pub fn run(args: &AdminArgs, out: &mut impl Write) -> Result<(), AdminError> {
    let addr = args.admin.trim_start_matches("http://").trim_end_matches('/').to_owned();
    let token = args.admin_token.as_deref().filter(|t| !t.is_empty());
    let call = |method: Method, path: &str, body: Option<Value>| request(&addr, token, method, path, body);
    match &args.action {
        AdminAction::Who => {
            let body = call(Method::GET, "/api/sessions", None)?;
            let list: Vec<SessionInfo> =
                serde_json::from_slice(&body).map_err(|e| AdminError::Unexpected(e.to_string()))?;
            write_table(out, &list)?;
        }
        AdminAction::Kick { account } => {
            let body = call(Method::POST, "/api/kick", Some(json!({ "account": account })))?;
            let result: KickResult =
                serde_json::from_slice(&body).map_err(|e| AdminError::Unexpected(e.to_string()))?;
            if !result.kicked {
                return Err(AdminError::NoSuchSession(account.clone()));
            }
            writeln!(out, "kicked {account}")?;
        }
        AdminAction::Broadcast { method, json: params } => {
            let params: Value = serde_json::from_str(params).map_err(|e| AdminError::BadParams(e.to_string()))?;
            if !params.is_object() {
                return Err(AdminError::BadParams(format!("got {params}")));
            }
            let body = call(Method::POST, "/api/broadcast", Some(json!({ "method": method, "params": params })))?;
            let result: BroadcastResult =
                serde_json::from_slice(&body).map_err(|e| AdminError::Unexpected(e.to_string()))?;
            let plural = if result.delivered == 1 { "" } else { "s" };
            writeln!(out, "{method} delivered to {} session{plural}", result.delivered)?;
        }
        AdminAction::Shutdown => {
            call(Method::POST, "/api/shutdown", None)?;
            writeln!(out, "shutdown started")?;
        }
    }
    Ok(())
}

/// The session list as an aligned table (`who`).
pub fn write_table(out: &mut impl Write, list: &[SessionInfo]) -> std::io::Result<()> {
    let header = ["CONN", "ACCOUNT", "STATE", "TRANSPORT", "PEER", "CONNECTED"].map(str::to_owned);
    let rows: Vec<[String; 6]> = list
        .iter()
        .map(|s| {
            [
                s.conn.to_string(),
                s.account.clone().unwrap_or_else(|| "-".to_owned()),
                s.state.clone(),
                s.transport.clone(),
                s.peer.clone(),
                format_age(s.connected_ms),
            ]
        })
        .collect();
    let mut widths = header.clone().map(|h| h.len());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = row.iter().zip(widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
        writeln!(out, "{}", line.join("  ").trim_end())?;
    }
    Ok(())
}

/// `3h04m05s`, `4m05s`, `5s`.
fn format_age(ms: u64) -> String {
    let s = ms / 1000;
    let (h, m, s) = (s / 3600, s / 60 % 60, s % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s:02}s"),
        _ => format!("{h}h{m:02}m{s:02}s"),
    }
}

/// One request; the body of a `2xx` answer, or the error it stands for.
fn request(
    addr: &str,
    token: Option<&str>,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Result<Vec<u8>, AdminError> {
    let unreachable = |reason: String| AdminError::Unreachable { addr: addr.to_owned(), reason };
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| unreachable(e.to_string()))?;
    let exchange = async {
        let stream = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        let mut builder = Request::builder().method(method).uri(path).header(hyper::header::HOST, addr);
        if let Some(token) = token {
            builder = builder.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let payload = match &body {
            Some(body) => {
                builder = builder.header(hyper::header::CONTENT_TYPE, "application/json");
                Bytes::from(body.to_string())
            }
            None => Bytes::new(),
        };
        let request = builder.body(Full::new(payload)).map_err(|e| e.to_string())?;
        let response = sender.send_request(request).await.map_err(|e| e.to_string())?;
        let status = response.status();
        let bytes = response.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok::<_, String>((status, bytes.to_vec()))
    };
    let (status, bytes) = match runtime.block_on(async { tokio::time::timeout(TIMEOUT, exchange).await }) {
        Ok(Ok(answer)) => answer,
        Ok(Err(reason)) => return Err(unreachable(reason)),
        Err(_) => return Err(unreachable(format!("no answer within {}s", TIMEOUT.as_secs()))),
    };
    if status == StatusCode::UNAUTHORIZED {
        return Err(AdminError::Unauthorized);
    }
    if !status.is_success() {
        let message = serde_json::from_slice::<ApiError>(&bytes)
            .map(|e| e.error)
            .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).trim().to_owned());
        return Err(AdminError::Status { status, message });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_aligned() {
        let list = vec![
            SessionInfo {
                conn: 7,
                account: Some("netease1".into()),
                state: "logged_in".into(),
                transport: "tcp".into(),
                peer: "127.0.0.1:50000".into(),
                connected_ms: 65_000,
            },
            SessionInfo {
                conn: 12,
                account: None,
                state: "awaiting_login".into(),
                transport: "ws".into(),
                peer: "[::1]:4".into(),
                connected_ms: 3_723_000,
            },
        ];
        let mut out = Vec::new();
        write_table(&mut out, &list).unwrap_or_default();
        let text = String::from_utf8(out).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        let state_col = lines[0].find("STATE").unwrap_or(0);
        assert_eq!(lines[1].find("logged_in"), Some(state_col));
        assert_eq!(lines[2].find("awaiting_login"), Some(state_col));
        assert!(lines[1].ends_with("1m05s"), "{}", lines[1]);
        assert!(lines[2].ends_with("1h02m03s"), "{}", lines[2]);
        assert!(lines[2].contains(" - "), "null account is a dash: {}", lines[2]);
    }
}

//! The admin listener: hyper's HTTP/1.1 server on a one-thread tokio
//! runtime of its own, so operations traffic never competes with the
//! game's I/O threads (docs/cli.md "Admin"; the table of paths is there).

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crossbeam_channel::Sender;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use metrics_exporter_prometheus::PrometheusHandle;
use portcullis_runtime::FrameWaker;
use serde::Serialize;
use subtle::ConstantTimeEq;

use crate::api::{ApiError, BroadcastRequest, KickRequest, RESERVED_NOTIFICATIONS};
use crate::calls::{AdminAnswer, AdminCall, AdminRequest};
use crate::{AdminState, DRAINING, READY};

/// The operator console (docs/operations.md, "Console"), embedded: no build step.
pub const CONSOLE_HTML: &str = include_str!("console.html");

/// Largest accepted request body.
const MAX_BODY: usize = 64 * 1024;

/// How often histogram samples are folded into their buckets.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// How long an API call may wait for the ECS to answer.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// What every connection task shares.
pub(crate) struct Shared {
    pub(crate) token: Option<String>,
    pub(crate) calls: Sender<AdminCall>,
    pub(crate) waker: FrameWaker,
    pub(crate) state: AdminState,
    pub(crate) metrics: Option<PrometheusHandle>,
}

/// The admin thread: serves `listener` until `stop` is dropped.
pub(crate) fn run(listener: std::net::TcpListener, shared: Shared, mut stop: tokio::sync::watch::Receiver<()>) {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            bevy_log::error!(error = %e, "cannot start the admin runtime");
            return;
        }
    };
    let shared = std::sync::Arc::new(shared);
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(listener) => listener,
            Err(e) => {
                bevy_log::error!(error = %e, "cannot use the admin listener");
                return;
            }
        };
        if let Some(handle) = shared.metrics.clone() {
            // Histogram samples wait in per-handle buffers until an upkeep folds
            // them into buckets: without a scrape they would pile up.
            tokio::spawn(async move {
                let mut every = tokio::time::interval(UPKEEP_EVERY);
                loop {
                    every.tick().await;
                    handle.run_upkeep();
                }
            });
        }
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = stop.changed() => return,
            };
            let Ok((stream, _peer)) = accepted else {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            let shared = std::sync::Arc::clone(&shared);
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let shared = std::sync::Arc::clone(&shared);
                    async move { Ok::<_, Infallible>(handle(req, &shared).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(10))
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
}

type Answer = Response<Full<Bytes>>;

fn text(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Answer {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn json<T: Serialize>(status: StatusCode, value: &T) -> Answer {
    let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    text(status, "application/json", body)
}

fn error(status: StatusCode, message: &str) -> Answer {
    json(status, &ApiError { error: message.to_owned() })
}

/// Whether the request carries the token: `Authorization: Bearer TOKEN`,
/// or (for the console page only, so a browser can open it) `?token=TOKEN`.
/// Compared in constant time.
fn authorized(req: &Request<Incoming>, token: &str, allow_query: bool) -> bool {
    let expected = token.as_bytes();
    let header_ok = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|given| bool::from(given.trim().as_bytes().ct_eq(expected)));
    let query_ok = allow_query
        && req.uri().query().is_some_and(|query| {
            query
                .split('&')
                .filter_map(|pair| pair.strip_prefix("token="))
                .any(|given| bool::from(percent_decode(given).as_bytes().ct_eq(expected)))
        });
    header_ok | query_ok
}

/// `%XX` and `+` decoding of a query value (a token may hold any character).
fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match (escaped, bytes[i]) {
            (Some(b), _) => {
                out.push(b);
                i += 3;
            }
            (None, b'+') => {
                out.push(b' ');
                i += 1;
            }
            (None, b) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Sends a call to the ECS and waits for its answer.
async fn call(shared: &Shared, request: AdminRequest) -> Result<AdminAnswer, Answer> {
    let (reply, answer) = tokio::sync::oneshot::channel();
    if shared.calls.send(AdminCall { request, reply }).is_err() {
        return Err(error(StatusCode::SERVICE_UNAVAILABLE, "the server is stopping"));
    }
    shared.waker.wake();
    match tokio::time::timeout(CALL_TIMEOUT, answer).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(_)) => Err(error(StatusCode::SERVICE_UNAVAILABLE, "the server is stopping")),
        Err(_) => Err(error(StatusCode::SERVICE_UNAVAILABLE, "the server did not answer in time")),
    }
}

/// Reads a JSON body of at most [`MAX_BODY`] bytes.
async fn body<T: serde::de::DeserializeOwned>(req: Request<Incoming>) -> Result<T, Answer> {
    let bytes = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return Err(error(StatusCode::PAYLOAD_TOO_LARGE, "the body is too large (64 KiB at most)")),
    };
    serde_json::from_slice(&bytes).map_err(|e| error(StatusCode::BAD_REQUEST, &format!("bad JSON body: {e}")))
}

/// One request: the routes of docs/cli.md "Admin".
async fn handle(req: Request<Incoming>, shared: &Shared) -> Answer {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    const GET: &[Method] = &[Method::GET, Method::HEAD];
    let allowed: &[Method] = match path.as_str() {
        "/healthz" | "/readyz" | "/metrics" | "/api/sessions" | "/" => GET,
        "/api/kick" | "/api/broadcast" | "/api/shutdown" => &[Method::POST],
        _ => return error(StatusCode::NOT_FOUND, "no such path"),
    };
    match path.as_str() {
        "/healthz" if GET.contains(&method) => return text(StatusCode::OK, "text/plain; charset=utf-8", "ok"),
        "/readyz" if GET.contains(&method) => {
            return match shared.state.0.load(Ordering::Acquire) {
                READY => text(StatusCode::OK, "text/plain; charset=utf-8", "ready"),
                DRAINING => text(StatusCode::SERVICE_UNAVAILABLE, "text/plain; charset=utf-8", "shutting down"),
                _ => text(StatusCode::SERVICE_UNAVAILABLE, "text/plain; charset=utf-8", "starting"),
            };
        }
        _ => {}
    }
    if let Some(token) = &shared.token
        && !authorized(&req, token, path == "/")
    {
        let mut answer = error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token");
        answer.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return answer;
    }
    if !allowed.contains(&method) {
        let mut answer = error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed on this path");
        let allow = if allowed == GET { "GET, HEAD" } else { "POST" };
        answer.headers_mut().insert(header::ALLOW, HeaderValue::from_static(allow));
        return answer;
    }
    let result = match path.as_str() {
        "/" => Ok(text(StatusCode::OK, "text/html; charset=utf-8", CONSOLE_HTML)),
        "/metrics" => metrics(shared).await,
        "/api/sessions" => match call(shared, AdminRequest::Sessions).await {
            Ok(AdminAnswer::Sessions(list)) => Ok(json(StatusCode::OK, &list)),
            Ok(_) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, "unexpected answer")),
            Err(answer) => Err(answer),
        },
        "/api/kick" => kick(req, shared).await,
        "/api/broadcast" => broadcast(req, shared).await,
        "/api/shutdown" => match call(shared, AdminRequest::Shutdown).await {
            Ok(_) => Ok(json(StatusCode::ACCEPTED, &serde_json::json!({ "shutdown": true }))),
            Err(answer) => Err(answer),
        },
        _ => Err(error(StatusCode::NOT_FOUND, "no such path")),
    };
    result.unwrap_or_else(|answer| answer)
}

async fn metrics(shared: &Shared) -> Result<Answer, Answer> {
    call(shared, AdminRequest::Gauges).await?;
    let body = match &shared.metrics {
        Some(handle) => {
            handle.run_upkeep();
            handle.render()
        }
        None => String::new(),
    };
    Ok(text(StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", body))
}

async fn kick(req: Request<Incoming>, shared: &Shared) -> Result<Answer, Answer> {
    let request: KickRequest = body(req).await?;
    match (&request.account, request.conn) {
        (Some(_), Some(_)) | (None, None) => {
            return Err(error(StatusCode::BAD_REQUEST, r#"give exactly one of {"account":S} or {"conn":N}"#));
        }
        _ => {}
    }
    match call(shared, AdminRequest::Kick(request)).await? {
        AdminAnswer::Kick(result) => Ok(json(StatusCode::OK, &result)),
        _ => Err(error(StatusCode::INTERNAL_SERVER_ERROR, "unexpected answer")),
    }
}

async fn broadcast(req: Request<Incoming>, shared: &Shared) -> Result<Answer, Answer> {
    let BroadcastRequest { method, params } = body(req).await?;
    if method.is_empty() {
        return Err(error(StatusCode::BAD_REQUEST, "method must not be empty"));
    }
    if RESERVED_NOTIFICATIONS.contains(&method.as_str()) {
        return Err(error(StatusCode::BAD_REQUEST, &format!("{method} is reserved for the session life cycle")));
    }
    match call(shared, AdminRequest::Broadcast { method, params }).await? {
        AdminAnswer::Broadcast(result) => Ok(json(StatusCode::OK, &result)),
        _ => Err(error(StatusCode::INTERNAL_SERVER_ERROR, "unexpected answer")),
    }
}

#[cfg(test)]
mod tests {
    use super::percent_decode;

    #[test]
    fn query_values_are_percent_decoded() {
        assert_eq!(percent_decode("a%20b+c"), "a b c");
        assert_eq!(percent_decode("s3cr%2Ft"), "s3cr/t");
        assert_eq!(percent_decode("50%"), "50%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }
}

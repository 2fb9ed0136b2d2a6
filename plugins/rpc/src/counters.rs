//! `portcullis_requests_total{method,code}` (docs/operations.md): one counter
//! per registered method and answer code, through the `metrics` facade.
//!
//! ```text
//!  dispatcher / Rpc::respond ──count(method index, code)──▶ RequestCounters: Vec per method of (code, Counter)
//!                                                           first sight of a pair registers its Counter once;
//!                                                           after that an increment is one atomic add
//! ```
//!
//! Only requests (messages with an `id`) are counted, once, when answered.
//! A method the server does not have counts as `method="unknown"`, so the
//! label set stays bounded whatever clients send. Without a metrics recorder
//! installed (no admin listener) the counters are the facade's no-ops.

use bevy_ecs::prelude::*;
use metrics::Counter;
use portcullis_protocol::RpcError;

/// The metric name of the request counter.
pub const REQUESTS_TOTAL: &str = "portcullis_requests_total";

/// The `method` label of a request for a method the server does not have.
pub const UNKNOWN_METHOD: &str = "unknown";

/// A method's position in [`RpcMethods`](crate::RpcMethods) (stable once
/// registered), or [`MethodKey::UNKNOWN`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MethodKey(pub(crate) u32);

impl MethodKey {
    /// A method the server does not have.
    pub const UNKNOWN: Self = Self(u32::MAX);
}

/// The answer code label: `ok`, or the numeric JSON-RPC error code.
fn code_of(result: Result<(), &RpcError>) -> i64 {
    match result {
        Ok(()) => OK,
        Err(error) => error.code.code(),
    }
}

/// Stands for `ok` among the numeric codes (no JSON-RPC code is this).
const OK: i64 = i64::MIN;

/// The request counters, registered on first use. Inserted by `RpcPlugin`;
/// method names are filed by `add_rpc_method`.
#[derive(Resource, Default)]
pub struct RequestCounters {
    /// Index = method index: its name and a short list of (code, counter).
    methods: Vec<(String, Vec<(i64, Counter)>)>,
    unknown: Vec<(i64, Counter)>,
}

impl RequestCounters {
    /// Files the name of the method `key`.
    pub(crate) fn name(&mut self, key: MethodKey, name: &str) {
        let index = key.0 as usize;
        if key == MethodKey::UNKNOWN {
            return;
        }
        if self.methods.len() <= index {
            self.methods.resize_with(index + 1, Default::default);
        }
        if self.methods[index].0 != name {
            self.methods[index] = (name.to_owned(), Vec::new());
        }
    }

    /// Whether the method `key` has its name filed (methods added while the
    /// server runs get it at their first answer).
    pub(crate) fn knows(&self, key: MethodKey) -> bool {
        key == MethodKey::UNKNOWN || self.methods.get(key.0 as usize).is_some_and(|(name, _)| !name.is_empty())
    }

    /// Counts one answered request of `method` with `result`'s code.
    pub(crate) fn count(&mut self, method: MethodKey, result: Result<(), &RpcError>) {
        self.count_code(method, code_of(result));
    }

    /// Counts one answered request of `method`: `None` for a result, else the
    /// numeric error code (an error relayed as it was written, e.g. by a
    /// backend service).
    pub(crate) fn count_error_code(&mut self, method: MethodKey, code: Option<i64>) {
        self.count_code(method, code.unwrap_or(OK));
    }

    fn count_code(&mut self, method: MethodKey, code: i64) {
        let (name, list) = match self.methods.get_mut(method.0 as usize) {
            Some((name, list)) if method != MethodKey::UNKNOWN => (name.as_str(), list),
            _ => (UNKNOWN_METHOD, &mut self.unknown),
        };
        if let Some((_, counter)) = list.iter().find(|(c, _)| *c == code) {
            counter.increment(1);
            return;
        }
        let code_label = if code == OK { "ok".to_owned() } else { code.to_string() };
        let counter = metrics::counter!(REQUESTS_TOTAL, "method" => name.to_owned(), "code" => code_label);
        counter.increment(1);
        list.push((code, counter));
    }
}

/// The metric name of the disconnect counter.
pub const DISCONNECTS_TOTAL: &str = "portcullis_disconnects_total";

/// Counts one `disconnected {reason}` sent (`portcullis_disconnects_total{reason}`).
/// The handles are registered once per process, at the first disconnect: the
/// recorder must be installed before (the admin plugin does it when built).
pub fn count_disconnect(reason: portcullis_protocol::DisconnectReason) {
    if let Some(counter) = disconnect_counters().get(reason.index()) {
        counter.increment(1);
    }
}

/// Registers the disconnect counters now (so they are exported at 0 before
/// the first disconnect); later calls do nothing.
pub fn register_disconnect_counters() {
    disconnect_counters();
}

fn disconnect_counters() -> &'static [Counter] {
    static COUNTERS: std::sync::OnceLock<Vec<Counter>> = std::sync::OnceLock::new();
    COUNTERS.get_or_init(|| {
        portcullis_protocol::DisconnectReason::ALL
            .iter()
            .map(|reason| metrics::counter!(DISCONNECTS_TOTAL, "reason" => reason.as_str()))
            .collect()
    })
}

/// Counts one connection whose client ended its stream
/// (`portcullis_disconnects_total{reason="peer_closed"}`).
pub fn count_peer_closed() {
    static COUNTER: std::sync::OnceLock<Counter> = std::sync::OnceLock::new();
    COUNTER.get_or_init(|| metrics::counter!(DISCONNECTS_TOTAL, "reason" => "peer_closed")).increment(1);
}

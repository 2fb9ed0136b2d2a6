//! The process's Prometheus recorder (docs/operations.md, "Metrics").

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Buckets of `portcullis_frame_seconds`, seconds: 50 µs to 1 s.
pub const FRAME_BUCKETS: [f64; 14] =
    [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0];

/// Buckets of `portcullis_store_commit_seconds`, seconds: 100 µs to 5 s.
pub const COMMIT_BUCKETS: [f64; 13] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

/// Buckets of `portcullis_store_batch_size`, requests per commit.
pub const BATCH_BUCKETS: [f64; 11] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the Prometheus recorder as the process's `metrics` recorder,
/// once; later calls return the same handle. `None` when another recorder
/// was installed first (then `/metrics` is empty of Portcullis series).
///
/// Call it before the plugins register their counter handles: the server
/// app does it before opening the store and adding any plugin
/// (`portcullis::app::build_server_app`), and [`AdminPlugin`](crate::AdminPlugin)
/// does it when built. A process without it records nothing: every handle
/// is the facade's no-op.
pub fn install_recorder() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full("portcullis_frame_seconds".into()), &FRAME_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Full("portcullis_store_commit_seconds".into()), &COMMIT_BUCKETS)
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Full("portcullis_store_batch_size".into()), &BATCH_BUCKETS)
                });
            let builder = match builder {
                Ok(builder) => builder,
                Err(e) => {
                    bevy_log::error!(error = %e, "cannot configure the metrics recorder");
                    return None;
                }
            };
            match builder.install_recorder() {
                Ok(handle) => {
                    describe();
                    Some(handle)
                }
                Err(e) => {
                    bevy_log::warn!(error = %e, "another metrics recorder is installed; /metrics has no Portcullis series");
                    None
                }
            }
        })
        .clone()
}

/// The installed recorder's handle, if [`install_recorder`] installed one.
pub fn recorder_handle() -> Option<PrometheusHandle> {
    HANDLE.get().cloned().flatten()
}

/// The `# HELP` lines of every series (docs/operations.md explains each).
fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_gauge!("portcullis_connections", "Open client connections, by transport (tcp, ws).");
    describe_gauge!("portcullis_sessions", "Connections by session state.");
    describe_counter!("portcullis_logins_total", "Answered login requests, by result.");
    describe_counter!("portcullis_kicks_total", "Sessions kicked, by reason.");
    describe_counter!(
        "portcullis_disconnects_total",
        "Connections ended: disconnected reasons sent by the server, peer_closed, transport_error, aborted."
    );
    describe_counter!(
        "portcullis_requests_total",
        "Answered JSON-RPC requests, by method and code (ok or the error code)."
    );
    describe_counter!(
        "portcullis_userdata_saves_total",
        "User data versions written (client saves and server-side writes)."
    );
    describe_histogram!("portcullis_frame_seconds", Unit::Seconds, "Duration of one frame of the Main schedule.");
    describe_histogram!("portcullis_store_commit_seconds", Unit::Seconds, "Duration of one store transaction commit.");
    describe_histogram!(
        "portcullis_store_batch_size",
        Unit::Count,
        "Write requests per store transaction (group commit)."
    );
    describe_gauge!("portcullis_store_queue_depth", "Requests waiting for the store thread.");
}

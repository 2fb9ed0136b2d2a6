//! portcullis_accounts: the account methods of docs/protocol.md §4 —
//! `login`, `register`, `change_password` — and login throttling per peer
//! address (§6, "Login throttling"), built on the public API of
//! `portcullis_session`.
//!
//! ```text
//!  RpcSystems::Dispatch ── session gate ── methods.rs: login / register / change_password
//!      token login: answered at once from the Token component
//!      password: LoginThrottle (RATE_LIMITED) ──SessionCtx::submit::<AccountOp>──▶ store thread (argon2)
//!  SessionSystems::Store ── replies.rs: take_store_replies::<AccountOp>
//!      verified ──▶ SessionCtx::complete_login (session: token, takeover §6)
//!      INVALID_CREDENTIALS ──▶ LoginThrottle::record_failure, answered
//!  SessionSystems::Timers ── LoginThrottle::prune
//! ```
//!
//! Session owns the transitions; this crate only decides when a login's
//! credentials are good and answers `register` and `change_password`.
//! A reply to a connection that closed while its password was checked is
//! still applied: a failed password still counts for throttling.
#![forbid(unsafe_code)]

mod methods;
mod replies;
mod throttle;

use std::time::Duration;

use bevy_app::prelude::*;
use bevy_ecs::prelude::*;
use portcullis_protocol::method;
use portcullis_rpc::{Access, RpcAppExt};
use portcullis_session::SessionSystems;

pub use methods::*;
pub use portcullis_protocol::{ChangePasswordParams, LoginResult, RegisterParams, RegisterResult};
pub use replies::*;
pub use throttle::*;

/// Limits of the account methods (docs/cli.md). Inserted as a resource by
/// [`AccountsPlugin`]; read-only.
#[derive(Resource, Debug, Clone)]
pub struct AccountsConfig {
    /// Failed password logins per peer address within the window (`--login-fail-limit`).
    pub login_fail_limit: u32,
    /// The window of the login throttle (`--login-fail-window`).
    pub login_fail_window: Duration,
}

impl Default for AccountsConfig {
    fn default() -> Self {
        Self { login_fail_limit: 5, login_fail_window: Duration::from_secs(300) }
    }
}

/// The accounts plugin: registers `login`, `register` and `change_password`
/// (docs/protocol.md §4) and applies their store replies. Needs
/// `SessionPlugin` (add it after it).
#[derive(Default)]
pub struct AccountsPlugin {
    /// Throttling limits.
    pub config: AccountsConfig,
}

impl Plugin for AccountsPlugin {
    fn build(&self, app: &mut App) {
        app.insert_resource(self.config.clone())
            .init_resource::<LoginThrottle>()
            .init_resource::<LoginCounters>()
            .add_observer(|_: On<portcullis_session::LoggedIn>, counters: Res<LoginCounters>| counters.ok.increment(1))
            .add_systems(PreUpdate, apply_account_replies.in_set(SessionSystems::Store))
            .add_systems(PreUpdate, prune_login_throttle.in_set(SessionSystems::Timers))
            .add_rpc_method(method::LOGIN, Access::Public, login)
            .add_rpc_method(method::REGISTER, Access::Public, register)
            .add_rpc_method(method::CHANGE_PASSWORD, Access::LoggedIn, change_password);
    }
}

/// `portcullis_logins_total{result}` (docs/operations.md): answered `login`
/// requests by result, `ok` (a password login once its session is live, or
/// a token login), `invalid_credentials`, `token_invalid` and `throttled`
/// (`RATE_LIMITED` by the login throttle). Handles registered once, when
/// the plugin is built (the recorder must be installed before).
#[derive(Resource)]
pub struct LoginCounters {
    /// `result="ok"`.
    pub ok: metrics::Counter,
    /// `result="invalid_credentials"`.
    pub invalid_credentials: metrics::Counter,
    /// `result="token_invalid"`.
    pub token_invalid: metrics::Counter,
    /// `result="throttled"`.
    pub throttled: metrics::Counter,
}

impl Default for LoginCounters {
    fn default() -> Self {
        let name = "portcullis_logins_total";
        Self {
            ok: metrics::counter!(name, "result" => "ok"),
            invalid_credentials: metrics::counter!(name, "result" => "invalid_credentials"),
            token_invalid: metrics::counter!(name, "result" => "token_invalid"),
            throttled: metrics::counter!(name, "result" => "throttled"),
        }
    }
}

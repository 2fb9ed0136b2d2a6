//! A tiny arena game on Portcullis: `cargo run --example arena [ADDR]`
//! (default `127.0.0.1:7777`, `--listen ADDR` works too).
//!
//! Log in as a demo account (`netease1`, `netease2`, `netease3`, password
//! `123`; accounts live in memory only), then `move {"token","dx","dy"}` and
//! `attack {"token","target":ACCOUNT}`; every player receives
//! `arena_state` ten times a second. The game logic is in `game.rs`; its
//! system-level tests are in `tests/arena.rs`.
//!
//! In a debug build the start takes a few seconds: the demo accounts are
//! hashed with the production argon2 cost. `listening on ADDR` is printed
//! once the server is ready.

mod game;

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;

use bevy_app::prelude::*;
use bevy_ecs::observer::On;
use portcullis::net::{ListenFailed, Listening};
use portcullis::prelude::*;
use portcullis::store::StoreConfig;

/// Ticks per second: how often positions are pushed.
const TICK_HZ: f64 = 10.0;

fn main() -> ExitCode {
    let net = match listen_from_args() {
        Ok(net) => net,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "arena: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut app = App::new();
    app.add_plugins(bevy_log::LogPlugin::default())
        .add_plugins(
            ServerPlugins
                .set(RunnerPlugin { tick_hz: TICK_HZ, ..Default::default() })
                .set(net)
                .set(SessionPlugin::new(SessionConfig::default(), StoreConfig::in_memory().with_demo_accounts())),
        )
        .add_plugins(game::ArenaPlugin::default());
    // The listener is bound when the app starts; these report how it went.
    app.add_observer(|listening: On<Listening>| {
        let _ = writeln!(std::io::stdout(), "listening on {}", listening.addr);
    })
    .add_observer(|failed: On<ListenFailed>| {
        let _ = writeln!(std::io::stderr(), "arena: {}", *failed);
    });
    match app.run() {
        AppExit::Success => ExitCode::SUCCESS,
        AppExit::Error(_) => ExitCode::FAILURE,
    }
}

/// The listener on the first argument (`ADDR` or `--listen ADDR`), by
/// default `127.0.0.1:7777`; port 0 picks a free port.
fn listen_from_args() -> Result<NetPlugin, String> {
    let arg = std::env::args().skip(1).find(|a| a != "--listen").unwrap_or_else(|| "127.0.0.1:7777".to_owned());
    let addr: SocketAddr = arg.parse().map_err(|e| format!("bad address {arg:?}: {e}"))?;
    Ok(NetPlugin::tcp(addr))
}

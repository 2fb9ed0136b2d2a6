//! Shutdown phases and holds, driven frame by frame (docs/protocol.md §6
//! "Shutdown"; docs/cli.md: the first signal drains and exits 0, a second
//! exits at once).

use bevy_app::prelude::*;
use bevy_ecs::prelude::*;
use portcullis_runtime::{RequestShutdown, Shutdown, ShutdownPhase, SignalPlugin, Signals};

/// An app with signal handling (no process handler) and a plugin that holds
/// the exit as `"save"` from the shutdown request on.
fn app_with_a_hold() -> App {
    let mut app = App::new();
    app.add_plugins(SignalPlugin { install_process_handler: false })
        .add_observer(|_: On<RequestShutdown>, mut shutdown: ResMut<Shutdown>| shutdown.hold("save"));
    app.update();
    app
}

fn signals(app: &App) -> Signals {
    app.world().resource::<Signals>().clone()
}

/// The first signal drains: the app keeps running while a plugin holds the
/// exit and exits 0 in the frame the hold is released. If this fails, a
/// stopping server exits before its sessions saved, or never exits.
#[test]
fn the_first_signal_drains_until_the_last_hold_is_released() {
    let mut app = app_with_a_hold();
    assert_eq!(app.world().resource::<Shutdown>().phase(), ShutdownPhase::Running);
    signals(&app).raise();
    app.update();
    app.update();
    let shutdown = app.world().resource::<Shutdown>();
    assert!(matches!(shutdown.phase(), ShutdownPhase::Draining { .. }), "{:?}", shutdown.phase());
    assert_eq!(shutdown.holds().collect::<Vec<_>>(), vec!["save"]);
    assert_eq!(app.should_exit(), None);

    assert!(app.world_mut().resource_mut::<Shutdown>().release("save"));
    app.update();
    assert_eq!(app.should_exit(), Some(AppExit::Success));
    assert_eq!(app.world().resource::<Shutdown>().phase(), ShutdownPhase::Done);
}

/// A second signal exits at once with success, holds or not. If this fails,
/// an operator cannot stop a server whose drain hangs.
#[test]
fn the_second_signal_exits_at_once_despite_holds() {
    let mut app = app_with_a_hold();
    signals(&app).raise();
    app.update();
    assert_eq!(app.should_exit(), None);
    signals(&app).raise();
    app.update();
    assert_eq!(app.should_exit(), Some(AppExit::Success));
    assert_eq!(app.world().resource::<Shutdown>().phase(), ShutdownPhase::Done);
}

/// Asking twice is one drain, started at the first request. If this fails,
/// a repeated request restarts the drain and its deadlines.
#[test]
fn a_second_request_keeps_the_first_drain() {
    let mut app = app_with_a_hold();
    app.world_mut().trigger(RequestShutdown);
    let first = app.world().resource::<Shutdown>().phase();
    app.update();
    app.world_mut().trigger(RequestShutdown);
    app.update();
    assert_eq!(app.world().resource::<Shutdown>().phase(), first);
    assert!(matches!(first, ShutdownPhase::Draining { .. }));
}

//! SIGINT/SIGTERM: the first asks for the graceful shutdown, the second
//! exits at once (docs/cli.md, "Signals and exit status").

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use bevy_app::{App, AppExit, First, Plugin};
use bevy_ecs::prelude::*;

use crate::FrameWaker;
use crate::shutdown::{RequestShutdown, Shutdown, ShutdownPlugin};

/// Why the process's signal handler could not be installed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignalError {
    /// `ctrlc` refused: most often a handler is installed already (there is
    /// one per process).
    #[error("cannot install the signal handler: {0}")]
    Install(#[from] ctrlc::Error),
}

/// Counts SIGINT/SIGTERM (or [`Signals::raise`] calls): the first asks for a
/// graceful shutdown ([`RequestShutdown`]), the second exits at once.
/// Inserted by [`SignalPlugin`] (a resource already there is kept, so a
/// caller may insert its own clone first). Clones share the count.
///
/// # Examples
///
/// ```
/// use bevy_app::App;
/// use portcullis_runtime::{ShutdownPhase, SignalPlugin, Signals, Shutdown};
///
/// let mut app = App::new();
/// app.add_plugins(SignalPlugin { install_process_handler: false });
/// let signals = app.world().resource::<Signals>().clone();
/// signals.raise(); // what SIGTERM does
/// app.update();
/// assert!(matches!(app.world().resource::<Shutdown>().phase(), ShutdownPhase::Done));
/// ```
#[derive(Resource, Clone, Default)]
pub struct Signals {
    count: Arc<AtomicU32>,
    waker: FrameWaker,
}

impl Signals {
    /// Signals that wake `waker`'s frame loop when raised.
    pub fn new(waker: FrameWaker) -> Self {
        Self { count: Arc::default(), waker }
    }

    /// Records one signal and wakes the frame loop. Safe to call from a signal-handler thread.
    pub fn raise(&self) {
        self.count.fetch_add(1, Ordering::AcqRel);
        self.waker.wake();
    }

    /// Signals raised so far.
    pub fn count(&self) -> u32 {
        self.count.load(Ordering::Acquire)
    }

    /// Routes the process's SIGINT and SIGTERM here. There is one handler
    /// per process: a second call fails with [`SignalError::Install`].
    pub fn install_process_handler(&self) -> Result<(), SignalError> {
        let signals = self.clone();
        ctrlc::set_handler(move || signals.raise())?;
        Ok(())
    }
}

/// Graceful shutdown on SIGINT/SIGTERM: the first signal triggers
/// [`RequestShutdown`] (the plugins' drain of docs/protocol.md §6
/// "Shutdown", then exit 0 once no [`Shutdown`] hold is left), a second one
/// exits at once with `AppExit::Success`. Inserts [`Signals`] (keeping one
/// already inserted) and adds [`ShutdownPlugin`] if missing.
///
/// `install_process_handler: true` (the default) routes the process's
/// signals to it. Do that once per process: in-process servers of tests
/// set it to `false` and raise [`Signals`] by hand, and `portcullis serve`
/// installs the handler itself so that a failure is an error, not a log line.
///
/// # Examples
///
/// ```no_run
/// use bevy_app::App;
/// use portcullis_runtime::SignalPlugin;
///
/// let mut app = App::new();
/// app.add_plugins(SignalPlugin::default()); // SIGINT/SIGTERM → graceful shutdown
/// ```
#[derive(Debug, Clone, Copy)]
pub struct SignalPlugin {
    /// Route SIGINT/SIGTERM of this process to the app (once per process).
    pub install_process_handler: bool,
}

impl Default for SignalPlugin {
    fn default() -> Self {
        Self { install_process_handler: true }
    }
}

impl Plugin for SignalPlugin {
    fn build(&self, app: &mut App) {
        if !app.is_plugin_added::<ShutdownPlugin>() {
            app.add_plugins(ShutdownPlugin);
        }
        let waker = app.world_mut().get_resource_or_init::<FrameWaker>().clone();
        let signals = app.world().get_resource::<Signals>().cloned().unwrap_or_else(|| Signals::new(waker));
        if self.install_process_handler
            && let Err(e) = signals.install_process_handler()
        {
            bevy_log::error!(error = %e, "cannot install the signal handler");
        }
        app.insert_resource(signals).add_systems(First, watch_signals);
    }
}

/// Turns signals into the shutdown sequence (first) or an immediate exit (second).
fn watch_signals(
    signals: Res<Signals>,
    mut seen: Local<u32>,
    mut shutdown: ResMut<Shutdown>,
    mut commands: Commands,
    mut exit: MessageWriter<AppExit>,
) {
    let count = signals.count();
    if count == *seen {
        return;
    }
    *seen = count;
    if count >= 2 {
        bevy_log::warn!("second signal: exiting at once");
        shutdown.finish();
        exit.write(AppExit::Success);
    } else {
        bevy_log::info!("signal: graceful shutdown");
        commands.trigger(RequestShutdown);
    }
}

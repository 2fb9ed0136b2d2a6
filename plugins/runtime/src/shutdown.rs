//! Shutdown phases: running → draining → done, and the holds that keep a
//! draining app from exiting until every plugin finished its part
//! (docs/protocol.md §6 "Shutdown"; docs/cli.md: exit status 0).
//!
//! ```text
//!  RequestShutdown ──▶ observer: Running → Draining { since }    plugins observe it too and
//!                                                                 hold("name") while they drain
//!  Last: Draining and no hold left ──▶ Done, AppExit::Success    plugins release("name") when done
//! ```

use std::collections::BTreeSet;
use std::time::Duration;

use bevy_app::{App, AppExit, Last, Plugin};
use bevy_ecs::prelude::*;
use bevy_time::{Real, Time};

/// Asks for the graceful shutdown. Plugins that have work to finish first
/// observe it and take a [`Shutdown`] hold; the session plugin stops
/// accepting, closes connections that are not logged in, kicks every
/// session with `server_shutdown`, waits for their saves and flushes the
/// store (docs/protocol.md §6 "Shutdown"); the app then exits 0.
///
/// Triggered by the first signal ([`SignalPlugin`](crate::SignalPlugin));
/// game code and tests may trigger it too. A second request is ignored.
///
/// # Examples
///
/// ```
/// use bevy_app::{App, AppExit};
/// use portcullis_runtime::{RequestShutdown, ShutdownPlugin};
///
/// let mut app = App::new();
/// app.add_plugins(ShutdownPlugin);
/// app.world_mut().trigger(RequestShutdown);
/// app.update();
/// assert_eq!(app.should_exit(), Some(AppExit::Success)); // no plugin held the exit
/// ```
#[derive(Event, Debug, Clone, Copy, Default)]
pub struct RequestShutdown;

/// Where the app is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ShutdownPhase {
    /// Serving; no shutdown asked for.
    #[default]
    Running,
    /// [`RequestShutdown`] arrived at `since` (`Time<Real>` elapsed, zero
    /// without a clock); the app exits once no hold is left.
    Draining {
        /// When the drain started.
        since: Duration,
    },
    /// `AppExit` was written (the drain ended, or a second signal).
    Done,
}

/// The shutdown phase and the holds on the exit. Inserted by
/// [`ShutdownPlugin`]; the phase is moved only by runtime (its observer of
/// [`RequestShutdown`], its exit system in `Last`, the second signal);
/// plugins add and remove their own holds.
///
/// A hold is a name (the plugin's, e.g. `"session"`). Take it in the
/// observer of [`RequestShutdown`] (or earlier) and release it when your
/// part of the drain is done; the app exits in `Last` of the first frame in
/// which it is draining with no hold left.
///
/// # Examples
///
/// ```
/// use bevy_app::{App, AppExit};
/// use bevy_ecs::prelude::*;
/// use portcullis_runtime::{RequestShutdown, Shutdown, ShutdownPlugin};
///
/// let mut app = App::new();
/// app.add_plugins(ShutdownPlugin)
///     .add_observer(|_: On<RequestShutdown>, mut shutdown: ResMut<Shutdown>| shutdown.hold("flush"));
/// app.world_mut().trigger(RequestShutdown);
/// app.update();
/// assert_eq!(app.should_exit(), None); // "flush" still holds the exit
/// app.world_mut().resource_mut::<Shutdown>().release("flush");
/// app.update();
/// assert_eq!(app.should_exit(), Some(AppExit::Success));
/// ```
#[derive(Resource, Debug, Default)]
pub struct Shutdown {
    phase: ShutdownPhase,
    holds: BTreeSet<&'static str>,
}

impl Shutdown {
    /// The current phase.
    pub fn phase(&self) -> ShutdownPhase {
        self.phase
    }

    /// Whether a shutdown was asked for (draining or done).
    pub fn is_requested(&self) -> bool {
        self.phase != ShutdownPhase::Running
    }

    /// Holds the exit until [`release`](Self::release)`(name)`. Holding a
    /// name twice is one hold.
    pub fn hold(&mut self, name: &'static str) {
        self.holds.insert(name);
    }

    /// Releases the hold `name`; returns whether it was held.
    pub fn release(&mut self, name: &str) -> bool {
        self.holds.remove(name)
    }

    /// The names still holding the exit, in order.
    pub fn holds(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.holds.iter().copied()
    }

    /// Moves to [`ShutdownPhase::Done`] (the caller writes the `AppExit`).
    pub(crate) fn finish(&mut self) {
        self.phase = ShutdownPhase::Done;
    }
}

/// The shutdown phases: inserts [`Shutdown`], moves it to draining on
/// [`RequestShutdown`], and writes `AppExit::Success` in `Last` once it is
/// draining with no hold left. Part of `portcullis::ServerPlugins`; the
/// plugins that hold the exit (and [`SignalPlugin`](crate::SignalPlugin))
/// add it if it is missing.
#[derive(Debug, Clone, Copy, Default)]
pub struct ShutdownPlugin;

impl Plugin for ShutdownPlugin {
    fn build(&self, app: &mut App) {
        app.init_resource::<Shutdown>().add_observer(start_draining).add_systems(Last, exit_when_drained);
    }
}

/// [`RequestShutdown`]: Running → Draining.
fn start_draining(_request: On<RequestShutdown>, mut shutdown: ResMut<Shutdown>, time: Option<Res<Time<Real>>>) {
    if shutdown.phase != ShutdownPhase::Running {
        return;
    }
    let since = time.map_or(Duration::ZERO, |time| time.elapsed());
    shutdown.phase = ShutdownPhase::Draining { since };
    bevy_log::info!(since_ms = since.as_millis() as u64, "shutdown requested: draining");
}

/// Draining with no hold left: Done, and exit 0.
fn exit_when_drained(mut shutdown: ResMut<Shutdown>, mut exit: MessageWriter<AppExit>) {
    if !matches!(shutdown.phase, ShutdownPhase::Draining { .. }) || !shutdown.holds.is_empty() {
        return;
    }
    shutdown.finish();
    exit.write(AppExit::Success);
}

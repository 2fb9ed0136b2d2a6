//! The event-driven runner in a real `App::run`: a client thread plays a
//! closed loop (send one request, wait for its answer, send the next), the
//! way `portcullis-bench ping --connections 1 --in-flight 1` does, through a
//! channel and the app's `FrameWaker`, as the network threads do. Every wait
//! is bounded.

use std::sync::Mutex;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::{Duration, Instant};

use bevy_app::prelude::*;
use bevy_ecs::prelude::*;
use portcullis_runtime::{FrameWaker, RunnerPlugin, RunnerStats};

/// How long any single wait may take before the test fails instead of hanging.
const LIMIT: Duration = Duration::from_secs(20);

/// Requests from the client thread (`None`: stop).
#[derive(Resource)]
struct Inbox(Mutex<Receiver<Option<u32>>>);

/// Answers to the client thread.
#[derive(Resource)]
struct Outbox(Mutex<Sender<u32>>);

/// Answers every request that arrived before this frame (an "echo"), or
/// exits on `None`. Takes them all first, so an answer's follow-up waits for
/// the next frame, as it would with a real network in between.
fn answer(inbox: Res<Inbox>, outbox: Res<Outbox>, mut exit: MessageWriter<AppExit>) {
    let requests: Vec<Option<u32>> = inbox.0.lock().unwrap_or_else(|p| p.into_inner()).try_iter().collect();
    let outbox = outbox.0.lock().unwrap_or_else(|p| p.into_inner());
    for request in requests {
        match request {
            Some(n) => {
                let _ = outbox.send(n);
            }
            None => {
                exit.write(AppExit::Success);
            }
        }
    }
}

/// Runs `round_trips` closed-loop round trips against an app run by
/// `RunnerPlugin { tick_hz: 1, max_frame_hz }`; returns the runner's counts.
fn closed_loop(max_frame_hz: f64, round_trips: u32) -> RunnerStats {
    let (to_app, app_inbox) = channel();
    let (app_outbox, from_app) = channel();
    let (handles_tx, handles) = channel();
    // An `App` is not `Send`: build it on the thread that runs it.
    let server = std::thread::spawn(move || {
        let mut app = App::new();
        // One tick a second: every frame but the first is started by a request.
        app.add_plugins((bevy_time::TimePlugin, RunnerPlugin { tick_hz: 1.0, max_frame_hz }))
            .insert_resource(Inbox(Mutex::new(app_inbox)))
            .insert_resource(Outbox(Mutex::new(app_outbox)))
            .add_systems(Update, answer);
        let waker = app.world().resource::<FrameWaker>().clone();
        let stats = app.world().resource::<RunnerStats>().clone();
        let _ = handles_tx.send((waker, stats));
        app.run()
    });
    let (waker, stats): (FrameWaker, RunnerStats) = handles.recv_timeout(LIMIT).expect("the app was built");

    for n in 0..round_trips {
        to_app.send(Some(n)).expect("the app is running");
        waker.wake();
        assert_eq!(from_app.recv_timeout(LIMIT), Ok(n), "round trip {n}");
    }
    to_app.send(None).expect("the app is running");
    waker.wake();
    let deadline = Instant::now() + LIMIT;
    while !server.is_finished() {
        assert!(Instant::now() < deadline, "the app did not exit");
        std::thread::yield_now();
    }
    assert_eq!(server.join().expect("the app thread"), AppExit::Success);
    stats
}

/// With no frame cap (the default), a closed loop never waits for a frame
/// slot: every frame starts as soon as its request is there. If this fails,
/// a lone client's round trip is held for the next 1/max_frame_hz slot
/// (1 ms at the old default of 1,000), so a closed loop of pings cannot
/// beat one per millisecond however fast the server is.
#[test]
fn without_a_cap_a_closed_loop_round_trip_waits_for_no_frame_slot() {
    let stats = closed_loop(0.0, 200);
    assert_eq!(stats.capped_frames(), 0);
    // A frame per round trip and one for the exit, at least.
    assert!(stats.frames() >= 201, "frames {}", stats.frames());
}

/// With a cap, the same closed loop runs its first few frames at once (the
/// burst) and then waits for the cap: the cap is still there for who asks
/// for it. If this fails, `--max-frame-hz N` no longer bounds the frame rate.
#[test]
fn with_a_cap_a_closed_loop_waits_for_frame_slots_after_the_burst() {
    // 5 frames a second: after the 4-frame burst, every frame waits ~200 ms,
    // far longer than a round trip through a channel takes.
    let stats = closed_loop(5.0, 6);
    assert!(stats.capped_frames() >= 2, "capped {} of {} frames", stats.capped_frames(), stats.frames());
}

/// A wake from another thread starts a frame long before the next tick is
/// due: at one tick a second, 50 round trips finish within a frame each.
/// If this fails, input waits for the tick (up to 1 s here, 33 ms at the
/// default 30 Hz).
#[test]
fn a_wake_starts_a_frame_before_the_tick() {
    let started = Instant::now();
    let stats = closed_loop(0.0, 50);
    // At 1 tick/s, 50 round trips that waited for ticks would take 50 s;
    // `closed_loop` would have failed its 20 s limit long before.
    assert!(started.elapsed() < LIMIT);
    assert!(stats.frames() >= 51, "frames {}", stats.frames());
}

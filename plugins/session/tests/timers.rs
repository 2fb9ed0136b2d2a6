//! System-level ECS tests of the session timers' bookkeeping (docs/protocol.md
//! §6): deadlines live in a time-ordered queue instead of being checked on
//! every session every frame, so these tests pin down what that queue must
//! never get wrong: a deadline that passes while a save is in flight, a
//! timeout changed while connections are open, and entries of closed
//! connections. Manual clock, in-memory transport; every wait is bounded.
#![allow(clippy::unwrap_used)]

mod ecs_support;

use std::time::Duration;

use bevy_ecs::prelude::*;
use ecs_support::*;
use portcullis_rpc::{DisconnectReason, RpcSystems};
use portcullis_session::{DeadlineQueue, Kick, SessionConfig, SessionSystems};
use serde_json::json;

/// Kicks the marked connection right after the dispatcher ran, so the kick
/// lands while the save dispatched in the same frame waits on the store.
#[derive(Resource, Default)]
struct KickAfterDispatch(Option<Entity>);

fn kick_after_dispatch(world: &mut World) {
    if let Some(entity) = world.resource_mut::<KickAfterDispatch>().0.take() {
        world.trigger(Kick { entity, reason: DisconnectReason::Admin });
    }
}

/// While set, the store's replies wait (SessionSystems::Store is skipped), so a
/// save stays in flight for as many frames as the test needs, however fast
/// the store thread answers.
#[derive(Resource, Default)]
struct HoldStoreReplies(bool);

fn queue_len(server: &portcullis_testkit::TestServer) -> usize {
    server.world().resource::<DeadlineQueue>().len()
}

/// A kick whose save deadline passes while a save sent *before* the kick is
/// still on its way to the store waits for that save (docs/protocol.md §6), and
/// ends as soon as it is answered: the client gets the save's answer, then
/// `disconnected`. If this fails, the session stays kicking forever (its
/// deadline was dropped while the save was in flight) and blocks every
/// later login of the account, or it closes before the save is acknowledged.
#[test]
fn kick_deadline_that_passed_during_an_earlier_save_ends_once_the_save_is_answered() {
    let mut server = server_with(kick_after(Duration::ZERO));
    server.app.init_resource::<KickAfterDispatch>();
    server.app.add_systems(
        bevy_app::PreUpdate,
        kick_after_dispatch.after(RpcSystems::Dispatch).before(SessionSystems::Store),
    );
    server.app.init_resource::<HoldStoreReplies>();
    server.app.configure_sets(bevy_app::PreUpdate, SessionSystems::Store.run_if(|hold: Res<HoldStoreReplies>| !hold.0));
    let mut a = Peer::connect(&mut server);
    let token = a.login(&mut server, "netease1");
    a.forget();

    let entity = server.entity(&a.client).unwrap();
    server.app.world_mut().resource_mut::<KickAfterDispatch>().0 = Some(entity);
    server.app.world_mut().resource_mut::<HoldStoreReplies>().0 = true;
    let save = a.send("userdata_save", json!({"token": token, "data": {"gold": 7}}));
    server.update();
    assert_eq!(a.state(&server), "kicking", "the kick must land while the save is in flight");
    // The kick deadline (zero) has passed; the session must wait for the save.
    server.advance(Duration::from_millis(100));
    assert_eq!(a.state(&server), "kicking", "closed before the in-flight save was answered");
    server.app.world_mut().resource_mut::<HoldStoreReplies>().0 = false;

    a.wait_closed(&mut server);
    assert_eq!(a.transcript(), vec![kicked("admin", Duration::ZERO), ok(save), disconnected("admin")]);
    server.step(2);
    assert!(index(&server).entity_of_account_name("netease1").is_none(), "the account is still held");

    // The account is free: a new login gets a token, and the save was kept.
    let mut b = Peer::connect(&mut server);
    let token_b = b.login(&mut server, "netease1");
    let loaded = b.request(&mut server, "userdata_load", json!({"token": token_b}));
    assert_eq!(loaded["result"]["data"], json!({"gold": 7}), "{loaded}");
}

/// Lowering the idle timeout while connections are open applies to them at
/// once (embedders may change `SessionConfig` at run time). If this fails,
/// connections opened before the change keep the old, longer timeout.
#[test]
fn idle_timeout_lowered_at_run_time_applies_to_open_connections() {
    let mut server = server_with(SessionConfig::default());
    let mut logged_in = Peer::connect(&mut server);
    logged_in.login(&mut server, "netease1");
    logged_in.forget();
    let mut anonymous = Peer::connect(&mut server);

    server.app.world_mut().resource_mut::<SessionConfig>().idle_timeout = Duration::from_secs(2);
    server.advance(Duration::from_millis(1999));
    assert!(!logged_in.closed() && !anonymous.closed(), "closed before the new idle timeout");
    assert!(logged_in.transcript().is_empty(), "{:?}", logged_in.transcript());

    server.advance(Duration::from_millis(1));
    let kicked_msg = logged_in.wait(&mut server, |m| m["method"] == "kicked");
    assert_eq!(kicked_msg["params"]["reason"], "idle_timeout");
    anonymous.wait_closed(&mut server);
    assert_eq!(anonymous.transcript(), vec![disconnected("idle_timeout")]);
}

/// The deadline queue holds one entry per open connection and none for
/// closed ones, however many connections come and go. If this fails, a
/// stream of short connections grows the server's memory without bound.
#[test]
fn deadline_queue_holds_one_entry_per_open_connection() {
    let mut server = server_with(SessionConfig::default());
    let mut peers: Vec<Peer> = (0..30).map(|_| Peer::connect(&mut server)).collect();
    for (peer, account) in peers.iter_mut().zip(["netease1", "netease2", "netease3"]) {
        peer.login(&mut server, account);
    }
    assert_eq!(queue_len(&server), 30);

    for peer in peers.iter_mut().skip(20) {
        peer.client.disconnect();
    }
    // A logged-in session's logout and a login after it keep one entry each.
    let token = peers[1].login(&mut server, "netease2");
    peers[1].request(&mut server, "logout", json!({"token": token}));
    peers[1].login(&mut server, "netease2");
    server.step(2);
    assert_eq!(queue_len(&server), 20);

    for peer in peers.iter_mut().take(20) {
        peer.client.disconnect();
    }
    server.step(2);
    assert_eq!(queue_len(&server), 0);
}

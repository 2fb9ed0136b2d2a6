//! The example game (`examples/arena`) at the system level: its plugin on
//! the public test harness (`portcullis::testing::TestServer`),
//! in-memory clients, and a clock moved one fixed tick at a time.
#![allow(clippy::unwrap_used)]

#[path = "../examples/arena/game.rs"]
mod game;

use std::time::Duration;

use bevy_time::{Fixed, Time};
use game::{ArenaPlugin, OUT_OF_RANGE, SELF_TARGET, TARGET_NOT_FOUND};
use portcullis::testing::{JsonClient, TestServer, error_code};
use serde_json::{Value, json};

/// A test server running the arena.
fn arena() -> TestServer {
    let mut server = TestServer::new();
    server.app.add_plugins(ArenaPlugin::default());
    server
}

/// A connection logged in as `account` (demo password), and its token.
fn player(server: &mut TestServer, account: &str) -> (JsonClient, String) {
    let mut client = server.connect();
    let token = server.login(&mut client, account, "123");
    (client, token)
}

fn call(server: &mut TestServer, client: &mut JsonClient, token: &str, method: &str, mut params: Value) -> Value {
    params["token"] = json!(token);
    server.request(client, method, params)
}

/// The length of one fixed tick.
fn tick(server: &TestServer) -> Duration {
    server.world().resource::<Time<Fixed>>().timestep()
}

/// Every `arena_state` the client received so far, oldest first.
fn states(client: &mut JsonClient) -> Vec<Value> {
    client.take_all().into_iter().filter(|m| m["method"] == "arena_state").map(|m| m["params"].clone()).collect()
}

/// Moves the clock by one tick and returns the one `arena_state` it pushed.
fn next_state(server: &mut TestServer, client: &mut JsonClient) -> Value {
    let step = tick(server);
    server.advance(step);
    let mut got = states(client);
    assert_eq!(got.len(), 1, "one arena_state per tick: {got:?}");
    got.remove(0)
}

/// The entry of `account` in an `arena_state`.
fn entry<'a>(state: &'a Value, account: &str) -> &'a Value {
    state["players"].as_array().unwrap().iter().find(|p| p["account"] == account).unwrap()
}

/// A user would see: players frozen on screen, or moves that never show.
#[test]
fn positions_are_pushed_every_tick() {
    let mut server = arena();
    let (mut alice, ta) = player(&mut server, "netease1");
    let (mut bob, _tb) = player(&mut server, "netease2");
    server.step(2);
    assert!(states(&mut alice).is_empty(), "nothing is pushed while the clock stands still");

    let first = next_state(&mut server, &mut alice);
    assert_eq!(
        first["players"],
        json!([
            {"account": "netease1", "x": 8, "y": 10, "health": 100, "kills": 0, "deaths": 0},
            {"account": "netease2", "x": 12, "y": 10, "health": 100, "kills": 0, "deaths": 0},
        ])
    );
    assert_eq!(states(&mut bob), vec![first.clone()], "every player gets the same state");

    let moved = call(&mut server, &mut alice, &ta, "move", json!({"dx": 1, "dy": -1}));
    assert_eq!(moved["result"], json!({"x": 9, "y": 9}));
    let second = next_state(&mut server, &mut bob);
    assert_eq!(second["tick"], first["tick"].as_u64().unwrap() + 1);
    let mover = entry(&second, "netease1");
    assert_eq!((&mover["x"], &mover["y"]), (&json!(9), &json!(9)));
    states(&mut alice);

    // Three ticks at once: three states, ticks in a row.
    let step = tick(&server);
    server.advance(step * 3);
    let ticks: Vec<u64> = states(&mut alice).iter().map(|s| s["tick"].as_u64().unwrap()).collect();
    let t = second["tick"].as_u64().unwrap();
    assert_eq!(ticks, vec![t + 1, t + 2, t + 3]);
}

/// A user would see: players walking off the map or teleporting.
#[test]
fn moves_are_bounded() {
    let mut server = arena();
    let (mut alice, ta) = player(&mut server, "netease1");
    let too_far = call(&mut server, &mut alice, &ta, "move", json!({"dx": 2, "dy": 0}));
    assert_eq!(error_code(&too_far), Some(-32602));
    assert_eq!(too_far["error"]["data"]["field"], "dx");
    let not_a_number = call(&mut server, &mut alice, &ta, "move", json!({"dx": 0, "dy": "up"}));
    assert_eq!(not_a_number["error"]["data"]["field"], "dy");

    for _ in 0..12 {
        call(&mut server, &mut alice, &ta, "move", json!({"dx": -1, "dy": 0}));
    }
    let edge = call(&mut server, &mut alice, &ta, "move", json!({"dx": -1, "dy": 0}));
    assert_eq!(edge["result"], json!({"x": 0, "y": 10}), "the grid's edge holds");
}

/// A user would see: attacks that do nothing, hit from across the map, or
/// kill without a respawn.
#[test]
fn attack_reduces_health_and_a_kill_respawns() {
    let mut server = arena();
    let (mut alice, ta) = player(&mut server, "netease1");
    let (mut bob, _tb) = player(&mut server, "netease2");

    // Spawned 4 cells apart; the range is 3.
    let far = call(&mut server, &mut alice, &ta, "attack", json!({"target": "netease2"}));
    assert_eq!(error_code(&far), Some(OUT_OF_RANGE), "{far}");
    let me = call(&mut server, &mut alice, &ta, "attack", json!({"target": "NETEASE1"}));
    assert_eq!(error_code(&me), Some(SELF_TARGET), "{me}");
    let nobody = call(&mut server, &mut alice, &ta, "attack", json!({"target": "netease3"}));
    assert_eq!(error_code(&nobody), Some(TARGET_NOT_FOUND), "{nobody}");

    call(&mut server, &mut alice, &ta, "move", json!({"dx": 1, "dy": 0}));
    let hit = call(&mut server, &mut alice, &ta, "attack", json!({"target": "netease2"}));
    assert_eq!(hit["result"], json!({"target": "netease2", "health": 75, "killed": false}));
    let state = next_state(&mut server, &mut bob);
    assert_eq!(entry(&state, "netease2")["health"], 75);

    call(&mut server, &mut alice, &ta, "attack", json!({"target": "netease2"}));
    call(&mut server, &mut alice, &ta, "attack", json!({"target": "netease2"}));
    let kill = call(&mut server, &mut alice, &ta, "attack", json!({"target": "netease2"}));
    assert_eq!(kill["result"], json!({"target": "netease2", "health": 100, "killed": true}));
    let killed = server.wait_message(&mut bob, |m| m["method"] == "arena_killed");
    assert_eq!(killed["params"], json!({"by": "netease1"}));

    states(&mut alice);
    let state = next_state(&mut server, &mut alice);
    assert_eq!(entry(&state, "netease1")["kills"], 1);
    let victim = entry(&state, "netease2");
    assert_eq!((&victim["health"], &victim["deaths"]), (&json!(100), &json!(1)));
    // Respawned on the spawn point farthest from the killer at (9, 10).
    assert_eq!((&victim["x"], &victim["y"]), (&json!(12), &json!(10)));
}

/// A user would see: anonymous connections moving ghosts around.
#[test]
fn unauthenticated_calls_are_refused() {
    let mut server = arena();
    let mut anon = server.connect();
    let moved = server.request(&mut anon, "move", json!({"token": "0".repeat(64), "dx": 1, "dy": 0}));
    assert_eq!(error_code(&moved), Some(1001), "{moved}");
    let hit = server.request(&mut anon, "attack", json!({"target": "netease1"}));
    assert_eq!(error_code(&hit), Some(1001), "{hit}");
    let step = tick(&server);
    server.advance(step);
    assert!(states(&mut anon).is_empty(), "only players get arena_state");
}

/// A user would see: a player who logged out or closed still standing in
/// the arena.
#[test]
fn players_leave_on_logout_and_close() {
    let mut server = arena();
    let (mut alice, _ta) = player(&mut server, "netease1");
    let (mut bob, tb) = player(&mut server, "netease2");
    let (mut carol, _tc) = player(&mut server, "netease3");
    assert_eq!(next_state(&mut server, &mut alice)["players"].as_array().unwrap().len(), 3);

    call(&mut server, &mut bob, &tb, "logout", json!({}));
    carol.disconnect();
    assert!(server.step_until(|s| s.entity(&carol).is_none()));
    states(&mut alice);
    states(&mut bob);
    let state = next_state(&mut server, &mut alice);
    assert_eq!(state["players"].as_array().unwrap().len(), 1, "{state}");
    assert_eq!(entry(&state, "netease1")["health"], 100);
    assert!(states(&mut bob).is_empty(), "a logged-out connection gets no state");
    let moved = call(&mut server, &mut bob, &tb, "move", json!({"dx": 1, "dy": 0}));
    assert_eq!(error_code(&moved), Some(1001));
}

/// A user would see: their player teleported back to a spawn point (or
/// healed) by a save or a token login, because "logged in" fired again; or
/// a player missing after logging out and in again.
#[test]
fn a_player_enters_once_per_login_when_its_token_is_inserted() {
    let mut server = arena();
    let (mut alice, token) = player(&mut server, "netease1");
    let moved = call(&mut server, &mut alice, &token, "move", json!({"dx": 1, "dy": 1}));
    assert_eq!(moved["result"], json!({"x": 9, "y": 11}));

    // Neither a save nor a token login inserts the Token again.
    let saved = call(&mut server, &mut alice, &token, "userdata_save", json!({"data": {"x": 9}}));
    assert_eq!(saved["result"]["version"], 1);
    let again = server.request(&mut alice, "login", json!({"token": token}));
    assert_eq!(again["result"]["token"], json!(token));
    let first = next_state(&mut server, &mut alice);
    assert_eq!(entry(&first, "netease1")["x"], 9, "still where it walked: {first}");

    // Logout takes the player out; the next login (a new Token) puts it back.
    let out = call(&mut server, &mut alice, &token, "logout", json!({}));
    assert_eq!(out["result"], json!({}));
    let entity = server.entity(&alice).unwrap();
    assert!(server.world().get::<game::Player>(entity).is_none());
    let token = server.login(&mut alice, "netease1", "123");
    assert!(server.world().get::<game::Player>(entity).is_some(), "back in the arena after the new login");
    let online = call(&mut server, &mut alice, &token, "arena_online", json!({}));
    assert_eq!(online["result"], json!({"players": ["netease1"]}));
}

/// A user would see: a connection that never logged in listed as a player.
#[test]
fn arena_online_lists_the_sessions_with_a_token() {
    let mut server = arena();
    let (mut alice, ta) = player(&mut server, "netease1");
    let (_bob, _tb) = player(&mut server, "netease2");
    let _lurker = server.connect();
    let online = call(&mut server, &mut alice, &ta, "arena_online", json!({}));
    assert_eq!(online["result"], json!({"players": ["netease1", "netease2"]}));
}

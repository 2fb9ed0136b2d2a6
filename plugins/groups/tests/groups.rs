//! Session groups at the system level, through the public test harness
//! (`portcullis_testkit`) and in-memory connections: create and
//! join with the right and wrong key, broadcast, leave, clean-up when a
//! session ends, limits, and access for logged-in sessions only.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use portcullis_groups::{Groups, GroupsConfig, GroupsPlugin};
use portcullis_rpc::DisconnectReason;
use portcullis_session::Kick;
use portcullis_testkit::{JsonClient, TestServer, error_code};
use serde_json::{Value, json};

/// A test server with the groups plugin and these limits.
fn server_with(config: GroupsConfig) -> TestServer {
    let mut server = TestServer::new();
    server.app.add_plugins(GroupsPlugin { config });
    server
}

fn server() -> TestServer {
    server_with(GroupsConfig::default())
}

/// A connection logged in as `account` (demo password), and its token.
fn player(server: &mut TestServer, account: &str) -> (JsonClient, String) {
    let mut client = server.connect();
    let token = server.login(&mut client, account, "123");
    (client, token)
}

/// Calls `method` with `params` plus the token.
fn call(server: &mut TestServer, client: &mut JsonClient, token: &str, method: &str, mut params: Value) -> Value {
    params["token"] = json!(token);
    server.request(client, method, params)
}

fn is_group_message(m: &Value) -> bool {
    m["method"] == "group_message"
}

/// Account names of a group's members, from the server's registry.
fn members(server: &TestServer, group: &str) -> Option<Vec<String>> {
    server.world().resource::<Groups>().get(group).map(|g| g.account_names())
}

/// A user would see: friends cannot meet in a group they named, or a wrong
/// key lets strangers in.
#[test]
fn create_and_join_with_right_and_wrong_key() {
    let mut server = server();
    let (mut alice, ta) = player(&mut server, "netease1");
    let (mut bob, tb) = player(&mut server, "netease2");

    let created = call(&mut server, &mut alice, &ta, "group_create", json!({"group": "lobby", "key": "opensesame"}));
    assert_eq!(created["result"], json!({"group": "lobby", "key": "opensesame"}));

    let wrong = call(&mut server, &mut bob, &tb, "group_join", json!({"group": "lobby", "key": "guess"}));
    assert_eq!(error_code(&wrong), Some(2002), "{wrong}");
    assert_eq!(members(&server, "lobby"), Some(vec!["netease1".to_owned()]));

    let missing = call(&mut server, &mut bob, &tb, "group_join", json!({"group": "nowhere", "key": "opensesame"}));
    assert_eq!(error_code(&missing), Some(2001), "{missing}");

    let joined = call(&mut server, &mut bob, &tb, "group_join", json!({"group": "lobby", "key": "opensesame"}));
    assert_eq!(joined["result"], json!({"group": "lobby", "members": ["netease1", "netease2"]}));

    // Joining again changes nothing.
    let again = call(&mut server, &mut bob, &tb, "group_join", json!({"group": "lobby", "key": "opensesame"}));
    assert_eq!(again["result"]["members"], json!(["netease1", "netease2"]));

    let taken = call(&mut server, &mut bob, &tb, "group_create", json!({"group": "lobby"}));
    assert_eq!(error_code(&taken), Some(2003), "{taken}");
}

/// A user would see: a client that lets the server pick the id and key gets
/// nothing usable back.
#[test]
fn server_assigns_id_and_key() {
    let mut server = server();
    let (mut alice, ta) = player(&mut server, "netease1");
    let (mut bob, tb) = player(&mut server, "netease2");

    let created = call(&mut server, &mut alice, &ta, "group_create", json!({"group": null}));
    let group = created["result"]["group"].as_str().unwrap().to_owned();
    let key = created["result"]["key"].as_str().unwrap().to_owned();
    assert!(group.starts_with('g') && group.len() == 17, "{group}");
    assert!(key.len() == 32 && key.bytes().all(|b| b.is_ascii_hexdigit()), "{key}");

    // Only the id chosen, or only the key.
    let keyed = call(&mut server, &mut bob, &tb, "group_create", json!({"key": "mine"}));
    assert_eq!(keyed["result"]["key"], "mine");
    let named = call(&mut server, &mut bob, &tb, "group_create", json!({"group": "named"}));
    assert_eq!(named["result"]["group"], "named");
    assert_eq!(named["result"]["key"].as_str().map(str::len), Some(32));

    let joined = call(&mut server, &mut bob, &tb, "group_join", json!({"group": group, "key": key}));
    assert_eq!(joined["result"]["members"], json!(["netease1", "netease2"]));
}

/// A user would see: a group message that never arrives, arrives at the
/// sender too, or loses its content.
#[test]
fn send_reaches_the_other_members_only() {
    let mut server = server();
    let (mut alice, ta) = player(&mut server, "netease1");
    let (mut bob, tb) = player(&mut server, "netease2");
    let (mut carol, tc) = player(&mut server, "netease3");
    call(&mut server, &mut alice, &ta, "group_create", json!({"group": "party", "key": "k"}));
    call(&mut server, &mut bob, &tb, "group_join", json!({"group": "party", "key": "k"}));
    call(&mut server, &mut carol, &tc, "group_join", json!({"group": "party", "key": "k"}));

    let message = json!({"text": "hello", "at": [1, 2], "nested": {"ok": true}});
    let sent = call(&mut server, &mut alice, &ta, "group_send", json!({"group": "party", "message": message}));
    assert_eq!(sent["result"], json!({"delivered": 2}));

    for client in [&mut bob, &mut carol] {
        let got = server.wait_message(client, is_group_message);
        assert_eq!(got["params"], json!({"group": "party", "from": "netease1", "message": message}));
        assert!(got.get("id").is_none(), "a notification has no id: {got}");
    }
    server.step(3);
    assert!(!alice.take_all().iter().any(is_group_message), "the sender must not get its own message");

    // Any JSON value is a message, a string or a number too.
    let sent = call(&mut server, &mut bob, &tb, "group_send", json!({"group": "party", "message": "hi"}));
    assert_eq!(sent["result"]["delivered"], 2);
    let got = server.wait_message(&mut alice, is_group_message);
    assert_eq!(got["params"]["message"], "hi");
    assert_eq!(got["params"]["from"], "netease2");

    let unknown = call(&mut server, &mut alice, &ta, "group_send", json!({"group": "nope", "message": 1}));
    assert_eq!(error_code(&unknown), Some(2001), "{unknown}");
}

/// A user would see: a player who left still getting the group's chat, or
/// an abandoned group that can never be created again.
#[test]
fn leave_stops_messages_and_the_last_one_out_removes_the_group() {
    let mut server = server();
    let (mut alice, ta) = player(&mut server, "netease1");
    let (mut bob, tb) = player(&mut server, "netease2");
    call(&mut server, &mut alice, &ta, "group_create", json!({"group": "duo", "key": "k"}));
    call(&mut server, &mut bob, &tb, "group_join", json!({"group": "duo", "key": "k"}));

    let left = call(&mut server, &mut bob, &tb, "group_leave", json!({"group": "duo"}));
    assert_eq!(left["result"], json!({}));
    assert_eq!(members(&server, "duo"), Some(vec!["netease1".to_owned()]));

    let sent = call(&mut server, &mut alice, &ta, "group_send", json!({"group": "duo", "message": "anyone?"}));
    assert_eq!(sent["result"]["delivered"], 0);
    server.step(3);
    assert!(!bob.take_all().iter().any(is_group_message));

    let twice = call(&mut server, &mut bob, &tb, "group_leave", json!({"group": "duo"}));
    assert_eq!(error_code(&twice), Some(2004), "{twice}");
    let send = call(&mut server, &mut bob, &tb, "group_send", json!({"group": "duo", "message": 1}));
    assert_eq!(error_code(&send), Some(2004), "{send}");

    call(&mut server, &mut alice, &ta, "group_leave", json!({"group": "duo"}));
    assert!(server.world().resource::<Groups>().is_empty());
    let gone = call(&mut server, &mut bob, &tb, "group_join", json!({"group": "duo", "key": "k"}));
    assert_eq!(error_code(&gone), Some(2001), "{gone}");
    let recreated = call(&mut server, &mut bob, &tb, "group_create", json!({"group": "duo", "key": "new"}));
    assert_eq!(recreated["result"]["group"], "duo");
}

/// A user would see: after logging out (and back in), a player still
/// receives the chat of the groups of the old session.
#[test]
fn logout_drops_membership() {
    let mut server = server();
    let (mut alice, ta) = player(&mut server, "netease1");
    let (mut bob, tb) = player(&mut server, "netease2");
    call(&mut server, &mut alice, &ta, "group_create", json!({"group": "room", "key": "k"}));
    call(&mut server, &mut bob, &tb, "group_join", json!({"group": "room", "key": "k"}));

    let out = call(&mut server, &mut bob, &tb, "logout", json!({}));
    assert_eq!(out["result"], json!({}));
    server.update();
    assert_eq!(members(&server, "room"), Some(vec!["netease1".to_owned()]));
    let entity = server.entity(&bob).unwrap();
    assert_eq!(server.world().resource::<Groups>().membership_count(entity), 0);

    // Logged in again on the same connection: a new session, in no group.
    let tb = server.login(&mut bob, "netease2", "123");
    let send = call(&mut server, &mut bob, &tb, "group_send", json!({"group": "room", "message": 1}));
    assert_eq!(error_code(&send), Some(2004), "{send}");
    let sent = call(&mut server, &mut alice, &ta, "group_send", json!({"group": "room", "message": 2}));
    assert_eq!(sent["result"]["delivered"], 0);

    // The last member logging out removes the group.
    call(&mut server, &mut alice, &ta, "logout", json!({}));
    server.update();
    assert!(server.world().resource::<Groups>().is_empty());
}

/// A user would see: messages sent to a player who closed the game, and
/// groups that outlive all their members.
#[test]
fn close_drops_membership() {
    let mut server = server();
    let (mut alice, ta) = player(&mut server, "netease1");
    let (mut bob, tb) = player(&mut server, "netease2");
    call(&mut server, &mut alice, &ta, "group_create", json!({"group": "room", "key": "k"}));
    call(&mut server, &mut bob, &tb, "group_join", json!({"group": "room", "key": "k"}));
    call(&mut server, &mut bob, &tb, "group_create", json!({"group": "solo"}));

    bob.disconnect();
    assert!(server.step_until(|s| s.entity(&bob).is_none()), "bob's connection closes");
    server.update();
    assert_eq!(members(&server, "room"), Some(vec!["netease1".to_owned()]));
    assert_eq!(members(&server, "solo"), None, "a group whose only member closed is gone");

    let sent = call(&mut server, &mut alice, &ta, "group_send", json!({"group": "room", "message": "still here?"}));
    assert_eq!(sent["result"]["delivered"], 0);

    alice.disconnect();
    assert!(server.step_until(|s| s.entity(&alice).is_none()));
    server.update();
    assert!(server.world().resource::<Groups>().is_empty());
}

/// A user would see: a kicked player lingering in a group after the server
/// closed it.
#[test]
fn kick_end_drops_membership() {
    let mut server = server();
    let (mut alice, ta) = player(&mut server, "netease1");
    let (mut bob, tb) = player(&mut server, "netease2");
    call(&mut server, &mut alice, &ta, "group_create", json!({"group": "room", "key": "k"}));
    call(&mut server, &mut bob, &tb, "group_join", json!({"group": "room", "key": "k"}));

    let entity = server.entity(&bob).unwrap();
    server.app.world_mut().trigger(Kick { entity, reason: DisconnectReason::Admin });
    server.wait_message(&mut bob, |m| m["method"] == "kicked");
    // While kicking, group methods are refused like any other (SESSION_CLOSING).
    let send = call(&mut server, &mut bob, &tb, "group_send", json!({"group": "room", "message": 1}));
    assert_eq!(error_code(&send), Some(1006), "{send}");

    // The client does not save: the kick ends at its deadline.
    server.advance(Duration::from_secs(6));
    assert!(server.step_until(|s| s.entity(&bob).is_none()), "bob is closed after the kick");
    server.update();
    assert_eq!(members(&server, "room"), Some(vec!["netease1".to_owned()]));
}

/// A user would see: anonymous connections creating groups or reading chat,
/// or a stolen token working on another connection.
#[test]
fn only_logged_in_sessions_may_use_groups() {
    let mut server = server();
    let (mut alice, ta) = player(&mut server, "netease1");
    call(&mut server, &mut alice, &ta, "group_create", json!({"group": "club", "key": "k"}));

    let mut anon = server.connect();
    for (method, params) in [
        ("group_create", json!({"group": "x"})),
        ("group_join", json!({"group": "club", "key": "k"})),
        ("group_leave", json!({"group": "club"})),
        ("group_send", json!({"group": "club", "message": 1})),
    ] {
        let mut with_token = params.clone();
        with_token["token"] = json!(ta);
        let reply = server.request(&mut anon, method, with_token);
        assert_eq!(error_code(&reply), Some(1001), "{method}: {reply}");
    }

    let (mut bob, _tb) = player(&mut server, "netease2");
    let stolen = call(&mut server, &mut bob, &ta, "group_join", json!({"group": "club", "key": "k"}));
    assert_eq!(error_code(&stolen), Some(1003), "{stolen}");
    let no_token = server.request(&mut bob, "group_join", json!({"group": "club", "key": "k"}));
    assert_eq!(error_code(&no_token), Some(-32602), "{no_token}");
    assert_eq!(no_token["error"]["data"]["field"], "token");
    assert_eq!(members(&server, "club"), Some(vec!["netease1".to_owned()]));
}

/// A user would see: a malformed request accepted, or rejected with a code
/// that does not say which field is wrong.
#[test]
fn bad_params_name_the_field() {
    let mut server = server_with(GroupsConfig { max_message_bytes: 32, ..Default::default() });
    let (mut alice, ta) = player(&mut server, "netease1");
    call(&mut server, &mut alice, &ta, "group_create", json!({"group": "ok", "key": "k"}));

    let long_id = "a".repeat(65);
    let cases = [
        ("group_create", json!({"group": "has space"}), "group"),
        ("group_create", json!({"group": ""}), "group"),
        ("group_create", json!({"group": long_id}), "group"),
        ("group_create", json!({"group": 7}), "group"),
        ("group_create", json!({"key": "two words"}), "key"),
        ("group_create", json!({"key": ""}), "key"),
        ("group_join", json!({"group": "ok"}), "key"),
        ("group_join", json!({"key": "k"}), "group"),
        ("group_leave", json!({}), "group"),
        ("group_send", json!({"group": "ok"}), "message"),
        ("group_send", json!({"group": "ok", "message": null}), "message"),
        ("group_send", json!({"group": "ok", "message": "x".repeat(40)}), "message"),
        ("group_send", json!({"group": ["ok"], "message": 1}), "group"),
    ];
    for (method, params, field) in cases {
        let reply = call(&mut server, &mut alice, &ta, method, params.clone());
        assert_eq!(error_code(&reply), Some(-32602), "{method} {params}: {reply}");
        assert_eq!(reply["error"]["data"]["field"], field, "{method} {params}: {reply}");
    }
    // 30 characters + 2 quotes = 32 bytes: exactly the limit.
    let fits = call(&mut server, &mut alice, &ta, "group_send", json!({"group": "ok", "message": "x".repeat(30)}));
    assert_eq!(fits["result"]["delivered"], 0, "{fits}");
}

/// A user would see: unbounded groups exhausting the server, or limits
/// answered with a generic error.
#[test]
fn limits_are_enforced() {
    let config = GroupsConfig { max_groups: 2, max_members: 2, ..Default::default() };
    let mut server = server_with(config);
    let (mut alice, ta) = player(&mut server, "netease1");
    let (mut bob, tb) = player(&mut server, "netease2");
    let (mut carol, tc) = player(&mut server, "netease3");

    call(&mut server, &mut alice, &ta, "group_create", json!({"group": "a", "key": "k"}));
    call(&mut server, &mut bob, &tb, "group_join", json!({"group": "a", "key": "k"}));
    let full = call(&mut server, &mut carol, &tc, "group_join", json!({"group": "a", "key": "k"}));
    assert_eq!(error_code(&full), Some(2005), "{full}");

    call(&mut server, &mut bob, &tb, "group_create", json!({"group": "b", "key": "k"}));
    let too_many = call(&mut server, &mut carol, &tc, "group_create", json!({"group": "c"}));
    assert_eq!(error_code(&too_many), Some(2006), "{too_many}");
    assert_eq!(server.world().resource::<Groups>().len(), 2);
}

/// A user would see: one session joining groups without bound.
#[test]
fn membership_limit_per_session() {
    let mut server = server_with(GroupsConfig { max_memberships: 2, ..Default::default() });
    let (mut alice, ta) = player(&mut server, "netease1");
    let (mut bob, tb) = player(&mut server, "netease2");
    call(&mut server, &mut alice, &ta, "group_create", json!({"group": "a"}));
    call(&mut server, &mut alice, &ta, "group_create", json!({"group": "b"}));
    let third = call(&mut server, &mut alice, &ta, "group_create", json!({"group": "c"}));
    assert_eq!(error_code(&third), Some(2007), "{third}");

    call(&mut server, &mut bob, &tb, "group_create", json!({"group": "d", "key": "k"}));
    let join = call(&mut server, &mut alice, &ta, "group_join", json!({"group": "d", "key": "k"}));
    assert_eq!(error_code(&join), Some(2007), "{join}");

    call(&mut server, &mut alice, &ta, "group_leave", json!({"group": "a"}));
    let join = call(&mut server, &mut alice, &ta, "group_join", json!({"group": "d", "key": "k"}));
    assert_eq!(join["result"]["members"], json!(["netease2", "netease1"]), "{join}");
}

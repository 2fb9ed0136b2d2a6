//! System-level ECS tests of user data (issue 3, docs/protocol.md §2, §4):
//! `userdata_save` / `userdata_load`, the version history, `saved_at`, the
//! size limit, arrival order on one connection, the auth rules, and that a
//! token never reaches the database file.
//!
//! Every test drives a [`TestServer`] frame by frame through the in-memory
//! transport (no socket, no sleep, every wait bounded by the harness), on an
//! in-memory SQLite store except where the test needs a real file.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use portcullis_store::StoreConfig;
use portcullis_testkit::{JsonClient, TestConfig, TestServer, error_code};
use portcullis_userdata::UserDataConfig;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Asserts that `reply` is an error with `code`.
#[track_caller]
fn assert_error(reply: &Value, code: i64) {
    assert_eq!(error_code(reply), Some(code), "expected error {code}, got {reply}");
    assert!(reply.get("result").is_none(), "an error must not carry a result: {reply}");
}

/// Asserts a `-32602` naming `field` in `data.field`.
#[track_caller]
fn assert_invalid_params(reply: &Value, field: &str) {
    assert_eq!(error_code(reply), Some(-32602), "expected -32602 for field {field}, got {reply}");
    assert_eq!(reply["error"]["data"], json!({ "field": field }), "{reply}");
}

/// Unix milliseconds now.
fn now_ms() -> i64 {
    i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis()).unwrap()
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// Parses `saved_at`, which must be exactly `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC),
/// into Unix milliseconds; panics on any other shape.
#[track_caller]
fn parse_saved_at(saved_at: &str) -> i64 {
    let bytes = saved_at.as_bytes();
    assert_eq!(bytes.len(), 24, "saved_at {saved_at:?} is not YYYY-MM-DDTHH:MM:SS.mmmZ");
    for (i, b) in bytes.iter().enumerate() {
        let expected_sep = match i {
            4 | 7 => Some(b'-'),
            10 => Some(b'T'),
            13 | 16 => Some(b':'),
            19 => Some(b'.'),
            23 => Some(b'Z'),
            _ => None,
        };
        match expected_sep {
            Some(sep) => assert_eq!(*b, sep, "saved_at {saved_at:?}: byte {i} should be {:?}", sep as char),
            None => assert!(b.is_ascii_digit(), "saved_at {saved_at:?}: byte {i} should be a digit"),
        }
    }
    let num = |range: std::ops::Range<usize>| saved_at[range].parse::<i64>().unwrap();
    let (year, month, day) = (num(0..4), num(5..7), num(8..10));
    let (hour, minute, second, milli) = (num(11..13), num(14..16), num(17..19), num(20..23));
    assert!((1..=12).contains(&month) && (1..=31).contains(&day), "saved_at {saved_at:?}: bad date");
    assert!(hour < 24 && minute < 60 && second < 60, "saved_at {saved_at:?}: bad time");
    let days = days_from_civil(year, month, day);
    ((days * 24 + hour) * 60 + minute) * 60_000 + second * 1000 + milli
}

/// Logs a fresh connection in and returns it with its token.
fn logged_in(server: &mut TestServer, account: &str) -> (JsonClient, String) {
    let mut client = server.connect();
    let token = server.login(&mut client, account, "123");
    (client, token)
}

/// Saves `data`; returns the whole response.
fn save(server: &mut TestServer, client: &mut JsonClient, token: &str, data: Value) -> Value {
    server.request(client, "userdata_save", json!({ "token": token, "data": data }))
}

/// Loads; returns the whole response.
fn load(server: &mut TestServer, client: &mut JsonClient, token: &str) -> Value {
    server.request(client, "userdata_load", json!({ "token": token }))
}

/// Asserts a save result (exactly `{version, saved_at}`) with `version`;
/// returns its `saved_at`.
#[track_caller]
fn assert_saved(reply: &Value, version: u64) -> String {
    let result = reply["result"].as_object().unwrap_or_else(|| panic!("save failed: {reply}"));
    assert_eq!(result.len(), 2, "a save result is exactly {{version, saved_at}}: {reply}");
    assert_eq!(result["version"].as_u64(), Some(version), "{reply}");
    let saved_at = result["saved_at"].as_str().unwrap_or_else(|| panic!("saved_at: {reply}")).to_owned();
    parse_saved_at(&saved_at);
    saved_at
}

/// Asserts a load result (exactly `{data, version, saved_at}`).
#[track_caller]
fn assert_loaded(reply: &Value, data: &Value, version: u64, saved_at: &str) {
    let result = reply["result"].as_object().unwrap_or_else(|| panic!("load failed: {reply}"));
    assert_eq!(result.len(), 3, "a load result is exactly {{data, version, saved_at}}: {reply}");
    assert_eq!(&result["data"], data, "{reply}");
    assert_eq!(result["version"].as_u64(), Some(version), "{reply}");
    assert_eq!(result["saved_at"], saved_at, "{reply}");
}

/// `{"k": "x…x"}` whose compact JSON is exactly `bytes` long.
fn object_of_compact_len(bytes: usize) -> Value {
    let overhead = r#"{"k":""}"#.len();
    json!({ "k": "x".repeat(bytes - overhead) })
}

// ---------------------------------------------------------------------------
// History, versions, saved_at
// ---------------------------------------------------------------------------

/// An account that never saved gets `NO_USERDATA` on load — also after other
/// accounts saved.
#[test]
fn load_before_any_save_is_no_userdata() {
    let mut server = TestServer::new();
    let (mut a, token_a) = logged_in(&mut server, "netease1");
    assert_error(&load(&mut server, &mut a, &token_a), 1004);
    let (mut b, token_b) = logged_in(&mut server, "netease2");
    assert_saved(&save(&mut server, &mut b, &token_b, json!({"x": 1})), 1);
    assert_error(&load(&mut server, &mut a, &token_a), 1004);
}

/// Each save appends a version numbered 1, 2, 3, … N, answered
/// `{version, saved_at}`; `saved_at` never goes back; a load returns the
/// newest data with exactly the `version` and `saved_at` its save returned.
#[test]
fn versions_count_1_to_n_and_load_returns_the_newest() {
    let mut server = TestServer::new();
    let (mut client, token) = logged_in(&mut server, "netease1");
    let mut last_ms = 0;
    for version in 1..=6u64 {
        let data = json!({"level": version, "name": format!("hero-{version}")});
        let saved_at = assert_saved(&save(&mut server, &mut client, &token, data.clone()), version);
        let ms = parse_saved_at(&saved_at);
        assert!(ms >= last_ms, "saved_at went back: {saved_at}");
        last_ms = ms;
        assert_loaded(&load(&mut server, &mut client, &token), &data, version, &saved_at);
    }
}

/// Versions count per account: another account's first save is version 1,
/// whatever the other account's history.
#[test]
fn versions_count_per_account() {
    let mut server = TestServer::new();
    let (mut a, token_a) = logged_in(&mut server, "netease1");
    let (mut b, token_b) = logged_in(&mut server, "netease2");
    for version in 1..=3 {
        assert_saved(&save(&mut server, &mut a, &token_a, json!({ "a": version })), version);
    }
    let saved_at = assert_saved(&save(&mut server, &mut b, &token_b, json!({"b": 1})), 1);
    assert_saved(&save(&mut server, &mut a, &token_a, json!({"a": 4})), 4);
    assert_loaded(&load(&mut server, &mut b, &token_b), &json!({"b": 1}), 1, &saved_at);
}

/// `saved_at` is exactly `YYYY-MM-DDTHH:MM:SS.mmmZ` in UTC and is the commit
/// time: between the moment the save was sent and the moment it was answered
/// (1 s of slack), so a client showing "saved at" shows the right time.
#[test]
fn saved_at_is_utc_commit_time_with_milliseconds() {
    let mut server = TestServer::new();
    let (mut client, token) = logged_in(&mut server, "netease1");
    let before = now_ms();
    let saved_at = assert_saved(&save(&mut server, &mut client, &token, json!({})), 1);
    let after = now_ms();
    let saved_ms = parse_saved_at(&saved_at);
    assert!(
        (before - 1000..=after + 1000).contains(&saved_ms),
        "saved_at {saved_at} ({saved_ms}) is not between {before} and {after}"
    );
}

/// Load returns the saved object as it was: nested objects and arrays,
/// Unicode and escapes, integers beyond 2^53, negative numbers, floats,
/// booleans, `null`, empty objects.
#[test]
fn load_returns_the_saved_object_exactly() {
    let mut server = TestServer::new();
    let (mut client, token) = logged_in(&mut server, "netease1");
    let data = json!({
        "name": "Hérø ✓ 勇者",
        "level": 42,
        "gold": -7,
        "ratio": 0.5,
        "big": 9_007_199_254_740_993_u64,
        "min": i64::MIN,
        "alive": true,
        "none": null,
        "tags": ["a", "b", ""],
        "nested": {"deep": {"x": [1, {"y": [[], {}]}]}},
        "empty": {},
        "escapes": "line\nbreak \"q\" \\ / \t \u{1}",
    });
    let saved_at = assert_saved(&save(&mut server, &mut client, &token, data.clone()), 1);
    assert_loaded(&load(&mut server, &mut client, &token), &data, 1, &saved_at);
    let saved_at = assert_saved(&save(&mut server, &mut client, &token, json!({})), 2);
    assert_loaded(&load(&mut server, &mut client, &token), &json!({}), 2, &saved_at);
}

/// The data belongs to the account, not to a token or connection: after
/// logout and a new login (new token), and from another connection after the
/// first closed, load returns the same newest version and saves go on
/// numbering from there.
#[test]
fn data_is_bound_to_the_account_not_the_token_or_connection() {
    let mut server = TestServer::new();
    let (mut client, token) = logged_in(&mut server, "netease1");
    let saved_at = assert_saved(&save(&mut server, &mut client, &token, json!({"hp": 10})), 1);
    assert_eq!(server.request(&mut client, "logout", json!({ "token": token }))["result"], json!({}));
    let token2 = server.login(&mut client, "NETEASE1", "123");
    assert_ne!(token, token2);
    assert_loaded(&load(&mut server, &mut client, &token2), &json!({"hp": 10}), 1, &saved_at);
    let saved_at = assert_saved(&save(&mut server, &mut client, &token2, json!({"hp": 20})), 2);
    client.disconnect();
    server.step(2);

    let (mut other, token3) = logged_in(&mut server, "netease1");
    assert_loaded(&load(&mut server, &mut other, &token3), &json!({"hp": 20}), 2, &saved_at);
    assert_saved(&save(&mut server, &mut other, &token3, json!({"hp": 30})), 3);
}

// ---------------------------------------------------------------------------
// Arrival order (§2)
// ---------------------------------------------------------------------------

/// A `userdata_load` sent right behind a `userdata_save`, without waiting for
/// the save's answer, sees that save (same version, `saved_at` and data) — a
/// client that saves and reloads must never read stale data.
#[test]
fn save_then_load_sent_back_to_back_load_sees_the_save() {
    let mut server = TestServer::new();
    let (mut client, token) = logged_in(&mut server, "netease1");
    assert_saved(&save(&mut server, &mut client, &token, json!({"old": true})), 1);
    let save_id = client.send_request("userdata_save", json!({"token": token, "data": {"new": 1}}));
    let load_id = client.send_request("userdata_load", json!({ "token": token }));
    let saved = server.wait_response(&mut client, save_id);
    let loaded = server.wait_response(&mut client, load_id);
    let saved_at = assert_saved(&saved, 2);
    assert_loaded(&loaded, &json!({"new": 1}), 2, &saved_at);
}

/// Three saves and a load in a single write are applied in arrival order:
/// versions 1, 2, 3, and the load sees the third.
#[test]
fn saves_and_load_in_one_write_apply_in_arrival_order() {
    let mut server = TestServer::new();
    let (mut client, token) = logged_in(&mut server, "netease1");
    let mut write = String::new();
    for n in 1..=3 {
        let line = json!({"jsonrpc": "2.0", "id": format!("s{n}"), "method": "userdata_save",
                          "params": {"token": token, "data": {"n": n}}});
        write.push_str(&line.to_string());
        write.push('\n');
    }
    write.push_str(
        &json!({"jsonrpc": "2.0", "id": "l", "method": "userdata_load", "params": {"token": token}}).to_string(),
    );
    write.push('\n');
    client.raw.send_bytes(write.as_bytes());
    let mut saved_at = Vec::new();
    for n in 1..=3u64 {
        let id = format!("s{n}");
        let reply = server.wait_message(&mut client, |m| m["id"] == id.as_str());
        saved_at.push(assert_saved(&reply, n));
    }
    let loaded = server.wait_message(&mut client, |m| m["id"] == "l");
    assert_loaded(&loaded, &json!({"n": 3}), 3, &saved_at[2]);
}

/// A save, a logout and a load sent together apply in that order: the save
/// succeeds, the logout answers `{}`, and the load is `NOT_LOGGED_IN`.
#[test]
fn save_logout_load_back_to_back_apply_in_order() {
    let mut server = TestServer::new();
    let (mut client, token) = logged_in(&mut server, "netease1");
    let save_id = client.send_request("userdata_save", json!({"token": token, "data": {"a": 1}}));
    let logout_id = client.send_request("logout", json!({ "token": token }));
    let load_id = client.send_request("userdata_load", json!({ "token": token }));
    assert_saved(&server.wait_response(&mut client, save_id), 1);
    assert_eq!(server.wait_response(&mut client, logout_id)["result"], json!({}));
    assert_error(&server.wait_response(&mut client, load_id), 1001);
}

/// Saves of two accounts sent at the same time (several each, without
/// waiting) are numbered independently, 1..N per account, and each load sees
/// its own account's newest data.
#[test]
fn concurrent_saves_of_two_accounts_are_numbered_per_account() {
    let mut server = TestServer::new();
    let (mut a, token_a) = logged_in(&mut server, "netease1");
    let (mut b, token_b) = logged_in(&mut server, "netease2");
    let mut ids = Vec::new();
    for n in 1..=4 {
        ids.push((
            a.send_request("userdata_save", json!({"token": token_a, "data": {"who": "a", "n": n}})),
            b.send_request("userdata_save", json!({"token": token_b, "data": {"who": "b", "n": n}})),
        ));
    }
    for (version, (id_a, id_b)) in (1..=4u64).zip(ids) {
        assert_saved(&server.wait_response(&mut a, id_a), version);
        assert_saved(&server.wait_response(&mut b, id_b), version);
    }
    assert_eq!(load(&mut server, &mut a, &token_a)["result"]["data"], json!({"who": "a", "n": 4}));
    assert_eq!(load(&mut server, &mut b, &token_b)["result"]["data"], json!({"who": "b", "n": 4}));
}

/// A `disconnect` sent right behind a `userdata_save` waits for it: the save
/// is committed and answered, then `{}`, then `disconnected
/// {client_request}`, then the close — and the data is there afterwards.
#[test]
fn save_then_disconnect_back_to_back_answers_the_save_first() {
    let mut server = TestServer::new();
    let (mut client, token) = logged_in(&mut server, "netease1");
    let save_id = client.send_request("userdata_save", json!({"token": token, "data": {"last": "words"}}));
    let bye_id = client.send_request("disconnect", json!({}));
    let mut got = Vec::new();
    assert!(server.step_until(|_| {
        let closed = client.is_closed();
        got.extend(client.take_all());
        closed
    }));
    got.extend(client.take_all());
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(got[0]["id"], save_id);
    let saved_at = assert_saved(&got[0], 1);
    assert_eq!(got[1], json!({"jsonrpc": "2.0", "id": bye_id, "result": {}}));
    assert_eq!(got[2], json!({"jsonrpc": "2.0", "method": "disconnected", "params": {"reason": "client_request"}}));
    server.step(2);
    let (mut other, token2) = logged_in(&mut server, "netease1");
    assert_loaded(&load(&mut server, &mut other, &token2), &json!({"last": "words"}), 1, &saved_at);
}

// ---------------------------------------------------------------------------
// data rules and the size limit (§4)
// ---------------------------------------------------------------------------

/// `data` must be a JSON object: missing, `null`, an array, a string, a number
/// or a boolean is `-32602` with `data.field = "data"`, and no version is
/// created (the next good save is version 1).
#[test]
fn data_must_be_an_object() {
    let mut server = TestServer::new();
    let (mut client, token) = logged_in(&mut server, "netease1");
    assert_invalid_params(&server.request(&mut client, "userdata_save", json!({ "token": token })), "data");
    for bad in [json!(null), json!([]), json!([{"a": 1}]), json!("{}"), json!(5), json!(1.5), json!(true)] {
        assert_invalid_params(&save(&mut server, &mut client, &token, bad), "data");
    }
    assert_error(&load(&mut server, &mut client, &token), 1004);
    assert_saved(&save(&mut server, &mut client, &token, json!({})), 1);
}

/// With the default `max_userdata_bytes` (65,536): `data` whose compact JSON
/// is exactly 65,536 bytes is saved and loads back; one byte more is `-32602`
/// naming `data` and saves nothing.
#[test]
fn data_exactly_at_default_limit_is_saved_one_byte_more_is_refused() {
    let mut server = TestServer::new();
    let (mut client, token) = logged_in(&mut server, "netease1");
    let at_limit = object_of_compact_len(65_536);
    assert_eq!(at_limit.to_string().len(), 65_536);
    let saved_at = assert_saved(&save(&mut server, &mut client, &token, at_limit.clone()), 1);
    let over = object_of_compact_len(65_537);
    assert_invalid_params(&save(&mut server, &mut client, &token, over), "data");
    assert_loaded(&load(&mut server, &mut client, &token), &at_limit, 1, &saved_at);
}

/// The limit is measured on `data` re-serialized as compact JSON with UTF-8
/// unescaped (§4): whitespace in the frame does not count, `\u00e9` counts as
/// the two UTF-8 bytes of `é`, and an escaped quote counts as `\"`. With a
/// 64-byte limit, exactly 64 is accepted and 65 is `-32602 data`.
#[test]
fn size_limit_is_measured_on_compact_unescaped_json() {
    let mut server = TestServer::with_config(TestConfig {
        userdata: UserDataConfig { max_userdata_bytes: 64, ..UserDataConfig::default() },
        ..TestConfig::default()
    });
    let (mut client, token) = logged_in(&mut server, "netease1");
    let send_raw = |client: &mut JsonClient, id: &str, data_json: &str| {
        client.send_line(&format!(
            r#"{{"jsonrpc":"2.0","id":"{id}","method":"userdata_save","params":{{"token":"{token}","data":{data_json}}}}}"#
        ));
    };
    // 8 bytes of {"k":""} + 56 = 64, with lots of frame whitespace around.
    send_raw(&mut client, "ws", &format!(r#"{{   "k"   :   "{}"   }}"#, "x".repeat(56)));
    assert_saved(&server.wait_message(&mut client, |m| m["id"] == "ws"), 1);
    // 28 × é (2 bytes each, sent escaped as 6 bytes each) = 56.
    send_raw(&mut client, "u", &format!(r#"{{"k":"{}"}}"#, r"\u00e9".repeat(28)));
    assert_saved(&server.wait_message(&mut client, |m| m["id"] == "u"), 2);
    send_raw(&mut client, "u+", &format!(r#"{{"k":"{}x"}}"#, r"\u00e9".repeat(28)));
    assert_invalid_params(&server.wait_message(&mut client, |m| m["id"] == "u+"), "data");
    // 28 escaped quotes (\" is 2 bytes compact) = 56.
    send_raw(&mut client, "q", &format!(r#"{{"k":"{}"}}"#, r#"\""#.repeat(28)));
    assert_saved(&server.wait_message(&mut client, |m| m["id"] == "q"), 3);
    send_raw(&mut client, "q+", &format!(r#"{{"k":"{}"}}"#, r#"\""#.repeat(29)));
    assert_invalid_params(&server.wait_message(&mut client, |m| m["id"] == "q+"), "data");
    send_raw(&mut client, "x+", &format!(r#"{{"k":"{}"}}"#, "x".repeat(57)));
    assert_invalid_params(&server.wait_message(&mut client, |m| m["id"] == "x+"), "data");
    let loaded = load(&mut server, &mut client, &token);
    assert_eq!(loaded["result"]["data"], json!({"k": "\"".repeat(28)}), "{loaded}");
    assert_eq!(loaded["result"]["version"], 3);
}

// ---------------------------------------------------------------------------
// Auth rules (§3, §4)
// ---------------------------------------------------------------------------

/// `userdata_save` / `userdata_load` follow the auth order: not logged in is
/// `NOT_LOGGED_IN` whatever the params; logged in, a missing token is
/// `-32602 token` (even with bad data), a wrong token is `TOKEN_INVALID` (even
/// with bad data), and only then is `data` checked.
#[test]
fn auth_rules_for_save_and_load() {
    let mut server = TestServer::new();
    let mut client = server.connect();
    assert_error(&server.request(&mut client, "userdata_save", json!({"data": 5})), 1001);
    assert_error(&server.request(&mut client, "userdata_save", json!({"token": "t", "data": {}})), 1001);
    assert_error(&server.request(&mut client, "userdata_load", json!({})), 1001);
    assert_error(&server.request(&mut client, "userdata_load", json!([])), 1001);
    let token = server.login(&mut client, "netease1", "123");
    assert_invalid_params(&server.request(&mut client, "userdata_save", json!({"data": [1]})), "token");
    assert_invalid_params(&server.request(&mut client, "userdata_save", json!({"token": 1, "data": {}})), "token");
    assert_error(&server.request(&mut client, "userdata_save", json!({"token": "bad", "data": [1]})), 1003);
    assert_invalid_params(&server.request(&mut client, "userdata_save", json!({"token": token, "data": [1]})), "data");
    assert_invalid_params(&server.request(&mut client, "userdata_load", json!({})), "token");
    assert_invalid_params(&server.request(&mut client, "userdata_load", json!(null)), "token");
    assert_invalid_params(&server.request(&mut client, "userdata_load", json!([token])), "params");
    assert_error(&server.request(&mut client, "userdata_load", json!({"token": "bad"})), 1003);
    assert_error(&load(&mut server, &mut client, &token), 1004);
    let reply = server.request(&mut client, "userdata_save", json!({"token": token, "data": {"ok": 1}, "extra": 2}));
    assert_saved(&reply, 1);
}

// ---------------------------------------------------------------------------
// Tokens never reach the database (§4)
// ---------------------------------------------------------------------------

/// Decodes lowercase hex.
fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

/// The bytes of `path`, and of its `-wal` and `-shm` companions when present.
fn database_files(path: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let name = format!("{}{suffix}", path.display());
        if let Ok(bytes) = std::fs::read(&name) {
            files.push((name, bytes));
        }
    }
    files
}

/// Whether `needle` occurs in `haystack`.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A token lives only in memory: after logins (password and token), saves,
/// a registration, a password change, logouts and re-logins on a file
/// database, no token appears in the database file or its `-wal`/`-shm`
/// files — neither as hex text (any case) nor as raw bytes — while the saved
/// data does (so the search looks at the right bytes).
#[test]
fn token_never_appears_in_the_database_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("portcullis.db");
    let marker = "marker-6a1f0c-userdata";
    let mut tokens = Vec::new();
    {
        let config = TestConfig {
            store: StoreConfig { path: path.clone(), ..TestConfig::default().store },
            ..TestConfig::default()
        };
        let mut server = TestServer::with_config(config);
        let (mut a, token_a) = logged_in(&mut server, "netease1");
        let (mut b, token_b) = logged_in(&mut server, "netease2");
        tokens.extend([token_a.clone(), token_b.clone()]);
        for n in 0..5 {
            assert_saved(&save(&mut server, &mut a, &token_a, json!({"note": marker, "n": n})), n + 1);
            assert_saved(&save(&mut server, &mut b, &token_b, json!({"note": marker, "m": n})), n + 1);
        }
        let reply = server.request(&mut a, "login", json!({ "token": token_a }));
        assert_eq!(reply["result"]["token"], token_a.as_str());
        let reply = server.request(
            &mut b,
            "change_password",
            json!({"token": token_b, "old_password": "123", "new_password": "secret-pw-2"}),
        );
        assert_eq!(reply["result"], json!({}), "{reply}");
        assert_eq!(server.request(&mut a, "logout", json!({ "token": token_a }))["result"], json!({}));
        let token_a2 = server.login(&mut a, "netease1", "123");
        tokens.push(token_a2.clone());
        assert_saved(&save(&mut server, &mut a, &token_a2, json!({"note": marker})), 6);

        let mut c = server.connect();
        let reply = server.request(&mut c, "register", json!({"account": "TokenTest1", "password": "pw-123456"}));
        assert_eq!(reply["result"]["account"], "TokenTest1", "{reply}");
        let token_c = server.login(&mut c, "tokentest1", "pw-123456");
        tokens.push(token_c.clone());
        assert_saved(&save(&mut server, &mut c, &token_c, json!({"note": marker})), 1);
        drop((a, b, c));
        // Dropping the server closes the store: every write is committed and
        // the connection to the file is closed.
    }
    let files = database_files(&path);
    assert!(!files.is_empty(), "no database file at {}", path.display());
    assert!(
        files.iter().any(|(_, bytes)| contains(bytes, marker.as_bytes())),
        "the saved data is not in the database files, so the search proves nothing"
    );
    for token in &tokens {
        assert_eq!(token.len(), 64);
        for (name, bytes) in &files {
            assert!(!contains(bytes, token.as_bytes()), "a token (hex) is in {name}");
            assert!(!contains(bytes, token.to_uppercase().as_bytes()), "a token (upper hex) is in {name}");
            assert!(!contains(bytes, &unhex(token)), "a token (raw bytes) is in {name}");
        }
    }
}

/// A save system must not change numbers: every number comes back with the
/// digits it was written with — beyond 64 bits, beyond f64's range, `-0`
/// and decimals — and `1e400` (valid JSON) is accepted, not `-32700`
/// (docs/protocol.md §4). If this failed, a game's big counters or exact
/// decimals would silently change on the next load.
#[test]
fn numbers_round_trip_exactly() {
    let mut server = TestServer::new();
    let (mut client, token) = logged_in(&mut server, "netease1");
    let line = format!(
        r#"{{"jsonrpc":"2.0","id":"s","method":"userdata_save","params":{{"token":"{token}","data":{{"big":18446744073709551617,"neg_zero":-0,"huge":1e400,"tenth":0.1,"list":[-0.0,1E+2,123456789012345678901234567890]}}}}}}"#
    );
    client.send_line(&line);
    let saved = server.wait_message(&mut client, |m| m["id"] == "s");
    assert_saved(&saved, 1);
    // Read the raw line: a parsed value would normalise the numbers itself.
    client
        .raw
        .send_line(&format!(r#"{{"jsonrpc":"2.0","id":"l","method":"userdata_load","params":{{"token":"{token}"}}}}"#));
    let mut data = String::new();
    assert!(server.step_until(|_| {
        data = client.raw.recv_lines().concat();
        !data.is_empty()
    }));
    for digits in ["18446744073709551617", "-0,", "1e400", "0.1", "-0.0", "1E+2", "123456789012345678901234567890"] {
        assert!(data.contains(digits), "{digits} did not come back as written: {data}");
    }
}

//! The 13 steps of docs/cli.md `portcullis scenario`, in order, on one account.
//!
//! ```text
//!  connection 1: 1 save ─ 2 load ─ 3 login (wrong) ─ 4 load ─ 5 login ─ 6 load ─ 7 save
//!  8 close, connect again (the step-5 token is kept on purpose)
//!  connection 2: 9 login (old token) ─ 10 load ─ 11 login ─ 12 load ─ 13 logout, ping, load
//! ```

use portcullis_rpc::ErrorCode;
use serde_json::{Value, json};

use portcullis_client::{ClientError, LoadResult, LoginResult};

use super::report::{Report, Widths};
use super::{
    Conn, Dial, PASSWORD, RPC_TIMEOUT, SAVED_OBJECT, ScenarioError, WRONG_PASSWORD, describe, is_token, load_json,
    login_json, save_json, saved_object, short_token,
};

/// How many steps there are.
pub(crate) const STEPS: usize = 13;
/// Column widths of the step lines: fits step 7's `userdata_save token=… {…}`.
const WIDTHS: Widths = [66, 24, 23];

/// Runs the 13 steps as `account` (registered with [`PASSWORD`], no user
/// data yet), the first connection at `dial.first` and the second (steps
/// 8-13) at `dial.second`; `Ok(true)` when all pass.
pub(crate) async fn run(dial: &Dial, account: &str, report: &mut Report<'_>) -> Result<bool, ScenarioError> {
    let saved = saved_object();
    report.header("sent", WIDTHS)?;
    let mut conn = Conn::open(dial, &dial.first).await?;

    // 1. userdata_save before login: NOT_LOGGED_IN.
    let params = conn.auth_params(json!({"data": saved}));
    report.sent("userdata_save", &params);
    let outcome = conn.client.userdata_save(saved.clone()).await;
    report.received(&outcome, save_json);
    conn.drain(report);
    let sent = call_text("userdata_save", &params, SAVED_OBJECT);
    expect_error(report, 1, &sent, &outcome, ErrorCode::NotLoggedIn)?;

    // 2. userdata_load: NOT_LOGGED_IN.
    load_expecting_error(report, &mut conn, 2, ErrorCode::NotLoggedIn).await?;

    // 3. login with a wrong password: INVALID_CREDENTIALS.
    let outcome = password_login(report, &mut conn, account, WRONG_PASSWORD).await;
    let sent = format!("login account={account} password={WRONG_PASSWORD}");
    expect_error(report, 3, &sent, &outcome, ErrorCode::InvalidCredentials)?;
    let mut throttled = is_rate_limited(&outcome);

    // 4. userdata_load: NOT_LOGGED_IN.
    load_expecting_error(report, &mut conn, 4, ErrorCode::NotLoggedIn).await?;

    // 5. login with the right password: a token.
    let outcome = password_login(report, &mut conn, account, PASSWORD).await;
    throttled |= is_rate_limited(&outcome);
    let old_token = outcome.as_ref().ok().map(|login| login.token.clone());
    let ok = outcome.as_ref().is_ok_and(|login| is_token(&login.token) && login.account.eq_ignore_ascii_case(account));
    let actual = describe(&outcome, |login| format!("token {}", short_token(&login.token)));
    report.step(5, &format!("login account={account} password={PASSWORD}"), "a token", &actual, ok)?;

    // 6. userdata_load: NO_USERDATA.
    load_expecting_error(report, &mut conn, 6, ErrorCode::NoUserdata).await?;

    // 7. userdata_save of SAVED_OBJECT: version 1.
    let params = conn.auth_params(json!({"data": saved}));
    let sent = call_text("userdata_save", &params, SAVED_OBJECT);
    report.sent("userdata_save", &params);
    let outcome = conn.client.userdata_save(saved.clone()).await;
    report.received(&outcome, save_json);
    conn.drain(report);
    let first_save = outcome.as_ref().ok().cloned();
    let ok = outcome.as_ref().is_ok_and(|save| save.version == 1);
    let actual = describe(&outcome, |save| format!("version {}", save.version));
    report.step(7, &sent, "version 1", &actual, ok)?;

    // 8. reconnect: close, open a new connection, keep the old token.
    report.trace("(closing the connection)");
    conn.client.close();
    if tokio::time::timeout(RPC_TIMEOUT, conn.client.closed()).await.is_err() {
        report.trace("(the old connection did not finish closing in time)");
    }
    conn.drain(report);
    let addr = &dial.second;
    let sent = format!("close; connect {addr} (keep token {})", old_token.as_deref().map_or("-".into(), short_token));
    let mut conn = match Conn::open(dial, addr).await {
        Ok(conn) => {
            report.trace(&format!("(connected to {addr})"));
            report.step(8, &sent, "a new connection", "connected", true)?;
            conn
        }
        Err(error) => {
            report.step(8, &sent, "a new connection", &error.to_string(), false)?;
            for number in 9..=STEPS {
                report.step(number, "-", "-", "not run: no connection", false)?;
            }
            return finish(report, throttled);
        }
    };

    // 9. login with the old token: TOKEN_INVALID.
    let old = old_token.clone().unwrap_or_default();
    let params = json!({"token": old});
    report.sent("login", &params);
    let outcome = conn.client.login_with_token(&old).await;
    report.received(&outcome, login_json);
    conn.drain(report);
    let sent = match &old_token {
        Some(old) => format!("login token={} (the old one)", short_token(old)),
        None => "login token=\"\" (step 5 gave no token)".to_owned(),
    };
    expect_error(report, 9, &sent, &outcome, ErrorCode::TokenInvalid)?;

    // 10. userdata_load: NOT_LOGGED_IN.
    load_expecting_error(report, &mut conn, 10, ErrorCode::NotLoggedIn).await?;

    // 11. login with the right password: a new token.
    let outcome = password_login(report, &mut conn, account, PASSWORD).await;
    throttled |= is_rate_limited(&outcome);
    let fresh = |login: &LoginResult| is_token(&login.token) && Some(&login.token) != old_token.as_ref();
    let ok = outcome.as_ref().is_ok_and(|login| fresh(login) && login.account.eq_ignore_ascii_case(account));
    let actual = describe(&outcome, |login| {
        let note = if fresh(login) { "" } else { " (not new)" };
        format!("token {}{note}", short_token(&login.token))
    });
    report.step(11, &format!("login account={account} password={PASSWORD}"), "a new token", &actual, ok)?;

    // 12. userdata_load: the object saved in step 7.
    let params = conn.auth_params(json!({}));
    let sent = call_text("userdata_load", &params, "");
    report.sent("userdata_load", &params);
    let outcome = conn.client.userdata_load().await;
    report.received(&outcome, load_json);
    conn.drain(report);
    let same_as_saved = |load: &LoadResult| {
        load.data_value().is_ok_and(|data| data == saved)
            && load.version == 1
            && first_save.as_ref().is_none_or(|save| save.version == load.version && save.saved_at == load.saved_at)
    };
    let ok = outcome.as_ref().is_ok_and(same_as_saved);
    let actual = describe(&outcome, |load| {
        let mut text = format!("v{} {}", load.version, load.data_value().unwrap_or_default());
        if let Some(save) = first_save.as_ref().filter(|save| save.saved_at != load.saved_at) {
            text.push_str(&format!(" saved_at {} (saved {})", load.saved_at, save.saved_at));
        }
        text
    });
    report.step(12, &sent, "step 7's object, v1", &actual, ok)?;

    // 13. logout: {}, the connection stays open (ping answers, userdata_load is NOT_LOGGED_IN).
    let params = conn.auth_params(json!({}));
    let sent = format!("{}; ping; userdata_load", call_text("logout", &params, ""));
    report.sent("logout", &params);
    let logout = conn.client.logout().await;
    report.received(&logout, |()| json!({}));
    report.sent("ping", &json!({}));
    let ping = conn.client.ping().await;
    report.received(&ping, |time| json!({ "server_time_ms": time }));
    let params = conn.auth_params(json!({}));
    report.sent("userdata_load", &params);
    let load = conn.client.userdata_load().await;
    report.received(&load, load_json);
    conn.drain(report);
    let ok = logout.is_ok()
        && ping.is_ok()
        && load.as_ref().err().and_then(ClientError::code) == Some(ErrorCode::NotLoggedIn)
        && conn.client.token().is_none()
        && !conn.client.is_closed();
    let actual = format!(
        "{}, {}, {}",
        describe(&logout, |()| "{}".to_owned()),
        describe(&ping, |_| "ping".to_owned()),
        describe(&load, |load| format!("v{}", load.version)),
    );
    report.step(13, &sent, "{}, ping, NOT_LOGGED_IN", &actual, ok)?;

    conn.client.close();
    finish(report, throttled)
}

/// Writes the summary, after a note on login throttling when a login got
/// `RATE_LIMITED`; `Ok(true)` when every step passed.
fn finish(report: &mut Report<'_>, throttled: bool) -> Result<bool, ScenarioError> {
    if throttled {
        report.line(
            "note: RATE_LIMITED: the server refuses password logins from an address after \
             --login-fail-limit failed ones (default 5, each run has one) within --login-fail-window \
             (default 5m), docs/protocol.md §6; wait, or use a fresh server",
        )?;
    }
    Ok(report.summary("steps")?)
}

/// Whether `outcome` is the server's `RATE_LIMITED`.
fn is_rate_limited<T>(outcome: &Result<T, ClientError>) -> bool {
    outcome.as_ref().err().and_then(ClientError::code) == Some(ErrorCode::RateLimited)
}

/// Sends `userdata_load` and reports step `number` expecting error `code`.
async fn load_expecting_error(
    report: &mut Report<'_>,
    conn: &mut Conn,
    number: usize,
    code: ErrorCode,
) -> Result<(), ScenarioError> {
    let params = conn.auth_params(json!({}));
    let sent = call_text("userdata_load", &params, "");
    report.sent("userdata_load", &params);
    let outcome = conn.client.userdata_load().await;
    report.received(&outcome, load_json);
    conn.drain(report);
    Ok(expect_error(report, number, &sent, &outcome, code)?)
}

/// Sends `login` with `account` and `password` and records the messages.
async fn password_login(
    report: &mut Report<'_>,
    conn: &mut Conn,
    account: &str,
    password: &str,
) -> Result<LoginResult, ClientError> {
    report.sent("login", &json!({"account": account, "password": password}));
    let outcome = conn.client.login_with_password(account, password).await;
    report.received(&outcome, login_json);
    conn.drain(report);
    outcome
}

/// Reports step `number`, which passes when `outcome` is the server error `code`.
fn expect_error<T>(
    report: &mut Report<'_>,
    number: usize,
    sent: &str,
    outcome: &Result<T, ClientError>,
    code: ErrorCode,
) -> std::io::Result<()> {
    let ok = outcome.as_ref().err().and_then(ClientError::code) == Some(code);
    let actual = describe(outcome, |_| "a result (no error)".to_owned());
    report.step(number, sent, code.name(), &actual, ok)
}

/// A call for the "sent" column: `method`, then `token=1a2b3c4d…` when
/// `params` carries a token, then `rest` when not empty.
fn call_text(method: &str, params: &Value, rest: &str) -> String {
    let mut text = method.to_owned();
    if let Some(token) = params.get("token").and_then(Value::as_str) {
        text.push_str(&format!(" token={}", short_token(token)));
    }
    if !rest.is_empty() {
        text.push(' ');
        text.push_str(rest);
    }
    text
}

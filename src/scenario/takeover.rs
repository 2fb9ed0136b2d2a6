//! `portcullis scenario --takeover`: the duplicate-login story of
//! docs/protocol.md §6 with two clients on one account, printed message by
//! message, then checked.
//!
//! ```text
//!  A: login, userdata_save v1, kick save data := final
//!  B: login ───────────────> B <- login_pending
//!                            A <- kicked ─> A's client sends userdata_save(final) by itself
//!                            A <- automatic save result (v2)
//!                            A <- disconnected, closed
//!                            B <- login result (new token)
//!  B: userdata_load  ==  A's automatic save (data, version, saved_at)
//! ```

use serde_json::{Value, json};
use tokio::time::Instant;

use portcullis_client::protocol::notification;
use portcullis_client::{ClientError, ClientEvent, DisconnectReason, LoginResult, SaveResult};

use super::report::{Report, Widths};
use super::{
    Conn, Dial, PASSWORD, ScenarioError, TAKEOVER_FINAL_OBJECT, TAKEOVER_TIMEOUT, describe, describe_error,
    describe_event, error_json, is_token, load_json, login_json, save_json, saved_object, short_token,
    takeover_final_object,
};

/// What B should see for its login, in order (see [`label`]).
const B_EXPECTED: &str = "login_pending, login";
/// What A should see once B logs in, in order, before its connection closes
/// (see [`label`]).
const A_EXPECTED: &str = "kicked, save, disconnected";
/// Column widths of the check lines.
const WIDTHS: Widths = [24, 27, 38];

/// Runs the takeover as `account` (registered with [`PASSWORD`], no user
/// data yet), client A at `dial.first` and client B at `dial.second` (e.g. A
/// on TCP, B on WebSocket); `Ok(true)` when every check passes.
pub(crate) async fn run(dial: &Dial, account: &str, report: &mut Report<'_>) -> Result<bool, ScenarioError> {
    let first = saved_object();
    let last = takeover_final_object();
    let mut story = Story { report };

    // A logs in and saves the first object.
    let mut a = Conn::open(dial, &dial.first).await?;
    let a_login = story.login("A", &mut a, account).await?;
    story.send("A", "userdata_save", &a.auth_params(json!({"data": first})))?;
    let a_save = a.client.userdata_save(first.clone()).await;
    story.result("A", "userdata_save", &a_save, save_json)?;
    a.client.set_save_data(last.clone());
    story.say("A", &format!("   kick save data set to {TAKEOVER_FINAL_OBJECT}"))?;

    // B logs in to the same account: A is kicked, saves by itself, and goes.
    let mut b = Conn::open(dial, &dial.second).await?;
    story.send("B", "login", &json!({"account": account, "password": PASSWORD}))?;
    let b_login_call = b.client.login_with_password(account, PASSWORD);
    tokio::pin!(b_login_call);
    let deadline = Instant::now() + TAKEOVER_TIMEOUT;
    let mut a_seen: Vec<String> = Vec::new();
    let mut b_seen: Vec<String> = Vec::new();
    let mut auto_save: Option<Result<SaveResult, String>> = None;
    let mut b_login: Option<Result<LoginResult, ClientError>> = None;
    // Without a session, A cannot be kicked: then only B is waited for.
    let mut a_open = a_login.is_ok();
    while a_open || b_login.is_none() {
        // Biased: B's notifications before B's login result, which the client
        // hands over after them when they arrive first.
        tokio::select! {
            biased;
            () = tokio::time::sleep_until(deadline) => {
                story.say("-", &format!("   (gave up waiting after {TAKEOVER_TIMEOUT:?})"))?;
                if a_open {
                    a_seen.push("still open".to_owned());
                }
                if b_login.is_none() {
                    b_seen.push("no login result".to_owned());
                }
                break;
            }
            event = a.events.recv(), if a_open => match event {
                Some(event) => {
                    if let ClientEvent::KickSave(outcome) = &event {
                        auto_save = Some(match outcome {
                            Ok(save) => Ok(save.clone()),
                            Err(error) => Err(describe_error(error)),
                        });
                    }
                    a_seen.push(label(&event));
                    story.event("A", &event)?;
                    if matches!(&event, ClientEvent::Notification(n) if n.method == notification::KICKED) {
                        let token = a_login.as_ref().map(|login| login.token.clone()).unwrap_or_default();
                        let params = story.report.shorten(&json!({"data": last, "token": token}));
                        story.say("A", &format!("-> userdata_save {params} (sent by the client on kicked)"))?;
                    }
                }
                None => {
                    a_open = false;
                    story.say("A", "   connection closed")?;
                }
            },
            Some(event) = b.events.recv() => {
                b_seen.push(label(&event));
                story.event("B", &event)?;
            }
            outcome = &mut b_login_call, if b_login.is_none() => {
                story.result("B", "login", &outcome, login_json)?;
                b_seen.push(match &outcome {
                    Ok(_) => "login".to_owned(),
                    Err(error) => format!("login {}", describe_error(error)),
                });
                b_login = Some(outcome);
            }
        }
    }
    while let Ok(event) = b.events.try_recv() {
        b_seen.push(label(&event));
        story.event("B", &event)?;
    }

    // B loads: A's automatic save.
    story.send("B", "userdata_load", &b.auth_params(json!({})))?;
    let b_load = b.client.userdata_load().await;
    story.result("B", "userdata_load", &b_load, load_json)?;
    let report = story.report;

    // The checks.
    report.line("")?;
    report.header("check", WIDTHS)?;
    let ok = a_login.as_ref().is_ok_and(|login| is_token(&login.token));
    let actual = describe(&a_login, |login| format!("token {}", short_token(&login.token)));
    report.step(1, "A: login", "a token", &actual, ok)?;

    let ok = a_save.as_ref().is_ok_and(|save| save.version == 1);
    let actual = describe(&a_save, |save| format!("version {}", save.version));
    report.step(2, "A: first userdata_save", "version 1", &actual, ok)?;

    let actual = sequence(&b_seen);
    report.step(3, "B: messages in order", B_EXPECTED, &actual, actual == B_EXPECTED)?;

    let actual = sequence(&a_seen);
    report.step(4, "A: messages in order", A_EXPECTED, &actual, actual == A_EXPECTED)?;

    let ok = matches!(&auto_save, Some(Ok(save)) if save.version == 2);
    let actual = match &auto_save {
        Some(Ok(save)) => format!("version {}", save.version),
        Some(Err(error)) => error.clone(),
        None => "no automatic save".to_owned(),
    };
    report.step(5, "A: automatic save", "version 2", &actual, ok)?;

    let a_token = a_login.as_ref().ok().map(|login| login.token.as_str());
    let b_result = b_login.unwrap_or(Err(ClientError::Timeout));
    let ok = b_result.as_ref().is_ok_and(|login| is_token(&login.token) && Some(login.token.as_str()) != a_token);
    let actual = describe(&b_result, |login| format!("token {}", short_token(&login.token)));
    report.step(6, "B: login", "a new token", &actual, ok)?;

    let ok = match (&b_load, &auto_save) {
        (Ok(load), Some(Ok(save))) => {
            load.data_value().is_ok_and(|data| data == last)
                && load.version == save.version
                && load.saved_at == save.saved_at
        }
        _ => false,
    };
    let actual = describe(&b_load, |load| format!("v{} {}", load.version, load.data_value().unwrap_or_default()));
    report.step(7, "B: userdata_load", "A's automatic save", &actual, ok)?;

    a.client.close();
    b.client.close();
    Ok(report.summary("checks")?)
}

/// Prints the messages of both clients as they come: `A -> ...`, `B <- ...`.
struct Story<'r, 'o> {
    /// Where the lines go.
    report: &'r mut Report<'o>,
}

impl Story<'_, '_> {
    /// Writes `side text`.
    fn say(&mut self, side: &str, text: &str) -> Result<(), ScenarioError> {
        Ok(self.report.line(&format!("{side} {text}"))?)
    }

    /// Writes a request: `A -> method {params}`.
    fn send(&mut self, side: &str, method: &str, params: &Value) -> Result<(), ScenarioError> {
        let params = self.report.shorten(params);
        self.say(side, &format!("-> {method} {params}"))
    }

    /// Writes a response: `A <- method result {...}` or `A <- method error {...}`.
    fn result<T>(
        &mut self,
        side: &str,
        method: &str,
        outcome: &Result<T, ClientError>,
        to_json: impl Fn(&T) -> Value,
    ) -> Result<(), ScenarioError> {
        let text = match outcome {
            Ok(result) => format!("<- {method} result {}", self.report.shorten(&to_json(result))),
            Err(error) => format!("<- {method} {}", error_json(error)),
        };
        self.say(side, &text)
    }

    /// Writes an event: a notification, or the automatic save's result.
    fn event(&mut self, side: &str, event: &ClientEvent) -> Result<(), ScenarioError> {
        self.say(side, &format!("<- {}", describe_event(event)))
    }

    /// Logs `conn` in to `account` with [`PASSWORD`], printing both messages.
    async fn login(
        &mut self,
        side: &str,
        conn: &mut Conn,
        account: &str,
    ) -> Result<Result<LoginResult, ClientError>, ScenarioError> {
        self.send(side, "login", &json!({"account": account, "password": PASSWORD}))?;
        let outcome = conn.client.login_with_password(account, PASSWORD).await;
        self.result(side, "login", &outcome, login_json)?;
        Ok(outcome)
    }
}

/// The labels of a message sequence, or `(none)`.
fn sequence(labels: &[String]) -> String {
    if labels.is_empty() { "(none)".to_owned() } else { labels.join(", ") }
}

/// A short name for an event in the message sequences of the checks: the
/// notification's method when its params are as docs/protocol.md §5–§6 say for a
/// takeover (`login_pending` with reason `replacing_session`; `kicked` with
/// reason `duplicate_login` and a `save_deadline_ms`; `disconnected` with
/// reason `duplicate_login`), `method(params)` otherwise; `save` for a
/// successful automatic save, `save ERROR` for a failed one.
fn label(event: &ClientEvent) -> String {
    match event {
        ClientEvent::Notification(notification) => {
            let method = notification.method.as_str();
            let reason = notification.reason();
            let as_expected = match method {
                notification::LOGIN_PENDING => reason == Some(notification::REPLACING_SESSION),
                notification::KICKED => {
                    reason == Some(DisconnectReason::DuplicateLogin.as_str())
                        && notification.params.get("save_deadline_ms").is_some_and(Value::is_u64)
                }
                notification::DISCONNECTED => reason == Some(DisconnectReason::DuplicateLogin.as_str()),
                _ => false,
            };
            if as_expected { method.to_owned() } else { format!("{method}({})", notification.params) }
        }
        ClientEvent::KickSave(Ok(_)) => "save".to_owned(),
        ClientEvent::KickSave(Err(error)) => format!("save {}", describe_error(error)),
        ClientEvent::Unmatched(_) => "unmatched response".to_owned(),
        _ => "other event".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_client::Notification;

    fn notification(method: &str, params: Value) -> ClientEvent {
        ClientEvent::Notification(Notification { method: method.to_owned(), params })
    }

    #[test]
    fn labels() {
        let kicked = notification("kicked", json!({"reason": "duplicate_login", "save_deadline_ms": 5000}));
        assert_eq!(label(&kicked), "kicked");
        let no_deadline = notification("kicked", json!({"reason": "duplicate_login"}));
        assert_eq!(label(&no_deadline), r#"kicked({"reason":"duplicate_login"})"#);
        let pending = notification("login_pending", json!({"reason": "replacing_session"}));
        assert_eq!(label(&pending), "login_pending");
        let closed = notification("disconnected", json!({"reason": "idle_timeout"}));
        assert_eq!(label(&closed), r#"disconnected({"reason":"idle_timeout"})"#);
        assert_eq!(label(&ClientEvent::KickSave(Err(ClientError::Timeout))), "save no response within the RPC timeout");
        assert_eq!(sequence(&[]), "(none)");
        assert_eq!(sequence(&["a".to_owned(), "b".to_owned()]), "a, b");
    }
}

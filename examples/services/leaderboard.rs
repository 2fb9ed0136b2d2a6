//! A Portcullis backend service in Rust (docs/services.md): a leaderboard
//! kept in the service's memory, on `portcullis_client`'s service API.
//!
//! - `leaderboard_submit {"token":T,"score":N}` (logged-in players) →
//!   `{"best":N,"rank":R}`; a player who loses first place hears
//!   `leaderboard_beaten {"by":ACCOUNT,"score":N}` (`service_notify`).
//! - `leaderboard_top {"n":N}` (anyone) → `{"top":[{"account":A,"score":N},...]}`.
//!
//! ```text
//! cargo run --release -- serve --service-key dev-key &
//! cargo run --release --example leaderboard -- 127.0.0.1:7777 dev-key
//! ```
//!
//! Restart it at will: calls sent while it is away wait for it
//! (`--service-wait`), and no player is disconnected. Its scores are in
//! memory only, so a restart forgets them (a real service would keep them
//! in its own database).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use portcullis_client::protocol::{ErrorCode, RpcError};
use portcullis_client::{Call, Service, SessionEvent};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
struct Submit {
    score: i64,
}

#[derive(Deserialize)]
struct Top {
    n: Option<usize>,
}

/// Best score per account.
type Board = Arc<Mutex<HashMap<String, i64>>>;

fn ranked(board: &HashMap<String, i64>) -> Vec<(String, i64)> {
    let mut rows: Vec<(String, i64)> = board.iter().map(|(a, s)| (a.clone(), *s)).collect();
    rows.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    rows
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:7777".into());
    let key = args.next().or_else(|| std::env::var("PORTCULLIS_SERVICE_KEY").ok()).unwrap_or_default();
    let board: Board = Arc::default();
    let (submit_board, top_board) = (board.clone(), board.clone());

    let service = Service::builder("leaderboard")
        .method("leaderboard_submit", true, move |call: Call<Submit>| {
            let board = submit_board.clone();
            async move {
                let account = call.session.account.clone().ok_or_else(|| RpcError::new(ErrorCode::NotLoggedIn))?;
                let (best, rank, dethroned) = {
                    let mut board = board.lock().map_err(|_| RpcError::new(ErrorCode::InternalError))?;
                    let leader = ranked(&board).first().cloned();
                    let best = board.entry(account.clone()).or_insert(call.params.score);
                    *best = (*best).max(call.params.score);
                    let best = *best;
                    let rows = ranked(&board);
                    let rank = rows.iter().position(|(a, _)| *a == account).map_or(0, |i| i + 1);
                    let dethroned = leader.filter(|(a, s)| *a != account && best > *s).map(|(a, _)| a);
                    (best, rank, dethroned)
                };
                if let Some(previous) = dethroned {
                    let _ = call
                        .handle
                        .notify_account(&previous, "leaderboard_beaten", json!({"by": account, "score": best}))
                        .await;
                }
                Ok::<Value, RpcError>(json!({"best": best, "rank": rank}))
            }
        })
        .method("leaderboard_top", false, move |call: Call<Top>| {
            let board = top_board.clone();
            async move {
                let n = call.params.n.unwrap_or(10).min(100);
                let board = board.lock().map_err(|_| RpcError::new(ErrorCode::InternalError))?;
                let top: Vec<Value> =
                    ranked(&board).into_iter().take(n).map(|(a, s)| json!({"account": a, "score": s})).collect();
                Ok::<Value, RpcError>(json!({ "top": top }))
            }
        })
        .on_session(|event, _| match event {
            SessionEvent::Started(s) => eprintln!("session started: {} on conn {}", s.account, s.conn),
            SessionEvent::Ended(s) => eprintln!("session ended: {} ({})", s.account, s.reason),
        })
        .connect(addr.as_str(), &key)
        .await?;
    eprintln!("registered: {:?}", service.registered().methods);
    service.run().await?;
    Ok(())
}

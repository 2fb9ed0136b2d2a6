//! The design card's invariants, as a property: random sequences of
//! connect, login (right or wrong password, the same account from two
//! connections: a takeover), logout, save, kick, deadlines and close; after
//! every frame the card components and the `SessionIndex` must agree.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bevy_ecs::prelude::*;
use portcullis_session::{
    DisconnectReason, Kick, LoginDeadline, PendingRpc, PendingTags, Session, SessionConfig, SessionIndex, StagedCards,
    Token,
};
use portcullis_testkit::{JsonClient, TestConfig, TestServer};
use portcullis_userdata::UserDataConfig;
use proptest::prelude::*;
use serde_json::json;

const ACCOUNTS: [&str; 2] = ["netease1", "netease2"];

/// Which timeout a `Deadline` step moves the clock past.
#[derive(Debug, Clone, Copy)]
enum Timeout {
    Login,
    KickSave,
    Idle,
}

#[derive(Debug, Clone)]
enum Step {
    Connect,
    Login {
        client: usize,
        account: usize,
        right_password: bool,
    },
    TokenLogin {
        client: usize,
    },
    Logout {
        client: usize,
    },
    Save {
        client: usize,
    },
    Kick {
        client: usize,
    },
    Deadline(Timeout),
    Close {
        client: usize,
    },
    Frames(usize),
    /// Runs frames until no request waits on the store.
    Settle,
}

fn step_strategy() -> impl Strategy<Value = Step> {
    let client = 0usize..4;
    prop_oneof![
        2 => Just(Step::Connect),
        4 => (client.clone(), 0usize..ACCOUNTS.len(), prop::bool::weighted(0.8))
            .prop_map(|(client, account, right_password)| Step::Login { client, account, right_password }),
        1 => client.clone().prop_map(|client| Step::TokenLogin { client }),
        2 => client.clone().prop_map(|client| Step::Logout { client }),
        2 => client.clone().prop_map(|client| Step::Save { client }),
        2 => client.clone().prop_map(|client| Step::Kick { client }),
        2 => prop_oneof![Just(Timeout::Login), Just(Timeout::KickSave), Just(Timeout::Idle)].prop_map(Step::Deadline),
        1 => client.prop_map(|client| Step::Close { client }),
        2 => (1usize..4).prop_map(Step::Frames),
        2 => Just(Step::Settle),
    ]
}

/// Checks every invariant of the card against the world.
fn check(world: &mut World) -> Result<(), String> {
    let mut query = world.query::<(Entity, &Session, Option<&Token>, Option<&LoginDeadline>, Option<&PendingRpc>)>();
    let mut tokens: HashMap<Token, Entity> = HashMap::new();
    let mut live_per_account: HashMap<i64, Vec<Entity>> = HashMap::new();
    let mut pending_tags: Vec<(u64, Entity)> = Vec::new();
    for (entity, session, token, deadline, pending) in query.iter(world) {
        let state = session.state_name();
        if token.is_some() && deadline.is_some() {
            return Err(format!("{entity}: Token and LoginDeadline both present ({state})"));
        }
        let live = matches!(state, "logged_in" | "kicking");
        if token.is_some() != live {
            return Err(format!("{entity}: Token present = {}, state {state}", token.is_some()));
        }
        if deadline.is_some() != (state == "awaiting_login") {
            return Err(format!("{entity}: LoginDeadline present = {}, state {state}", deadline.is_some()));
        }
        if live != session.account().is_some() {
            return Err(format!("{entity}: account present = {}, state {state}", session.account().is_some()));
        }
        if let Some(token) = token {
            tokens.insert(token.clone(), entity);
        }
        if let Some(account) = session.account() {
            live_per_account.entry(account.id).or_default().push(entity);
        }
        if let Some(pending) = pending {
            if pending.is_empty() {
                return Err(format!("{entity}: an empty PendingRpc"));
            }
            pending_tags.extend(pending.tags().map(|tag| (tag, entity)));
        }
    }
    for (account, entities) in &live_per_account {
        if entities.len() > 1 {
            return Err(format!("account {account}: {} sessions logged in or kicking: {entities:?}", entities.len()));
        }
    }
    let index = world.resource::<SessionIndex>();
    for (token, entity) in &tokens {
        if index.entity_of_token(token.as_str()) != Some(*entity) {
            return Err(format!("{entity}: its Token is not indexed to it"));
        }
    }
    for (token, entity) in index.tokens() {
        if tokens.get(token) != Some(&entity) {
            return Err(format!("index: a token indexed to {entity}, which does not hold it"));
        }
    }
    for (account, entities) in &live_per_account {
        if index.entity_of_account(*account) != Some(entities[0]) {
            return Err(format!("account {account}: session {} not in the by-account index", entities[0]));
        }
    }
    for (account, entity) in index.accounts() {
        if live_per_account.get(&account).is_none_or(|e| e[0] != entity) {
            return Err(format!("index: account {account} indexed to {entity}, which has no session of it"));
        }
    }
    let tags = world.resource::<PendingTags>();
    for (tag, entity) in pending_tags {
        if tags.entity_of_tag(tag) != Some(entity) {
            return Err(format!("{entity}: pending tag {tag} not routed to it"));
        }
    }
    let staged = world.resource::<StagedCards>();
    if !staged.is_empty() {
        return Err(format!("{} staged cards left after the frame", staged.len()));
    }
    Ok(())
}

struct Run {
    server: TestServer,
    clients: Vec<JsonClient>,
    config: SessionConfig,
}

impl Run {
    fn new(mirror_userdata: bool) -> Self {
        let config = SessionConfig::default();
        let userdata = UserDataConfig { mirror_userdata, ..Default::default() };
        let server = TestServer::with_config(TestConfig { session: config.clone(), userdata, ..Default::default() });
        Self { server, clients: Vec::new(), config }
    }

    fn frame(&mut self) -> Result<(), String> {
        self.server.update();
        check(self.server.app.world_mut())
    }

    fn advance(&mut self, by: Duration) -> Result<(), String> {
        self.server.advance(by);
        check(self.server.app.world_mut())
    }

    fn client(&mut self, i: usize) -> Option<&mut JsonClient> {
        let n = self.clients.len();
        if n == 0 { None } else { self.clients.get_mut(i % n) }
    }

    fn entity(&self, i: usize) -> Option<Entity> {
        let n = self.clients.len();
        if n == 0 { None } else { self.server.entity(&self.clients[i % n]) }
    }

    fn token(&self, i: usize) -> String {
        let token = self.entity(i).and_then(|e| self.server.world().get::<Token>(e));
        token.map_or_else(|| "0".repeat(64), |t| t.as_str().to_owned())
    }

    fn run(&mut self, step: &Step) -> Result<(), String> {
        match *step {
            Step::Connect => {
                // Each client its own address, so the login throttle stays per client.
                let n = u8::try_from(self.clients.len() + 1).unwrap_or(u8::MAX);
                let peer = SocketAddr::from(([127, 0, 0, n], 40000));
                let client = self.server.connect_from(peer);
                self.clients.push(client);
                check(self.server.app.world_mut())?;
            }
            Step::Login { client, account, right_password } => {
                let password = if right_password { "123" } else { "wrong-password" };
                if let Some(c) = self.client(client) {
                    c.send_request("login", json!({"account": ACCOUNTS[account], "password": password}));
                }
                self.frame()?;
            }
            Step::TokenLogin { client } => {
                let token = self.token(client);
                if let Some(c) = self.client(client) {
                    c.send_request("login", json!({"token": token}));
                }
                self.frame()?;
            }
            Step::Logout { client } => {
                let token = self.token(client);
                if let Some(c) = self.client(client) {
                    c.send_request("logout", json!({"token": token}));
                }
                self.frame()?;
            }
            Step::Save { client } => {
                let token = self.token(client);
                if let Some(c) = self.client(client) {
                    c.send_request("userdata_save", json!({"token": token, "data": {"gold": 1}}));
                }
                self.frame()?;
            }
            Step::Kick { client } => {
                if let Some(entity) = self.entity(client) {
                    self.server.app.world_mut().trigger(Kick { entity, reason: DisconnectReason::Admin });
                }
                self.frame()?;
            }
            Step::Deadline(timeout) => {
                let by = match timeout {
                    Timeout::Login => self.config.login_timeout,
                    Timeout::KickSave => self.config.kick_save_timeout,
                    Timeout::Idle => self.config.idle_timeout,
                };
                self.advance(by + Duration::from_millis(1))?;
            }
            Step::Close { client } => {
                if let Some(c) = self.client(client) {
                    c.disconnect();
                }
                self.frame()?;
            }
            Step::Frames(n) => {
                for _ in 0..n {
                    self.frame()?;
                }
            }
            Step::Settle => {
                let give_up = Instant::now() + Duration::from_secs(5);
                while !self.server.world().resource::<PendingTags>().is_empty() && Instant::now() < give_up {
                    self.frame()?;
                    std::thread::yield_now();
                }
                self.frame()?;
            }
        }
        for client in &mut self.clients {
            client.take_all(); // the replies are not under test here; keep the inboxes small
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// After every frame: `Token` and `LoginDeadline` are never both present;
    /// `Token` is present exactly while logged in or kicking and
    /// `LoginDeadline` exactly while awaiting login; the `SessionIndex` maps
    /// agree with the components; at most one live session per account.
    #[test]
    fn the_card_components_always_agree(
        mirror in any::<bool>(),
        steps in prop::collection::vec(step_strategy(), 1..20),
    ) {
        let mut run = Run::new(mirror);
        for (i, step) in steps.iter().enumerate() {
            if let Err(broken) = run.run(step) {
                prop_assert!(false, "after step {i} ({step:?}): {broken}");
            }
        }
        // Let every store reply land, then check once more.
        if let Err(broken) = run.run(&Step::Settle) {
            prop_assert!(false, "after settling: {broken}");
        }
    }
}

/// A takeover done by hand: the property's steps reach it, this pins it down.
#[test]
fn a_takeover_moves_the_token_and_the_index() {
    let mut run = Run::new(false);
    run.run(&Step::Connect).unwrap();
    run.run(&Step::Connect).unwrap();
    let (a, b) = (run.entity(0).unwrap(), run.entity(1).unwrap());
    let token = run.server.login(&mut run.clients[0], "netease1", "123");
    check(run.server.app.world_mut()).unwrap();
    assert!(run.server.world().get::<LoginDeadline>(a).is_none());
    assert_eq!(run.server.world().resource::<SessionIndex>().entity_of_token(&token), Some(a));
    run.clients[1].send_request("login", json!({"account": "NETEASE1", "password": "123"}));
    let kicked = run.server.wait_message(&mut run.clients[0], |m| m["method"] == "kicked");
    assert_eq!(kicked["params"]["reason"], "duplicate_login");
    assert_eq!(run.server.world().get::<Session>(a).map(Session::state_name), Some("kicking"));
    assert!(run.server.world().get::<Token>(a).is_some(), "a kicked session keeps its token until it ends");
    run.clients[0].send_request("logout", json!({"token": token}));
    let ok = run.server.step_until(|s| s.world().get::<Session>(b).is_some_and(|s| s.state_name() == "logged_in"));
    assert!(ok, "the takeover did not finish");
    check(run.server.app.world_mut()).unwrap();
    let index = run.server.world().resource::<SessionIndex>();
    assert_eq!(index.entity_of_token(&token), None, "the old token died");
    assert_eq!(index.entity_of_account_name("netease1"), Some(b));
    assert!(run.server.world().get::<Token>(b).is_some());
}

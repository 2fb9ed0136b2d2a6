//! The arena's game logic, as one plugin: players walk a square grid and hit
//! each other; the state of everyone is pushed to every player each tick.
//!
//! ```text
//!  Insert<Token> ──▶ insert Player + Position (a spawn point) + Health (full)
//!  LoggedOut     ──▶ remove them (logout, end of a kick, close)
//!  `arena_online` {"token"}           ──▶ the account names of every session with a Token
//!  `move`   {"token","dx","dy"}      ──▶ Position += (dx, dy), kept on the grid
//!  `attack` {"token","target":NAME}  ──▶ target Health -= damage; at 0: respawn, kills/deaths
//!  FixedUpdate: push_state ──▶ `arena_state` to every player
//! ```
//!
//! Built only on the public API of `portcullis` (the prelude), so the
//! example's `main` and the system-level tests in `tests/arena.rs` share it.

use bevy_app::prelude::*;
use bevy_ecs::prelude::*;
use portcullis::prelude::*;
use serde::{Deserialize, Serialize};

/// Error code of `attack`: no player of that account is in the arena.
pub const TARGET_NOT_FOUND: i64 = 3001;
/// Error code of `attack`: the target is farther than `attack_range`.
pub const OUT_OF_RANGE: i64 = 3002;
/// Error code of `attack`: a player may not attack itself.
pub const SELF_TARGET: i64 = 3003;

/// Rules of the arena. Inserted as a resource by [`ArenaPlugin`]; read-only.
#[derive(Resource, Debug, Clone)]
pub struct ArenaConfig {
    /// The grid is `size` × `size` cells, `x` and `y` in `0..size`.
    pub size: i32,
    /// Largest `|dx|` and `|dy|` of one `move`, in cells.
    pub max_step: i32,
    /// Health of a fresh or respawned player.
    pub max_health: i32,
    /// Health one `attack` takes.
    pub damage: i32,
    /// Farthest target of an `attack`, in cells (Chebyshev distance: diagonals count 1).
    pub attack_range: i32,
    /// Where players appear: at login in turn, after a death the one farthest from the killer.
    pub spawn_points: Vec<Position>,
}

impl Default for ArenaConfig {
    fn default() -> Self {
        Self {
            size: 21,
            max_step: 1,
            max_health: 100,
            damage: 25,
            attack_range: 3,
            spawn_points: vec![
                Position { x: 8, y: 10 },
                Position { x: 12, y: 10 },
                Position { x: 10, y: 8 },
                Position { x: 10, y: 12 },
            ],
        }
    }
}

/// A logged-in player of the arena. Inserted on the connection entity when
/// it logs in, removed when its session ends; `kills` and `deaths` are
/// changed by `attack`.
#[derive(Component, Debug, Clone)]
pub struct Player {
    /// The account name.
    pub account: String,
    /// Players this one killed.
    pub kills: u32,
    /// Times this one was killed.
    pub deaths: u32,
}

/// A cell of the grid. On the connection entity with [`Player`]; changed by
/// `move` and on respawn.
#[derive(Component, Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Position {
    /// Column, `0..size`.
    pub x: i32,
    /// Row, `0..size`.
    pub y: i32,
}

impl Position {
    /// Chebyshev distance in cells (a diagonal step counts 1).
    pub fn distance(self, other: Position) -> i32 {
        (self.x - other.x).abs().max((self.y - other.y).abs())
    }
}

/// Hit points, `1..=max_health` (a player at 0 respawns at once). On the
/// connection entity with [`Player`]; changed by `attack`.
#[derive(Component, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Health(pub i32);

/// The arena's clock and spawn cursor. Inserted by [`ArenaPlugin`]; changed
/// by its systems only.
#[derive(Resource, Debug, Default)]
pub struct Arena {
    /// Fixed ticks run so far; the `tick` of `arena_state`.
    pub tick: u64,
    /// The spawn point the next login gets.
    next_spawn: usize,
}

/// The arena plugin: [`ArenaConfig`], [`Arena`], the `move` and `attack`
/// methods (logged-in only), the login/logout observers and the
/// `FixedUpdate` system that pushes `arena_state`. Add it after
/// `ServerPlugins`.
#[derive(Debug, Clone, Default)]
pub struct ArenaPlugin {
    /// Rules, copied into the [`ArenaConfig`] resource.
    pub config: ArenaConfig,
}

impl Plugin for ArenaPlugin {
    fn build(&self, app: &mut App) {
        app.insert_resource(self.config.clone())
            .init_resource::<Arena>()
            .add_observer(enter_arena)
            .add_observer(leave_arena)
            .add_rpc_method("move", Access::LoggedIn, move_player)
            .add_rpc_method("attack", Access::LoggedIn, attack)
            .add_rpc_method("arena_online", Access::LoggedIn, online)
            .add_systems(FixedUpdate, push_state);
    }
}

/// Puts a player that logged in on the next spawn point with full health.
///
/// "Logged in" is the insertion of the session's [`Token`] component: the
/// session plugin inserts it once per login (a token login or a save does
/// not insert it again), with the [`Session`] already in its logged-in state.
fn enter_arena(
    login: On<Insert<Token>>,
    sessions: Query<&Session>,
    mut arena: ResMut<Arena>,
    config: Res<ArenaConfig>,
    mut commands: Commands,
) {
    let Some(account) = sessions.get(login.entity).ok().and_then(Session::account) else { return };
    let spawn = config.spawn_points.get(arena.next_spawn % config.spawn_points.len().max(1)).copied();
    arena.next_spawn = arena.next_spawn.wrapping_add(1);
    let position = spawn.unwrap_or(Position { x: 0, y: 0 });
    let player = Player { account: account.name.clone(), kills: 0, deaths: 0 };
    bevy_log::info!(account = %player.account, x = position.x, y = position.y, "entered the arena");
    commands.entity(login.entity).try_insert((player, position, Health(config.max_health)));
}

/// Result of `arena_online`: `{"players":[ACCOUNT,...]}`, sorted.
#[derive(Debug, Serialize)]
pub struct OnlineResult {
    /// The account names of every logged-in session (kicked ones too, until they go).
    pub players: Vec<String>,
}

/// `arena_online` **auth**: who is logged in. Reads the card: every session
/// with a [`Token`] is logged in (or being kicked); a connection that has
/// not logged in has none.
fn online(In(_req): In<Request<NoParams>>, sessions: Query<&Session, With<Token>>) -> Result<OnlineResult, RpcError> {
    let mut players: Vec<String> = sessions.iter().filter_map(Session::account).map(|a| a.name.clone()).collect();
    players.sort_unstable();
    Ok(OnlineResult { players })
}

/// Takes a player whose session ended out of the arena.
fn leave_arena(logout: On<LoggedOut>, mut commands: Commands) {
    bevy_log::info!(account = %logout.account.name, "left the arena");
    commands.entity(logout.entity).try_remove::<(Player, Position, Health)>();
}

/// Params of `move`: `{"token":S,"dx":N,"dy":N}`, each in `-max_step..=max_step`.
#[derive(Debug, Deserialize)]
pub struct MoveParams {
    /// Cells to the right (negative: left).
    pub dx: i32,
    /// Cells down (negative: up).
    pub dy: i32,
}

/// `move` **auth** → `{"x":N,"y":N}`, the new position (kept on the grid).
/// `-32602` names `dx` or `dy` when it is not an integer in
/// `-max_step..=max_step`.
fn move_player(
    In(req): In<Request<MoveParams>>,
    config: Res<ArenaConfig>,
    mut players: Query<&mut Position, With<Player>>,
) -> Result<Position, RpcError> {
    let MoveParams { dx, dy } = req.params;
    for (field, d) in [("dx", dx), ("dy", dy)] {
        if d.abs() > config.max_step {
            return Err(RpcError::invalid_params(field));
        }
    }
    let mut position = players.get_mut(req.entity()).map_err(|_| RpcError::new(ErrorCode::NotLoggedIn))?;
    let last = config.size - 1;
    position.x = (position.x + dx).clamp(0, last);
    position.y = (position.y + dy).clamp(0, last);
    Ok(*position)
}

/// Params of `attack`: `{"token":S,"target":ACCOUNT}` (case-insensitive).
#[derive(Debug, Deserialize)]
pub struct AttackParams {
    /// The account name of the player to hit.
    pub target: String,
}

/// Result of `attack`: `{"target":S,"health":N,"killed":B}`.
#[derive(Debug, Serialize)]
pub struct AttackResult {
    /// The target's account name.
    pub target: String,
    /// The target's health after the hit (full again when it was killed).
    pub health: i32,
    /// Whether the hit killed it (it respawned at once).
    pub killed: bool,
}

/// `attack` **auth**: hits the target for `damage`. Errors, in order:
/// TARGET_NOT_FOUND (3001), SELF_TARGET (3003), OUT_OF_RANGE (3002). A kill
/// respawns the target on the spawn point farthest from the attacker with
/// full health, counts a kill and a death, and notifies the target
/// `arena_killed {"by":ACCOUNT}`.
fn attack(
    In(req): In<Request<AttackParams>>,
    config: Res<ArenaConfig>,
    mut players: Query<(Entity, &mut Player, &mut Position, &mut Health)>,
    rpc: Rpc,
) -> Result<AttackResult, RpcError> {
    let attacker = req.entity();
    let target = players
        .iter()
        .find(|(_, p, _, _)| p.account.eq_ignore_ascii_case(&req.params.target))
        .map(|(e, _, _, _)| e)
        .ok_or_else(|| RpcError::with_message(ErrorCode::Other(TARGET_NOT_FOUND), "no such player in the arena"))?;
    if target == attacker {
        return Err(RpcError::with_message(ErrorCode::Other(SELF_TARGET), "cannot attack yourself"));
    }
    let [(_, mut hitter, from, _), (_, mut victim, mut at, mut health)] =
        players.get_many_mut([attacker, target]).map_err(|_| RpcError::new(ErrorCode::NotLoggedIn))?;
    if from.distance(*at) > config.attack_range {
        return Err(RpcError::with_message(ErrorCode::Other(OUT_OF_RANGE), "target out of range"));
    }
    health.0 -= config.damage;
    let killed = health.0 <= 0;
    if killed {
        hitter.kills += 1;
        victim.deaths += 1;
        health.0 = config.max_health;
        if let Some(spawn) = config.spawn_points.iter().copied().max_by_key(|p| p.distance(*from)) {
            *at = spawn;
        }
        bevy_log::info!(killer = %hitter.account, victim = %victim.account, "kill");
        rpc.notify(target, "arena_killed", &serde_json::json!({ "by": hitter.account }));
    }
    Ok(AttackResult { target: victim.account.clone(), health: health.0, killed })
}

/// One player in `arena_state`.
#[derive(Debug, Serialize)]
pub struct PlayerState<'a> {
    /// Account name.
    pub account: &'a str,
    /// Column.
    pub x: i32,
    /// Row.
    pub y: i32,
    /// Hit points.
    pub health: i32,
    /// Kills so far.
    pub kills: u32,
    /// Deaths so far.
    pub deaths: u32,
}

/// Params of the `arena_state` notification: `{"tick":N,"players":[...]}`,
/// players sorted by account name.
#[derive(Debug, Serialize)]
pub struct ArenaState<'a> {
    /// The fixed tick this state is from (1, 2, 3, ...).
    pub tick: u64,
    /// Every player in the arena.
    pub players: Vec<PlayerState<'a>>,
}

/// Each fixed tick: sends `arena_state` to every player.
fn push_state(mut arena: ResMut<Arena>, players: Query<(Entity, &Player, &Position, &Health)>, rpc: Rpc) {
    arena.tick += 1;
    if players.is_empty() {
        return;
    }
    let mut state: Vec<PlayerState<'_>> = players
        .iter()
        .map(|(_, p, pos, h)| PlayerState {
            account: &p.account,
            x: pos.x,
            y: pos.y,
            health: h.0,
            kills: p.kills,
            deaths: p.deaths,
        })
        .collect();
    state.sort_unstable_by(|a, b| a.account.cmp(b.account));
    rpc.notify_many(players.iter().map(|(e, ..)| e), "arena_state", &ArenaState { tick: arena.tick, players: state });
}

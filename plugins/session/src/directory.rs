//! The session directory of a cluster (docs/cluster.md): the session
//! machine's side of claims across nodes. Backend-neutral: the store says
//! whether its sessions are shared ([`Store::is_shared`]); on one SQLite
//! node they are not, this file does nothing, and the directory is the
//! [`SessionIndex`](crate::SessionIndex) alone.
//!
//! On a shared store every login claims its account ([`StoreRequest::Claim`])
//! and every session that ends releases it ([`StoreRequest::Release`]), on
//! the store's threads; the ECS only submits and reads replies and
//! [`StoreEvent`]s. A login whose account another node holds runs
//! docs/protocol.md §6 across the nodes:
//!
//! ```text
//!  node B: login ok ─ Claim ─▶ Held (B is the pending node; A notified) ─ login_pending to B
//!  node A: KickRequested ─ kick duplicate_login ─ save ─ disconnected ─ Release (handed to B)
//!  node B: Released / Retry ─ Claim ─▶ Claimed ─ token to B
//! ```
//!
//! While a claim is in flight or B waits, the account is in the index's
//! takeovers, so another login for it on this node gets LOGIN_IN_PROGRESS;
//! one on a third node gets it from the database (`ClaimOutcome::InProgress`).

use std::collections::{HashMap, HashSet};

use bevy_ecs::prelude::*;
use portcullis_rpc::ReplyTo;
use portcullis_store::{Account, Store, StoreEvent, StoreRequest};

use crate::machine::SessionCtx;

/// A login waiting for the answer to its claim.
#[derive(Debug, Clone)]
pub(crate) struct ClaimWait {
    /// The connection that logs in.
    pub(crate) entity: Entity,
    /// Its verified account.
    pub(crate) account: Account,
    /// The `login` request to answer.
    pub(crate) login: ReplyTo,
}

/// The claims of this node's logins that wait on the store or on another
/// node. Inserted by `SessionPlugin`; kept by `machine.rs` and this file.
#[derive(Resource, Default, Debug)]
pub struct Directory {
    /// Store tag of a claim → the login it is for.
    pub(crate) claims: HashMap<u64, ClaimWait>,
    /// Accounts with a claim in flight (one at a time per account).
    pub(crate) in_flight: HashSet<i64>,
    /// Accounts whose login here waits for another node to let go
    /// (docs/protocol.md §6 across nodes; the entity is in the takeovers).
    pub(crate) remote: HashSet<i64>,
}

impl Directory {
    /// Number of logins waiting for another node to release their account.
    pub fn remote_takeovers(&self) -> usize {
        self.remote.len()
    }
}

/// Applies what the session directory told this node (kick requests,
/// released claims, retry ticks). Runs in `SessionSystems::Route`, after
/// the store replies; does nothing unless the store [`is_shared`](Store::is_shared).
pub fn apply_directory_events(mut ctx: SessionCtx) {
    let Some(store) = ctx.store.get().filter(|s| Store::is_shared(s)) else { return };
    let events: Vec<StoreEvent> = store.events().try_iter().collect();
    for event in events {
        ctx.directory_event(event);
    }
}

impl SessionCtx<'_, '_> {
    /// Whether sessions are shared with other nodes (a cluster store).
    pub(crate) fn shared(&self) -> bool {
        self.store.get().is_some_and(Store::is_shared)
    }

    /// Submits a claim of `account` for the login `login`; `false` when the
    /// store cannot take it.
    pub(crate) fn submit_claim(&mut self, account: &Account, login: &ReplyTo) -> bool {
        let Some(store) = self.store.get() else { return false };
        let tag = self.pending.next_tag();
        if store.submit(tag, StoreRequest::Claim { account_id: account.id }).is_err() {
            return false;
        }
        self.directory.in_flight.insert(account.id);
        self.directory
            .claims
            .insert(tag, ClaimWait { entity: login.entity, account: account.clone(), login: login.clone() });
        true
    }

    /// Gives up this node's claim of `account_id` (its session ended, or the
    /// login that wanted it went). Its reply is not waited for; if it
    /// cannot be queued, the next kick request or the lease frees the claim.
    pub(crate) fn release_claim(&mut self, account_id: i64) {
        let Some(store) = self.store.get() else { return };
        let tag = self.pending.next_tag();
        if let Err(e) = store.submit(tag, StoreRequest::Release { account_id }) {
            bevy_log::warn!(account_id, error = %e, "cannot release a claim now; a kick request or the lease frees it");
        }
    }

    /// One event of the session directory.
    fn directory_event(&mut self, event: StoreEvent) {
        match event {
            StoreEvent::KickRequested { account_id } => {
                if let Some(entity) = self.index.by_account.get(&account_id).copied() {
                    bevy_log::info!(account_id, "another node takes this session over");
                    self.kick(entity, portcullis_rpc::DisconnectReason::DuplicateLogin);
                } else if !self.index.takeovers.contains_key(&account_id) {
                    // No session here (it just ended, or the claim is stale): let go.
                    self.release_claim(account_id);
                }
                // A login of this node is claiming it: the requester asks again.
            }
            StoreEvent::Released { account_id } => {
                if self.directory.remote.contains(&account_id) {
                    self.retry_claim(account_id);
                }
            }
            StoreEvent::LeaseLost => {
                // Fencing: once the lease runs out another node may log these
                // accounts in; this node must not keep a second session.
                let sessions: Vec<Entity> = self.index.by_account.values().copied().collect();
                bevy_log::warn!(sessions = sessions.len(), "lease lost: kicking every session of this node");
                for entity in sessions {
                    self.kick(entity, portcullis_rpc::DisconnectReason::Admin);
                }
            }
            StoreEvent::Retry => {
                let waiting: Vec<i64> = self.directory.remote.iter().copied().collect();
                for account_id in waiting {
                    self.retry_claim(account_id);
                }
            }
        }
    }

    /// Claims again for the login of this node waiting for `account_id`.
    fn retry_claim(&mut self, account_id: i64) {
        if self.directory.in_flight.contains(&account_id) {
            return;
        }
        let Some(entity) = self.index.takeovers.get(&account_id).copied() else {
            self.directory.remote.remove(&account_id);
            return;
        };
        let Some(crate::SessionState::WaitingTakeover { account, login }) =
            self.session(entity).map(|s| s.state.clone())
        else {
            return;
        };
        // Not queued (store full): the next Retry tries again.
        let _ = self.submit_claim(&account, &login);
    }
}

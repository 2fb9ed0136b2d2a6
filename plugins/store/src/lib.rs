#![forbid(unsafe_code)]
//! Portcullis storage: accounts and the history of each account's JSON user
//! data, in one SQLite file or in a PostgreSQL database shared by the nodes
//! of a cluster (docs/cluster.md), served by threads of its own.
//!
//! The game server's main thread never waits for the disk. It hands a
//! [`StoreRequest`] to [`Store::submit`] (which never blocks) and picks up a
//! [`StoreReply`] with the same `tag` from [`Store::replies`] on a later frame;
//! the store calls the `notify` callback given to [`Store::open`] so that an
//! event-driven frame loop wakes up.
//!
//! ```text
//!  ECS (caller)                  SQLite thread ("portcullis-store")           hasher threads
//!  submit(tag, request) --queue--> batch: block for one, drain the rest
//!                                  BEGIN IMMEDIATE
//!                                  run each request in arrival order
//!                                  COMMIT
//!  replies() <---------------------- replies of the batch, then notify()
//!                                  password work after the commit -----------> argon2id verify / hash
//!  replies() <---------------------------------------------------------------- login replies
//!                                  <--- hashed: insert account / swap hash --- register, change_password,
//!                                                                              login re-hashing an old-cost hash
//!                                  poke after COMMIT ---> checkpointer thread: WAL -> database file
//! ```
//!
//! - **Group commit** (`worker.rs`): everything queued when the SQLite thread
//!   wakes up is executed in one transaction and answered only after `COMMIT`
//!   returned, so an acknowledged save is on disk. A request whose statement
//!   fails gets [`StoreFailure::Internal`] without touching the others; when the
//!   commit itself fails, the whole batch is rolled back and every request in it
//!   gets [`StoreFailure::Internal`].
//! - **Password hashing** (`password.rs`, `hasher.rs`): argon2id PHC strings,
//!   computed on a small pool of hasher threads so that a login storm never
//!   stalls saves. A stored hash with other argon2 parameters than the
//!   configured ones is re-hashed at the next successful login, and every
//!   check costs at least one configured-cost hash, like the check of an
//!   unknown account.
//! - **Checkpoints** (`checkpoint.rs`): a third kind of thread copies the
//!   WAL into the database file on its own connection, so that the SQLite
//!   thread only appends.
//! - **Schema** (`schema.rs`): versioned migrations (`PRAGMA user_version`),
//!   WAL journal, demo accounts in a database that has no schema yet.
//! - **Durability**: WAL with `PRAGMA synchronous=NORMAL` (the default) keeps
//!   every committed transaction across a crash or `kill -9` of the server
//!   process, because the commit has been written to the WAL file in the
//!   operating system before the reply is sent. It can lose the newest
//!   commits on a power cut or kernel crash; [`StoreConfig::synchronous_full`]
//!   makes every commit wait for `fsync` and survive those too.
//! - **PostgreSQL** (`pg.rs`): the same requests and rules on the
//!   `postgres` crate's blocking client, one connection per store thread
//!   (`backend.rs` is what the worker needs of an engine; `sqlite.rs` and
//!   `pg.rs` implement it). With it the store is
//!   [`shared`](Store::is_shared): a directory thread heartbeats this node's
//!   lease and turns `LISTEN`/`NOTIFY` into [`StoreEvent`]s, and
//!   [`StoreRequest::Claim`] / [`StoreRequest::Release`] keep one session per
//!   account across the nodes.
//! - **Operator access** (`db.rs`): [`Database`] is the same storage used
//!   synchronously, for the `portcullis account` command line.
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use portcullis_store::{Store, StoreConfig, StoreOk, StoreRequest};
//!
//! let store = Store::open(StoreConfig::in_memory().fast_hashing(), None)?;
//! store
//!     .submit(7, StoreRequest::LoadUserdata { account_id: 1 })
//!     .expect("a fresh store has room in its queue");
//! let reply = store.replies().recv_timeout(Duration::from_secs(10))?;
//! assert_eq!(reply.tag, 7);
//! assert_eq!(reply.result, Ok(StoreOk::Userdata(None)));
//! store.close()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod backend;
mod checkpoint;
mod config;
mod db;
mod error;
mod hasher;
mod password;
mod pg;
mod request;
mod schema;
mod sqlite;
mod store;
pub mod testing;
mod time;
mod worker;

pub use config::{StoreConfig, default_node_name};
pub use db::{AccountSummary, Database};
pub use error::StoreError;
pub use password::{AccountRuleError, validate_new_account, validate_new_password};
pub use request::{
    Account, ClaimOutcome, SavedVersion, StoreEvent, StoreFailure, StoreOk, StoreReply, StoreRequest, SubmitError,
    Userdata,
};
pub use schema::{DEMO_ACCOUNTS, DEMO_PASSWORD, SCHEMA_VERSION};
pub use store::{Notify, Store};
pub use time::format_saved_at;

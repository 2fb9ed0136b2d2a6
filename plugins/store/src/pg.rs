//! The PostgreSQL store of a cluster (docs/cluster.md): the [`Backend`] of
//! the worker thread, the versioned schema, and the directory thread that
//! heartbeats this node's lease and listens for `NOTIFY`.
//!
//! The client is the synchronous `postgres` crate: each store thread owns
//! one blocking connection, as the SQLite thread owns its `rusqlite`
//! connection, so the batching and ordering of `worker.rs` stay the same
//! and no database call ever runs on the caller's thread.
//!
//! ```text
//!  nodes  (name PK, lease_until)                  one row per live node, renewed every lease/3
//!  claims (account_id PK, node, pending_node)     one row per logged-in account
//!  NOTIFY portcullis_kick     'NODE ACCOUNT_ID'   "NODE: kick the session of ACCOUNT_ID"
//!  NOTIFY portcullis_released 'ACCOUNT_ID'        "the claim of ACCOUNT_ID was released or handed over"
//! ```
//!
//! A claim whose node's lease ran out (or whose node row is gone) is free.
//! Leases are judged on the database's clock (`clock_timestamp()`), so the
//! nodes' clocks need not agree.

use std::collections::HashMap;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, bounded};
use postgres::fallible_iterator::FallibleIterator as _;
use postgres::{Client, Config, NoTls, Statement};
use tracing::{debug, info, warn};

use crate::backend::{Backend, SqlError};
use crate::password::PasswordHasher;
use crate::store::Notify;
use crate::time::now_ms;
use crate::{
    Account, ClaimOutcome, DEMO_ACCOUNTS, DEMO_PASSWORD, SCHEMA_VERSION, SavedVersion, StoreConfig, StoreError,
    StoreEvent, Userdata,
};

/// Key of the advisory lock that serialises migrations of nodes starting at once ("PCLS").
const MIGRATION_LOCK: i64 = 0x5043_4C53;

/// Channel of kick requests; payload `NODE ACCOUNT_ID`.
const KICK_CHANNEL: &str = "portcullis_kick";

/// Channel of released claims; payload `ACCOUNT_ID`.
const RELEASED_CHANNEL: &str = "portcullis_released";

/// Migration `n` (0-based) takes the schema from version `n` to `n + 1`.
/// The version lives in `portcullis_schema`, created by the first one.
const MIGRATIONS: [&str; SCHEMA_VERSION as usize] = [
    // 1: accounts (names unique ignoring ASCII case), the append-only user
    // data history, and the session directory (nodes with their leases,
    // claims naming their node).
    "CREATE TABLE portcullis_schema (version INTEGER NOT NULL);
    CREATE TABLE accounts (
        id BIGSERIAL PRIMARY KEY,
        name TEXT NOT NULL,
        password_hash TEXT NOT NULL,
        created_at_ms BIGINT NOT NULL
    );
    CREATE UNIQUE INDEX accounts_name_nocase ON accounts (lower(name));
    CREATE TABLE userdata (
        account_id BIGINT NOT NULL REFERENCES accounts(id),
        version BIGINT NOT NULL,
        saved_at_ms BIGINT NOT NULL,
        data TEXT NOT NULL,
        PRIMARY KEY (account_id, version)
    );
    CREATE TABLE nodes (
        name TEXT PRIMARY KEY,
        lease_until TIMESTAMPTZ NOT NULL,
        started_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
    );
    CREATE TABLE claims (
        account_id BIGINT PRIMARY KEY REFERENCES accounts(id),
        node TEXT NOT NULL,
        pending_node TEXT,
        claimed_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
    );
    CREATE INDEX claims_node ON claims (node);",
];

/// Runs `f` on a thread of its own and waits for it: the blocking client
/// drives a runtime of its own, which cannot start on a thread that runs
/// tokio tasks (a game embedding the store in `#[tokio::main]`, async tests).
pub(crate) fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    thread::scope(|scope| match scope.spawn(f).join() {
        Ok(value) => value,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}

/// Connects to `url` (libpq syntax) with a 5 s connect timeout unless the
/// URL sets one.
pub(crate) fn connect(url: &str, application: &str) -> Result<Client, StoreError> {
    let mut config: Config = url.parse()?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(5));
    }
    // A database that vanished without a reset (a partition) fails the
    // call instead of hanging the store's thread.
    if config.get_tcp_user_timeout().is_none() {
        config.tcp_user_timeout(Duration::from_secs(5));
    }
    config.keepalives(true).keepalives_idle(Duration::from_secs(5));
    config.application_name(application);
    Ok(config.connect(NoTls)?)
}

/// The schema version, `None` when the database has no Portcullis schema.
fn schema_version(client: &mut impl postgres::GenericClient) -> Result<Option<i32>, StoreError> {
    let exists: bool = client.query_one("SELECT to_regclass('portcullis_schema') IS NOT NULL", &[])?.get(0);
    if !exists {
        return Ok(None);
    }
    let row = client.query_opt("SELECT max(version) FROM portcullis_schema", &[])?;
    Ok(row.and_then(|r| r.get::<_, Option<i32>>(0)))
}

/// Brings the schema to [`SCHEMA_VERSION`] (docs/protocol.md §4: a database
/// without the schema gets it and the demo accounts; one that has it is not
/// changed; a newer one is refused untouched). Nodes starting at once take
/// turns on an advisory lock.
pub(crate) fn migrate(client: &mut Client, config: &StoreConfig, hasher: &PasswordHasher) -> Result<(), StoreError> {
    let supported = SCHEMA_VERSION;
    let before = schema_version(client)?;
    if let Some(found) = before
        && i64::from(found) >= supported
    {
        if i64::from(found) > supported {
            return Err(StoreError::SchemaTooNew { found: found.into(), supported });
        }
        return Ok(());
    }
    // Hash outside the transaction: it is slow and needs no lock.
    let demo_hashes = if before.is_none() && config.demo_accounts {
        DEMO_ACCOUNTS
            .iter()
            .map(|name| Ok((*name, hasher.hash(DEMO_PASSWORD).map_err(StoreError::Hashing)?)))
            .collect::<Result<Vec<_>, StoreError>>()?
    } else {
        Vec::new()
    };
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    // Another node may have migrated while we were hashing.
    let current = schema_version(&mut tx)?;
    let from = current.map_or(0, i64::from);
    if from > supported {
        return Err(StoreError::SchemaTooNew { found: from, supported });
    }
    let start = usize::try_from(from).unwrap_or(0);
    for migration in MIGRATIONS.iter().skip(start) {
        tx.batch_execute(migration)?;
    }
    let version = i32::try_from(supported).unwrap_or(i32::MAX);
    let mut demo_added = 0;
    if current.is_none() {
        tx.execute("INSERT INTO portcullis_schema (version) VALUES ($1)", &[&version])?;
        let created_at_ms = now_ms();
        for (name, hash) in &demo_hashes {
            tx.execute(
                "INSERT INTO accounts (name, password_hash, created_at_ms) VALUES ($1, $2, $3)",
                &[name, hash, &created_at_ms],
            )?;
            demo_added += 1;
        }
    } else {
        tx.execute("UPDATE portcullis_schema SET version = $1", &[&version])?;
    }
    tx.commit()?;
    info!(from, to = supported, demo_accounts = demo_added, "database schema migrated");
    Ok(())
}

/// The prepared statements of the worker's connection.
struct Statements {
    find_account: Statement,
    account_exists: Statement,
    insert_account: Statement,
    password_hash_of: Statement,
    swap_password_hash: Statement,
    save: Statement,
    save_many: Statement,
    latest_userdata: Statement,
}

impl Statements {
    fn prepare(client: &mut Client) -> Result<Self, postgres::Error> {
        Ok(Self {
            find_account: client
                .prepare("SELECT id, name, password_hash FROM accounts WHERE lower(name) = lower($1::text)")?,
            account_exists: client.prepare("SELECT 1 FROM accounts WHERE lower(name) = lower($1::text)")?,
            insert_account: client.prepare(
                "INSERT INTO accounts (name, password_hash, created_at_ms) VALUES ($1::text, $2::text, $3::bigint)
                 ON CONFLICT DO NOTHING RETURNING id",
            )?,
            password_hash_of: client.prepare("SELECT password_hash FROM accounts WHERE id = $1::bigint")?,
            swap_password_hash: client.prepare(
                "UPDATE accounts SET password_hash = $3::text WHERE id = $1::bigint AND password_hash = $2::text",
            )?,
            // The next version and a time no earlier than the previous one,
            // in one statement; no row when the account does not exist or a
            // concurrent transaction took the version (ON CONFLICT, no error,
            // so the batch's transaction stays usable).
            save: client.prepare(
                "INSERT INTO userdata (account_id, version, saved_at_ms, data)
                 SELECT a.id, COALESCE(l.version, 0) + 1, GREATEST($2::bigint, COALESCE(l.saved_at_ms, $2::bigint)), $3::text
                 FROM accounts a
                 LEFT JOIN LATERAL (SELECT version, saved_at_ms FROM userdata WHERE account_id = a.id
                                    ORDER BY version DESC LIMIT 1) l ON true
                 WHERE a.id = $1::bigint
                 ON CONFLICT DO NOTHING
                 RETURNING version, saved_at_ms",
            )?,
            // Several saves in one statement: the n-th save of an account in
            // the input gets the account's newest version + n.
            save_many: client.prepare(
                "WITH input AS (
                     SELECT t.account_id, t.data, t.ord
                     FROM unnest($1::bigint[], $2::text[]) WITH ORDINALITY AS t(account_id, data, ord)
                 ), numbered AS (
                     SELECT account_id, data, row_number() OVER (PARTITION BY account_id ORDER BY ord) AS n
                     FROM input
                 ), base AS (
                     SELECT a.id AS account_id, COALESCE(l.version, 0) AS version,
                            COALESCE(l.saved_at_ms, $3::bigint) AS saved_at_ms
                     FROM (SELECT DISTINCT account_id FROM input) d
                     JOIN accounts a ON a.id = d.account_id
                     LEFT JOIN LATERAL (SELECT version, saved_at_ms FROM userdata WHERE account_id = a.id
                                        ORDER BY version DESC LIMIT 1) l ON true
                 )
                 INSERT INTO userdata (account_id, version, saved_at_ms, data)
                 SELECT n.account_id, b.version + n.n, GREATEST($3::bigint, b.saved_at_ms), n.data
                 FROM numbered n JOIN base b ON b.account_id = n.account_id
                 ON CONFLICT DO NOTHING
                 RETURNING account_id, version, saved_at_ms",
            )?,
            latest_userdata: client.prepare(
                "SELECT data, version, saved_at_ms FROM userdata WHERE account_id = $1::bigint
                 ORDER BY version DESC LIMIT 1",
            )?,
        })
    }
}

/// PostgreSQL behind the worker.
pub(crate) struct PgBackend {
    /// The URL, to reconnect after the database restarted.
    url: String,
    /// The connection; `None` after it broke and could not be made again.
    client: Option<(Client, Statements)>,
    /// This node's name in the directory.
    node: String,
    /// A statement of the running transaction failed: PostgreSQL aborted it.
    broken: bool,
}

/// A PostgreSQL error as text.
fn text(error: &postgres::Error) -> SqlError {
    match error.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => error.to_string(),
    }
}

/// A version read from SQL (never negative).
fn version_of(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

impl PgBackend {
    /// A backend on a connected, migrated client.
    pub(crate) fn new(url: &str, mut client: Client, node: String) -> Result<Self, StoreError> {
        let statements = Statements::prepare(&mut client)?;
        Ok(Self { url: url.to_owned(), client: Some((client, statements)), node, broken: false })
    }

    /// The connection, made again if it broke (the database restarted).
    fn conn(&mut self) -> Result<&mut (Client, Statements), SqlError> {
        if self.client.as_mut().is_some_and(|(c, _)| c.is_closed()) {
            self.client = None;
        }
        if self.client.is_none() {
            let mut client = connect(&self.url, "portcullis-store").map_err(|e| e.to_string())?;
            let statements = Statements::prepare(&mut client).map_err(|e| text(&e))?;
            info!("store reconnected to PostgreSQL");
            self.client = Some((client, statements));
        }
        self.client.as_mut().ok_or_else(|| "no connection".to_owned())
    }

    /// Runs `f` on the connection; a failure marks the transaction broken.
    fn run<T>(
        &mut self,
        f: impl FnOnce(&mut Client, &Statements) -> Result<T, postgres::Error>,
    ) -> Result<T, SqlError> {
        let (client, statements) = self.conn()?;
        match f(client, statements) {
            Ok(value) => Ok(value),
            Err(e) => {
                self.broken = true;
                Err(text(&e))
            }
        }
    }

    /// One directory transaction: `f` inside `BEGIN` … `COMMIT`, rolled
    /// back if it fails.
    fn directory<T>(
        &mut self,
        f: impl FnOnce(&mut postgres::Transaction<'_>, &str) -> Result<T, postgres::Error>,
    ) -> Result<T, SqlError> {
        let node = self.node.clone();
        let (client, _) = self.conn()?;
        let result = (|| {
            let mut tx = client.transaction()?;
            let value = f(&mut tx, &node)?;
            tx.commit()?;
            Ok(value)
        })();
        result.map_err(|e| text(&e))
    }
}

impl Backend for PgBackend {
    fn begin(&mut self, _writes: bool) -> Result<(), SqlError> {
        self.broken = false;
        let result = self.run(|c, _| c.batch_execute("BEGIN"));
        self.broken = false;
        result
    }

    fn abandoned(&mut self) -> bool {
        self.broken
    }

    fn commit(&mut self) -> Result<(), SqlError> {
        self.run(|c, _| c.batch_execute("COMMIT"))
    }

    fn rollback(&mut self) {
        if let Some((client, _)) = self.client.as_mut()
            && !client.is_closed()
            && let Err(e) = client.batch_execute("ROLLBACK")
        {
            warn!(error = %text(&e), "rollback failed");
        }
        self.broken = false;
    }

    fn committed(&mut self) {}

    fn failed(&mut self) {}

    fn find_account(&mut self, name: &str) -> Result<Option<(Account, String)>, SqlError> {
        // PostgreSQL text cannot hold NUL (it is an error, which would abort
        // the batch): no account has such a name.
        if name.contains('\0') {
            return Ok(None);
        }
        let row = self.run(|c, s| c.query_opt(&s.find_account, &[&name]))?;
        Ok(row.map(|r| (Account { id: r.get(0), name: r.get(1) }, r.get(2))))
    }

    fn account_exists(&mut self, name: &str) -> Result<bool, SqlError> {
        if name.contains('\0') {
            return Ok(false);
        }
        Ok(self.run(|c, s| c.query_opt(&s.account_exists, &[&name]))?.is_some())
    }

    fn insert_account(
        &mut self,
        name: &str,
        password_hash: &str,
        created_at_ms: i64,
    ) -> Result<Option<Account>, SqlError> {
        let row = self.run(|c, s| c.query_opt(&s.insert_account, &[&name, &password_hash, &created_at_ms]))?;
        Ok(row.map(|r| Account { id: r.get(0), name: name.to_owned() }))
    }

    fn password_hash_of(&mut self, id: i64) -> Result<Option<String>, SqlError> {
        Ok(self.run(|c, s| c.query_opt(&s.password_hash_of, &[&id]))?.map(|r| r.get(0)))
    }

    fn swap_password_hash(&mut self, id: i64, expected: &str, new: &str) -> Result<bool, SqlError> {
        Ok(self.run(|c, s| c.execute(&s.swap_password_hash, &[&id, &expected, &new]))? == 1)
    }

    fn save(&mut self, id: i64, data: &str, now_ms: i64) -> Result<SavedVersion, SqlError> {
        // A concurrent save of the same account from another transaction
        // takes the version first: read again (it is committed by then).
        for _ in 0..3 {
            let row = self.run(|c, s| c.query_opt(&s.save, &[&id, &now_ms, &data]))?;
            if let Some(row) = row {
                return Ok(SavedVersion { version: version_of(row.get(0)), saved_at_ms: row.get(1) });
            }
            if self.password_hash_of(id)?.is_none() {
                return Err(format!("no account with id {id}"));
            }
        }
        Err("the version was taken by concurrent saves".to_owned())
    }

    fn save_many(
        &mut self,
        saves: &[(i64, &str)],
        now_ms: i64,
    ) -> Result<Vec<Result<SavedVersion, SqlError>>, SqlError> {
        let ids: Vec<i64> = saves.iter().map(|(id, _)| *id).collect();
        let datas: Vec<&str> = saves.iter().map(|(_, data)| *data).collect();
        let rows = self.run(|c, s| c.query(&s.save_many, &[&ids, &datas, &now_ms]))?;
        let mut written: HashMap<i64, Vec<SavedVersion>> = HashMap::new();
        for row in rows {
            let saved = SavedVersion { version: version_of(row.get(1)), saved_at_ms: row.get(2) };
            written.entry(row.get(0)).or_default().push(saved);
        }
        let mut wanted: HashMap<i64, usize> = HashMap::new();
        for id in &ids {
            *wanted.entry(*id).or_default() += 1;
        }
        for (id, versions) in &mut written {
            if versions.len() != wanted.get(id).copied().unwrap_or(0) {
                // Another transaction saved this account meanwhile and took
                // some of the versions: fail the batch (rolled back, no effect).
                self.broken = true;
                return Err(format!("concurrent saves of account {id}"));
            }
            versions.sort_by_key(|v| std::cmp::Reverse(v.version));
        }
        Ok(ids
            .iter()
            .map(|id| {
                written
                    .get_mut(id)
                    .and_then(Vec::pop)
                    .ok_or_else(|| format!("no account with id {id}, or its versions were taken"))
            })
            .collect())
    }

    fn latest_userdata(&mut self, id: i64) -> Result<Option<Userdata>, SqlError> {
        let row = self.run(|c, s| c.query_opt(&s.latest_userdata, &[&id]))?;
        Ok(row.map(|r| Userdata { data: r.get(0), version: version_of(r.get(1)), saved_at_ms: r.get(2) }))
    }

    fn claim(&mut self, id: i64) -> Result<ClaimOutcome, SqlError> {
        self.directory(|tx, node| claim(tx, node, id))
    }

    fn release(&mut self, id: i64) -> Result<(), SqlError> {
        self.directory(|tx, node| release(tx, node, id))
    }

    fn close(self) -> Result<(), StoreError> {
        if let Some((client, _)) = self.client {
            client.close()?;
        }
        Ok(())
    }
}

/// The claim of account `id` for `node`, in `tx` (docs/cluster.md, "Claims").
fn claim(tx: &mut postgres::Transaction<'_>, node: &str, id: i64) -> Result<ClaimOutcome, postgres::Error> {
    for _ in 0..2 {
        let inserted = tx.execute(
            "INSERT INTO claims (account_id, node) SELECT $1::bigint, $2::text
             WHERE EXISTS (SELECT 1 FROM accounts WHERE id = $1::bigint)
             ON CONFLICT (account_id) DO NOTHING",
            &[&id, &node],
        )?;
        if inserted == 1 {
            return Ok(ClaimOutcome::Claimed);
        }
        let row = tx.query_opt(
            "SELECT c.node, c.pending_node,
                    COALESCE(h.lease_until > clock_timestamp(), false),
                    COALESCE(p.lease_until > clock_timestamp(), false)
             FROM claims c
             LEFT JOIN nodes h ON h.name = c.node
             LEFT JOIN nodes p ON p.name = c.pending_node
             WHERE c.account_id = $1::bigint
             FOR UPDATE OF c",
            &[&id],
        )?;
        // Released meanwhile (or no such account): try the insert again.
        let Some(row) = row else { continue };
        let holder: String = row.get(0);
        let pending: Option<String> = row.get(1);
        let holder_alive: bool = row.get(2);
        let pending_alive: bool = row.get(3);
        let other_pending = pending.as_deref().is_some_and(|p| p != node) && pending_alive;
        if (holder == node && !other_pending) || !holder_alive {
            tx.execute(
                "UPDATE claims SET node = $2::text, pending_node = NULL, claimed_at = clock_timestamp()
                 WHERE account_id = $1::bigint",
                &[&id, &node],
            )?;
            if holder != node {
                info!(account_id = id, expired = %holder, "claimed an account whose node's lease ran out");
            }
            return Ok(ClaimOutcome::Claimed);
        }
        if other_pending {
            return Ok(ClaimOutcome::InProgress);
        }
        tx.execute("UPDATE claims SET pending_node = $2::text WHERE account_id = $1::bigint", &[&id, &node])?;
        tx.execute("SELECT pg_notify($1::text, $2::text)", &[&KICK_CHANNEL, &format!("{holder} {id}")])?;
        return Ok(ClaimOutcome::Held);
    }
    Ok(ClaimOutcome::InProgress)
}

/// Releases `node`'s claim of account `id` (handing it to the node waiting
/// for it), or `node`'s wish to take it over, in `tx`.
fn release(tx: &mut postgres::Transaction<'_>, node: &str, id: i64) -> Result<(), postgres::Error> {
    let row = tx.query_opt(
        "SELECT c.node, c.pending_node, COALESCE(p.lease_until > clock_timestamp(), false)
         FROM claims c LEFT JOIN nodes p ON p.name = c.pending_node
         WHERE c.account_id = $1::bigint FOR UPDATE OF c",
        &[&id],
    )?;
    let Some(row) = row else { return Ok(()) };
    let holder: String = row.get(0);
    let pending: Option<String> = row.get(1);
    let pending_alive: bool = row.get(2);
    if holder == node {
        match pending {
            // Handed over: the waiting node finds itself the holder when it claims again.
            Some(next) if next != node && pending_alive => {
                tx.execute(
                    "UPDATE claims SET node = $2::text, claimed_at = clock_timestamp() WHERE account_id = $1::bigint",
                    &[&id, &next],
                )?;
            }
            _ => {
                tx.execute("DELETE FROM claims WHERE account_id = $1::bigint", &[&id])?;
            }
        }
        tx.execute("SELECT pg_notify($1::text, $2::text)", &[&RELEASED_CHANNEL, &id.to_string()])?;
    } else if pending.as_deref() == Some(node) {
        tx.execute("UPDATE claims SET pending_node = NULL WHERE account_id = $1::bigint", &[&id])?;
    }
    Ok(())
}

/// Releases every claim of `node` (handing each to its waiting node) and
/// every wish of `node` to take one over; `forget_node` also removes the
/// node's row (a graceful shutdown). Returns how many claims went.
fn release_all(client: &mut Client, node: &str, forget_node: bool) -> Result<u64, postgres::Error> {
    let mut tx = client.transaction()?;
    let rows =
        tx.query("SELECT account_id FROM claims WHERE node = $1::text ORDER BY account_id FOR UPDATE", &[&node])?;
    let mut released = 0;
    for row in rows {
        release(&mut tx, node, row.get(0))?;
        released += 1;
    }
    tx.execute("UPDATE claims SET pending_node = NULL WHERE pending_node = $1::text", &[&node])?;
    if forget_node {
        tx.execute("DELETE FROM nodes WHERE name = $1::text", &[&node])?;
    }
    tx.commit()?;
    Ok(released)
}

/// Renews `node`'s lease (inserting its row if it is gone).
fn heartbeat(client: &mut Client, node: &str, lease: Duration) -> Result<(), postgres::Error> {
    let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
    client.execute(
        "INSERT INTO nodes (name, lease_until) VALUES ($1::text, clock_timestamp() + $2::bigint * interval '1 millisecond')
         ON CONFLICT (name) DO UPDATE SET lease_until = EXCLUDED.lease_until",
        &[&node, &lease_ms],
    )?;
    Ok(())
}

/// Handle to the directory thread, owned by the [`Store`](crate::Store).
#[derive(Debug)]
pub(crate) struct Directory {
    /// Dropping it stops the thread.
    stop: Sender<()>,
    /// The thread.
    handle: JoinHandle<()>,
}

impl Directory {
    /// Registers this node (its lease), releases what an earlier process of
    /// the same name left claimed, listens, and starts the thread that
    /// heartbeats and turns notifications into [`StoreEvent`]s.
    pub(crate) fn start(
        config: &StoreConfig,
        url: &str,
        events: Sender<StoreEvent>,
        notify: Option<Notify>,
    ) -> Result<Self, StoreError> {
        let node = config.node_name.clone();
        let lease = config.node_lease.max(Duration::from_millis(300));
        let mut client = connect(url, "portcullis-directory")?;
        heartbeat(&mut client, &node, lease)?;
        let stale = release_all(&mut client, &node, false)?;
        if stale > 0 {
            info!(node = %node, released = stale, "released claims left by an earlier process of this node");
        }
        client.batch_execute(&format!("LISTEN {KICK_CHANNEL}; LISTEN {RELEASED_CHANNEL}"))?;
        let (stop, stopped) = bounded(0);
        let thread = DirectoryThread { url: url.to_owned(), node, lease, client: Some(client), events, notify };
        let handle = thread::Builder::new()
            .name("portcullis-directory".into())
            .spawn(move || thread.run(&stopped))
            .map_err(StoreError::Spawn)?;
        Ok(Self { stop, handle })
    }

    /// Stops the thread, which releases this node's claims and removes its
    /// row first (graceful shutdown: logins elsewhere need not wait for the
    /// lease). Call it after the worker thread stopped.
    pub(crate) fn stop(self) {
        drop(self.stop);
        if self.handle.join().is_err() {
            warn!("directory thread panicked");
        }
    }
}

/// The directory thread's state.
struct DirectoryThread {
    url: String,
    node: String,
    lease: Duration,
    client: Option<Client>,
    events: Sender<StoreEvent>,
    notify: Option<Notify>,
}

impl DirectoryThread {
    /// Heartbeats every lease/3, sends [`StoreEvent::Retry`] every lease/5
    /// (at least every second), turns notifications into events; on stop
    /// releases the node's claims.
    fn run(mut self, stopped: &Receiver<()>) {
        let heartbeat_every = self.lease / 3;
        let retry_every = (self.lease / 5).clamp(Duration::from_millis(100), Duration::from_secs(1));
        let poll = Duration::from_millis(50);
        let mut next_heartbeat = Instant::now() + heartbeat_every;
        let mut next_retry = Instant::now() + retry_every;
        // When the last renewal that the database took was sent (its lease
        // ends no earlier than this plus the lease, on the database's clock).
        let mut last_renewed = Instant::now();
        let mut fenced = false;
        while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(Duration::ZERO) {
            let mut sent = 0;
            match self.client.as_mut() {
                Some(client) => match read_notifications(client, &self.node, poll) {
                    Ok(events) => {
                        for event in events {
                            let _ = self.events.send(event);
                            sent += 1;
                        }
                        if client.is_closed() {
                            warn!("directory connection closed by the database");
                            self.client = None;
                        }
                    }
                    Err(e) => {
                        warn!(error = %text(&e), "directory connection lost");
                        self.client = None;
                    }
                },
                None => {
                    let attempt = Instant::now();
                    if self.reconnect() {
                        last_renewed = attempt;
                        // Notifications may have been missed meanwhile.
                        let _ = self.events.send(StoreEvent::Retry);
                        sent += 1;
                    } else {
                        let _ = stopped.recv_timeout(Duration::from_millis(250));
                    }
                }
            }
            let now = Instant::now();
            if now >= next_heartbeat {
                next_heartbeat = now + heartbeat_every;
                if let Some(client) = self.client.as_mut() {
                    match heartbeat(client, &self.node, self.lease) {
                        Ok(()) => last_renewed = now,
                        Err(e) => {
                            warn!(error = %text(&e), "lease heartbeat failed");
                            self.client = None;
                        }
                    }
                }
            }
            // Two heartbeats missed: the lease may run out before the next one
            // gets through, and other nodes may then take the sessions over.
            let at_risk = now.duration_since(last_renewed) > self.lease * 2 / 3;
            if at_risk && !fenced {
                warn!(node = %self.node, "lease not renewed: giving up this node's sessions before other nodes may take them over");
                let _ = self.events.send(StoreEvent::LeaseLost);
                sent += 1;
            }
            fenced = at_risk;
            if now >= next_retry {
                next_retry = now + retry_every;
                let _ = self.events.send(StoreEvent::Retry);
                sent += 1;
            }
            if sent > 0
                && let Some(notify) = &self.notify
            {
                notify();
            }
        }
        self.shutdown();
    }

    /// Connects again and listens; whether it worked.
    fn reconnect(&mut self) -> bool {
        let result = connect(&self.url, "portcullis-directory").and_then(|mut client| {
            heartbeat(&mut client, &self.node, self.lease)?;
            client.batch_execute(&format!("LISTEN {KICK_CHANNEL}; LISTEN {RELEASED_CHANNEL}"))?;
            Ok(client)
        });
        match result {
            Ok(client) => {
                info!("directory reconnected to PostgreSQL");
                self.client = Some(client);
                true
            }
            Err(e) => {
                debug!(error = %e, "directory reconnect failed");
                false
            }
        }
    }

    /// Releases the node's claims and removes its row.
    fn shutdown(mut self) {
        if self.client.is_none() {
            self.reconnect();
        }
        let Some(mut client) = self.client.take() else {
            warn!(node = %self.node, "cannot release this node's claims: no database connection");
            return;
        };
        match release_all(&mut client, &self.node, true) {
            Ok(released) => info!(node = %self.node, released, "node left the cluster"),
            Err(e) => warn!(error = %text(&e), "releasing this node's claims failed"),
        }
        let _ = client.close();
    }
}

/// Waits up to `poll` for notifications and turns them into events for
/// this node.
fn read_notifications(client: &mut Client, node: &str, poll: Duration) -> Result<Vec<StoreEvent>, postgres::Error> {
    let mut events = Vec::new();
    let mut notifications = client.notifications();
    let mut first = notifications.timeout_iter(poll).next()?;
    while let Some(notification) = first.take() {
        match notification.channel() {
            KICK_CHANNEL => {
                if let Some((target, id)) = notification.payload().rsplit_once(' ')
                    && target == node
                    && let Ok(account_id) = id.parse()
                {
                    events.push(StoreEvent::KickRequested { account_id });
                }
            }
            RELEASED_CHANNEL => {
                if let Ok(account_id) = notification.payload().parse() {
                    events.push(StoreEvent::Released { account_id });
                }
            }
            _ => {}
        }
        first = notifications.iter().next()?;
    }
    Ok(events)
}

//! Helpers the workloads share: many connections at once, accounts,
//! CPU-time snapshots of the server and of the load generator.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_util::{StreamExt, TryStreamExt, stream};
use rand::Rng;

use super::BenchError;
use super::child::ChildServer;
use super::procfs::{self, Pid};
use portcullis_client::ErrorCode;
use portcullis_client::{Client, ClientConfig};

/// The password of every account a bench registers.
pub const PASSWORD: &str = "bench-password";

/// How many connects, registrations or logins run at once.
pub const SETUP_CONCURRENCY: usize = 128;

/// The client configuration of the bench: the defaults (10 s RPC timeout).
pub fn client_config() -> ClientConfig {
    ClientConfig::default()
}

/// Runs `f(0..n)` with at most `concurrency` at once; results in index order.
pub async fn for_each<T, F, Fut>(n: usize, concurrency: usize, f: F) -> Result<Vec<T>, BenchError>
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = Result<T, BenchError>>,
{
    stream::iter(0..n).map(f).buffered(concurrency.max(1)).try_collect().await
}

/// Opens `n` connections.
pub async fn connect_many(addr: SocketAddr, n: usize) -> Result<Vec<Client>, BenchError> {
    for_each(n, SETUP_CONCURRENCY, |i| async move {
        Client::connect_with(addr, client_config()).await.map_err(BenchError::client(format!("connection {i}")))
    })
    .await
}

/// `n` fresh account names, unique to this run (`b` + 5 random characters + index).
pub fn account_names(n: usize) -> Vec<String> {
    let prefix: String =
        rand::rng().sample_iter(rand::distr::Alphanumeric).take(5).map(char::from).collect::<String>().to_lowercase();
    (0..n).map(|i| format!("b{prefix}{i:06}")).collect()
}

/// Registers every account of `names` with [`PASSWORD`], over a few
/// connections at once.
pub async fn register_accounts(addr: SocketAddr, names: &[String]) -> Result<(), BenchError> {
    let workers = names.len().clamp(1, 32);
    let chunk = names.len().div_ceil(workers);
    let chunks: Vec<&[String]> = names.chunks(chunk.max(1)).collect();
    for_each(chunks.len(), workers, |w| {
        let part = chunks[w];
        async move {
            let client = Client::connect_with(addr, client_config()).await.map_err(BenchError::client("register"))?;
            for name in part {
                register_one(&client, name).await?;
            }
            client.close();
            Ok(())
        }
    })
    .await?;
    Ok(())
}

/// Registers `name`, waiting and trying again while the server's rate limit
/// refuses it (a server started with `--connect` keeps its own limit).
async fn register_one(client: &Client, name: &str) -> Result<(), BenchError> {
    const TRIES: u32 = 600;
    let mut tries = 0;
    loop {
        match client.register(name, PASSWORD).await {
            Ok(_) => return Ok(()),
            Err(error) if error.code() == Some(ErrorCode::RateLimited) && tries < TRIES => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(error) => return Err(BenchError::client(format!("register {name}"))(error)),
        }
    }
}

/// Connects and logs in to each account of `names` with [`PASSWORD`].
pub async fn login_many(addr: SocketAddr, names: &[String]) -> Result<Vec<Client>, BenchError> {
    login_many_at(&addr.to_string(), names).await
}

/// [`login_many`] at any address the client takes (`HOST:PORT`,
/// `ws://HOST:PORT/`, ...).
pub async fn login_many_at(endpoint: &str, names: &[String]) -> Result<Vec<Client>, BenchError> {
    for_each(names.len(), SETUP_CONCURRENCY, |i| {
        let name = names[i].clone();
        async move {
            let client = Client::connect_with(endpoint, client_config())
                .await
                .map_err(BenchError::client(format!("connect {i}")))?;
            client.login_with_password(&name, PASSWORD).await.map_err(BenchError::client(format!("login {name}")))?;
            Ok(client)
        }
    })
    .await
}

/// CPU time of the server (when the bench started it) and of the bench
/// itself at one instant.
#[derive(Debug, Clone, Copy)]
pub struct CpuSnapshot {
    /// When it was taken.
    pub at: Instant,
    /// The server's CPU time; `None` with `--connect`.
    pub server: Option<Duration>,
    /// The load generator's (this process's) CPU time.
    pub client: Duration,
}

impl CpuSnapshot {
    /// Takes a snapshot now.
    pub fn take(server: Option<&ChildServer>) -> Self {
        Self {
            at: Instant::now(),
            server: server.and_then(|s| s.cpu_time().ok()),
            client: procfs::cpu_time(Pid::This).unwrap_or_default(),
        }
    }

    /// The CPU used between `self` and the later `end`.
    pub fn until(&self, end: &CpuSnapshot) -> CpuUse {
        let wall = end.at.saturating_duration_since(self.at);
        let server = match (self.server, end.server) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a)),
            _ => None,
        };
        CpuUse { wall, server, client: end.client.saturating_sub(self.client) }
    }
}

/// CPU used over a phase.
#[derive(Debug, Clone, Copy)]
pub struct CpuUse {
    /// The phase's wall-clock length.
    pub wall: Duration,
    /// The server's CPU time; `None` with `--connect`.
    pub server: Option<Duration>,
    /// The load generator's CPU time.
    pub client: Duration,
}

impl CpuUse {
    /// The server's CPU use in cores (1.0 = one core busy all the time).
    pub fn server_cores(&self) -> Option<f64> {
        self.server.map(|cpu| cpu.as_secs_f64() / self.wall.as_secs_f64().max(1e-9))
    }

    /// The load generator's CPU use in cores.
    pub fn client_cores(&self) -> f64 {
        self.client.as_secs_f64() / self.wall.as_secs_f64().max(1e-9)
    }

    /// The server's CPU time per operation, µs.
    pub fn server_us_per(&self, operations: u64) -> Option<f64> {
        let ops = operations.max(1) as f64;
        self.server.map(|cpu| cpu.as_secs_f64() * 1e6 / ops)
    }
}

/// The CPU the server and the load generator use between `start` and `end`
/// (the measured phase): waits for `start`, snapshots, waits for `end`, snapshots.
pub async fn sample_cpu(server: Option<&ChildServer>, start: Instant, end: Instant) -> CpuUse {
    sleep_until(start).await;
    let first = CpuSnapshot::take(server);
    sleep_until(end).await;
    first.until(&CpuSnapshot::take(server))
}

/// Sleeps until `at` (std clock).
pub async fn sleep_until(at: Instant) {
    tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await;
}

/// Runs `future` for at most `limit`; [`BenchError::Timeout`] naming `what` after that.
pub async fn bounded<T>(
    what: &str,
    limit: Duration,
    future: impl Future<Output = Result<T, BenchError>>,
) -> Result<T, BenchError> {
    match tokio::time::timeout(limit, future).await {
        Ok(result) => result,
        Err(_) => Err(BenchError::Timeout { what: what.to_owned(), limit }),
    }
}

//! The gateway's settings (docs/cli.md: `--service-key`, `--service-timeout`,
//! `--service-wait`) and the key check.

use std::time::Duration;

use bevy_ecs::prelude::*;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Settings of the gateway. Inserted as a resource by
/// [`ServicesPlugin`](crate::ServicesPlugin) (only when `key` is set); read-only.
#[derive(Resource, Clone)]
pub struct ServicesConfig {
    /// The shared secret of services (`--service-key`); `None`: services are off.
    pub key: Option<String>,
    /// A forwarded request not answered within this gets `SERVICE_UNAVAILABLE`
    /// (`--service-timeout`, default 10 s).
    pub call_timeout: Duration,
    /// A request for a method whose services are all gone waits this long for
    /// one to register it again (`--service-wait`, default 5 s).
    pub wait: Duration,
    /// Forwarded requests in flight per service; when every service of a
    /// method has this many, a call gets `SERVER_BUSY` (default 1,024).
    pub max_in_flight: usize,
}

impl ServicesConfig {
    /// The defaults with services on under `key`.
    pub fn with_key(key: impl Into<String>) -> Self {
        Self { key: Some(key.into()), ..Self::defaults() }
    }

    /// The defaults of docs/cli.md, services off.
    pub fn defaults() -> Self {
        Self { key: None, call_timeout: Duration::from_secs(10), wait: Duration::from_secs(5), max_in_flight: 1024 }
    }
}

/// The defaults of docs/cli.md, services off ([`ServicesConfig::defaults`]).
impl Default for ServicesConfig {
    fn default() -> Self {
        Self::defaults()
    }
}

impl std::fmt::Debug for ServicesConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServicesConfig")
            .field("key", &self.key.as_ref().map(|_| "<set>"))
            .field("call_timeout", &self.call_timeout)
            .field("wait", &self.wait)
            .field("max_in_flight", &self.max_in_flight)
            .finish()
    }
}

/// The service key's SHA-256 digest, compared in constant time (docs/protocol.md
/// §8): hashing first hides the key's length too. Inserted by `ServicesPlugin`.
#[derive(Resource)]
pub struct ServiceKey([u8; 32]);

impl ServiceKey {
    /// The check for `key`.
    pub fn new(key: &str) -> Self {
        Self(Sha256::digest(key.as_bytes()).into())
    }

    /// Whether `given` is the key; takes the same time for any wrong key.
    pub fn matches(&self, given: &str) -> bool {
        let given: [u8; 32] = Sha256::digest(given.as_bytes()).into();
        given.ct_eq(&self.0).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_matches_only_itself() {
        let key = ServiceKey::new("s3cret");
        assert!(key.matches("s3cret"));
        for wrong in ["", "s3cre", "s3cret ", "S3CRET", "s3cretx"] {
            assert!(!key.matches(wrong), "{wrong}");
        }
    }
}

//! Session tokens (docs/protocol.md §4): 64 lowercase hex characters, held only in memory.

use bevy_ecs::prelude::*;
use rand::TryRngCore;
use sha2::{Digest, Sha256};

/// A one-time session token. Lives only in server memory: never stored,
/// never logged (its `Debug` is redacted). Dies on logout or close.
///
/// Also the card component of the live token: on a connection entity only
/// while its `Session` is logged in or kicking. Inserted at login, removed
/// at logout, at the end of a kick and at close, only by the transitions in
/// `machine.rs` (immutable); `On<Insert<Token>>` is "logged in".
#[derive(Component, Clone, PartialEq, Eq, Hash)]
#[component(immutable)]
pub struct Token(String);

impl Token {
    /// A fresh token: SHA-256 over the account name, 32 bytes from the OS
    /// CSPRNG and the connection id, as 64 lowercase hex characters.
    pub fn generate(account: &str, connection_id: u64) -> Self {
        let mut entropy = [0u8; 32];
        if rand::rngs::OsRng.try_fill_bytes(&mut entropy).is_err() {
            // The OS generator failed (it practically never does): fall back to
            // the thread-local CSPRNG, which is seeded from the OS.
            entropy = rand::random();
        }
        let mut hasher = Sha256::new();
        hasher.update(account.as_bytes());
        hasher.update([0]);
        hasher.update(entropy);
        hasher.update(connection_id.to_le_bytes());
        Self(hex::encode(hasher.finalize()))
    }

    /// The token text, for sending it to its owner only.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for Token {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_64_lowercase_hex_and_unique() {
        let a = Token::generate("netease1", 1);
        let b = Token::generate("netease1", 1);
        assert_eq!(a.as_str().len(), 64);
        assert!(a.as_str().bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)));
        assert_ne!(a, b);
        assert_eq!(format!("{a:?}"), "Token(<redacted>)");
    }
}

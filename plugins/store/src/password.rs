//! Passwords: the registration rules and argon2id hashing.

use argon2::password_hash::{self, Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use rand::TryRngCore as _;
use rand::rngs::OsRng;

/// The shortest and longest account names (ASCII letters and digits).
const ACCOUNT_LEN: std::ops::RangeInclusive<usize> = 6..=16;
/// The shortest and longest passwords, in Unicode scalar values.
const PASSWORD_CHARS: std::ops::RangeInclusive<usize> = 6..=64;
/// Bytes of random salt per hash.
const SALT_BYTES: usize = 16;

/// Which registration rule (docs/protocol.md §4, `INVALID_ACCOUNT`) a name or
/// password breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AccountRuleError {
    /// The account name is not 6 to 16 ASCII letters or digits.
    #[error("account name must be 6 to 16 ASCII letters or digits")]
    AccountName,
    /// The password is not 6 to 64 characters long.
    #[error("password must be 6 to 64 characters")]
    PasswordLength,
}

/// Checks the `register` rules: the account matches `^[0-9A-Za-z]{6,16}$`
/// and the password is 6 to 64 Unicode characters.
///
/// # Examples
///
/// ```
/// use portcullis_store::{AccountRuleError, validate_new_account};
///
/// assert_eq!(validate_new_account("player1", "secret"), Ok(()));
/// assert_eq!(
///     validate_new_account("p1", "secret"),
///     Err(AccountRuleError::AccountName)
/// );
/// ```
pub fn validate_new_account(account: &str, password: &str) -> Result<(), AccountRuleError> {
    let name_ok = ACCOUNT_LEN.contains(&account.len()) && account.bytes().all(|b| b.is_ascii_alphanumeric());
    if !name_ok {
        return Err(AccountRuleError::AccountName);
    }
    validate_new_password(password)
}

/// Checks the password rule of `register` and `change_password`: 6 to 64
/// Unicode characters (not bytes).
pub fn validate_new_password(password: &str) -> Result<(), AccountRuleError> {
    // Counting stops early so a huge password costs no more than a short one.
    let chars = password.chars().take(PASSWORD_CHARS.end() + 1).count();
    if PASSWORD_CHARS.contains(&chars) { Ok(()) } else { Err(AccountRuleError::PasswordLength) }
}

/// An argon2 work area (`m` KiB of blocks) kept from one hash to the next.
///
/// argon2's own `hash_password`/`verify_password` allocate and zero `m` KiB
/// per call, which the kernel maps and faults in page by page: about 10 % of
/// a hasher thread's time in a login storm at the default 19 MiB
/// (BENCHMARKS.md). Each hasher thread keeps one area; it grows to the
/// largest cost it has seen. argon2 writes every block before reading it,
/// so reuse needs no clearing.
#[derive(Default)]
pub(crate) struct WorkArea {
    blocks: Vec<Block>,
}

impl WorkArea {
    /// The first `params.block_count()` blocks, grown if needed.
    fn blocks(&mut self, params: &Params) -> &mut [Block] {
        let needed = params.block_count();
        if self.blocks.len() < needed {
            self.blocks.resize(needed, Block::default());
        }
        &mut self.blocks[..needed]
    }
}

/// Makes and checks argon2id PHC strings.
#[derive(Clone)]
pub(crate) struct PasswordHasher {
    /// argon2id with the configured cost, for new hashes.
    argon2: Argon2<'static>,
    /// The configured cost, written into every new PHC string.
    params: Params,
}

impl PasswordHasher {
    /// A hasher that makes new hashes with `params`.
    pub(crate) fn new(params: Params) -> Self {
        Self { argon2: Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone()), params }
    }

    /// Hashes `password` with a fresh salt from the operating system's
    /// random source; returns the PHC string
    /// (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`).
    pub(crate) fn hash(&self, password: &str) -> Result<String, password_hash::Error> {
        self.hash_in(password, &mut WorkArea::default())
    }

    /// [`Self::hash`] in a reused work area.
    pub(crate) fn hash_in(&self, password: &str, area: &mut WorkArea) -> Result<String, password_hash::Error> {
        let mut salt = [0_u8; SALT_BYTES];
        OsRng.try_fill_bytes(&mut salt).map_err(|_| password_hash::Error::Crypto)?;
        let output_len = self.params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN);
        let blocks = area.blocks(&self.params);
        let output = Output::init_with(output_len, |out| {
            Ok(self.argon2.hash_password_into_with_memory(password.as_bytes(), &salt, out, &mut *blocks)?)
        })?;
        let salt = SaltString::encode_b64(&salt)?;
        let phc = PasswordHash {
            algorithm: Algorithm::Argon2id.ident(),
            version: Some(Version::V0x13.into()),
            params: ParamsString::try_from(&self.params)?,
            salt: Some(salt.as_salt()),
            hash: Some(output),
        };
        Ok(phc.to_string())
    }

    /// Whether `phc` was made with other argon2 parameters than the ones
    /// this hasher makes new hashes with (algorithm, version, `m`, `t`, `p`
    /// or output length): such a hash is re-hashed at the next successful
    /// login (docs/protocol.md §4). Only parses the string, never hashes.
    /// `false` for a string that cannot be parsed: verifying it fails anyway.
    pub(crate) fn needs_rehash(&self, phc: &str) -> bool {
        self.differs_from(phc).unwrap_or(false)
    }

    /// [`Self::needs_rehash`]; `None` when `phc` cannot be parsed.
    fn differs_from(&self, phc: &str) -> Option<bool> {
        let parsed = PasswordHash::new(phc).ok()?;
        let algorithm = Algorithm::try_from(parsed.algorithm).ok()?;
        let version = parsed.version.map(Version::try_from).transpose().ok()?.unwrap_or_default();
        let params = Params::try_from(&parsed).ok()?;
        let output_len = self.params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN);
        let same = algorithm == Algorithm::Argon2id
            && version == Version::V0x13
            && params.m_cost() == self.params.m_cost()
            && params.t_cost() == self.params.t_cost()
            && params.p_cost() == self.params.p_cost()
            && parsed.hash.map(|hash| hash.len()) == Some(output_len);
        Some(!same)
    }

    /// Checks `password` against a stored PHC string, with the algorithm and
    /// cost written in that string. `Ok(false)` is a wrong password; `Err` is
    /// a PHC string that cannot be used.
    pub(crate) fn verify(phc: &str, password: &str) -> Result<bool, password_hash::Error> {
        Self::verify_in(phc, password, &mut WorkArea::default())
    }

    /// [`Self::verify`] in a reused work area. The same steps as argon2's
    /// `PasswordVerifier`, with its constant-time comparison of [`Output`]s.
    pub(crate) fn verify_in(phc: &str, password: &str, area: &mut WorkArea) -> Result<bool, password_hash::Error> {
        let parsed = PasswordHash::new(phc)?;
        let algorithm = Algorithm::try_from(parsed.algorithm)?;
        let version = parsed.version.map(Version::try_from).transpose()?.unwrap_or_default();
        let params = Params::try_from(&parsed)?;
        let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
            return Ok(false);
        };
        let mut salt_bytes = [0_u8; 64];
        let salt = salt.decode_b64(&mut salt_bytes)?;
        let argon2 = Argon2::new(algorithm, version, params.clone());
        let blocks = area.blocks(&params);
        let computed = Output::init_with(expected.len(), |out| {
            Ok(argon2.hash_password_into_with_memory(password.as_bytes(), salt, out, &mut *blocks)?)
        })?;
        Ok(computed == expected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_name_rules() {
        assert_eq!(validate_new_account("abc123", "secret"), Ok(()));
        assert_eq!(validate_new_account("ABCdef0123456789", "secret"), Ok(()));
        for bad in [
            "",
            "abc12",
            "abcdefghij1234567",
            "abc_123",
            "abc 123",
            "abc-123",
            "abcdéf",
            "аbcdef", // Cyrillic a
            "ｐｌａｙｅｒ１",
        ] {
            assert_eq!(validate_new_account(bad, "secret"), Err(AccountRuleError::AccountName), "{bad:?}");
        }
    }

    #[test]
    fn password_length_counts_characters() {
        assert_eq!(validate_new_password("12345"), Err(AccountRuleError::PasswordLength));
        assert_eq!(validate_new_password(""), Err(AccountRuleError::PasswordLength));
        assert_eq!(validate_new_password("123456"), Ok(()));
        // Six characters of three bytes each: 18 bytes but 6 characters.
        assert_eq!(validate_new_password("密码密码密码"), Ok(()));
        assert_eq!(validate_new_password(&"密".repeat(64)), Ok(()));
        assert_eq!(validate_new_password(&"🔑".repeat(64)), Ok(()));
        assert_eq!(validate_new_password(&"密".repeat(65)), Err(AccountRuleError::PasswordLength));
        assert_eq!(validate_new_password(&"x".repeat(1 << 20)), Err(AccountRuleError::PasswordLength));
        assert_eq!(validate_new_account("abcdef", "12345"), Err(AccountRuleError::PasswordLength));
    }

    fn fast() -> PasswordHasher {
        PasswordHasher::new(Params::new(Params::MIN_M_COST, 1, 1, None).expect("minimum cost is valid"))
    }

    #[test]
    fn hash_is_argon2id_phc_with_the_configured_cost_and_verifies() {
        let phc = fast().hash("correct horse").expect("hashing works");
        assert!(phc.starts_with("$argon2id$v=19$m=8,t=1,p=1$"), "{phc}");
        assert_eq!(PasswordHasher::verify(&phc, "correct horse"), Ok(true));
        assert_eq!(PasswordHasher::verify(&phc, "correct horsE"), Ok(false));
        assert_eq!(PasswordHasher::verify(&phc, ""), Ok(false));
    }

    #[test]
    fn every_hash_gets_its_own_salt() {
        let hasher = fast();
        let a = hasher.hash("same").expect("hashing works");
        let b = hasher.hash("same").expect("hashing works");
        assert_ne!(a, b);
    }

    #[test]
    fn verification_uses_the_cost_in_the_hash() {
        let strong = PasswordHasher::new(Params::new(64, 2, 1, None).expect("valid cost"));
        let phc = strong.hash("pw").expect("hashing works");
        assert!(phc.contains("m=64,t=2"), "{phc}");
        assert_eq!(PasswordHasher::verify(&phc, "pw"), Ok(true));
    }

    #[test]
    fn phc_strings_match_argon2s_own_in_both_directions() {
        use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
        let params = Params::new(64, 2, 1, None).expect("valid cost");
        let reference = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
        // A hash argon2 made (as stored by earlier versions) verifies here ...
        let salt = SaltString::encode_b64(b"0123456789abcdef").expect("valid salt");
        let theirs = reference.hash_password(b"pw-theirs", &salt).expect("hashing works").to_string();
        assert_eq!(PasswordHasher::verify(&theirs, "pw-theirs"), Ok(true));
        assert_eq!(PasswordHasher::verify(&theirs, "pw-other"), Ok(false));
        // ... and a hash made here verifies with argon2.
        let ours = PasswordHasher::new(params).hash("pw-ours").expect("hashing works");
        let parsed = PasswordHash::new(&ours).expect("valid PHC");
        assert!(reference.verify_password(b"pw-ours", &parsed).is_ok());
        assert!(reference.verify_password(b"pw-other", &parsed).is_err());
    }

    #[test]
    fn one_work_area_serves_hashes_of_different_costs() {
        let mut area = WorkArea::default();
        let small = fast().hash_in("small-pw", &mut area).expect("hashing works");
        let big = PasswordHasher::new(Params::new(256, 1, 1, None).expect("valid cost"))
            .hash_in("big-pw", &mut area)
            .expect("hashing works");
        // The area is now larger than the small hash needs: still correct.
        assert_eq!(PasswordHasher::verify_in(&small, "small-pw", &mut area), Ok(true));
        assert_eq!(PasswordHasher::verify_in(&big, "big-pw", &mut area), Ok(true));
        assert_eq!(PasswordHasher::verify_in(&small, "big-pw", &mut area), Ok(false));
        assert_eq!(PasswordHasher::verify_in(&big, "small-pw", &mut area), Ok(false));
    }

    #[test]
    fn hashes_with_other_parameters_need_a_rehash() {
        let configured = PasswordHasher::new(Params::new(64, 2, 1, None).expect("valid cost"));
        let same = configured.hash("pw").expect("hashing works");
        assert!(!configured.needs_rehash(&same), "{same}");
        for (m, t, p) in [(32, 2, 1), (64, 1, 1), (128, 2, 1), (64, 3, 1), (64, 2, 2)] {
            let other = PasswordHasher::new(Params::new(m, t, p, None).expect("valid cost")).hash("pw").expect("hash");
            assert!(configured.needs_rehash(&other), "{other}");
        }
        // Another argon2 variant with the same cost.
        use argon2::password_hash::PasswordHasher as _;
        let salt = SaltString::encode_b64(b"0123456789abcdef").expect("valid salt");
        let argon2i = Argon2::new(Algorithm::Argon2i, Version::V0x13, Params::new(64, 2, 1, None).expect("cost"))
            .hash_password(b"pw", &salt)
            .expect("hashing works")
            .to_string();
        assert!(configured.needs_rehash(&argon2i), "{argon2i}");
        // Unusable strings are not re-hashed (their verification fails).
        assert!(!configured.needs_rehash("not a hash"));
        assert!(!configured.needs_rehash(""));
    }

    #[test]
    fn garbage_phc_is_an_error_not_a_panic() {
        assert!(PasswordHasher::verify("not a hash", "pw").is_err());
        assert!(PasswordHasher::verify("", "pw").is_err());
    }
}

//! The operator's synchronous access (`portcullis account add|list|passwd`).
//! If these fail, operators cannot manage accounts without a running server.

use std::time::Duration;

use portcullis_store::{AccountRuleError, Database, Store, StoreConfig, StoreError, StoreOk, StoreRequest, testing};

const WAIT: Duration = Duration::from_secs(10);

fn config(dir: &tempfile::TempDir) -> StoreConfig {
    StoreConfig::new(dir.path().join("cli.db")).fast_hashing().with_demo_accounts()
}

/// `account add` follows the register rules and name uniqueness.
#[test]
fn add_account_checks_rules_and_uniqueness() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Database::open(&config(&dir)).expect("open");
    let account = db.add_account("Player42", "secret").expect("add");
    assert_eq!(account.name, "Player42");
    assert!(matches!(db.add_account("PLAYER42", "secret"), Err(StoreError::AccountExists(_))));
    assert!(matches!(db.add_account("p42", "secret"), Err(StoreError::Rule(AccountRuleError::AccountName))));
    assert!(matches!(db.add_account("player43", "12345"), Err(StoreError::Rule(AccountRuleError::PasswordLength))));
}

/// `account list` shows every account with its user data summary.
#[test]
fn list_accounts_summarises_userdata() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(&dir);
    let db = Database::open(&config).expect("open");
    let player = db.add_account("Player42", "secret").expect("add");
    drop(db);

    let store = Store::open(config.clone(), None).expect("store");
    for i in 0..3 {
        let save = StoreRequest::SaveUserdata { account_id: player.id, data: format!("{{\"n\":{i}}}") };
        assert!(matches!(testing::call(&store, save, WAIT), Ok(Ok(StoreOk::Saved(_)))));
    }
    store.close().expect("close");

    let db = Database::open(&config).expect("reopen");
    let list = db.list_accounts().expect("list");
    assert_eq!(list.len(), 4);
    assert_eq!(list[0].name, "netease1");
    assert_eq!((list[0].versions, list[0].latest_version), (0, None));
    let last = &list[3];
    assert_eq!(last.name, "Player42");
    assert_eq!(last.id, player.id);
    assert_eq!((last.versions, last.latest_version), (3, Some(3)));
    assert!(last.created_at_ms > 1_577_836_800_000);
}

/// `account passwd` replaces the password; unknown names are an error.
#[test]
fn set_password_replaces_the_password() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Database::open(&config(&dir)).expect("open");
    db.set_password("NETEASE1", "brand-new").expect("set");
    assert!(db.verify_password("netease1", "123").expect("verify").is_none());
    assert!(db.verify_password("netease1", "brand-new").expect("verify").is_some());
    assert!(matches!(db.set_password("nobody99", "brand-new"), Err(StoreError::UnknownAccount(_))));
    assert!(matches!(db.set_password("netease1", "short"), Err(StoreError::Rule(AccountRuleError::PasswordLength))));
}

//! `register` goes through `StoreRequest::Register` (the rules are checked
//! by the caller with `validate_new_account`). If these fail, new players
//! cannot sign up, or two players share a name differing only in case.

use std::time::Duration;

use portcullis_store::testing::TestBackend;
use portcullis_store::{AccountRuleError, Store, StoreFailure, StoreOk, StoreRequest, testing, validate_new_account};

const WAIT: Duration = Duration::from_secs(10);

fn register(store: &Store, account: &str, password: &str) -> Result<StoreOk, StoreFailure> {
    let request = StoreRequest::Register { account: account.into(), password: password.into() };
    testing::call(store, request, WAIT).expect("reply in time")
}

fn store(backend: &TestBackend) -> Store {
    Store::open(backend.config().fast_hashing().with_demo_accounts(), None).expect("open")
}

/// A new name is created with the spelling given, and can log in.
#[test]
fn register_creates_an_account_that_can_log_in() {
    for backend in TestBackend::all("register_creates_an_account_that_can_log_in") {
        let store = store(&backend);
        let Ok(StoreOk::Account(account)) = register(&store, "NewPlayer1", "secret") else {
            panic!("register failed");
        };
        assert_eq!(account.name, "NewPlayer1");
        let login = StoreRequest::VerifyPassword { account: "newplayer1".into(), password: "secret".into() };
        assert_eq!(testing::call(&store, login, WAIT).expect("reply"), Ok(StoreOk::Account(account)));
    }
}

/// A name taken in any case is `AccountExists`, including the demo accounts.
#[test]
fn duplicate_name_in_other_case_is_refused() {
    for backend in TestBackend::all("duplicate_name_in_other_case_is_refused") {
        let store = store(&backend);
        assert!(register(&store, "Player42", "secret").is_ok());
        assert_eq!(register(&store, "PLAYER42", "other1"), Err(StoreFailure::AccountExists));
        assert_eq!(register(&store, "player42", "other1"), Err(StoreFailure::AccountExists));
        assert_eq!(register(&store, "NetEase1", "other1"), Err(StoreFailure::AccountExists));
        // The original password still works.
        let login = StoreRequest::VerifyPassword { account: "player42".into(), password: "secret".into() };
        assert!(testing::call(&store, login, WAIT).expect("reply").is_ok());
    }
}

/// Two registrations of one name racing in the same batch: exactly one wins.
#[test]
fn racing_registrations_have_one_winner() {
    for backend in TestBackend::all("racing_registrations_have_one_winner") {
        let store = store(&backend);
        for tag in 0..8 {
            let name = if tag % 2 == 0 { "RaceName1" } else { "racename1" };
            store
                .submit(tag, StoreRequest::Register { account: name.into(), password: "secret".into() })
                .expect("submit");
        }
        let replies = testing::collect(&store, 8, WAIT).expect("all answered");
        let won = replies.iter().filter(|r| r.result.is_ok()).count();
        let lost = replies.iter().filter(|r| r.result == Err(StoreFailure::AccountExists)).count();
        assert_eq!((won, lost), (1, 7), "{replies:?}");
    }
}

/// docs/protocol.md §4: account `^[0-9A-Za-z]{6,16}$`, password 6 to 64 characters.
#[test]
fn register_rules() {
    use AccountRuleError::{AccountName, PasswordLength};
    let cases: &[(&str, &str, Result<(), AccountRuleError>)] = &[
        ("abcdef", "123456", Ok(())),
        ("abcde", "123456", Err(AccountName)),
        ("abcdefghijklmnop", "123456", Ok(())),
        ("abcdefghijklmnopq", "123456", Err(AccountName)),
        ("abc-def", "123456", Err(AccountName)),
        ("abc def", "123456", Err(AccountName)),
        ("abcdéf", "123456", Err(AccountName)),
        ("账号账号账号", "123456", Err(AccountName)),
        ("abcdef", "12345", Err(PasswordLength)),
        ("abcdef", "密码密码密码", Ok(())),
        ("abcdef", &"密".repeat(64), Ok(())),
        ("abcdef", &"密".repeat(65), Err(PasswordLength)),
        ("abcdef", &"a".repeat(65), Err(PasswordLength)),
    ];
    for (account, password, expected) in cases {
        assert_eq!(
            validate_new_account(account, password),
            *expected,
            "{account:?} / {} chars",
            password.chars().count()
        );
    }
}

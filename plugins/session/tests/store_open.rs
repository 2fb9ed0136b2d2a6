//! No database is opened while `SessionPlugin` is built (docs/embedding.md):
//! the store opens in `Startup`, and one that cannot be opened ends the app
//! with an error instead of a panic.
#![allow(clippy::unwrap_used)]

use bevy_app::{App, AppExit};
use portcullis_net::NetPlugin;
use portcullis_rpc::RpcPlugin;
use portcullis_session::{SessionConfig, SessionPlugin, StoreHandle};
use portcullis_store::StoreConfig;

fn app_with_store(store: StoreConfig) -> App {
    let mut app = App::new();
    app.add_plugins(bevy_time::TimePlugin).add_plugins((
        NetPlugin::memory(),
        RpcPlugin::default(),
        SessionPlugin::new(SessionConfig::default(), store),
    ));
    app
}

#[test]
fn a_store_that_cannot_be_opened_ends_the_app_with_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let not_sqlite = dir.path().join("notes.db");
    std::fs::write(&not_sqlite, b"these are my notes, not a database\n").unwrap();
    let mut app = app_with_store(StoreConfig::new(&not_sqlite));
    assert!(app.world().resource::<StoreHandle>().get().is_none(), "nothing is opened while building");
    app.update();
    assert!(matches!(app.should_exit(), Some(AppExit::Error(_))), "exit: {:?}", app.should_exit());
    assert_eq!(std::fs::read(&not_sqlite).unwrap(), b"these are my notes, not a database\n");
}

#[test]
fn a_good_store_opens_at_startup() {
    let dir = tempfile::tempdir().unwrap();
    let mut app = app_with_store(StoreConfig::new(dir.path().join("game.db")));
    assert!(app.world().resource::<StoreHandle>().get().is_none());
    app.update();
    assert!(app.world().resource::<StoreHandle>().get().is_some());
    assert_eq!(app.should_exit(), None);
}

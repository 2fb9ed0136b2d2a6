//! `portcullis account add|list|passwd` (docs/cli.md): operator access to the
//! database without a running server.

use std::io::{BufRead, Write};

use portcullis_store::{Database, StoreConfig};

use crate::cli::{AccountAction, AccountArgs};

/// Runs one account command, writing its output to `out` and reading a
/// password from `input` when `--password` is not given.
pub fn run(args: &AccountArgs, input: &mut dyn BufRead, out: &mut dyn Write) -> Result<(), Box<dyn std::error::Error>> {
    let db = Database::open(&StoreConfig { demo_accounts: true, ..StoreConfig::new(&args.db) })?;
    match &args.action {
        AccountAction::Add { name, password } => {
            let password = read_password(password.as_deref(), input)?;
            let account = db.add_account(name, &password)?;
            writeln!(out, "added {}", account.name)?;
        }
        AccountAction::List => {
            writeln!(out, "{:<16}  {:>8}  {:>6}  created", "account", "versions", "latest")?;
            for a in db.list_accounts()? {
                let latest = a.latest_version.map_or_else(|| "-".to_owned(), |v| v.to_string());
                let created = portcullis_store::format_saved_at(a.created_at_ms);
                writeln!(out, "{:<16}  {:>8}  {:>6}  {}", a.name, a.versions, latest, created)?;
            }
        }
        AccountAction::Passwd { name, password } => {
            let password = read_password(password.as_deref(), input)?;
            db.set_password(name, &password)?;
            writeln!(out, "password changed for {name}")?;
        }
    }
    Ok(())
}

fn read_password(given: Option<&str>, input: &mut dyn BufRead) -> std::io::Result<String> {
    if let Some(p) = given {
        return Ok(p.to_owned());
    }
    let mut line = String::new();
    input.read_line(&mut line)?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

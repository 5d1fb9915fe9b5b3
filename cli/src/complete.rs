//! Shell completion (issue 18), by clap_complete's dynamic completion: the shell asks `orders`
//! itself (`ORDERS_COMPLETE=bash orders -- <words>`), so that it completes what only a running
//! daemon knows: the ids of the newest orders. Status values and the rest come from the command
//! line's own definition.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap_complete::env::EnvCompleter;
use clap_complete::{ArgValueCandidates, CompletionCandidate};
use orders_daemon::paths::Paths;
use orders_shared::protocol::{ListRequest, OrderPage, Request};

use crate::client::Client;
use crate::failure::Failure;
use crate::output::ShortIds;

/// The variable the shell scripts set to ask for completions.
pub const VAR: &str = "ORDERS_COMPLETE";

/// The shells the scripts are for, by the names the scripts set [`VAR`] to.
const SHELLS: [&str; 5] = ["bash", "elvish", "fish", "powershell", "zsh"];

/// [`VAR`] set to something else than a shell (or empty, or `0`: off) is a mistake of the
/// environment; said in words rather than as a usage error of the command.
pub fn misset() -> Option<String> {
    let value = std::env::var_os(VAR)?;
    // clap takes a shell's path too (`$SHELL`), by its file name.
    let shell = std::path::Path::new(&value).file_name().map(|name| name.to_string_lossy());
    if value.is_empty() || value == "0" || shell.is_some_and(|shell| SHELLS.contains(&shell.as_ref())) {
        return None;
    }
    let value = value.to_string_lossy();
    Some(format!(
        "{VAR}={} names no shell that orders completes for ({}): the completion scripts set it; \
         unset it to run a command",
        orders_shared::text::escaped(&value, false),
        SHELLS.join(", ")
    ))
}

/// How long a completion may wait for the daemon: a slower one offers no ids rather than a
/// stalled prompt.
pub const BUDGET: Duration = Duration::from_millis(100);

/// How many of the newest orders are offered.
const OFFERED: u32 = 100;

/// The command line as the shell completes it: the definition of `args`, with the ids of a
/// running daemon's newest orders offered for every order it takes.
pub fn command() -> clap::Command {
    let ids = || ArgValueCandidates::new(order_ids);
    let mut command = <crate::args::Cli as clap::CommandFactory>::command();
    for name in ["show", "cancel", "history", "watch"] {
        command = command.mut_subcommand(name, |order| order.mut_arg("id", |id| id.add(ids())));
    }
    command.mut_subcommand("list", |list| list.mut_arg("before", |before| before.add(ids())))
}

/// The script that registers `orders` with `shell`: it calls back into `orders` on each TAB.
pub fn registration(shell: clap_complete::Shell, out: &mut Vec<u8>) -> std::io::Result<()> {
    let shell: &dyn EnvCompleter = match shell {
        clap_complete::Shell::Bash => &clap_complete::env::Bash,
        clap_complete::Shell::Elvish => &clap_complete::env::Elvish,
        clap_complete::Shell::Fish => &clap_complete::env::Fish,
        clap_complete::Shell::PowerShell => &clap_complete::env::Powershell,
        _ => &clap_complete::env::Zsh,
    };
    shell.write_registration(VAR, "orders", "orders", "orders", out)
}

/// The short ids of the newest orders, each with its user, total and status beside it; none when
/// no daemon answers within [`BUDGET`]. Never starts a daemon. The daemon is the one of the
/// environment (`ORDERS_SOCKET`, `ORDERS_DATA_DIR`, or the defaults).
pub fn order_ids() -> Vec<CompletionCandidate> {
    let from_env = |name: &str| std::env::var_os(name).filter(|value| !value.is_empty()).map(PathBuf::from);
    let Ok(paths) = Paths::resolve(from_env("ORDERS_DATA_DIR"), from_env("ORDERS_SOCKET")) else {
        return Vec::new();
    };
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
        return Vec::new();
    };
    let newest = runtime.block_on(async { tokio::time::timeout(BUDGET, newest(&paths)).await });
    newest.ok().and_then(Result::ok).unwrap_or_default()
}

async fn newest(paths: &Paths) -> Result<Vec<CompletionCandidate>, Failure> {
    let mut client = Client::connect(paths)
        .await
        .map_err(|e| Failure::new(crate::failure::Exit::Unavailable, e.to_string()))?;
    let request = ListRequest { limit: Some(OFFERED), ..ListRequest::default() };
    let page: OrderPage = client.call(&Request::List(request)).await?;
    let mut short = ShortIds::new();
    crate::ids::learn(&mut client, &mut short, page.orders.iter().map(|order| order.id)).await?;
    let candidates = page.orders.iter().map(|order| {
        let id = short.get(&order.id).cloned().unwrap_or_else(|| order.id.to_string());
        let user = orders_shared::text::escaped(&order.user, false);
        let help = format!("{user}, {}, {}", order.total, order.status);
        CompletionCandidate::new(OsString::from(id)).help(Some(help.into()))
    });
    Ok(candidates.collect())
}

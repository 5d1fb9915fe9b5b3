//! Managing the daemon: `orders daemon start|restart|stop|status` (`daemon run` is `main`'s).

use std::io::Write;

use super::Context;
use crate::args::RunArgs;
use crate::daemon;
use crate::failure::Failure;
use crate::output;

/// `orders daemon start`.
pub(super) async fn start(ctx: &mut Context, args: &RunArgs) -> Result<(), Failure> {
    let status = daemon::start(&ctx.paths, args).await?;
    note_the_manager(&status);
    ctx.emit(&status, |out| writeln!(out, "daemon running (pid {}) on {}", status.pid, status.socket))
}

/// `orders daemon restart`.
pub(super) async fn restart(ctx: &mut Context, args: &RunArgs) -> Result<(), Failure> {
    let status = daemon::restart(&ctx.paths, args).await?;
    note_the_manager(&status);
    ctx.emit(&status, |out| writeln!(out, "daemon restarted (pid {}) on {}", status.pid, status.socket))
}

/// A daemon that systemd started through its socket runs with the unit's settings, whatever
/// this command was given: say so rather than let them vanish silently.
fn note_the_manager(status: &orders_shared::protocol::DaemonStatus) {
    if status.socket_activated {
        eprintln!(
            "note: systemd started this daemon through its socket (orders.socket), with the settings of \
             orders.service; settings given here do not apply (set them with `systemctl --user edit orders.service`)"
        );
    }
}

/// `orders daemon stop`: the stopped daemon, or a word on stderr if none was running.
pub(super) async fn stop(ctx: &mut Context) -> Result<(), Failure> {
    match daemon::stop(&ctx.paths).await? {
        Some(status) => ctx.emit(&status, |out| writeln!(out, "daemon stopped (pid {})", status.pid)),
        None => {
            eprintln!("no daemon is running on {}", ctx.paths.socket.display());
            Ok(())
        }
    }
}

/// `orders daemon status`.
pub(super) async fn status(ctx: &mut Context) -> Result<(), Failure> {
    let status = daemon::status(&ctx.paths).await?;
    ctx.emit(&status, |out| output::status(out, &status))
}

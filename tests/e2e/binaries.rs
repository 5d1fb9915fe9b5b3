//! Two binaries (issue 14): `orders daemon run` becomes `orders-daemon run` in the same process,
//! and the client runs only a daemon binary as trustworthy as itself.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use crate::fixture::{ORDERS, TestDaemon, code, stderr};

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| s.lines().any(|l| l.starts_with("Uid:\t0\t")))
}

/// `orders` alone in a new directory (a hard link: the same file, another place), and the
/// command that runs it on a fresh data directory with autostart on.
fn orders_alone(dir: &Path) -> Command {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let orders = dir.join("orders");
    if std::fs::hard_link(ORDERS, &orders).is_err() {
        std::fs::copy(ORDERS, &orders).expect("copy orders");
    }
    let mut command = Command::new(orders);
    command
        .args(["list", "--user", "nobody"])
        .env("ORDERS_DATA_DIR", dir.join("data"))
        .env("ORDERS_SOCKET", dir.join("orders.sock"))
        .env("ORDERS_LOG_FILE", dir.join("daemon.log"))
        .env_remove("ORDERS_NO_AUTOSTART");
    command
}

/// A stand-in `orders-daemon` that leaves a mark if it is ever run.
fn plant(dir: &Path, mode: u32) -> std::path::PathBuf {
    let planted = dir.join("orders-daemon");
    let mark = dir.join("it-ran");
    std::fs::write(&planted, format!("#!/bin/sh\ntouch '{}'\nexit 1\n", mark.display())).expect("plant");
    std::fs::set_permissions(&planted, std::fs::Permissions::from_mode(mode)).expect("chmod");
    mark
}

#[test]
fn daemon_run_becomes_the_daemon_binary_in_the_same_process() {
    let daemon = TestDaemon::start();
    let pid = daemon.pid();
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).expect("the daemon's binary");
    assert_eq!(exe.file_name().and_then(|n| n.to_str()), Some("orders-daemon"), "{}", exe.display());
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("cmdline");
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    assert_eq!(args.get(1).copied(), Some(&b"run"[..]));
    let status = daemon.json(["daemon", "status"]);
    assert_eq!(status["pid"].as_u64(), Some(u64::from(pid)), "the pid the client started is the daemon's");
}

#[test]
fn a_missing_daemon_binary_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = orders_alone(dir.path()).output().expect("run orders");
    assert_eq!(code(&output), 5, "{}", stderr(&output));
    let said = stderr(&output);
    assert!(said.contains(&dir.path().join("orders-daemon").display().to_string()), "{said}");
    assert!(said.contains("missing"), "{said}");
}

/// A daemon binary that someone else could have written is never run: the client would run it
/// as its own user (a copy of `orders` in a shared directory, a planted `orders-daemon`).
#[test]
fn a_daemon_binary_others_could_have_planted_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut command = orders_alone(dir.path());
    let mark = plant(dir.path(), 0o777);
    let output = command.output().expect("run orders");
    assert_eq!(code(&output), 5, "{}", stderr(&output));
    assert!(stderr(&output).contains("may be written by others"), "{}", stderr(&output));
    assert!(!mark.exists(), "the planted binary ran");

    if is_root() {
        let planted = dir.path().join("orders-daemon");
        std::fs::set_permissions(&planted, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        std::os::unix::fs::chown(&planted, Some(65534), Some(65534)).expect("chown to nobody");
        let output = command.output().expect("run orders");
        assert_eq!(code(&output), 5, "{}", stderr(&output));
        assert!(stderr(&output).contains("belongs to uid 65534"), "{}", stderr(&output));
        assert!(!mark.exists(), "the planted binary ran");
    }
}

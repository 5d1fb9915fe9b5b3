//! Hostile files (issue 11): whatever sits at the socket path, links planted at the lock files,
//! a socket directory open to others, a deleted holder file, files readable by others, and
//! escape codes in a log that is not a terminal.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::fixture::{ORDERS, TestDaemon, code, stderr, wait_timeout};

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| s.lines().any(|l| l.starts_with("Uid:\t0\t")))
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode()
        & 0o777
}

/// Runs a command that is expected to fail at start; one that keeps running (a daemon that
/// went ahead) is killed and reported, so that the old behaviour fails the test instead of hanging.
fn run_expecting_exit(mut command: Command) -> Output {
    let stderr_path = tempfile::NamedTempFile::new().expect("stderr file");
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr_path.reopen().expect("reopen"))
        .spawn()
        .expect("spawn");
    let status = wait_timeout(&mut child, Duration::from_secs(15)).unwrap_or_else(|| {
        let _ = child.kill();
        let _ = child.wait();
        panic!("still running after 15 s: it went ahead instead of refusing");
    });
    Output { status, stdout: Vec::new(), stderr: std::fs::read(stderr_path.path()).expect("stderr") }
}

#[test]
fn nothing_but_a_dead_socket_at_the_socket_path_is_ever_replaced() {
    let daemon = TestDaemon::stopped_with(&[]);
    let socket = daemon.socket();
    use rustix::fs::{CWD, FileType, makedev, mknodat};
    // What to plant: a regular file, or a node made with mknod (a FIFO, the null device).
    let mut cases: Vec<(&str, Option<(FileType, u64)>)> =
        vec![("a regular file", None), ("a FIFO", Some((FileType::Fifo, 0)))];
    let null_device = (FileType::CharacterDevice, makedev(1, 3));
    let probe = daemon.dir().join("probe-device");
    if is_root() && mknodat(CWD, &probe, null_device.0, 0o600.into(), null_device.1).is_ok() {
        std::fs::remove_file(&probe).expect("remove the probe");
        cases.push(("a character device", Some(null_device)));
    } else {
        eprintln!("skipped the device node: needs root (and CAP_MKNOD) to mknod");
    }
    let make = |node: &Option<(FileType, u64)>| match node {
        None => std::fs::write(&socket, "precious").expect("write"),
        Some((file_type, device)) => mknodat(CWD, &socket, *file_type, 0o600.into(), *device).expect("mknod"),
    };
    for (kind, node) in &cases {
        make(node);
        let file_type = std::fs::symlink_metadata(&socket).expect("made").file_type();
        // The daemon itself, and a client starting one: neither may delete it.
        let mut run = daemon.command();
        run.args(["daemon", "run"]);
        let mut start = daemon.command_with_autostart();
        start.args(["daemon", "start"]);
        for command in [run, start] {
            let output = run_expecting_exit(command);
            assert_ne!(code(&output), 0, "{kind}");
            let message = stderr(&output);
            assert!(
                message.contains(&format!("{} is {kind}", socket.display()))
                    && message.contains("not a socket"),
                "{kind}: {message}"
            );
            let after = std::fs::symlink_metadata(&socket).unwrap_or_else(|_| panic!("{kind} was deleted"));
            assert_eq!(after.file_type(), file_type, "{kind} was replaced");
        }
        if *kind == "a regular file" {
            assert_eq!(std::fs::read_to_string(&socket).expect("read"), "precious");
        }
        assert!(!std::fs::symlink_metadata(&socket).expect("there").file_type().is_socket());
        std::fs::remove_file(&socket).expect("clean up");
    }
}

#[test]
fn symlinks_planted_at_the_lock_and_holder_files_are_not_followed() {
    let daemon = TestDaemon::stopped_with(&[]);
    let data = daemon.data_dir();
    std::fs::create_dir(&data).expect("data dir");
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let start_victim = daemon.dir().join("start-victim");
    std::os::unix::fs::symlink(&start_victim, daemon.dir().join("orders.sock.lock")).expect("link");
    let mut victims = Vec::new();
    for name in ["daemon.lock", "daemon.pid", "daemon.pid.new"] {
        let victim = daemon.dir().join(format!("victim-{name}"));
        std::fs::write(&victim, "precious").expect("victim");
        std::os::unix::fs::symlink(&victim, data.join(name)).expect("link");
        victims.push(victim);
    }

    let refused = daemon.command_with_autostart().args(["daemon", "start"]).output().expect("start");
    assert_ne!(code(&refused), 0);
    assert!(stderr(&refused).contains("orders.sock.lock is a symbolic link"), "{}", stderr(&refused));
    assert!(!start_victim.exists(), "the start lock's link was followed");

    std::fs::remove_file(daemon.dir().join("orders.sock.lock")).expect("remove the link");
    let started = daemon.command_with_autostart().args(["daemon", "start"]).output().expect("start");
    assert_eq!(code(&started), 0, "{}", stderr(&started));
    for victim in &victims {
        assert_eq!(std::fs::read_to_string(victim).expect("victim"), "precious", "{}", victim.display());
    }
    assert!(std::fs::symlink_metadata(data.join("daemon.pid")).expect("holder").is_file());
    assert!(!start_victim.exists());
    assert_eq!(code(&daemon.command().args(["daemon", "stop"]).output().expect("stop")), 0);
}

/// `sh -c 'umask U && exec orders ARGS'`, with the fixture's environment.
fn under_umask(daemon: &TestDaemon, umask: &str, args: &[&str]) -> Output {
    let template = daemon.command_with_autostart();
    let mut sh = Command::new("sh");
    sh.arg("-c").arg(format!("umask {umask} && exec \"$0\" \"$@\"")).arg(ORDERS).args(args);
    for (key, value) in template.get_envs() {
        match value {
            Some(value) => sh.env(key, value),
            None => sh.env_remove(key),
        };
    }
    sh.output().expect("run under a umask")
}

#[test]
fn the_database_lock_and_log_files_are_0600_whatever_the_umask() {
    for umask in ["022", "000"] {
        let daemon = TestDaemon::stopped_with(&[]);
        let started = under_umask(&daemon, umask, &["daemon", "start"]);
        assert_eq!(code(&started), 0, "{}", stderr(&started));
        daemon.create("private", 2);
        let data = daemon.data_dir();
        let files = [
            data.join("orders.db"),
            data.join("orders.db-wal"),
            data.join("orders.db-shm"),
            data.join("daemon.pid"),
            daemon.dir().join("orders.sock.lock"),
            daemon.log_file(),
        ];
        for file in &files {
            assert_eq!(mode(file), 0o600, "umask {umask}: {}", file.display());
        }
        assert_eq!(mode(&data), 0o700, "umask {umask}");
        assert_eq!(mode(&daemon.socket()), 0o600, "umask {umask}");
        assert_eq!(code(&daemon.command().args(["daemon", "stop"]).output().expect("stop")), 0);

        // Left open to others by an older version: tightened at the next start, and logged.
        for file in &files {
            if file.exists() {
                std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
            }
        }
        let restarted = under_umask(&daemon, umask, &["daemon", "start"]);
        assert_eq!(code(&restarted), 0, "{}", stderr(&restarted));
        for file in files.iter().filter(|file| file.exists()) {
            assert_eq!(mode(file), 0o600, "umask {umask}, tightened: {}", file.display());
        }
        let log = daemon.log();
        assert!(log.contains("orders.db") && log.contains("(mode 0644); made it 0600"), "{log}");
        assert_eq!(code(&daemon.command().args(["daemon", "stop"]).output().expect("stop")), 0);
    }
}

#[test]
fn a_socket_directory_open_to_others_is_refused() {
    let daemon = TestDaemon::stopped_with(&[]);
    let open = daemon.dir().join("open");
    std::fs::create_dir(&open).expect("mkdir");
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let socket = open.join("orders.sock");
    let mut run = daemon.command();
    run.env("ORDERS_SOCKET", &socket).args(["daemon", "run"]);
    let mut autostart = daemon.command_with_autostart();
    autostart.env("ORDERS_SOCKET", &socket).args(["list"]);
    for command in [run, autostart] {
        let output = run_expecting_exit(command);
        assert_ne!(code(&output), 0);
        let message = stderr(&output);
        assert!(
            message.contains(&format!("socket directory {} has mode 0777", open.display()))
                && message.contains(&format!("chmod 700 {}", open.display())),
            "{message}"
        );
    }
    assert!(!socket.exists());
}

/// Needs root, to give the directory to `nobody`; skipped otherwise.
#[test]
fn a_socket_directory_owned_by_another_user_is_refused() {
    if !is_root() {
        eprintln!("skipped: needs root to chown a directory to another user");
        return;
    }
    let daemon = TestDaemon::stopped_with(&[]);
    let foreign = daemon.dir().join("foreign");
    std::fs::create_dir(&foreign).expect("mkdir");
    std::fs::set_permissions(&foreign, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    std::os::unix::fs::chown(&foreign, Some(65534), Some(65534)).expect("chown");
    let mut run = daemon.command();
    run.env("ORDERS_SOCKET", foreign.join("orders.sock")).args(["daemon", "run"]);
    let output = run_expecting_exit(run);
    assert_ne!(code(&output), 0);
    let message = stderr(&output);
    assert!(
        message.contains(&format!("socket directory {} belongs to uid 65534", foreign.display())),
        "{message}"
    );
}

#[test]
fn deleting_the_holder_file_does_not_let_a_second_daemon_serve_the_same_data() {
    let daemon = TestDaemon::start();
    for name in ["daemon.pid", "daemon.lock"] {
        match std::fs::remove_file(daemon.data_dir().join(name)) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => panic!("{name}: {error}"),
            _ => {}
        }
    }
    let mut second = daemon.command();
    second.env("ORDERS_SOCKET", daemon.dir().join("second.sock")).args(["daemon", "run"]);
    let output = run_expecting_exit(second);
    assert_ne!(code(&output), 0);
    assert!(stderr(&output).contains("already serves"), "{}", stderr(&output));
    daemon.create("still", 2);
}

/// `orders daemon run 2>file`, as under a service manager: no escape codes unless asked for.
#[test]
fn the_daemon_writes_no_escape_codes_to_a_stderr_that_is_not_a_terminal() {
    let mut daemon = TestDaemon::stopped_with(&[]);
    // The fixture sets NO_COLOR for everything; the daemon must not need it.
    daemon.set_env("NO_COLOR", None);
    daemon.spawn();
    daemon.create("plain", 2);
    daemon.signal("TERM");
    let written = std::fs::read(daemon.dir().join("daemon.stderr")).expect("stderr");
    assert!(String::from_utf8_lossy(&written).contains("daemon ready"), "it did log to stderr");
    assert!(!written.contains(&0x1b), "{}", String::from_utf8_lossy(&written));

    // `--color always` still colours it: the switch is what decides, not luck.
    let coloured = daemon.dir().join("coloured.stderr");
    let mut child = daemon
        .command()
        .env_remove("NO_COLOR")
        .args(["--color", "always", "daemon", "run"])
        .stdin(Stdio::null())
        .stderr(std::fs::File::create(&coloured).expect("file"))
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(&coloured).unwrap_or_default().contains("daemon ready") {
        assert!(Instant::now() < deadline, "the daemon did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    rustix::process::kill_process(rustix::process::Pid::from_child(&child), rustix::process::Signal::TERM)
        .expect("SIGTERM");
    assert!(wait_timeout(&mut child, Duration::from_secs(30)).expect("exits").success());
    assert!(std::fs::read(&coloured).expect("stderr").contains(&0x1b), "--color always colours");
}

/// `daemon run` with the fixture's environment and `extra` variables; expected to refuse.
fn refused_run(daemon: &TestDaemon, extra: &[(&str, &Path)], args: &[&str]) -> String {
    let mut run = daemon.command();
    for (key, value) in extra {
        run.env(key, value);
    }
    run.args(args).args(["daemon", "run"]);
    let output = run_expecting_exit(run);
    assert_ne!(code(&output), 0);
    stderr(&output)
}

fn private_dir(path: &Path) {
    std::fs::create_dir_all(path).expect("mkdir");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).expect("chmod");
}

/// Issue 11, F1: a data directory others could open (and so `flock`) is refused, with a
/// `chmod 700` hint since it is the user's own.
#[test]
fn a_data_dir_others_may_read_is_refused() {
    let daemon = TestDaemon::stopped_with(&[]);
    let data = daemon.data_dir();
    std::fs::create_dir(&data).expect("mkdir");
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let message = refused_run(&daemon, &[], &[]);
    assert!(
        message.contains(&format!("{} has mode 0755", data.display()))
            && message.contains(&format!("chmod 700 {}", data.display())),
        "{message}"
    );
}

/// Issue 11, F1: `daemon.pid` goes with a clean stop, and a pid it names that is no orders
/// daemon holding the data directory is never signalled, whoever holds the lock.
#[test]
fn a_stale_pid_is_never_signalled_and_a_clean_stop_removes_it() {
    let daemon = TestDaemon::stopped_with(&[]);
    let started = daemon.command_with_autostart().args(["daemon", "start"]).output().expect("start");
    assert_eq!(code(&started), 0, "{}", stderr(&started));
    assert_eq!(code(&daemon.command().args(["daemon", "stop"]).output().expect("stop")), 0);
    let holder = daemon.data_dir().join("daemon.pid");
    assert!(!holder.exists(), "daemon.pid outlived a clean stop");

    let mut stranger = Command::new("sleep").arg("300").spawn().expect("sleep");
    std::fs::write(&holder, format!("{}\n{}\n", stranger.id(), daemon.socket().display())).expect("pid");
    let lock = std::fs::File::open(daemon.data_dir()).expect("open the data dir");
    lock.lock().expect("hold the data dir");
    let restart = daemon.command().args(["daemon", "restart"]).output().expect("restart");
    assert_ne!(code(&restart), 0);
    let status = daemon.command().args(["daemon", "status"]).output().expect("status");
    let start = run_expecting_exit({
        let mut run = daemon.command();
        run.args(["daemon", "run"]);
        run
    });
    let alive = stranger.try_wait().expect("try_wait").is_none();
    let _ = stranger.kill();
    let _ = stranger.wait();
    assert!(alive, "restart killed an unrelated process: {}", stderr(&restart));
    for output in [&restart, &status] {
        let message = stderr(output);
        assert!(
            message.contains(&format!("names pid {}, but", stranger.id()))
                && message.contains("no orders daemon")
                && message.contains("nothing was signalled"),
            "{message}"
        );
    }
    let message = stderr(&start);
    assert!(message.contains("already serves") && !message.contains("(pid"), "{message}");
}

/// Issue 11, F1: someone else's lock on the data directory does not keep `daemon stop` waiting
/// for a daemon that has exited.
#[test]
fn stop_returns_once_the_daemon_exits_whoever_else_holds_the_lock() {
    let daemon = TestDaemon::stopped_with(&[]);
    let started = daemon.command_with_autostart().args(["daemon", "start"]).output().expect("start");
    assert_eq!(code(&started), 0, "{}", stderr(&started));
    // Waits for the daemon's lock, then holds it.
    let Ok(mut waiter) = Command::new("flock").arg("-x").arg(daemon.data_dir()).args(["sleep", "60"]).spawn()
    else {
        eprintln!("skipped: needs flock(1)");
        return;
    };
    let begun = Instant::now();
    let stop = daemon.command().args(["daemon", "stop"]).output().expect("stop");
    let elapsed = begun.elapsed();
    let _ = waiter.kill();
    let _ = waiter.wait();
    assert_eq!(code(&stop), 0, "{}", stderr(&stop));
    assert!(elapsed < Duration::from_secs(10), "stop took {elapsed:?}");
}

/// Issue 11: a daemon of an older version holds `daemon.lock`, not the directory; while it
/// does, no new daemon starts. A lock file nobody holds is removed.
#[test]
fn a_legacy_lock_file_still_held_keeps_a_new_daemon_out() {
    let daemon = TestDaemon::stopped_with(&[]);
    private_dir(&daemon.data_dir());
    let legacy = daemon.data_dir().join("daemon.lock");
    std::fs::write(&legacy, "4242\n/old/orders.sock\n").expect("legacy lock");
    let held = std::fs::File::open(&legacy).expect("open");
    held.lock().expect("hold it, as the old daemon does");
    let message = refused_run(&daemon, &[], &[]);
    assert!(
        message.contains(&format!("older orders daemon (pid 4242) still holds {}", legacy.display())),
        "{message}"
    );
    drop(held);
    let started = daemon.command_with_autostart().args(["daemon", "start"]).output().expect("start");
    assert_eq!(code(&started), 0, "{}", stderr(&started));
    assert!(!legacy.exists(), "the free legacy lock file was left");
    assert_eq!(code(&daemon.command().args(["daemon", "stop"]).output().expect("stop")), 0);
}

/// Issue 11, F2: two data directories sharing `orders.db` by a hard link (a `cp -al` copy)
/// would be two locks on one database: a database with a second name is refused.
#[test]
fn a_hard_linked_database_is_refused() {
    let daemon = TestDaemon::start();
    daemon.create("linked", 2);
    let mut daemon = daemon;
    daemon.signal("TERM");
    let copy = daemon.dir().join("copy");
    private_dir(&copy);
    std::fs::hard_link(daemon.data_dir().join("orders.db"), copy.join("orders.db")).expect("ln");
    let socket = daemon.dir().join("copy.sock");
    for data in [daemon.data_dir(), copy.clone()] {
        let message = refused_run(&daemon, &[("ORDERS_DATA_DIR", &data), ("ORDERS_SOCKET", &socket)], &[]);
        assert!(
            message.contains(&format!("{} has 2 hard links", data.join("orders.db").display())),
            "{message}"
        );
    }
}

/// Issue 11, F2 and F4: a database or log file of another user's is refused and left as it
/// was, never chmodded. Needs root, to give the files to `nobody`; skipped otherwise.
#[test]
fn files_of_another_user_are_refused_and_left_alone() {
    if !is_root() {
        eprintln!("skipped: needs root to chown a file to another user");
        return;
    }
    let daemon = TestDaemon::stopped_with(&[]);
    private_dir(&daemon.data_dir());
    let database = daemon.data_dir().join("orders.db");
    let shared = daemon.dir().join("shared");
    std::fs::create_dir(&shared).expect("mkdir");
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).expect("chmod");
    let log = shared.join("orders.log");
    for file in [&database, &log] {
        std::fs::write(file, "").expect("write");
        std::os::unix::fs::chown(file, Some(65534), Some(65534)).expect("chown");
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    }
    let message = refused_run(&daemon, &[("ORDERS_LOG_FILE", &log)], &[]);
    assert!(message.contains(&format!("{} belongs to uid 65534", log.display())), "{message}");
    std::fs::remove_file(&log).expect("rm");
    let message = refused_run(&daemon, &[], &[]);
    assert!(message.contains(&format!("{} belongs to uid 65534", database.display())), "{message}");
    assert_eq!(mode(&database), 0o666, "someone else's file was chmodded");
}

/// Issue 11, F3: another user who may write to a parent of the data directory could swap it
/// for theirs while the daemon opens the database by path: such a parent is refused.
#[test]
fn a_data_dir_whose_parent_others_may_write_to_is_refused() {
    let daemon = TestDaemon::stopped_with(&[]);
    let open = daemon.dir().join("open");
    std::fs::create_dir(&open).expect("mkdir");
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let data = open.join("data");
    private_dir(&data);
    let message = refused_run(&daemon, &[("ORDERS_DATA_DIR", &data)], &[]);
    assert!(message.contains(&format!("lies in {}, which has mode 0777", open.display())), "{message}");
    assert!(!data.join("orders.db").exists());
}

/// Issue 11, F4 and F5: a FIFO or a directory as the log file is named for what it is, once,
/// and a failed start points at the log it was given.
#[test]
fn a_log_file_that_is_no_file_is_named_for_what_it_is() {
    let daemon = TestDaemon::stopped_with(&[]);
    let fifo = daemon.dir().join("log-fifo");
    rustix::fs::mknodat(rustix::fs::CWD, &fifo, rustix::fs::FileType::Fifo, 0o600.into(), 0).expect("mkfifo");
    let message = refused_run(&daemon, &[("ORDERS_LOG_FILE", &fifo)], &[]);
    assert!(message.contains(&format!("{} is a FIFO", fifo.display())), "{message}");
    let dir = daemon.dir().join("log-dir");
    private_dir(&dir);
    let message = refused_run(&daemon, &[("ORDERS_LOG_FILE", &dir)], &[]);
    assert!(message.contains(&format!("{} is a directory", dir.display())), "{message}");
    assert!(!message.contains("os error"), "{message}");

    let start = daemon
        .command_with_autostart()
        .env_remove("ORDERS_LOG_FILE")
        .args(["daemon", "start", "--log-file"])
        .arg(&dir)
        .output()
        .expect("start");
    assert_ne!(code(&start), 0);
    assert!(
        stderr(&start).contains(&format!("see the daemon's log: {}", dir.display())),
        "{}",
        stderr(&start)
    );
}

/// Issue 11, F5: a socket in a system or sticky directory is refused without advice to chmod it.
#[test]
fn the_socket_hint_never_says_to_chmod_a_system_directory() {
    let daemon = TestDaemon::stopped_with(&[]);
    for socket in ["/dev/null", "/tmp/orders-e2e-hint.sock"] {
        let message = refused_run(&daemon, &[("ORDERS_SOCKET", Path::new(socket))], &[]);
        assert!(message.contains("socket directory"), "{message}");
        assert!(!message.contains("chmod 700"), "{socket}: {message}");
        assert!(message.contains("private directory"), "{socket}: {message}");
    }
}

/// A reader outside the daemon (the `sqlite3` shell, a backup script) must change nothing. The
/// checkpointer's connection once went through the raw opens of the first connection, and
/// closing those descriptors dropped every POSIX lock SQLite held on the files: the outside
/// reader then took itself for the last connection and deleted the `-wal` the daemon was still
/// writing, so commits acknowledged afterwards were lost at the next `kill -9`.
#[test]
fn a_reader_outside_the_daemon_changes_nothing_and_loses_nothing() {
    let mut daemon = TestDaemon::start();
    daemon.create("before", 2);
    let database = daemon.data_dir().join("orders.db");
    let wal = daemon.data_dir().join("orders.db-wal");
    assert!(wal.exists(), "the running daemon has its WAL");
    let outside = Command::new("python3")
        .args(["-c", "import sqlite3,sys\nc=sqlite3.connect(sys.argv[1])\nprint(c.execute('select count(*) from orders').fetchone()[0])\nc.close()"])
        .arg(&database)
        .output()
        .expect("python3 with sqlite3");
    assert!(outside.status.success(), "{}", String::from_utf8_lossy(&outside.stderr));
    assert!(wal.exists(), "an outside reader deleted the daemon's WAL");
    let ids: Vec<String> = (0..5).map(|_| daemon.create("after", 2)).collect();
    daemon.kill9();
    daemon.spawn();
    for id in &ids {
        let shown = daemon.json(["show", id]);
        assert_eq!(shown["id"], id.as_str(), "an acknowledged order was lost: {shown}");
    }
}

//! A real `orders daemon run` process on a temporary directory, as the benchmarks drive it.

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use orders_daemon::paths::Paths;

/// The `orders` binary built beside this one.
pub fn orders_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let binary = exe.with_file_name("orders");
    if !binary.exists() {
        bail!("{} is missing: build it first with `cargo build --release --bins`", binary.display());
    }
    Ok(binary)
}

pub struct Daemon {
    child: Child,
    pub socket: PathBuf,
    /// The data directory and socket, as clients name them (every request names its store).
    pub paths: Paths,
}

impl Daemon {
    /// Starts a daemon on `dir` (its data in `dir/data`) and waits until it answers.
    pub fn start(dir: &Path, env: &[(&str, &str)]) -> anyhow::Result<Daemon> {
        // The socket's directory must be private (0700): the daemon refuses one open to others.
        std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .with_context(|| format!("chmod 700 {}", dir.display()))?;
        let socket = dir.join("orders.sock");
        let data_dir = dir.join("data");
        // The data directory must be private too; a seeded one may have been made with the umask.
        std::fs::create_dir_all(&data_dir).with_context(|| format!("mkdir {}", data_dir.display()))?;
        std::fs::set_permissions(&data_dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .with_context(|| format!("chmod 700 {}", data_dir.display()))?;
        let mut command = Command::new(orders_binary()?);
        command
            .args(["daemon", "run", "--log-level", "warn"])
            .env("ORDERS_DATA_DIR", &data_dir)
            .env("ORDERS_SOCKET", &socket)
            .env("ORDERS_LOG_FILE", dir.join("daemon.log"))
            .env("ORDERS_DELIVERY_DELAY", "0")
            .env("ORDERS_MAX_CONNECTIONS", "4096")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for (key, value) in env {
            command.env(key, value);
        }
        let child = command.spawn().context("start the daemon")?;
        let paths = Paths { data_dir, socket: socket.clone() };
        let mut daemon = Daemon { child, socket, paths };
        let deadline = Instant::now() + Duration::from_secs(60);
        while UnixStream::connect(&daemon.socket).is_err() {
            if let Some(status) = daemon.child.try_wait()? {
                bail!("the daemon exited at start: {status}");
            }
            if Instant::now() > deadline {
                bail!("the daemon did not answer");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        // It answers while it starts (catching up a seeded log): wait until it is ready.
        while !daemon.is_ready()? {
            if let Some(status) = daemon.child.try_wait()? {
                bail!("the daemon exited at start: {status}");
            }
            if Instant::now() > deadline {
                bail!("the daemon did not get ready");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(daemon)
    }

    /// Whether the daemon's own status says it is ready (not `starting`).
    fn is_ready(&self) -> anyhow::Result<bool> {
        use std::io::{BufRead, Write};
        let Ok(mut stream) = UnixStream::connect(&self.socket) else { return Ok(false) };
        let store = std::fs::canonicalize(&self.paths.data_dir)?;
        let request = serde_json::json!({
            "v": orders_shared::PROTOCOL_VERSION,
            "store": store.display().to_string(),
            "cmd": "status",
        });
        stream.write_all(format!("{request}\n").as_bytes())?;
        let mut line = String::new();
        std::io::BufReader::new(stream).read_line(&mut line)?;
        let reply: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        Ok(reply["ok"] == true && reply["data"]["state"] != "starting")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Peak and current resident memory, in KiB (`VmHWM`, `VmRSS`).
    pub fn memory_kib(&self) -> anyhow::Result<(u64, u64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|kib| kib.parse().ok())
                .unwrap_or(0)
        };
        Ok((field("VmHWM:"), field("VmRSS:")))
    }

    /// Resident anonymous memory (the heap and stacks), in KiB (`RssAnon`).
    pub fn anonymous_kib(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        Ok(status
            .lines()
            .find_map(|line| line.strip_prefix("RssAnon:"))
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
            .unwrap_or(0))
    }

    /// Open file descriptors.
    pub fn open_fds(&self) -> anyhow::Result<usize> {
        Ok(std::fs::read_dir(format!("/proc/{}/fd", self.pid()))?.count())
    }

    /// SIGTERM, and wait for a clean exit.
    pub fn stop(mut self) -> anyhow::Result<()> {
        Command::new("kill").args(["-TERM", &self.pid().to_string()]).status()?;
        let status = self.child.wait()?;
        if !status.success() {
            bail!("the daemon exited with {status}");
        }
        Ok(())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Counts one process's `fsync` and `fdatasync` calls with `perf stat` on the kernel's syscall
/// tracepoints (Debian's linux-perf), so that a quietly weakened commit path would show in the
/// figures. `None` where perf or its tracepoints are missing: the figure is then left out.
pub struct SyncCounter {
    perf: Child,
    out: PathBuf,
}

impl SyncCounter {
    pub fn attach(pid: u32, dir: &Path) -> Option<SyncCounter> {
        let out = dir.join("perf-syncs.csv");
        let mut perf = Command::new("perf")
            .args(["stat", "-x", ",", "-o"])
            .arg(&out)
            .args(["-e", "syscalls:sys_enter_fsync,syscalls:sys_enter_fdatasync", "-p", &pid.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        // perf attaches in its own time; one that cannot has exited by then.
        std::thread::sleep(Duration::from_millis(300));
        match perf.try_wait() {
            Ok(None) => Some(SyncCounter { perf, out }),
            _ => None,
        }
    }

    /// Stops counting; the calls counted since `attach`.
    pub fn finish(mut self) -> Option<u64> {
        Command::new("kill").args(["-INT", &self.perf.id().to_string()]).status().ok()?;
        self.perf.wait().ok()?;
        let text = std::fs::read_to_string(&self.out).ok()?;
        let counts: Vec<u64> = text
            .lines()
            .filter(|line| line.contains("syscalls:sys_enter_"))
            .map(|line| line.split(',').next().and_then(|n| n.trim().parse().ok()))
            .collect::<Option<_>>()?;
        (counts.len() == 2).then(|| counts.iter().sum())
    }
}

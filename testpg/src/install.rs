//! The PostgreSQL installation the cluster runs from, and the user its server programs run as.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where Debian's `postgresql` package puts each major version's programs: off the `PATH`,
/// which only holds wrappers (`psql`, not `initdb` or `pg_ctl`).
const DEBIAN: &str = "/usr/lib/postgresql";

/// The programs the cluster needs, all from one installation so that their versions agree.
const PROGRAMS: [&str; 4] = ["initdb", "pg_ctl", "postgres", "psql"];

#[derive(Clone, Debug)]
pub(crate) struct Install {
    /// The directory holding `initdb`, `pg_ctl`, `postgres` and `psql`.
    pub(crate) bin: PathBuf,
    /// `Some((uid, gid))` of the `postgres` user when this process is root: `initdb` and
    /// `postgres` refuse to run as root, so the server programs run as that user (`runuser`)
    /// and the cluster's directory belongs to it.
    pub(crate) server_user: Option<(u32, u32)>,
}

/// Why there is no cluster.
#[derive(Debug)]
pub(crate) enum Unavailable {
    /// PostgreSQL is not installed: the tests skip, saying how to install it.
    Missing(String),
    /// It is installed but the cluster could not be started.
    Failed(String),
}

impl Install {
    pub(crate) fn find() -> Result<Install, Unavailable> {
        let bin = newest_debian_bin().or_else(bin_on_path).ok_or_else(|| {
            Unavailable::Missing(format!("no PostgreSQL found (no initdb under {DEBIAN}/*/bin nor on PATH)"))
        })?;
        let server_user = if rustix::process::geteuid().is_root() {
            let id = |flag| id_of_postgres(flag).map_err(Unavailable::Failed);
            Some((id("-u")?, id("-g")?))
        } else {
            None
        };
        Ok(Install { bin, server_user })
    }

    /// One of the installation's programs, to run as this process's user (`psql`).
    pub(crate) fn program(&self, name: &str) -> Command {
        let mut command = Command::new(self.bin.join(name));
        clean_environment(&mut command);
        command
    }

    /// One of the installation's server programs (`initdb`, `pg_ctl`), run as the `postgres`
    /// user when this process is root, in `dir` (a directory that user may enter: it may be
    /// unable to enter the test's own working directory).
    pub(crate) fn server_program(&self, name: &str, dir: &Path) -> Command {
        let words = self.server_words(name);
        let mut command = Command::new(&words[0]);
        command.args(&words[1..]).current_dir(dir);
        clean_environment(&mut command);
        command
    }

    /// The words that run a server program: `runuser -u postgres -- <bin>/<name>` when this
    /// process is root, `<bin>/<name>` otherwise.
    pub(crate) fn server_words(&self, name: &str) -> Vec<OsString> {
        let mut words: Vec<OsString> = match self.server_user {
            Some(_) => ["runuser", "-u", "postgres", "--"].map(OsString::from).into(),
            None => Vec::new(),
        };
        words.push(self.bin.join(name).into());
        words
    }
}

/// The `bin` directory of the newest version under `/usr/lib/postgresql` that has all programs.
fn newest_debian_bin() -> Option<PathBuf> {
    let versions = std::fs::read_dir(DEBIAN).ok()?;
    versions
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let name = entry.file_name().into_string().ok()?;
            // "15", or "9.6" before PostgreSQL 10.
            let version: Vec<u32> = name.split('.').map(|part| part.parse().ok()).collect::<Option<_>>()?;
            let bin = entry.path().join("bin");
            complete(&bin).then_some((version, bin))
        })
        .max()
        .map(|(_, bin)| bin)
}

/// Elsewhere (Fedora, Arch, Homebrew) `initdb` is on the `PATH`; a symlink is followed to the
/// directory that holds its siblings.
fn bin_on_path() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).find_map(|dir| {
        let initdb = std::fs::canonicalize(dir.join("initdb")).ok()?;
        let bin = initdb.parent()?.to_owned();
        complete(&bin).then_some(bin)
    })
}

fn complete(bin: &Path) -> bool {
    PROGRAMS.iter().all(|program| bin.join(program).is_file())
}

fn id_of_postgres(flag: &str) -> Result<u32, String> {
    let no_user = || {
        "this process is root and there is no postgres user to run the server as \
        (initdb refuses root; Debian's postgresql package creates that user)"
            .to_owned()
    };
    let output = Command::new("id").args([flag, "postgres"]).output().map_err(|_| no_user())?;
    if !output.status.success() {
        return Err(no_user());
    }
    String::from_utf8_lossy(&output.stdout).trim().parse().map_err(|_| no_user())
}

/// Drops the `PG*` variables (`PGHOST`, `PGSSLMODE`, `PGDATA`, ...) a developer may have set
/// for their own databases: they would steer these programs elsewhere.
fn clean_environment(command: &mut Command) {
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("PG") {
            command.env_remove(name);
        }
    }
}

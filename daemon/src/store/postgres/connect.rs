//! Connections to PostgreSQL, named as libpq names them (issue 19): a `postgres://` URL, with
//! what it leaves out taken from libpq's environment variables, its password file and its
//! defaults, so that a URL, `PGHOST`, `~/.pgpass` or `sslmode=verify-full` that works with
//! `psql` works with the daemon too.
//!
//! - [`Target`]: where the store is, parsed once at start-up; [`Target::connect`] opens a
//!   connection for one purpose (the writer, the reads, a lock);
//! - `uri`: the URL's syntax; `options`: what its parameters and the environment mean;
//! - `passfile`: `~/.pgpass`; `tls`: sslmode through rustls;
//! - `classify`: the driver's errors as [`StoreError`]s.
//!
//! The password is never shown: not by [`Target::describe`] (what logs and `status` print), not
//! by `Debug`, not in any error. The driver is the synchronous `postgres` client: each
//! connection runs its own current-thread runtime, so it is used from plain threads and
//! `spawn_blocking`, never from async code (creating that runtime there would panic).

mod classify;
mod options;
mod passfile;
mod target;
mod tls;
mod uri;

#[cfg(test)]
mod tests;

use std::fmt;
use std::net::IpAddr;

pub(crate) use self::options::Environment;
pub use self::target::Target;
use self::target::{Endpoint, Host, Password, Secret};
use self::tls::SslMode;
use crate::store::StoreError;

impl Target {
    /// Parses `postgres://` / `postgresql://` URLs (libpq URI syntax, including a Unix socket
    /// directory as host: `postgres://user@%2Fvar%2Frun%2Fpostgresql/db` and `?host=/dir`),
    /// filling what the URL leaves out from libpq's environment variables (`PGHOST`, `PGPORT`,
    /// `PGUSER`, `PGDATABASE`, `PGPASSWORD`, `PGSSLMODE`, `PGSSLROOTCERT`, `PGPASSFILE`,
    /// `PGCONNECT_TIMEOUT`, `PGAPPNAME`, `PGOPTIONS`, `PGTARGETSESSIONATTRS`) and libpq's
    /// defaults. The error text never contains the password.
    pub fn parse(text: &str) -> Result<Target, String> {
        Target::parse_in(text, &Environment::process())
    }

    /// [`Target::parse`] in the environment `env` (the tests' own, not the process's).
    pub(crate) fn parse_in(text: &str, env: &Environment) -> Result<Target, String> {
        options::resolve(uri::parse(text)?, env)
    }

    /// What logs, `status` and error messages show: `postgres://user@host:port/dbname` (a socket
    /// directory as host, percent-encoded as the URL would have it), never the password;
    /// `?sslmode=...` when it is not the default.
    pub fn describe(&self) -> String {
        let hosts: Vec<String> = self.endpoints.iter().map(Endpoint::describe).collect();
        self.describe_hosts(&hosts.join(","))
    }

    fn describe_hosts(&self, hosts: &str) -> String {
        let mut text =
            format!("postgres://{}@{hosts}/{}", uri::encode(&self.user), uri::encode(&self.database));
        if self.sslmode != SslMode::Prefer {
            text.push_str("?sslmode=");
            text.push_str(self.sslmode.as_str());
        }
        text
    }

    /// The database name.
    pub fn database(&self) -> &str {
        &self.database
    }

    /// The user name.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// Opens a connection for `purpose` (e.g. "writer", "reads", "lock"): application_name
    /// `orders-daemon <purpose>`, TCP keepalives (idle 5 s, interval 2 s, 3 retries),
    /// tcp_user_timeout 10 s, connect timeout 10 s unless the URL says otherwise, TLS as sslmode
    /// says. With several hosts, each is tried in turn; the error is the last one's.
    ///
    /// The connect timeout bounds reaching each address (as tokio-postgres applies it), not the
    /// whole start-up exchange: a server that stops answering after that is caught by the
    /// keepalives and tcp_user_timeout, and a live one by its own `authentication_timeout`.
    ///
    /// Blocks: call it from a plain thread or `spawn_blocking`, never from async code.
    pub fn connect(&self, purpose: &str) -> Result<::postgres::Client, StoreError> {
        let check = tls::check(self.sslmode, self.roots.as_ref()).map_err(|why| {
            StoreError::Failed(format!("cannot connect to {}: {why}", self.describe()), None)
        })?;
        let tls = tls::connector(check, self.settings.sni).map_err(|why| {
            StoreError::Failed(format!("cannot connect to {}: {why}", self.describe()), None)
        })?;
        let mut failure = None;
        for endpoint in &self.endpoints {
            let (config, password) = self.config(endpoint, purpose);
            let connected = match endpoint.host {
                // The server never offers TLS on a socket; libpq ignores sslmode there.
                Host::Socket { .. } => config.connect(::postgres::NoTls),
                _ => config.connect(tls.clone()),
            };
            let error = match connected {
                Ok(client) => return Ok(client),
                Err(error) => error,
            };
            let attempt = classify::Attempt {
                place: self.describe_hosts(&endpoint.describe()),
                host: endpoint.name(),
                user: &self.user,
                database: &self.database,
                password,
                passfile: self.passfile.as_deref(),
                sslmode: self.sslmode,
                roots: self.roots.as_ref(),
            };
            let error = classify::connecting(&error, &attempt);
            if self.endpoints.len() > 1 {
                tracing::info!(purpose, "{error:#}; trying the next host");
            }
            failure = Some(error);
        }
        Err(failure.unwrap_or_else(|| StoreError::Failed(format!("{} names no host", self.describe()), None)))
    }

    /// The driver's configuration for one endpoint, and where its password came from (in
    /// words, for an authentication error).
    fn config(&self, endpoint: &Endpoint, purpose: &str) -> (::postgres::Config, Option<String>) {
        let settings = &self.settings;
        let mut config = ::postgres::Config::new();
        config
            .user(&self.user)
            .dbname(&self.database)
            .port(endpoint.port)
            .application_name(&format!("{} {purpose}", settings.application_name))
            .keepalives(settings.keepalives)
            .keepalives_idle(settings.keepalives_idle)
            .keepalives_interval(settings.keepalives_interval)
            .keepalives_retries(settings.keepalives_retries)
            .target_session_attrs(settings.target_session_attrs)
            .channel_binding(settings.channel_binding)
            .ssl_negotiation(settings.ssl_negotiation);
        match &endpoint.host {
            Host::Tcp(name) => config.host(name),
            Host::Socket { dir, .. } => config.host_path(dir),
            // TLS needs a name to hand rustls; libpq too checks the address then.
            Host::None => config.host(&endpoint.hostaddr.map(|ip| ip.to_string()).unwrap_or_default()),
        };
        if let Some(ip) = endpoint.hostaddr {
            config.hostaddr(ip);
        }
        config.ssl_mode(match endpoint.host {
            Host::Socket { .. } => ::postgres::config::SslMode::Disable,
            _ => self.sslmode.driver(),
        });
        if let Some(timeout) = settings.connect_timeout {
            config.connect_timeout(timeout);
        }
        if let Some(timeout) = settings.tcp_user_timeout {
            config.tcp_user_timeout(timeout);
        }
        if let Some(options) = &settings.options {
            config.options(options);
        }
        let purpose_for_notices = purpose.to_owned();
        config.notice_callback(move |notice| {
            tracing::info!(purpose = %purpose_for_notices, "PostgreSQL says: {}: {}", notice.severity(), notice.message());
        });
        let source = match (&self.password, &self.passfile) {
            (Some(Password { secret: Secret(password), source }), _) => {
                config.password(password);
                Some((*source).to_owned())
            }
            (None, Some(file)) => {
                let key = passfile::Key {
                    host: &endpoint.passfile_host(),
                    port: endpoint.port,
                    database: &self.database,
                    user: &self.user,
                };
                passfile::lookup(file, &key).map(|password| {
                    config.password(password);
                    format!("in the password file {}", file.display())
                })
            }
            (None, None) => None,
        };
        (config, source)
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Endpoint {
    fn describe(&self) -> String {
        let host = match (&self.host, self.hostaddr) {
            (Host::Tcp(name), _) if name.contains(':') => format!("[{}]", name.replace('%', "%25")),
            (Host::Tcp(name), _) => uri::encode(name),
            (Host::Socket { dir, .. }, _) => uri::encode(dir),
            (Host::None, Some(IpAddr::V6(ip))) => format!("[{ip}]"),
            (Host::None, Some(ip)) => ip.to_string(),
            (Host::None, None) => String::new(),
        };
        format!("{host}:{}", self.port)
    }

    /// The host name TLS checks: the name given, or the address when only that was.
    fn name(&self) -> &str {
        match &self.host {
            Host::Tcp(name) => name,
            Host::Socket { dir, .. } => dir,
            Host::None => "",
        }
    }

    /// The host as libpq matches it against the password file: `localhost` for the default
    /// socket directory, the address when only `hostaddr` was given.
    fn passfile_host(&self) -> String {
        match (&self.host, self.hostaddr) {
            (Host::Tcp(name), _) => name.clone(),
            (Host::Socket { default: true, .. }, _) => "localhost".to_owned(),
            (Host::Socket { dir, .. }, _) => dir.clone(),
            (Host::None, ip) => ip.map(|ip| ip.to_string()).unwrap_or_default(),
        }
    }
}

//! The parts of a target, shared by the parser (`options`) and the connection (`connect`).

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use ::postgres::config::{ChannelBinding, SslNegotiation, TargetSessionAttrs};

use super::tls::{RootCert, SslMode};

/// The keepalive and timeout settings that let a connection notice a server that vanished (a
/// pulled cable, a failover that moved the address): the kernel's defaults wait two hours.
pub(super) const KEEPALIVES_IDLE: Duration = Duration::from_secs(5);
pub(super) const KEEPALIVES_INTERVAL: Duration = Duration::from_secs(2);
pub(super) const KEEPALIVES_RETRIES: u32 = 3;
/// How long sent data may go unacknowledged before the kernel drops the connection.
pub(super) const TCP_USER_TIMEOUT: Duration = Duration::from_secs(10);
/// libpq waits forever by default; a daemon at start-up should rather say what it cannot reach.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the PostgreSQL store is, as the user named it (libpq's conventions).
///
/// `Debug` shows the password as `<hidden>`.
#[derive(Clone, Debug)]
pub struct Target {
    /// Tried in order until one takes the connection, as libpq does with several hosts.
    pub(super) endpoints: Vec<Endpoint>,
    pub(super) user: String,
    pub(super) database: String,
    /// From the URL or `PGPASSWORD`; otherwise the password file is read at each connection
    /// (so that a changed password needs no restart).
    pub(super) password: Option<Password>,
    pub(super) passfile: Option<PathBuf>,
    pub(super) sslmode: SslMode,
    pub(super) roots: Option<RootCert>,
    pub(super) settings: Settings,
}

/// One host (or socket directory) and port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Endpoint {
    pub(super) host: Host,
    pub(super) port: u16,
    /// libpq's `hostaddr`: the address to connect to, `host` then serving only as the name that
    /// TLS checks and the password file matches.
    pub(super) hostaddr: Option<IpAddr>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Host {
    Tcp(String),
    /// The directory of the server's socket (`.s.PGSQL.<port>` in it); `default` when it is
    /// libpq's default, which the password file knows as `localhost`.
    Socket {
        dir: String,
        default: bool,
    },
    /// Only a `hostaddr` was given.
    None,
}

/// The settings passed on to the driver as they are.
#[derive(Clone, Debug)]
pub(super) struct Settings {
    /// `None`: wait as long as it takes (`connect_timeout=0`, as libpq).
    pub(super) connect_timeout: Option<Duration>,
    pub(super) tcp_user_timeout: Option<Duration>,
    pub(super) keepalives: bool,
    pub(super) keepalives_idle: Duration,
    pub(super) keepalives_interval: Duration,
    pub(super) keepalives_retries: u32,
    /// The first word of each connection's application_name: `orders-daemon` unless the URL or
    /// PGAPPNAME names another (two daemons on one database can then be told apart).
    pub(super) application_name: String,
    pub(super) options: Option<String>,
    pub(super) target_session_attrs: TargetSessionAttrs,
    pub(super) channel_binding: ChannelBinding,
    pub(super) ssl_negotiation: SslNegotiation,
    pub(super) sni: bool,
}

/// A password given with the target, and where (for a message when the server refuses it).
#[derive(Clone, Debug)]
pub(super) struct Password {
    pub(super) secret: Secret,
    /// "given in the URL", "in PGPASSWORD".
    pub(super) source: &'static str,
}

/// A password that `Debug` does not show.
#[derive(Clone)]
pub(super) struct Secret(pub(super) String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<hidden>")
    }
}

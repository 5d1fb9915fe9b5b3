//! What a URL's parts and parameters mean, with what libpq would take from the environment
//! where the URL says nothing: the URL first, then its `PG...` variable, then libpq's default.
//!
//! The parameters libpq knows and orders does not do (client certificates, GSSAPI, a service
//! file) are refused by name rather than ignored: a setting that silently does nothing is worse
//! than a daemon that says it cannot do it.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ::postgres::config::{ChannelBinding, SslNegotiation, TargetSessionAttrs};

use super::target::{
    CONNECT_TIMEOUT, Endpoint, Host, KEEPALIVES_IDLE, KEEPALIVES_INTERVAL, KEEPALIVES_RETRIES, Password,
    Secret, Settings, TCP_USER_TIMEOUT, Target,
};
use super::tls::{RootCert, SslMode};
use super::uri::Uri;

/// A lookup of environment variables.
type Vars = dyn Fn(&str) -> Option<String>;

/// What libpq reads besides the URL: its environment variables, the user the process runs as,
/// the home directory (for `~/.pgpass` and `~/.postgresql/root.crt`), and where the server's
/// socket is by default. Tests make their own rather than change the process's environment.
pub(crate) struct Environment {
    vars: Box<Vars>,
    user: Option<String>,
    home: Option<PathBuf>,
    /// Where libpq builds look for the server's socket (Debian's and upstream's): the first
    /// that holds the port's socket is the default, or else the first.
    socket_dirs: Vec<String>,
}

impl Environment {
    /// The process's environment; the user and home from the password database when `HOME`
    /// is unset (a service manager's environment), as libpq does.
    pub fn process() -> Environment {
        let account = account(rustix::process::geteuid().as_raw());
        let home = std::env::var_os("HOME")
            .filter(|home| !home.is_empty())
            .map(PathBuf::from)
            .or_else(|| account.as_ref().map(|(_, home)| home.clone()));
        Environment {
            vars: Box::new(|name| std::env::var(name).ok()),
            user: account.map(|(name, _)| name).or_else(|| std::env::var("USER").ok()),
            home,
            socket_dirs: ["/run/postgresql", "/var/run/postgresql", "/tmp"].map(String::from).to_vec(),
        }
    }

    /// An environment of `vars` alone, for tests: the socket directory is `/var/run/postgresql`.
    #[cfg(test)]
    pub fn with(vars: &[(&str, &str)], user: Option<&str>, home: Option<&str>) -> Environment {
        let vars: Vec<(String, String)> =
            vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        Environment {
            vars: Box::new(move |name| {
                vars.iter().find(|(key, _)| key == name).map(|(_, value)| value.clone())
            }),
            user: user.map(str::to_owned),
            home: home.map(PathBuf::from),
            socket_dirs: vec!["/var/run/postgresql".to_owned()],
        }
    }

    /// A variable's value; an empty one is as good as unset.
    fn var(&self, name: &str) -> Option<String> {
        (self.vars)(name).filter(|value| !value.is_empty())
    }

    fn default_socket_dir(&self, port: u16) -> String {
        let has_socket = |dir: &&String| Path::new(dir).join(format!(".s.PGSQL.{port}")).exists();
        let found = self.socket_dirs.iter().find(has_socket).or(self.socket_dirs.first());
        found.cloned().unwrap_or_else(|| "/tmp".to_owned())
    }

    fn is_default_socket_dir(&self, dir: &str) -> bool {
        self.socket_dirs.iter().any(|default| default == dir)
    }
}

/// The name and home directory of user `uid` in `/etc/passwd` (libpq asks getpwuid; reading the
/// file needs no unsafe call and finds the same for local accounts).
fn account(uid: u32) -> Option<(String, PathBuf)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.len() >= 6 && fields[2].parse() == Ok(uid))
            .then(|| (fields[0].to_owned(), PathBuf::from(fields[5])))
    })
}

/// The URL's parameters, each as last given (libpq: a later one wins).
#[derive(Default)]
struct Params {
    host: Option<String>,
    hostaddr: Option<String>,
    port: Option<String>,
    user: Option<String>,
    password: Option<String>,
    dbname: Option<String>,
    passfile: Option<String>,
    sslmode: Option<String>,
    sslrootcert: Option<String>,
    sslnegotiation: Option<String>,
    sslsni: Option<String>,
    connect_timeout: Option<String>,
    tcp_user_timeout: Option<String>,
    keepalives: Option<String>,
    keepalives_idle: Option<String>,
    keepalives_interval: Option<String>,
    keepalives_count: Option<String>,
    application_name: Option<String>,
    fallback_application_name: Option<String>,
    options: Option<String>,
    target_session_attrs: Option<String>,
    channel_binding: Option<String>,
    gssencmode: Option<String>,
    client_encoding: Option<String>,
    load_balance_hosts: Option<String>,
}

impl Params {
    fn read(uri: &Uri) -> Result<Params, String> {
        let mut params = Params::default();
        for (key, value) in &uri.params {
            let slot = match key.as_str() {
                "host" => &mut params.host,
                "hostaddr" => &mut params.hostaddr,
                "port" => &mut params.port,
                "user" => &mut params.user,
                "password" => &mut params.password,
                "dbname" => &mut params.dbname,
                "passfile" => &mut params.passfile,
                "sslmode" => &mut params.sslmode,
                // JDBC's spelling, which libpq takes too.
                "ssl" if value == "true" => {
                    params.sslmode = Some("require".to_owned());
                    continue;
                }
                "ssl" => {
                    return Err(
                        "the URL parameter ssl takes only the value true (or use sslmode=)".to_owned()
                    );
                }
                "sslrootcert" => &mut params.sslrootcert,
                "sslnegotiation" => &mut params.sslnegotiation,
                "sslsni" => &mut params.sslsni,
                "connect_timeout" => &mut params.connect_timeout,
                "tcp_user_timeout" => &mut params.tcp_user_timeout,
                "keepalives" => &mut params.keepalives,
                "keepalives_idle" => &mut params.keepalives_idle,
                "keepalives_interval" => &mut params.keepalives_interval,
                // libpq's name, and tokio-postgres's.
                "keepalives_count" | "keepalives_retries" => &mut params.keepalives_count,
                "application_name" => &mut params.application_name,
                "fallback_application_name" => &mut params.fallback_application_name,
                "options" => &mut params.options,
                "target_session_attrs" => &mut params.target_session_attrs,
                "channel_binding" => &mut params.channel_binding,
                "gssencmode" => &mut params.gssencmode,
                "client_encoding" => &mut params.client_encoding,
                "load_balance_hosts" => &mut params.load_balance_hosts,
                "sslcert" | "sslkey" | "sslpassword" | "sslcertmode" => {
                    return Err(format!(
                        "the URL parameter {key} is not supported: orders shows the server no client \
                         certificate; authenticate with a password (in the URL, PGPASSWORD or a \
                         password file)"
                    ));
                }
                "sslcrl"
                | "sslcrldir"
                | "ssl_min_protocol_version"
                | "ssl_max_protocol_version"
                | "sslcompression"
                | "requiressl"
                | "krbsrvname"
                | "gsslib"
                | "gssdelegation"
                | "requirepeer"
                | "require_auth"
                | "service"
                | "replication" => {
                    return Err(format!(
                        "the URL parameter {key} is libpq's, and orders does not support it: leave it out"
                    ));
                }
                _ => {
                    return Err(format!(
                        "the URL has a parameter that libpq does not know: {} (see libpq's \
                         \"Parameter Key Words\")",
                        uri.quote(key)
                    ));
                }
            };
            *slot = Some(value.clone());
        }
        Ok(params)
    }
}

/// A setting's value and where it came from, for a message that says which to fix.
struct Given {
    value: String,
    /// `"the URL's sslmode"` or `"PGSSLMODE"`.
    origin: String,
    /// Whether the value may be quoted in a message.
    quotable: bool,
}

impl Given {
    fn shown(&self) -> String {
        if self.quotable { format!(" (\"{}\")", self.value) } else { String::new() }
    }

    fn invalid(&self, expected: &str) -> String {
        format!("{}{} is not {expected}", self.origin, self.shown())
    }
}

/// Reads settings from the URL's parameters, else from the environment.
struct Lookup<'a> {
    env: &'a Environment,
    careful: bool,
}

impl Lookup<'_> {
    fn get(&self, param: Option<String>, name: &str, var: Option<&str>) -> Option<Given> {
        match param {
            Some(value) => {
                Some(Given { value, origin: format!("the URL's {name}"), quotable: !self.careful })
            }
            None => var.and_then(|var| {
                self.env.var(var).map(|value| Given { value, origin: var.to_owned(), quotable: true })
            }),
        }
    }

    /// A setting among `choices`, by name.
    fn choice<T: Copy>(
        &self,
        param: Option<String>,
        name: &str,
        var: Option<&str>,
        choices: &[(&str, T)],
    ) -> Result<Option<T>, String> {
        let Some(given) = self.get(param, name, var) else { return Ok(None) };
        match choices.iter().find(|(text, _)| *text == given.value) {
            Some((_, value)) => Ok(Some(*value)),
            None => {
                let names: Vec<&str> = choices.iter().map(|(text, _)| *text).collect();
                Err(given.invalid(&format!("one of {}", names.join(", "))))
            }
        }
    }

    /// Whole seconds, as libpq reads them.
    fn seconds(&self, param: Option<String>, name: &str, var: Option<&str>) -> Result<Option<i64>, String> {
        let Some(given) = self.get(param, name, var) else { return Ok(None) };
        given.value.trim().parse().map(Some).map_err(|_| given.invalid("a whole number of seconds"))
    }
}

/// The [`Target`] that `uri` names in `env`.
pub(super) fn resolve(uri: Uri, env: &Environment) -> Result<Target, String> {
    let params = Params::read(&uri)?;
    let lookup = Lookup { env, careful: uri.careful };

    let user = match uri.user.clone().or(params.user.clone()).or_else(|| env.var("PGUSER")) {
        Some(user) => user,
        None => env.user.clone().ok_or_else(|| {
            "no user name: the URL names none (postgres://USER@host/dbname), nor does PGUSER, and \
             the user this process runs as has no name"
                .to_owned()
        })?,
    };
    let database = uri
        .dbname
        .clone()
        .or(params.dbname.clone())
        .or_else(|| env.var("PGDATABASE"))
        .unwrap_or_else(|| user.clone());
    let password = match (uri.password.clone().or(params.password.clone()), env.var("PGPASSWORD")) {
        (Some(password), _) if !password.is_empty() => {
            Some(Password { secret: Secret(password), source: "given in the URL" })
        }
        (_, Some(password)) => Some(Password { secret: Secret(password), source: "in PGPASSWORD" }),
        _ => None,
    };
    let passfile = params
        .passfile
        .clone()
        .or_else(|| env.var("PGPASSFILE"))
        .map(PathBuf::from)
        .or_else(|| env.home.as_ref().map(|home| home.join(".pgpass")));

    let roots = match lookup.get(params.sslrootcert.clone(), "sslrootcert", Some("PGSSLROOTCERT")) {
        Some(given) if given.value == "system" => Some(RootCert::System),
        Some(given) => Some(RootCert::File { path: PathBuf::from(given.value), named: true }),
        None => env
            .home
            .as_ref()
            .map(|home| RootCert::File { path: home.join(".postgresql/root.crt"), named: false }),
    };
    let sslmode = match lookup.get(params.sslmode.clone(), "sslmode", Some("PGSSLMODE")) {
        Some(given) => match SslMode::parse(&given.value) {
            Ok(mode) => mode,
            Err(why) if given.quotable => return Err(format!("{}: {why}", given.origin)),
            Err(_) => return Err(given.invalid(&format!("one of {}", SslMode::names()))),
        },
        // libpq 16: the system's roots are for verify-full alone, and make it the default.
        None if roots == Some(RootCert::System) => SslMode::VerifyFull,
        None => SslMode::Prefer,
    };
    if roots == Some(RootCert::System) && sslmode != SslMode::VerifyFull {
        return Err(format!(
            "sslrootcert=system may only be used with sslmode=verify-full, not {} (as in libpq: \
             with the system's roots, any certificate a public CA issued would do without the host name)",
            sslmode.as_str()
        ));
    }

    let endpoints = endpoints(&uri, &params, &lookup)?;
    if sslmode == SslMode::VerifyFull && endpoints.iter().any(|e| e.host == Host::None) {
        return Err("sslmode=verify-full checks the server's host name, and only hostaddr names it: \
             give host= as well"
            .to_owned());
    }
    let settings = settings(params, &lookup, sslmode)?;
    Ok(Target { endpoints, user, database, password, passfile, sslmode, roots, settings })
}

/// The hosts (or socket directories), ports and addresses, each host with its port.
fn endpoints(uri: &Uri, params: &Params, lookup: &Lookup<'_>) -> Result<Vec<Endpoint>, String> {
    let list = |given: Option<Given>| given.map(|given| (split(&given.value), given));
    let netloc_hosts: Vec<String> = uri.hosts.iter().map(|(host, _)| host.clone()).collect();
    let netloc_ports: Vec<String> = uri.hosts.iter().map(|(_, port)| port.clone()).collect();
    let hosts = match list(lookup.get(params.host.clone(), "host", Some("PGHOST"))) {
        _ if params.host.is_none() && netloc_hosts.iter().any(|host| !host.is_empty()) => netloc_hosts,
        Some((hosts, _)) => hosts,
        None => Vec::new(),
    };
    let ports = match list(lookup.get(params.port.clone(), "port", Some("PGPORT"))) {
        _ if params.port.is_none() && netloc_ports.iter().any(|port| !port.is_empty()) => {
            let ports = netloc_ports.iter().map(|port| parse_port(port, "the URL's port", !uri.careful));
            ports.collect::<Result<Vec<u16>, String>>()?
        }
        Some((ports, given)) => {
            let ports = ports.iter().map(|port| parse_port(port, &given.origin, given.quotable));
            ports.collect::<Result<Vec<u16>, String>>()?
        }
        None => Vec::new(),
    };
    let hostaddrs = match list(lookup.get(params.hostaddr.clone(), "hostaddr", None)) {
        Some((addrs, given)) => addrs
            .iter()
            .map(|addr| addr.parse::<IpAddr>().map_err(|_| given.invalid("a list of IP addresses")))
            .collect::<Result<Vec<IpAddr>, String>>()?,
        None => Vec::new(),
    };

    if hosts.len() > 1 && hosts.iter().any(String::is_empty) {
        return Err("the list of hosts has an empty entry".to_owned());
    }
    if !hosts.is_empty() && !hostaddrs.is_empty() && hosts.len() != hostaddrs.len() {
        return Err(format!(
            "{} hosts and {} hostaddrs: give one address for each host, in the same order",
            hosts.len(),
            hostaddrs.len()
        ));
    }
    let count = hosts.len().max(hostaddrs.len()).max(1);
    if ports.len() > 1 && ports.len() != count {
        return Err(format!("{} ports for {count} hosts: give one port, or one for each host", ports.len()));
    }
    let endpoints = (0..count).map(|i| {
        let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
        let hostaddr = hostaddrs.get(i).copied();
        let host = match hosts.get(i).map(String::as_str) {
            Some(dir) if dir.starts_with('/') => {
                Host::Socket { dir: dir.to_owned(), default: lookup.env.is_default_socket_dir(dir) }
            }
            Some(name) if !name.is_empty() => Host::Tcp(name.to_owned()),
            _ if hostaddr.is_some() => Host::None,
            _ => Host::Socket { dir: lookup.env.default_socket_dir(port), default: true },
        };
        Endpoint { host, port, hostaddr }
    });
    Ok(endpoints.collect())
}

/// libpq's comma-separated lists (`host=a,b`, `PGPORT=5432,5433`); an empty entry means the
/// default.
fn split(text: &str) -> Vec<String> {
    text.split(',').map(|part| part.trim().to_owned()).collect()
}

fn parse_port(text: &str, origin: &str, quotable: bool) -> Result<u16, String> {
    if text.is_empty() {
        return Ok(5432);
    }
    text.parse::<u16>().ok().filter(|port| *port > 0).ok_or_else(|| {
        let shown = if quotable { format!(" (\"{text}\")") } else { String::new() };
        format!("{origin}{shown} is not a port number from 1 to 65535")
    })
}

/// The settings passed on to the driver.
fn settings(params: Params, lookup: &Lookup<'_>, sslmode: SslMode) -> Result<Settings, String> {
    // libpq: zero or less waits forever; one second is taken as two.
    let connect_timeout =
        match lookup.seconds(params.connect_timeout, "connect_timeout", Some("PGCONNECT_TIMEOUT"))? {
            None => Some(CONNECT_TIMEOUT),
            Some(seconds) if seconds <= 0 => None,
            Some(seconds) => Some(Duration::from_secs(seconds.max(2).unsigned_abs())),
        };
    // libpq's tcp_user_timeout is in milliseconds (tokio-postgres would read seconds); 0 is
    // the system's default.
    let tcp_user_timeout = match lookup.get(params.tcp_user_timeout, "tcp_user_timeout", None) {
        None => Some(TCP_USER_TIMEOUT),
        Some(given) => match given.value.trim().parse::<i64>() {
            Ok(millis) if millis <= 0 => None,
            Ok(millis) => Some(Duration::from_millis(millis.unsigned_abs())),
            Err(_) => return Err(given.invalid("a whole number of milliseconds")),
        },
    };
    let keepalives = match lookup.get(params.keepalives, "keepalives", None) {
        None => true,
        Some(given) => given.value.trim().parse::<i64>().map_err(|_| given.invalid("0 or 1"))? != 0,
    };
    let positive = |seconds: Option<i64>, default: Duration| match seconds {
        Some(seconds) if seconds > 0 => Duration::from_secs(seconds.unsigned_abs()),
        _ => default,
    };
    let keepalives_idle =
        positive(lookup.seconds(params.keepalives_idle, "keepalives_idle", None)?, KEEPALIVES_IDLE);
    let keepalives_interval = positive(
        lookup.seconds(params.keepalives_interval, "keepalives_interval", None)?,
        KEEPALIVES_INTERVAL,
    );
    let keepalives_retries = match lookup.get(params.keepalives_count, "keepalives_count", None) {
        None => KEEPALIVES_RETRIES,
        Some(given) => given.value.trim().parse().map_err(|_| given.invalid("a whole number"))?,
    };

    let application_name = lookup
        .get(params.application_name, "application_name", Some("PGAPPNAME"))
        .or_else(|| lookup.get(params.fallback_application_name, "fallback_application_name", None))
        .map_or_else(|| "orders-daemon".to_owned(), |given| given.value);
    let options = lookup.get(params.options, "options", Some("PGOPTIONS")).map(|given| given.value);

    let target_session_attrs =
        lookup.get(params.target_session_attrs, "target_session_attrs", Some("PGTARGETSESSIONATTRS"));
    let target_session_attrs = match target_session_attrs {
        None => TargetSessionAttrs::Any,
        Some(given) => match given.value.as_str() {
            "any" => TargetSessionAttrs::Any,
            "read-write" => TargetSessionAttrs::ReadWrite,
            "read-only" => TargetSessionAttrs::ReadOnly,
            "primary" | "standby" | "prefer-standby" => {
                return Err(format!(
                    "{} is {}: the driver knows only any, read-write and read-only (read-write \
                     finds a primary)",
                    given.origin, given.value
                ));
            }
            _ => return Err(given.invalid("one of any, read-write, read-only")),
        },
    };
    let channel_binding = lookup
        .choice(
            params.channel_binding,
            "channel_binding",
            Some("PGCHANNELBINDING"),
            &[
                ("disable", ChannelBinding::Disable),
                ("prefer", ChannelBinding::Prefer),
                ("require", ChannelBinding::Require),
            ],
        )?
        .unwrap_or(ChannelBinding::Prefer);
    let ssl_negotiation = lookup
        .choice(
            params.sslnegotiation,
            "sslnegotiation",
            Some("PGSSLNEGOTIATION"),
            &[("postgres", SslNegotiation::Postgres), ("direct", SslNegotiation::Direct)],
        )?
        .unwrap_or(SslNegotiation::Postgres);
    if ssl_negotiation == SslNegotiation::Direct && sslmode.driver() != ::postgres::config::SslMode::Require {
        return Err(format!(
            "sslnegotiation=direct starts with TLS, so it needs sslmode=require or stricter, not {}",
            sslmode.as_str()
        ));
    }
    let sni = lookup
        .choice(params.sslsni, "sslsni", Some("PGSSLSNI"), &[("1", true), ("0", false)])?
        .unwrap_or(true);
    // GSSAPI encryption is never tried: "prefer" then falls back as libpq does without a ticket.
    if let Some(given) = lookup.get(params.gssencmode, "gssencmode", Some("PGGSSENCMODE"))
        && given.value != "disable"
        && given.value != "prefer"
    {
        return Err(format!(
            "{} asks for GSSAPI encryption, which orders does not do: leave it out",
            given.origin
        ));
    }
    if let Some(given) = lookup.get(params.client_encoding, "client_encoding", Some("PGCLIENTENCODING"))
        && !given.value.eq_ignore_ascii_case("utf8")
        && !given.value.eq_ignore_ascii_case("utf-8")
    {
        return Err(format!(
            "{}{} is not UTF8, the only encoding the driver speaks",
            given.origin,
            given.shown()
        ));
    }
    if let Some(given) =
        lookup.get(params.load_balance_hosts, "load_balance_hosts", Some("PGLOADBALANCEHOSTS"))
        && given.value != "disable"
    {
        return Err(format!(
            "{}{} is not supported: hosts are tried in the order written (load_balance_hosts=disable)",
            given.origin,
            given.shown()
        ));
    }
    Ok(Settings {
        connect_timeout,
        tcp_user_timeout,
        keepalives,
        keepalives_idle,
        keepalives_interval,
        keepalives_retries,
        application_name,
        options,
        target_session_attrs,
        channel_binding,
        ssl_negotiation,
        sni,
    })
}

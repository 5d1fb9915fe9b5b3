//! [`Target`] as a user names it: URLs, the environment, what is shown, what is refused.

use std::time::Duration;

use proptest::prelude::*;

use ::postgres::config::{ChannelBinding, SslNegotiation, TargetSessionAttrs};

use super::tls::RootCert;
use super::*;

const SECRET: &str = "Sup3r-S3cret";

fn env(vars: &[(&str, &str)]) -> Environment {
    Environment::with(vars, Some("alice"), Some("/home/alice"))
}

fn parse(text: &str) -> Target {
    Target::parse_in(text, &env(&[])).unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn refused(text: &str) -> String {
    refused_in(text, &env(&[]))
}

fn refused_in(text: &str, env: &Environment) -> String {
    match Target::parse_in(text, env) {
        Ok(target) => panic!("{text} was taken: {target:?}"),
        Err(error) => error,
    }
}

fn tcp(host: &str, port: u16) -> Endpoint {
    Endpoint { host: Host::Tcp(host.to_owned()), port, hostaddr: None }
}

#[test]
fn a_tcp_url() {
    let target = parse("postgres://orders:pw@db.example:5433/shop");
    assert_eq!(target.endpoints, [tcp("db.example", 5433)]);
    assert_eq!((target.user(), target.database()), ("orders", "shop"));
    assert_eq!(target.describe(), "postgres://orders@db.example:5433/shop");
    assert_eq!(target.to_string(), target.describe());
    assert_eq!(target.sslmode, SslMode::Prefer);
    assert_eq!(
        parse("postgresql://orders@db.example/shop").describe(),
        "postgres://orders@db.example:5432/shop"
    );
}

#[test]
fn a_socket_directory_as_host() {
    for text in [
        "postgres://orders@%2Fvar%2Frun%2Fpostgresql/shop",
        "postgresql:///shop?host=/var/run/postgresql&user=orders",
        "postgres://ignored.example/shop?host=%2Fvar%2Frun%2Fpostgresql&user=orders",
    ] {
        let target = parse(text);
        assert_eq!(
            target.endpoints,
            [Endpoint {
                host: Host::Socket { dir: "/var/run/postgresql".into(), default: true },
                port: 5432,
                hostaddr: None
            }],
            "{text}"
        );
        assert_eq!(target.describe(), "postgres://orders@%2Fvar%2Frun%2Fpostgresql:5432/shop");
        // The description is a URL that names the same target.
        assert_eq!(parse(&target.describe()).endpoints, target.endpoints);
    }
    let target = parse("postgres://u@%2Ftmp%2Fpg:6000/db");
    assert_eq!(target.endpoints[0].host, Host::Socket { dir: "/tmp/pg".into(), default: false });
    assert_eq!(target.endpoints[0].passfile_host(), "/tmp/pg");
}

#[test]
fn what_the_url_leaves_out_comes_from_the_environment() {
    let env = env(&[
        ("PGHOST", "pg.internal"),
        ("PGPORT", "6432"),
        ("PGUSER", "svc"),
        ("PGDATABASE", "orders"),
        ("PGSSLMODE", "require"),
        ("PGCONNECT_TIMEOUT", "3"),
        ("PGAPPNAME", "orders-eu"),
        ("PGOPTIONS", "-c statement_timeout=5s"),
    ]);
    let target = Target::parse_in("postgres://", &env).unwrap();
    assert_eq!(target.endpoints, [tcp("pg.internal", 6432)]);
    assert_eq!((target.user(), target.database()), ("svc", "orders"));
    assert_eq!(target.sslmode, SslMode::Require);
    assert_eq!(target.settings.connect_timeout, Some(Duration::from_secs(3)));
    assert_eq!(target.settings.application_name, "orders-eu");
    assert_eq!(target.settings.options.as_deref(), Some("-c statement_timeout=5s"));
    assert_eq!(target.describe(), "postgres://svc@pg.internal:6432/orders?sslmode=require");

    // The URL wins over every variable.
    let target =
        Target::parse_in("postgres://me@db:5000/shop?sslmode=disable&connect_timeout=0", &env).unwrap();
    assert_eq!(target.endpoints, [tcp("db", 5000)]);
    assert_eq!((target.user(), target.database(), target.sslmode), ("me", "shop", SslMode::Disable));
    assert_eq!(target.settings.connect_timeout, None);
    // A port alone keeps PGHOST's host.
    let target = Target::parse_in("postgres://:5001/shop", &env).unwrap();
    assert_eq!(target.endpoints, [tcp("pg.internal", 5001)]);
}

#[test]
fn libpqs_defaults() {
    let target = parse("postgres://");
    assert_eq!((target.user(), target.database()), ("alice", "alice"));
    assert_eq!(
        target.endpoints,
        [Endpoint {
            host: Host::Socket { dir: "/var/run/postgresql".into(), default: true },
            port: 5432,
            hostaddr: None
        }]
    );
    assert_eq!(target.endpoints[0].passfile_host(), "localhost");
    assert_eq!(target.passfile.as_deref(), Some(std::path::Path::new("/home/alice/.pgpass")));
    assert_eq!(
        target.roots,
        Some(RootCert::File { path: "/home/alice/.postgresql/root.crt".into(), named: false })
    );
    let settings = &target.settings;
    assert_eq!(settings.connect_timeout, Some(Duration::from_secs(10)));
    assert_eq!(settings.tcp_user_timeout, Some(Duration::from_secs(10)));
    assert!(settings.keepalives);
    assert_eq!(
        (settings.keepalives_idle, settings.keepalives_interval, settings.keepalives_retries),
        (Duration::from_secs(5), Duration::from_secs(2), 3)
    );
    assert_eq!(settings.application_name, "orders-daemon");
    assert_eq!(target.describe(), "postgres://alice@%2Fvar%2Frun%2Fpostgresql:5432/alice");

    let nobody = Environment::with(&[], None, None);
    assert!(refused_in("postgres:///db", &nobody).contains("no user name"));
    let target = Target::parse_in("postgres://u@h/db", &nobody).unwrap();
    assert_eq!((target.passfile, target.roots), (None, None));
}

#[test]
fn several_hosts_and_addresses() {
    let target = parse("postgres://u@a:1,b,[::1]:3/db");
    assert_eq!(target.endpoints, [tcp("a", 1), tcp("b", 5432), tcp("::1", 3)]);
    assert_eq!(target.describe(), "postgres://u@a:1,b:5432,[::1]:3/db");
    let target = parse("postgres://u@/db?host=a,b&port=7");
    assert_eq!(target.endpoints, [tcp("a", 7), tcp("b", 7)]);
    let target = Target::parse_in("postgres:///db", &env(&[("PGHOST", "a,b"), ("PGPORT", "1,2")])).unwrap();
    assert_eq!(target.endpoints, [tcp("a", 1), tcp("b", 2)]);

    let target = parse("postgres://u@db.example/db?hostaddr=10.0.0.5");
    assert_eq!(target.endpoints[0].hostaddr, Some("10.0.0.5".parse().unwrap()));
    assert_eq!(target.endpoints[0].passfile_host(), "db.example");
    let target = parse("postgres://u@/db?hostaddr=10.0.0.5&sslmode=require");
    assert_eq!(target.endpoints[0].host, Host::None);
    assert_eq!(target.describe(), "postgres://u@10.0.0.5:5432/db?sslmode=require");
    assert_eq!(target.endpoints[0].passfile_host(), "10.0.0.5");

    assert!(refused("postgres://u@/db?host=a,b&port=1,2,3").contains("3 ports for 2 hosts"));
    assert!(refused("postgres://u@/db?host=a,b&hostaddr=10.0.0.1").contains("2 hosts and 1 hostaddrs"));
    assert!(refused("postgres://u@/db?hostaddr=db.example").contains("IP addresses"));
    assert!(refused("postgres://u@/db?host=a,,b").contains("empty entry"));
    assert!(refused("postgres://u@/db?hostaddr=10.0.0.5&sslmode=verify-full").contains("host="));
}

#[test]
fn ports_are_checked() {
    for port in ["0", "65536", "x", "-1", "54 32"] {
        let error = refused(&format!("postgres://u@h:{port}/db"));
        assert!(error.contains("port number from 1 to 65535"), "{port}: {error}");
    }
    assert!(refused("postgres://u@h/db?port=99999").contains("the URL's port (\"99999\")"));
    let error = refused_in("postgres://u@h/db", &env(&[("PGHOST", "x"), ("PGPORT", "abc")]));
    assert!(error.contains("\"abc\""), "{error}");
    assert_eq!(parse("postgres://u@h:65535/db").endpoints, [tcp("h", 65535)]);
}

#[test]
fn sslmode_and_roots() {
    assert_eq!(parse("postgres://h/db?sslmode=verify-ca").sslmode, SslMode::VerifyCa);
    assert_eq!(parse("postgres://h/db?ssl=true").sslmode, SslMode::Require);
    assert_eq!(parse("postgres://h/db?sslmode=allow").describe(), "postgres://alice@h:5432/db?sslmode=allow");
    assert_eq!(parse("postgres://h/db?sslmode=prefer").describe(), "postgres://alice@h:5432/db");
    let error = refused("postgres://h/db?sslmode=verify_full");
    assert!(error.contains("the URL's sslmode") && error.contains("verify-full"), "{error}");
    let error = refused_in("postgres://h/db", &env(&[("PGSSLMODE", "on")]));
    assert!(error.starts_with("PGSSLMODE: unknown sslmode \"on\""), "{error}");

    let target = parse("postgres://h/db?sslrootcert=/etc/orders/ca.pem");
    assert_eq!(target.roots, Some(RootCert::File { path: "/etc/orders/ca.pem".into(), named: true }));
    // libpq 16: the system's roots make verify-full the default, and allow nothing weaker.
    let target = parse("postgres://h/db?sslrootcert=system");
    assert_eq!(target.describe(), "postgres://alice@h:5432/db?sslmode=verify-full");
    assert_eq!((target.roots, target.sslmode), (Some(RootCert::System), SslMode::VerifyFull));
    assert!(refused("postgres://h/db?sslrootcert=system&sslmode=require").contains("verify-full"));

    assert!(refused("postgres://h/db?sslcert=/c.pem").contains("client certificate"));
    assert!(refused("postgres://h/db?sslkey=/k.pem").contains("sslkey is not supported"));
    assert!(refused("postgres://h/db?sslcrl=/crl.pem").contains("sslcrl is libpq's"));
    assert!(refused("postgres://h/db?sslnegotiation=direct").contains("sslmode=require"));
    assert_eq!(
        parse("postgres://h/db?sslnegotiation=direct&sslmode=require").settings.ssl_negotiation,
        SslNegotiation::Direct
    );
    assert!(!parse("postgres://h/db?sslsni=0").settings.sni);
}

#[test]
fn the_other_parameters() {
    let target = parse(
        "postgres://h/db?connect_timeout=1&tcp_user_timeout=2500&keepalives=0&keepalives_idle=30\
         &keepalives_interval=4&keepalives_count=9&target_session_attrs=read-write&channel_binding=require\
         &application_name=eu&options=-c%20search_path%3Dorders&gssencmode=disable&client_encoding=UTF8\
         &load_balance_hosts=disable",
    );
    let settings = &target.settings;
    assert_eq!(settings.connect_timeout, Some(Duration::from_secs(2)), "libpq takes 1 s as 2");
    assert_eq!(settings.tcp_user_timeout, Some(Duration::from_millis(2500)));
    assert!(!settings.keepalives);
    assert_eq!(
        (settings.keepalives_idle, settings.keepalives_interval),
        (Duration::from_secs(30), Duration::from_secs(4))
    );
    assert_eq!(settings.keepalives_retries, 9);
    assert_eq!(settings.target_session_attrs, TargetSessionAttrs::ReadWrite);
    assert_eq!(settings.channel_binding, ChannelBinding::Require);
    assert_eq!(settings.application_name, "eu");
    assert_eq!(settings.options.as_deref(), Some("-c search_path=orders"));
    assert_eq!(parse("postgres://h/db?fallback_application_name=x").settings.application_name, "x");
    assert_eq!(parse("postgres://h/db?tcp_user_timeout=0").settings.tcp_user_timeout, None);

    assert!(refused("postgres://h/db?connect_timeout=soon").contains("a whole number of seconds"));
    assert!(refused("postgres://h/db?target_session_attrs=standby").contains("read-write finds a primary"));
    assert!(refused("postgres://h/db?channel_binding=maybe").contains("one of disable, prefer, require"));
    assert!(refused("postgres://h/db?gssencmode=require").contains("GSSAPI"));
    assert!(refused("postgres://h/db?client_encoding=LATIN1").contains("UTF8"));
    assert!(refused("postgres://h/db?load_balance_hosts=random").contains("order written"));
    assert!(refused("postgres://h/db?service=prod").contains("service is libpq's"));
    let error = refused("postgres://h/db?sslmdoe=require");
    assert!(error.contains("\"sslmdoe\"") && error.contains("libpq does not know"), "{error}");
}

#[test]
fn passwords_and_where_they_come_from() {
    let target = parse(&format!("postgres://u:{SECRET}@h/db"));
    let password = target.password.as_ref().unwrap();
    assert_eq!((password.secret.0.as_str(), password.source), (SECRET, "given in the URL"));
    let target = parse(&format!("postgres://u@h/db?password={SECRET}"));
    assert_eq!(target.password.unwrap().secret.0, SECRET);
    let with_env = env(&[("PGPASSWORD", "from-env"), ("PGPASSFILE", "/etc/orders/pgpass")]);
    let target = Target::parse_in("postgres://u@h/db", &with_env).unwrap();
    assert_eq!(target.password.as_ref().unwrap().source, "in PGPASSWORD");
    assert_eq!(target.passfile.as_deref(), Some(std::path::Path::new("/etc/orders/pgpass")));
    // An empty password is none (libpq then reads the password file).
    assert!(parse("postgres://u:@h/db").password.is_none());
    let target = parse("postgres://u@h/db?passfile=/run/secrets/pgpass");
    assert_eq!(target.passfile.as_deref(), Some(std::path::Path::new("/run/secrets/pgpass")));
}

#[test]
fn the_password_file_is_read_when_the_url_has_no_password() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pgpass");
    std::fs::write(&file, format!("other:*:*:*:wrong\nh:5432:db:u:{SECRET}\n")).unwrap();
    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let url = format!("postgres://u@h/db?passfile={}", file.display());
    let target = parse(&url);
    let (config, source) = target.config(&target.endpoints[0], "writer");
    assert_eq!(config.get_password(), Some(SECRET.as_bytes()));
    assert_eq!(source, Some(format!("in the password file {}", file.display())));
    assert_eq!(config.get_application_name(), Some("orders-daemon writer"));
    // The URL's own password is used, and the file not read.
    let target = parse(&format!("postgres://u:given@h/db?passfile={}", file.display()));
    assert_eq!(target.config(&target.endpoints[0], "reads").0.get_password(), Some(&b"given"[..]));
    // No line for this user: no password.
    let target = parse(&format!("postgres://v@h/db?passfile={}", file.display()));
    let (config, source) = target.config(&target.endpoints[0], "reads");
    assert_eq!((config.get_password(), source), (None, None));
}

#[test]
fn what_the_driver_is_given() {
    let target = parse("postgres://u:pw@db.example:5433/shop?sslmode=verify-full&hostaddr=10.1.2.3");
    let (config, _) = target.config(&target.endpoints[0], "lock");
    assert_eq!(config.get_hosts(), [::postgres::config::Host::Tcp("db.example".into())]);
    assert_eq!(config.get_hostaddrs(), ["10.1.2.3".parse::<std::net::IpAddr>().unwrap()]);
    assert_eq!(config.get_ports(), [5433]);
    assert_eq!((config.get_user(), config.get_dbname()), (Some("u"), Some("shop")));
    assert_eq!(config.get_ssl_mode(), ::postgres::config::SslMode::Require);
    assert_eq!(config.get_connect_timeout(), Some(&Duration::from_secs(10)));
    assert_eq!(config.get_tcp_user_timeout(), Some(&Duration::from_secs(10)));
    assert_eq!(config.get_keepalives_idle(), Duration::from_secs(5));
    assert_eq!(config.get_keepalives_interval(), Some(Duration::from_secs(2)));
    assert_eq!(config.get_keepalives_retries(), Some(3));
    assert_eq!(config.get_application_name(), Some("orders-daemon lock"));
    // No TLS over a socket, whatever sslmode says (libpq ignores it there).
    let target = parse("postgres://u@%2Ftmp/db?sslmode=require");
    let (config, _) = target.config(&target.endpoints[0], "reads");
    assert_eq!(config.get_ssl_mode(), ::postgres::config::SslMode::Disable);
    assert_eq!(config.get_hosts(), [::postgres::config::Host::Unix("/tmp".into())]);
}

#[test]
fn the_password_is_never_shown() {
    let odd = "p@ss:w/rd%?&=#\\ ü";
    let encoded = uri::encode(odd);
    let with_env = env(&[("PGPASSWORD", SECRET)]);
    for (text, env) in [
        (format!("postgres://u:{SECRET}@h:5432/db"), &env(&[])),
        (format!("postgres://u:{encoded}@h/db"), &env(&[])),
        (format!("postgres://u@h/db?password={SECRET}&sslmode=require"), &env(&[])),
        (format!("postgres://u@h/db?sslmode=require&password={encoded}"), &env(&[])),
        ("postgres://u@h/db".to_owned(), &with_env),
    ] {
        let target = Target::parse_in(&text, env).unwrap();
        for shown in [target.describe(), target.to_string(), format!("{target:?}"), format!("{target:#?}")] {
            for secret in [SECRET, odd, encoded.as_str(), "rd%", "w/rd"] {
                assert!(!shown.contains(secret), "{text}: {shown}");
            }
        }
        assert!(format!("{target:?}").contains("<hidden>"));
    }
}

#[test]
fn no_error_shows_the_password() {
    let s = SECRET;
    for text in [
        format!("postgres://u:{s}@h:port/db"),
        format!("postgres://u:{s}@h/db?sslmode=bogus"),
        format!("postgres://u:{s}@h/db?bogus=1"),
        format!("postgres://u:{s}@h/db?sslcert=x"),
        format!("postgres://u:{s}@h/db?port=0"),
        format!("postgres://u:{s}@[::1/db"),
        format!("postgres://u:{s}%zz@h/db"),
        format!("postgres://u:{s}/x@h/db"),
        format!("postgres://u:5432/{s}@h/db"),
        format!("postgres://u:5432/x?{s}=1@h"),
        format!("postgres://u:{s}@x@h/db"),
        format!("postgres://h/db?password={s}&{s}=x"),
        format!("postgres://h/db?password=a&{s}"),
        format!("postgres://h/db?{s}=1&password=x"),
        format!("postgres://h/db?password=x&sslmode={s}"),
        format!("postgres://h/db?password=x&port={s}"),
        format!("postgres://h/db?password=x&connect_timeout={s}"),
        format!("mysql://u:{s}@h/db"),
        format!("u:{s}@h/db"),
    ] {
        let error = refused(&text);
        assert!(!error.contains(s) && !error.contains("S3cret"), "{text}: {error}");
    }
}

proptest! {
    /// Whatever the text, parsing answers (an error names the problem) rather than panics.
    #[test]
    fn parsing_never_panics(tail in "[a-z0-9:/@%,.\\[\\]?&=_-]{0,40}") {
        for scheme in ["postgres://", "postgresql://", ""] {
            if let Err(error) = Target::parse_in(&format!("{scheme}{tail}"), &env(&[])) {
                prop_assert!(!error.is_empty());
            }
        }
    }

    #[test]
    fn a_described_target_reads_back_the_same(
        user in "[a-zA-Z0-9 @:/%._-]{1,12}",
        database in "[a-zA-Z0-9 @:/%._-]{1,12}",
        host in "[a-z][a-z0-9.-]{0,12}",
        port in 1u16..,
    ) {
        let text = format!("postgres://{}@{host}:{port}/{}", uri::encode(&user), uri::encode(&database));
        let target = Target::parse_in(&text, &env(&[])).unwrap();
        let again = Target::parse_in(&target.describe(), &env(&[])).unwrap();
        prop_assert_eq!((again.user(), again.database()), (user.as_str(), database.as_str()));
        prop_assert_eq!(again.endpoints, vec![tcp(&host, port)]);
    }
}

/// The driver runs its own current-thread runtime: from a blocking thread of the daemon's
/// multi-thread runtime that must work (from async code it would panic). A refused connection
/// is a passing fault that names the target.
#[test]
fn connecting_from_spawn_blocking_reports_a_refused_connection() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let port = {
        // A port nothing listens on: bound, then freed.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let target = parse(&format!("postgres://u:{SECRET}@127.0.0.1:{port}/db?sslmode=disable"));
    let result =
        runtime.block_on(async move { tokio::task::spawn_blocking(move || target.connect("reads")).await });
    match result.expect("no panic in the blocking task") {
        Err(StoreError::Unavailable { reason, detail, .. }) => {
            assert_eq!(reason, "the database cannot be reached");
            assert!(detail.contains(&format!("postgres://u@127.0.0.1:{port}/db")), "{detail}");
            assert!(detail.contains("refused"), "{detail}");
            assert!(!detail.contains(SECRET), "{detail}");
        }
        Err(other) => panic!("{other:?}"),
        Ok(_) => panic!("connected to a port nothing listens on"),
    }
}

#[test]
fn verifying_without_a_root_certificate_says_which_file_was_looked_for() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().to_str().unwrap();
    let env = Environment::with(&[], Some("alice"), Some(home));
    let target = Target::parse_in("postgres://u@127.0.0.1:1/db?sslmode=verify-full", &env).unwrap();
    let Err(error) = target.connect("writer") else { panic!("connected without a root certificate") };
    let error = error.to_string();
    let expected = dir.path().join(".postgresql/root.crt");
    assert!(error.contains(&expected.display().to_string()) && error.contains("does not exist"), "{error}");
}

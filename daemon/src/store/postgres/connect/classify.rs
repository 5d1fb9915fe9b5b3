//! The driver's errors in the store's words ([`StoreError`]): what waiting may cure
//! (`Unavailable`: the server is away, restarting, out of room or connections), what it never
//! will (`Failed`: a refused password, a certificate that does not check out, a bug), and a
//! damaged database (`Damaged`).
//!
//! The driver's own text of an error is only its kind ("db error", "error connecting to
//! server"); the words that help are the server's message and SQLSTATE, or the I/O error
//! beneath. Those make the detail. No driver error holds the password (the driver never prints
//! its configuration), so none of these texts can.

use std::error::Error as _;
use std::io;

use ::postgres::error::DbError;

use super::tls::{RootCert, SslMode};
use crate::store::{Cause, StoreError};

impl From<::postgres::Error> for StoreError {
    fn from(error: ::postgres::Error) -> Self {
        classify(&error)
    }
}

/// What the driver's error is, read from its text: the driver has no other way to tell.
#[derive(Debug, PartialEq, Eq)]
enum Kind {
    /// The server's own error, with a SQLSTATE.
    Db,
    /// Reaching the server: refused, unknown host, a timeout.
    Connect,
    /// The connection broke, or the server closed it.
    Lost,
    Timeout,
    Tls,
    /// The client could not answer the server's authentication (no password, a SCRAM failure).
    Authentication,
    Other,
}

fn kind(error: &::postgres::Error) -> Kind {
    if error.as_db_error().is_some() {
        return Kind::Db;
    }
    if error.is_closed() {
        return Kind::Lost;
    }
    // The texts of tokio-postgres 0.7's `Kind`s (its Display prints only the kind).
    match error.to_string().as_str() {
        "error connecting to server" => Kind::Connect,
        "error communicating with the server" => Kind::Lost,
        "timeout waiting for server" => Kind::Timeout,
        "error performing TLS handshake" => Kind::Tls,
        "authentication error" => Kind::Authentication,
        "invalid configuration" if chain(error).as_deref() == Some("password missing") => {
            Kind::Authentication
        }
        _ => Kind::Other,
    }
}

/// `error` as the store reports it, without knowing where the connection went.
pub(super) fn classify(error: &::postgres::Error) -> StoreError {
    if let Some(db) = error.as_db_error() {
        return classify_db(db, String::new());
    }
    let detail = one_line(error);
    let unavailable = |reason| StoreError::Unavailable { reason, detail: detail.clone(), cause: None };
    match kind(error) {
        Kind::Connect => unavailable("the database cannot be reached"),
        Kind::Lost => unavailable("the connection to the database was lost"),
        Kind::Timeout => unavailable("the database does not answer"),
        // A broken handshake may pass; a certificate that does not check out will not.
        Kind::Tls if rustls_error(error).is_none() && io_error(error).is_some() => {
            unavailable("the connection to the database was lost")
        }
        _ => StoreError::Failed(detail, None),
    }
}

/// A server's error; `place` (with a trailing space, or empty) says where it came from.
fn classify_db(db: &DbError, place: String) -> StoreError {
    let code = db.code().code();
    let detail = format!("{place}{} (SQLSTATE {code})", db.message());
    let cause = [("DETAIL", db.detail()), ("HINT", db.hint())]
        .into_iter()
        .filter_map(|(label, text)| text.map(|text| format!("{label}: {text}")))
        .reduce(|all, next| format!("{all}; {next}"))
        .map(Cause);
    if let Some(reason) = passing(code) {
        return StoreError::Unavailable { reason, detail, cause };
    }
    match code {
        "XX001" | "XX002" => StoreError::Damaged(detail, cause),
        code if code.starts_with("28") => {
            StoreError::Failed(format!("authentication failed: {detail}"), cause)
        }
        _ => StoreError::Failed(detail, cause),
    }
}

/// Why a server's error with SQLSTATE `code` may pass by waiting, if it may.
fn passing(code: &str) -> Option<&'static str> {
    Some(match code {
        // Also what `pg_terminate_backend` says: the connection is gone either way.
        "57P01" => "the database server closed the connection (shutting down, or an administrator's command)",
        "57P05" => "the database server closed the connection after it sat idle (idle_session_timeout)",
        "25P03" => "the database server closed a transaction left idle (idle_in_transaction_session_timeout)",
        "57014" => "a statement was cancelled (statement_timeout, or an administrator's command)",
        "55P03" => "a lock was not granted in time (lock_timeout)",
        "40001" => "the transaction could not be serialised with another one",
        "40P01" => "the transaction was chosen to break a deadlock",
        "42501" => "the database refused this user the permission",
        "57P02" => "the database server is restarting after a crash",
        "57P03" => "the database server does not accept connections yet",
        "53100" => "the database server's disk is full",
        "53200" => "the database server is out of memory",
        "53300" => "the database server has no connection slot left",
        // A standby (after a failover, or a URL naming the wrong server): the same passing
        // fault as a read-only SQLite file.
        "25006" => "the database is read-only",
        code if code.starts_with("53") => "the database server is short of resources",
        code if code.starts_with("08") => "the database cannot be reached",
        _ => return None,
    })
}

/// Where a connection was going, for the errors of [`connecting`].
pub(super) struct Attempt<'a> {
    /// The endpoint as [`super::Target::describe`] would show it alone.
    pub place: String,
    pub host: &'a str,
    pub user: &'a str,
    pub database: &'a str,
    /// Where the password came from, in words ("given in the URL"), or `None`.
    pub password: Option<String>,
    /// The password file a password could have been put in.
    pub passfile: Option<&'a std::path::Path>,
    pub sslmode: SslMode,
    pub roots: Option<&'a RootCert>,
}

/// `error` from opening a connection, in words that say where it went and what to do.
pub(super) fn connecting(error: &::postgres::Error, attempt: &Attempt<'_>) -> StoreError {
    let Attempt { place, user, database, .. } = attempt;
    if let Some(db) = error.as_db_error() {
        let code = db.code().code();
        if code.starts_with("28") {
            let hint = if code == "28P01" {
                match &attempt.password {
                    Some(source) => format!(": check the password {source}"),
                    None => String::new(),
                }
            } else if db.message().contains("no encryption") {
                format!(
                    ": the server takes this user only over TLS, and sslmode={} did not ask for it \
                     (use sslmode=require or stricter)",
                    attempt.sslmode.as_str()
                )
            } else {
                String::new()
            };
            return StoreError::Failed(
                format!(
                    "authentication failed for user \"{user}\" at {place}: {} (SQLSTATE {code}){hint}",
                    db.message()
                ),
                None,
            );
        }
        if code == "3D000" {
            return StoreError::Failed(
                format!(
                    "database \"{database}\" does not exist at {place}: create it (createdb -O {user} \
                     {database}) or name another in the URL"
                ),
                None,
            );
        }
        return classify_db(db, format!("cannot connect to {place}: "));
    }
    match kind(error) {
        Kind::Authentication if attempt.password.is_none() => StoreError::Failed(
            format!(
                "the server at {place} asks for a password for user \"{user}\" and none was given: put \
                 it in the URL (postgres://{user}:PASSWORD@...), in PGPASSWORD, or in the password file{}",
                attempt.passfile.map(|path| format!(" {}", path.display())).unwrap_or_default()
            ),
            None,
        ),
        Kind::Authentication => StoreError::Failed(
            format!("authentication failed for user \"{user}\" at {place}: {}", one_line(error)),
            None,
        ),
        Kind::Tls => tls_failure(error, attempt),
        _ => within(classify(error), &format!("cannot connect to {place}")),
    }
}

/// A failed TLS handshake: what did not check out, and against what.
fn tls_failure(error: &::postgres::Error, attempt: &Attempt<'_>) -> StoreError {
    let place = &attempt.place;
    let Some(tls) = rustls_error(error) else {
        if chain(error).as_deref() == Some("server does not support TLS") {
            return StoreError::Failed(
                format!(
                    "the server at {place} does not offer TLS, and sslmode={} requires it: turn ssl on \
                     in the server, or lower sslmode",
                    attempt.sslmode.as_str()
                ),
                None,
            );
        }
        return within(classify(error), &format!("cannot connect to {place}"));
    };
    let against = match attempt.roots {
        Some(RootCert::File { path, .. }) => format!("any root certificate in {}", path.display()),
        Some(RootCert::System) => "any of the system's root certificates".to_owned(),
        None => "any known root certificate".to_owned(),
    };
    let text = match tls {
        rustls::Error::InvalidCertificate(
            rustls::CertificateError::NotValidForName
            | rustls::CertificateError::NotValidForNameContext { .. },
        ) => format!(
            "{tls} (sslmode=verify-full checks that the certificate names the host \"{}\" in its \
             subjectAltName; verify-ca checks only the chain)",
            attempt.host
        ),
        rustls::Error::InvalidCertificate(
            rustls::CertificateError::UnknownIssuer | rustls::CertificateError::BadSignature,
        ) => format!("the server's certificate was not issued by {against} ({tls})"),
        // PostgreSQL's manual makes a self-signed server certificate with `openssl req -x509`,
        // which marks it CA:TRUE; OpenSSL takes it as its own root, webpki does not.
        rustls::Error::InvalidCertificate(_) if tls.to_string().contains("CaUsedAsEndEntity") => format!(
            "the server's certificate is a CA certificate (basicConstraints CA:TRUE), which rustls \
             refuses as a server's own: give the server a certificate signed by that CA, or one \
             made with -addext basicConstraints=critical,CA:FALSE ({tls})"
        ),
        _ => tls.to_string(),
    };
    StoreError::Failed(format!("the TLS handshake with {place} failed: {text}"), None)
}

/// `error` with its texts said to have happened `context`.
fn within(error: StoreError, context: &str) -> StoreError {
    match error {
        StoreError::Unavailable { reason, detail, cause } => {
            StoreError::Unavailable { reason, detail: format!("{context}: {detail}"), cause }
        }
        StoreError::Failed(text, cause) => StoreError::Failed(format!("{context}: {text}"), cause),
        StoreError::Damaged(text, cause) => StoreError::Damaged(format!("{context}: {text}"), cause),
        other => other,
    }
}

/// The error and everything beneath it, on one line.
fn one_line(error: &::postgres::Error) -> String {
    match chain(error) {
        Some(beneath) => format!("{error}: {beneath}"),
        None => error.to_string(),
    }
}

/// The text of what lies beneath the driver's error (its kind alone says little).
fn chain(error: &::postgres::Error) -> Option<String> {
    let mut chain = sources(error);
    let first = chain.next()?.to_string();
    Some(chain.fold(first, |text, next| {
        let next = next.to_string();
        // An io::Error shows its inner error's text, and then that error again as its source.
        if text.ends_with(&next) { text } else { format!("{text}: {next}") }
    }))
}

/// The rustls error beneath, if the handshake failed there. rustls' error travels inside an
/// `io::Error`, whose `source()` skips it: it is looked for with `get_ref`.
fn rustls_error(error: &::postgres::Error) -> Option<&rustls::Error> {
    sources(error).find_map(|e| {
        e.downcast_ref::<rustls::Error>()
            .or_else(|| e.downcast_ref::<io::Error>()?.get_ref()?.downcast_ref::<rustls::Error>())
    })
}

/// What lies beneath `error`, nearest first.
fn sources(error: &::postgres::Error) -> impl Iterator<Item = &(dyn std::error::Error + 'static)> {
    std::iter::successors(error.source(), |e: &&(dyn std::error::Error + 'static)| (*e).source())
}

fn io_error(error: &::postgres::Error) -> Option<&io::Error> {
    sources(error).find_map(|e| e.downcast_ref::<io::Error>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_that_pass() {
        for code in [
            "57P01", "57P02", "57P03", "57P05", "25P03", "57014", "55P03", "40001", "40P01", "42501",
            "53100", "53200", "53300", "53400", "08006", "08001", "25006",
        ] {
            assert!(passing(code).is_some(), "{code}");
        }
        for code in ["XX001", "28P01", "28000", "23505", "23514", "42P01", "3D000"] {
            assert!(passing(code).is_none(), "{code}");
        }
        assert_eq!(passing("53100"), Some("the database server's disk is full"));
    }

    #[test]
    fn within_adds_the_place_to_every_text() {
        let error = within(
            StoreError::Unavailable { reason: "r", detail: "refused".into(), cause: None },
            "cannot connect to postgres://u@h:5432/d",
        );
        assert_eq!(error.to_string(), "cannot connect to postgres://u@h:5432/d: refused");
        let error = within(StoreError::Failed("x".into(), None), "at");
        assert_eq!(error.to_string(), "at: x");
    }
}

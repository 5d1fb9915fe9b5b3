//! TLS as libpq's `sslmode` asks for it, through rustls (the `ring` provider).
//!
//! The driver knows only disable, prefer and require, and with require it checks nothing; what
//! is checked is decided here, in the certificate verifier handed to rustls:
//!
//! | sslmode            | encrypts                 | checks                                              |
//! |--------------------|--------------------------|-----------------------------------------------------|
//! | disable            | never                    | —                                                   |
//! | allow, prefer      | when the server offers   | the chain, when a root certificate file is there    |
//! | require            | always                   | the chain, when a root certificate file is there    |
//! | verify-ca          | always                   | the chain                                           |
//! | verify-full        | always                   | the chain and the host name                         |
//!
//! That is libpq's behaviour, `allow` aside (libpq tries without TLS first; here it is
//! `prefer`). The roots are `sslrootcert=FILE` (PEM), libpq's default
//! `~/.postgresql/root.crt`, or `sslrootcert=system`: the system's store. rustls is stricter
//! than OpenSSL in two ways that matter with hand-made certificates: the host name must be in
//! the certificate's subjectAltName (the common name is not read), and a certificate marked as a
//! CA (`CA:TRUE`, what `openssl req -x509` makes by default) is refused as the server's own.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

/// libpq's `sslmode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    /// libpq tries without TLS first; here it is [`SslMode::Prefer`].
    Allow,
    /// libpq's default.
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    const ALL: [SslMode; 6] = [
        SslMode::Disable,
        SslMode::Allow,
        SslMode::Prefer,
        SslMode::Require,
        SslMode::VerifyCa,
        SslMode::VerifyFull,
    ];

    /// The mode named `text`; the error lists the names there are.
    pub fn parse(text: &str) -> Result<SslMode, String> {
        SslMode::ALL
            .into_iter()
            .find(|mode| mode.as_str() == text)
            .ok_or_else(|| format!("unknown sslmode \"{text}\": use one of {}", SslMode::names()))
    }

    /// The names there are, for a message.
    pub fn names() -> String {
        SslMode::ALL.map(SslMode::as_str).join(", ")
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// What the driver is told: whether to ask for TLS and whether to insist.
    pub(super) fn driver(self) -> ::postgres::config::SslMode {
        match self {
            SslMode::Disable => ::postgres::config::SslMode::Disable,
            SslMode::Allow | SslMode::Prefer => ::postgres::config::SslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
                ::postgres::config::SslMode::Require
            }
        }
    }

    /// Whether the mode refuses a server it cannot verify (rather than verifying when it can).
    pub fn verifies(self) -> bool {
        matches!(self, SslMode::VerifyCa | SslMode::VerifyFull)
    }
}

/// Where the root certificates come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RootCert {
    /// A PEM file: named by `sslrootcert` / `PGSSLROOTCERT` (`named`), or libpq's default
    /// `~/.postgresql/root.crt`, used only when it is there.
    File { path: PathBuf, named: bool },
    /// `sslrootcert=system`: the system's store.
    System,
}

/// What the verifier checks, decided at each connection (the file may come or go, as libpq reads
/// it at each connection too).
pub(super) enum Check {
    Nothing,
    Chain(RootCertStore),
    ChainAndName(RootCertStore),
}

/// What `mode` checks with the roots at `roots` (`None`: no home directory for the default).
pub(super) fn check(mode: SslMode, roots: Option<&RootCert>) -> Result<Check, String> {
    let loaded = match roots {
        Some(RootCert::System) => Some(system_roots()?),
        Some(RootCert::File { path, named }) if *named || path.exists() || mode.verifies() => {
            Some(file_roots(path, mode)?)
        }
        Some(RootCert::File { .. }) => None,
        None if mode.verifies() => {
            return Err(format!(
                "sslmode={} needs a root certificate to check the server's against, and there is no \
                 home directory to find ~/.postgresql/root.crt in: name one with sslrootcert=FILE, or \
                 use the system's with sslrootcert=system",
                mode.as_str()
            ));
        }
        None => None,
    };
    Ok(match (mode, loaded) {
        (SslMode::VerifyFull, Some(roots)) => Check::ChainAndName(roots),
        (_, Some(roots)) => Check::Chain(roots),
        (_, None) => Check::Nothing,
    })
}

/// The driver's TLS connector for `check`.
pub(super) fn connector(check: Check, sni: bool) -> Result<MakeRustlsConnect, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS cannot be set up: {e}"))?;
    let mut config = match check {
        Check::ChainAndName(roots) => builder.with_root_certificates(roots).with_no_client_auth(),
        Check::Chain(roots) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Verifier { roots: Some(roots), provider }))
            .with_no_client_auth(),
        Check::Nothing => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Verifier { roots: None, provider }))
            .with_no_client_auth(),
    };
    // PostgreSQL 17 asks for it with sslnegotiation=direct; older servers ignore it.
    config.alpn_protocols = vec![b"postgresql".to_vec()];
    config.enable_sni = sni;
    Ok(MakeRustlsConnect::new(config))
}

/// The certificates of a PEM file, as roots; `mode` for the message when the file is missing.
fn file_roots(path: &Path, mode: SslMode) -> Result<RootCertStore, String> {
    let bytes = std::fs::read(path).map_err(|error| {
        if error.kind() == std::io::ErrorKind::NotFound {
            format!(
                "the root certificate file {} does not exist (sslmode={} checks the server's \
                 certificate against it): provide it, name another with sslrootcert=FILE, use the \
                 system's roots with sslrootcert=system{}",
                path.display(),
                mode.as_str(),
                if mode.verifies() { ", or use sslmode=require (no check)" } else { "" }
            )
        } else {
            format!("the root certificate file {} cannot be read: {error}", path.display())
        }
    })?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&bytes) {
        let cert =
            cert.map_err(|e| format!("the root certificate file {} is not valid PEM: {e}", path.display()))?;
        roots.add(cert).map_err(|e| {
            format!(
                "the root certificate file {} holds a certificate that cannot be used: {e}",
                path.display()
            )
        })?;
    }
    if roots.is_empty() {
        return Err(format!(
            "the root certificate file {} holds no certificate (PEM, -----BEGIN CERTIFICATE-----)",
            path.display()
        ));
    }
    Ok(roots)
}

/// The system's root certificates (`/etc/ssl/certs`, or `SSL_CERT_FILE` / `SSL_CERT_DIR`).
fn system_roots() -> Result<RootCertStore, String> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(found.certs);
    if roots.is_empty() {
        let errors: Vec<String> = found.errors.iter().map(ToString::to_string).collect();
        return Err(format!(
            "sslrootcert=system, and the system has no root certificate to use (is ca-certificates \
             installed? SSL_CERT_FILE and SSL_CERT_DIR may name others){}",
            if errors.is_empty() { String::new() } else { format!(": {}", errors.join("; ")) }
        ));
    }
    Ok(roots)
}

/// The server's certificate checked against `roots` but never against the host name (verify-ca,
/// and require with roots), or not at all (`roots` none: require, prefer). The handshake's
/// signatures are checked in every case: the server holds the key of the certificate it shows.
#[derive(Debug)]
struct Verifier {
    roots: Option<RootCertStore>,
    provider: Arc<CryptoProvider>,
}

impl Verifier {
    fn algorithms(&self) -> &WebPkiSupportedAlgorithms {
        &self.provider.signature_verification_algorithms
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(roots) = &self.roots {
            let cert = rustls::server::ParsedCertificate::try_from(end_entity)?;
            rustls::client::verify_server_cert_signed_by_trust_anchor(
                &cert,
                roots,
                intermediates,
                now,
                self.algorithms().all,
            )?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, self.algorithms())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, self.algorithms())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms().supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslmodes_by_name() {
        for mode in SslMode::ALL {
            assert_eq!(SslMode::parse(mode.as_str()), Ok(mode));
        }
        let error = SslMode::parse("verify_full").unwrap_err();
        assert!(error.contains("\"verify_full\"") && error.contains("verify-full"), "{error}");
        assert!(SslMode::parse("").is_err());
        assert!(SslMode::parse("REQUIRE").is_err(), "libpq's names are lower case");
    }

    #[test]
    fn what_the_driver_is_told() {
        use ::postgres::config::SslMode as Driver;
        assert_eq!(SslMode::Disable.driver(), Driver::Disable);
        assert_eq!(SslMode::Allow.driver(), Driver::Prefer);
        assert_eq!(SslMode::Prefer.driver(), Driver::Prefer);
        for mode in [SslMode::Require, SslMode::VerifyCa, SslMode::VerifyFull] {
            assert_eq!(mode.driver(), Driver::Require);
        }
    }

    #[test]
    fn a_missing_default_root_file_checks_nothing_unless_verifying() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("root.crt");
        let default = RootCert::File { path: path.clone(), named: false };
        assert!(matches!(check(SslMode::Require, Some(&default)), Ok(Check::Nothing)));
        assert!(matches!(check(SslMode::Prefer, None), Ok(Check::Nothing)));
        for mode in [SslMode::VerifyCa, SslMode::VerifyFull] {
            let error = check(mode, Some(&default)).err().unwrap();
            assert!(
                error.contains(&path.display().to_string()) && error.contains("does not exist"),
                "{error}"
            );
            assert!(check(mode, None).err().unwrap().contains("root.crt"));
        }
        // A file the user named and that is not there is an error whatever the mode.
        let named = RootCert::File { path: path.clone(), named: true };
        assert!(check(SslMode::Require, Some(&named)).err().unwrap().contains("does not exist"));
    }

    #[test]
    fn a_root_file_without_certificates_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("root.crt");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let named = RootCert::File { path: path.clone(), named: false };
        let error = check(SslMode::Require, Some(&named)).err().unwrap();
        assert!(error.contains("holds no certificate"), "{error}");
        std::fs::write(&path, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").unwrap();
        let error = check(SslMode::VerifyFull, Some(&named)).err().unwrap();
        assert!(error.contains(&path.display().to_string()), "{error}");
    }
}

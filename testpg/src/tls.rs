//! The cluster's TLS certificates, made with the `openssl` command at start (Debian's
//! `postgresql` package pulls it in through `ssl-cert`).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

/// Writes into `dir` a CA (`ca.crt`) and a server certificate it signed (`server.crt`,
/// `server.key`). The server certificate names `localhost` only (a DNS name, no IP address), so
/// that `verify-full` succeeds for `localhost` and fails for `127.0.0.1`: tests of host name
/// checking need both. P-256 keys, since they take no time to make and every TLS stack takes them.
pub(crate) fn make_certificates(dir: &Path) -> Result<(), String> {
    const KEY: [&str; 4] = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
    // Days of validity: a cluster lives as long as one test run.
    const DAYS: [&str; 2] = ["-days", "7"];
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName = DNS:localhost\n\
         basicConstraints = critical, CA:FALSE\n\
         keyUsage = critical, digitalSignature\n\
         extendedKeyUsage = serverAuth\n\
         subjectKeyIdentifier = hash\n\
         authorityKeyIdentifier = keyid\n",
    )
    .map_err(|e| format!("cannot write the certificate's extensions: {e}"))?;
    openssl(dir, |c| {
        c.args(["req", "-x509", "-new", "-nodes"]).args(KEY).args(DAYS);
        c.args(["-keyout", "ca.key", "-out", "ca.crt", "-subj", "/CN=testpg CA"]);
        c.args(["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign"]);
    })?;
    openssl(dir, |c| {
        c.args(["req", "-new", "-nodes"]).args(KEY);
        c.args(["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"]);
    })?;
    openssl(dir, |c| {
        c.args(["x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key"]).args(DAYS);
        c.args(["-set_serial", "1", "-extfile", "server.ext", "-out", "server.crt"]);
    })?;
    // The server refuses a key that others may read, whatever the umask made of it.
    std::fs::set_permissions(dir.join("server.key"), std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("cannot make the server's key private: {e}"))?;
    // Nothing else is to be signed: the CA's key goes.
    for leftover in ["ca.key", "server.csr", "server.ext"] {
        std::fs::remove_file(dir.join(leftover)).map_err(|e| format!("cannot remove {leftover}: {e}"))?;
    }
    Ok(())
}

fn openssl(dir: &Path, args: impl FnOnce(&mut Command)) -> Result<(), String> {
    let mut command = Command::new("openssl");
    command.current_dir(dir);
    args(&mut command);
    let output = command.output().map_err(|e| format!("cannot run openssl for the TLS certificates: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "openssl failed to make the TLS certificates: {}",
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

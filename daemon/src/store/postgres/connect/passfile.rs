//! libpq's password file (`~/.pgpass`, or `PGPASSFILE`, or `passfile=` in the URL): the
//! password of a connection that named none, so that it need not sit in a unit file or the
//! daemon's command line.
//!
//! Lines are `host:port:database:user:password`; `*` alone matches anything in the first four
//! fields; `\:` and `\\` are a colon and a backslash; a line starting with `#` is a comment. The
//! first matching line wins. As libpq does, the file is ignored when it is not a plain file or
//! when its group or others have any access to it (it must be `chmod 600`), with a warning: a
//! password others can read is a password others have.

use std::io::ErrorKind;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

/// What a line of the file is matched against, as libpq forms it.
pub(super) struct Key<'a> {
    /// The host as the URL named it; a socket directory's path, or `localhost` for the default
    /// one (see [`super::Endpoint::passfile_host`]).
    pub host: &'a str,
    pub port: u16,
    pub database: &'a str,
    pub user: &'a str,
}

/// The password that the file at `path` holds for `key`, if the file may be read and has one.
pub(super) fn lookup(path: &Path, key: &Key<'_>) -> Option<String> {
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(error) if error.kind() == ErrorKind::NotFound => return None,
        Err(error) => {
            warn_once(path, &format!("it cannot be read ({error})"));
            return None;
        }
    };
    if !meta.is_file() {
        warn_once(path, "it is not a plain file");
        return None;
    }
    if meta.permissions().mode() & 0o077 != 0 {
        warn_once(
            path,
            "its group or others may access it; libpq ignores it then too: chmod 600 it, or name \
             the password elsewhere (PGPASSWORD)",
        );
        return None;
    }
    match std::fs::read_to_string(path) {
        Ok(text) => find(&text, key),
        Err(error) => {
            warn_once(path, &format!("it cannot be read ({error})"));
            None
        }
    }
}

/// Said once per process: a daemon reconnecting every few seconds would repeat it endlessly.
fn warn_once(path: &Path, why: &str) {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if !WARNED.swap(true, Ordering::Relaxed) {
        tracing::warn!(file = %path.display(), "the PostgreSQL password file is ignored: {why}");
    }
}

/// The password of the first line of `text` that matches `key`.
pub(super) fn find(text: &str, key: &Key<'_>) -> Option<String> {
    let port = key.port.to_string();
    let wanted = [key.host, port.as_str(), key.database, key.user];
    text.lines().filter(|line| !line.starts_with('#')).find_map(|line| {
        let mut fields = Fields::new(line);
        for want in wanted {
            let (field, wildcard) = fields.next()?;
            if !wildcard && field != want {
                return None;
            }
        }
        // The password: the rest of the line up to an unescaped ':', de-escaped.
        let (password, _) = fields.next()?;
        Some(password).filter(|password| !password.is_empty())
    })
}

/// The `:`-separated fields of a line, each de-escaped, with whether it was a bare `*`.
struct Fields<'a> {
    /// What is left of the line; `None` once its last field was taken.
    rest: Option<&'a str>,
}

impl<'a> Fields<'a> {
    fn new(line: &'a str) -> Fields<'a> {
        Fields { rest: Some(line.strip_suffix('\r').unwrap_or(line)) }
    }

    /// The next field, up to an unescaped `:` or the end of the line.
    fn next(&mut self) -> Option<(String, bool)> {
        let rest = self.rest?;
        let mut field = String::new();
        let mut chars = rest.char_indices();
        let mut end = rest.len();
        while let Some((at, c)) = chars.next() {
            match c {
                '\\' => field.push(chars.next().map_or('\\', |(_, escaped)| escaped)),
                ':' => {
                    end = at;
                    break;
                }
                c => field.push(c),
            }
        }
        self.rest = rest.get(end + 1..);
        Some((field, &rest[..end] == "*"))
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn key<'a>(host: &'a str, port: u16, database: &'a str, user: &'a str) -> Key<'a> {
        Key { host, port, database, user }
    }

    const FILE: &str = "\
# comments and blank lines are skipped

db.example:5432:shop:orders:first
db.example:5432:shop:orders:second (never: the first match wins)
*:5433:*:orders:any host and database on 5433
other:*:*:*:pa\\:ss\\\\word:trailing field ignored
weird\\:host:5432:d\\*b:u:escaped fields
*:*:*:admin:
localhost:5432:*:local:over the default socket
short:5432:line
";

    #[test]
    fn first_matching_line_wins() {
        assert_eq!(find(FILE, &key("db.example", 5432, "shop", "orders")).as_deref(), Some("first"));
        assert_eq!(find(FILE, &key("db.example", 5432, "shop", "nobody")), None);
        assert_eq!(find(FILE, &key("db.example", 5433, "shop", "nobody")), None);
    }

    #[test]
    fn wildcards_stand_for_a_whole_field() {
        assert_eq!(
            find(FILE, &key("anything", 5433, "any", "orders")).as_deref(),
            Some("any host and database on 5433")
        );
        assert_eq!(find(FILE, &key("*", 5432, "shop", "x")), None);
        // An escaped `*` is a literal star, not a wildcard.
        assert_eq!(find(FILE, &key("weird:host", 5432, "db", "u")), None);
        assert_eq!(find(FILE, &key("weird:host", 5432, "d*b", "u")).as_deref(), Some("escaped fields"));
    }

    #[test]
    fn escapes_in_the_password_and_what_follows_it() {
        assert_eq!(find(FILE, &key("other", 1, "x", "y")).as_deref(), Some("pa:ss\\word"));
    }

    #[test]
    fn an_empty_password_or_a_short_line_gives_none() {
        assert_eq!(find(FILE, &key("h", 5432, "d", "admin")), None);
        assert_eq!(find(FILE, &key("short", 5432, "line", "u")), None);
        assert_eq!(find("", &key("h", 5432, "d", "u")), None);
        assert_eq!(find("h:5432:d:u", &key("h", 5432, "d", "u")), None);
        assert_eq!(find("h:5432:d:u:pw\r", &key("h", 5432, "d", "u")).as_deref(), Some("pw"));
        assert_eq!(find("h:5432:d:u:pw\r\n", &key("h", 5432, "d", "u")).as_deref(), Some("pw"));
        assert_eq!(find("h:5432:d:u:trailing\\", &key("h", 5432, "d", "u")).as_deref(), Some("trailing\\"));
    }

    #[test]
    fn a_file_others_may_read_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pgpass");
        std::fs::write(&path, "h:5432:d:u:pw\n").unwrap();
        let wanted = key("h", 5432, "d", "u");
        for (mode, found) in [(0o600, true), (0o400, true), (0o640, false), (0o604, false), (0o610, false)] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            assert_eq!(lookup(&path, &wanted).is_some(), found, "mode {mode:o}");
        }
        assert_eq!(lookup(&dir.path().join("missing"), &wanted), None);
        assert_eq!(lookup(dir.path(), &wanted), None, "a directory");
    }
}

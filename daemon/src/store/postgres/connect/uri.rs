//! The syntax of libpq's connection URIs, and nothing else: which text is the user, the
//! password, each host and port, the database and the parameters, percent-decoded. What the
//! values mean (and what the environment fills in) is the caller's.
//!
//! `postgres[ql]://[user[:password]@][host][:port][,...][/dbname][?param=value&...]`, read as
//! libpq reads it: the user part ends at the first `@` met before a `/`; a host in brackets is
//! an IPv6 address; a host that decodes to a path (`%2Fvar%2Frun%2Fpostgresql`) is a Unix
//! socket's directory.
//!
//! A password may hold any character once percent-encoded; written as it is, a `/`, `@` or `,`
//! in it makes the rest of the URL read as something else. No message here quotes the text
//! around such a misreading: it could be half a password.

/// A URI taken apart, every piece percent-decoded.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Uri {
    /// The hosts in the order written, each with its port ("" where none was written). One
    /// entry with an empty host when only a port was given; none when the URI names no host.
    pub hosts: Vec<(String, String)>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub dbname: Option<String>,
    /// `?key=value` pairs in order, repeated keys included.
    pub params: Vec<(String, String)>,
    /// Whether a password may have been misread as something else: an `@` after the host part,
    /// or a `password` parameter (a `&` in it would start a parameter of its own). Messages then
    /// do not quote the parameters they name.
    pub careful: bool,
}

impl Uri {
    /// `name` quoted for a message, or a neutral word when the text may hide a password.
    pub fn quote(&self, name: &str) -> String {
        if self.careful { "one of them".to_owned() } else { format!("\"{name}\"") }
    }
}

/// Takes `text` apart; an error says what is wrong without quoting the URI.
pub(super) fn parse(text: &str) -> Result<Uri, String> {
    let rest = ["postgresql://", "postgres://"]
        .iter()
        .find_map(|scheme| strip_prefix_ignore_case(text, scheme))
        .ok_or_else(|| {
            "the database URL does not start with postgres:// or postgresql:// (a libpq \
             connection URI such as postgres://user@host:5432/dbname is expected)"
                .to_owned()
        })?;

    let mut uri = Uri::default();
    // The user part: up to an `@` that comes before the first `/` (libpq's rule; `?` and `:`
    // may be in a password).
    let rest = match rest[..rest.find('/').unwrap_or(rest.len())].find('@') {
        Some(at) => {
            let (user, password) = match rest[..at].split_once(':') {
                Some((user, password)) => (user, Some(password)),
                None => (&rest[..at], None),
            };
            uri.user = Some(decode(user, "the user name")?).filter(|user| !user.is_empty());
            uri.password = password.map(|p| decode(p, "the password")).transpose()?;
            &rest[at + 1..]
        }
        None => rest,
    };
    let query = text.find('?').map_or("", |at| &text[at..]);
    uri.careful = rest[rest.find(['/', '?']).unwrap_or(rest.len())..].contains('@')
        || query.to_ascii_lowercase().contains("password=");

    let (hosts, rest) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    uri.hosts = parse_hosts(hosts)?;

    let (path, query) = match rest.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (rest, None),
    };
    if let Some(dbname) = path.strip_prefix('/') {
        if dbname.contains(['/', '@']) {
            return Err("the database name in the URL holds a '/' or an '@': write them as %2F and \
                 %40 (a '/' or '@' in the password too)"
                .to_owned());
        }
        uri.dbname = Some(decode(dbname, "the database name")?).filter(|name| !name.is_empty());
    }
    if let Some(query) = query {
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            let Some((key, value)) = pair.split_once('=') else {
                return Err("a parameter of the URL has no '=' (parameters are written \
                     ?key=value&key=value)"
                    .to_owned());
            };
            if value.contains('=') {
                return Err(
                    "a parameter of the URL has a second '=' in its value: write it as %3D".to_owned()
                );
            }
            let key = decode(key, "a parameter's name")?;
            let value = decode(value, &format!("the value of {}", uri.quote(&key)))?;
            uri.params.push((key, value));
        }
    }
    Ok(uri)
}

/// `host[:port]` entries separated by commas, an IPv6 address in brackets.
fn parse_hosts(mut text: &str) -> Result<Vec<(String, String)>, String> {
    let mut hosts = Vec::new();
    if text.is_empty() {
        return Ok(hosts);
    }
    loop {
        let (host, after) = if let Some(bracketed) = text.strip_prefix('[') {
            let end = bracketed.find(']').ok_or_else(|| {
                "an IPv6 address in the URL has no closing ']' (write it as [::1])".to_owned()
            })?;
            if end == 0 {
                return Err("an IPv6 address in the URL is empty: '[]'".to_owned());
            }
            (&bracketed[..end], &bracketed[end + 1..])
        } else {
            text.split_at(text.find([':', ',']).unwrap_or(text.len()))
        };
        let (port, after) = match after.strip_prefix(':') {
            Some(port) => port.split_at(port.find(',').unwrap_or(port.len())),
            None if after.is_empty() || after.starts_with(',') => ("", after),
            None => {
                return Err("the host part of the URL has text after an IPv6 address's ']' that is \
                     not a ':port'"
                    .to_owned());
            }
        };
        let host = decode(host, "a host name")?;
        if host.contains('@') {
            return Err("a host name in the URL holds an '@': an '@' in the user name or the password \
                 must be written as %40"
                .to_owned());
        }
        hosts.push((host, decode(port, "a port")?));
        match after.strip_prefix(',') {
            Some(next) => text = next,
            None => break,
        }
    }
    if hosts.len() > 1 && hosts.iter().any(|(host, _)| host.is_empty()) {
        return Err("the URL's list of hosts has an empty entry (hosts are written \
             host1:port1,host2:port2)"
            .to_owned());
    }
    Ok(hosts)
}

/// `text` with its `%XX` escapes decoded (libpq: `+` stays a plus, `%00` is refused).
pub(super) fn decode(text: &str, what: &str) -> Result<String, String> {
    let bad =
        || format!("{what} in the URL has a '%' that is not followed by two hex digits (write '%' as %25)");
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or_else(bad)?;
            let hex = std::str::from_utf8(hex).map_err(|_| bad())?;
            let byte = u8::from_str_radix(hex, 16).map_err(|_| bad())?;
            if byte == 0 {
                return Err(format!("{what} in the URL holds %00, which PostgreSQL cannot take"));
            }
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("{what} in the URL does not decode to UTF-8 text"))
}

/// `text` written so that [`decode`] gives it back and no URL delimiter is left bare.
pub(super) fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| &text[prefix.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(h, p)| ((*h).to_owned(), (*p).to_owned())).collect()
    }

    #[test]
    fn a_full_url_is_taken_apart() {
        let uri = parse("postgres://orders:s3cret@db.example:5433/shop?sslmode=verify-full").unwrap();
        assert_eq!(uri.user.as_deref(), Some("orders"));
        assert_eq!(uri.password.as_deref(), Some("s3cret"));
        assert_eq!(uri.hosts, hosts(&[("db.example", "5433")]));
        assert_eq!(uri.dbname.as_deref(), Some("shop"));
        assert_eq!(uri.params, vec![("sslmode".to_owned(), "verify-full".to_owned())]);
        assert!(!uri.careful);
    }

    #[test]
    fn both_schemes_in_any_case() {
        assert!(parse("postgresql://h/db").is_ok());
        assert!(parse("POSTGRES://h/db").is_ok());
        let wrong = parse("mysql://u:pw@h/db").unwrap_err();
        assert!(wrong.contains("postgres://"), "{wrong}");
        assert!(!wrong.contains("pw"), "{wrong}");
        assert!(parse("host=localhost dbname=x").is_err());
        assert!(parse("").is_err());
    }

    #[test]
    fn empty_parts_are_absent() {
        assert_eq!(parse("postgres://").unwrap(), Uri::default());
        assert_eq!(parse("postgresql:///").unwrap(), Uri::default());
        let uri = parse("postgres://@/").unwrap();
        assert_eq!((uri.user, uri.dbname, uri.hosts.len()), (None, None, 0));
        let uri = parse("postgres://:5433/db").unwrap();
        assert_eq!(uri.hosts, hosts(&[("", "5433")]));
    }

    #[test]
    fn a_socket_directory_as_host_is_decoded() {
        let uri = parse("postgres://user@%2Fvar%2Frun%2Fpostgresql/db").unwrap();
        assert_eq!(uri.hosts, hosts(&[("/var/run/postgresql", "")]));
        let uri = parse("postgresql:///db?host=/tmp/sock%20dir").unwrap();
        assert!(uri.hosts.is_empty());
        assert_eq!(uri.params, vec![("host".to_owned(), "/tmp/sock dir".to_owned())]);
    }

    #[test]
    fn several_hosts_and_ipv6() {
        let uri = parse("postgres://a:1,[::1]:2,b,[fe80::1%25eth0]/db").unwrap();
        assert_eq!(uri.hosts, hosts(&[("a", "1"), ("::1", "2"), ("b", ""), ("fe80::1%eth0", "")]));
        assert!(parse("postgres://[::1/db").is_err());
        assert!(parse("postgres://[]/db").is_err());
        assert!(parse("postgres://[::1]x/db").is_err());
        assert!(parse("postgres://a,,b/db").is_err());
        assert!(parse("postgres://a,/db").is_err());
    }

    #[test]
    fn odd_passwords_percent_encoded() {
        let uri = parse("postgres://u:p%40ss%2Fw%3Ard%25@h/db").unwrap();
        assert_eq!(uri.password.as_deref(), Some("p@ss/w:rd%"));
        // libpq's rule: `:` and `?` may stand bare in a password.
        let uri = parse("postgres://u:a:b?c@h/db").unwrap();
        assert_eq!((uri.password.as_deref(), uri.hosts[0].0.as_str()), (Some("a:b?c"), "h"));
        let uri = parse("postgres://u:@h/db").unwrap();
        assert_eq!(uri.password.as_deref(), Some(""));
    }

    #[test]
    fn a_bare_slash_or_at_in_a_password_is_refused_without_quoting_it() {
        for text in [
            "postgres://u:se/cret@h/db",
            "postgres://u:123/cret@h/db",
            "postgres://u:sec@ret@h/db",
            "postgres://u:123/x?se=cret@h",
        ] {
            match parse(text) {
                // Read as host "u", port "se": refused later (not a port); never quoted here.
                Ok(uri) => assert!(uri.careful, "{text}: {uri:?}"),
                Err(error) => {
                    assert!(!error.contains("cret") && !error.contains("sec"), "{text}: {error}")
                }
            }
        }
        assert!(parse("postgres://u:sec@ret@h/db").unwrap_err().contains("%40"));
    }

    #[test]
    fn parameters() {
        let uri = parse("postgres://h/db?a=1&&b=two%20words&a=3&").unwrap();
        let params: Vec<(&str, &str)> = uri.params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(params, [("a", "1"), ("b", "two words"), ("a", "3")]);
        assert!(parse("postgres://h/db?flag").unwrap_err().contains("'='"));
        assert!(parse("postgres://h/db?a=b=c").unwrap_err().contains("%3D"));
        assert!(parse("postgres://h/db?password=x&y=z").unwrap().careful);
        assert!(parse("postgres://h/db?user=me@corp").unwrap().careful);
        assert!(!parse("postgres://u:pw@h/db?user=me").unwrap().careful);
    }

    #[test]
    fn bad_escapes_name_the_part_not_the_text() {
        let error = parse("postgres://u:p%zz@h/db").unwrap_err();
        assert!(error.contains("the password") && !error.contains("p%zz"), "{error}");
        assert!(parse("postgres://u:p%4@h/db").unwrap_err().contains("two hex digits"));
        assert!(parse("postgres://u@h/d%00b").unwrap_err().contains("%00"));
        assert!(parse("postgres://u@h/%ff").unwrap_err().contains("UTF-8"));
        assert!(parse("postgres://u@h/%").is_err());
        assert!(parse("postgres://u@h/é%C3%A9").is_ok());
    }

    #[test]
    fn encode_round_trips() {
        for text in ["plain", "/var/run/postgresql", "a b:c@d/e?f&g=h%i,j", "ünï", ""] {
            assert_eq!(decode(&encode(text), "x").unwrap(), text);
        }
        assert_eq!(encode("/tmp"), "%2Ftmp");
    }
}

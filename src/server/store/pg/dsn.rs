//! A PostgreSQL connection string read as libpq reads it, TLS settings and `PG*` variables
//! included, into what tokio-postgres connects with.
//!
//! tokio-postgres' own parser refuses libpq's `sslmode=verify-ca|verify-full`,
//! `sslrootcert`, `sslcert` and `sslkey`, and reads no environment. So the string is split
//! here into libpq's keywords (URL or `key=value` form, as libpq does), the environment
//! fills what it leaves unset (the string wins, as in libpq), the TLS keywords go to
//! [`super::tls`], and the rest is rebuilt as keywords for tokio-postgres' parser, which
//! stays the judge of every other keyword and value.

use std::collections::BTreeMap;
use std::path::PathBuf;

use tokio_postgres::config::Host;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::tls;

/// libpq's `sslmode`: how much TLS a connection needs, and how much of the server's
/// certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SslMode {
    /// Never TLS.
    Disable,
    /// TLS if the server demands it. tokio-postgres has no plain-first attempt, so this is
    /// read as `prefer`: it connects wherever `allow` would, encrypted when it can.
    Allow,
    /// TLS if the server offers it, else in clear; the certificate is not checked (unless
    /// a root file is there). A handshake that fails is an error, where libpq would try
    /// again in clear: a failed check is never downgraded.
    #[default]
    Prefer,
    /// TLS or no connection; the certificate is not checked (unless a root file is there).
    Require,
    /// TLS, the certificate's chain checked against the roots, the host name not.
    VerifyCa,
    /// TLS, the chain and the host name checked: the production setting.
    VerifyFull,
}

/// What `sslmode` accepts, for errors.
const MODES: &str = "disable, allow, prefer, require, verify-ca or verify-full";

impl SslMode {
    fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }

    /// The mode as tokio-postgres knows it; the certificate checks are the verifier's.
    pub fn wire(self) -> tokio_postgres::config::SslMode {
        use tokio_postgres::config::SslMode as Wire;
        match self {
            SslMode::Disable => Wire::Disable,
            SslMode::Allow | SslMode::Prefer => Wire::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => Wire::Require,
        }
    }
}

/// Everything to connect with: hand `config` and `tls` to the pool (or to
/// `config.connect(tls)`); `mode` is libpq's, for messages and tests.
pub struct ConnectSpec {
    pub config: tokio_postgres::Config,
    pub mode: SslMode,
    pub tls: MakeRustlsConnect,
}

/// libpq's environment variables and the keyword each stands for.
const ENV: &[(&str, &str)] = &[
    ("PGHOST", "host"),
    ("PGHOSTADDR", "hostaddr"),
    ("PGPORT", "port"),
    ("PGDATABASE", "dbname"),
    ("PGUSER", "user"),
    ("PGPASSWORD", "password"),
    ("PGOPTIONS", "options"),
    ("PGAPPNAME", "application_name"),
    ("PGSSLMODE", "sslmode"),
    ("PGSSLROOTCERT", "sslrootcert"),
    ("PGSSLCERT", "sslcert"),
    ("PGSSLKEY", "sslkey"),
    ("PGSSLNEGOTIATION", "sslnegotiation"),
    ("PGCONNECT_TIMEOUT", "connect_timeout"),
    ("PGTARGETSESSIONATTRS", "target_session_attrs"),
    ("PGCHANNELBINDING", "channel_binding"),
    ("PGLOADBALANCEHOSTS", "load_balance_hosts"),
];

/// The keywords read here rather than by tokio-postgres.
const TLS_KEYS: &[&str] = &["sslmode", "sslrootcert", "sslcert", "sslkey"];

/// A keyword's value and where it came from: the connection string, or a variable.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Value {
    text: String,
    from: Option<&'static str>,
}

/// libpq's keywords of one connection string, the last of a repeated one winning.
type Options = BTreeMap<String, Value>;

/// Reads `dsn` with the process environment; reads the certificate files it names.
pub fn read(dsn: &str) -> Result<ConnectSpec, String> {
    read_with(dsn, &|name| std::env::var(name).ok())
}

/// Reads `dsn` with `env` for the environment (libpq's `PG*` variables and `HOME`).
///
/// Errors: the keyword (or variable) that was wrong and what it takes, or the file that
/// could not be used; never a password or a file's content.
pub fn read_with(dsn: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<ConnectSpec, String> {
    let (settings, config) = prepare(dsn, env)?;
    if config.get_user().is_none() {
        return Err("no user: name one in the connection string (postgres://USER@HOST/DB, or user=USER) or in PGUSER".into());
    }
    let tls = MakeRustlsConnect::new(tls::client_config(&settings)?);
    Ok(ConnectSpec {
        config,
        mode: settings.mode,
        tls,
    })
}

/// The connection `dsn` and the process environment name, without reading any file: for
/// messages about where the data is.
pub fn target(dsn: &str) -> Result<tokio_postgres::Config, String> {
    prepare(dsn, &|name| std::env::var(name).ok()).map(|(_, config)| config)
}

/// Whether `dsn` is a connection string libpq would read: its form, its keywords and
/// their values. No environment, no file read.
pub fn check(dsn: &str) -> Result<(), String> {
    prepare(dsn, &|_| None).map(|_| ())
}

/// The string's keywords with the environment's, read: the TLS settings apart, the rest
/// as tokio-postgres' config with libpq's defaults (files not read yet).
fn prepare(
    dsn: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(tls::Settings, tokio_postgres::Config), String> {
    let mut options = options(dsn)?;
    for (var, key) in ENV {
        if !options.contains_key(*key) {
            if let Some(text) = env(var).filter(|v| !v.is_empty()) {
                let from = Some(*var);
                options.insert(key.to_string(), Value { text, from });
            }
        }
    }
    let settings = tls_settings(&mut options, env("HOME").map(PathBuf::from))?;
    let mut config = config(&options)?;
    if config.get_hosts().is_empty() && config.get_hostaddrs().is_empty() {
        config.host("localhost");
    }
    config.ssl_mode(settings.mode.wire());
    // libpq speaks no TLS over a Unix socket, whatever the mode.
    let hosts = config.get_hosts();
    if !hosts.is_empty() && hosts.iter().all(|h| !matches!(h, Host::Tcp(_))) {
        config.ssl_mode(tokio_postgres::config::SslMode::Disable);
    }
    Ok((settings, config))
}

/// `host:port/dbname` of a connection, for messages (never the password).
pub fn describe(config: &tokio_postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        Some(Host::Unix(p)) => p.display().to_string(),
        None => match config.get_hostaddrs().first() {
            Some(a) => a.to_string(),
            None => "localhost".into(),
        },
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config
        .get_dbname()
        .or(config.get_user())
        .unwrap_or("postgres");
    format!("{host}:{port}/{db}")
}

/// Takes the TLS keywords out of `options`, checking their values.
fn tls_settings(options: &mut Options, home: Option<PathBuf>) -> Result<tls::Settings, String> {
    let mut take = |key: &str| options.remove(key);
    let mode = match take("sslmode") {
        None => SslMode::default(),
        Some(v) => SslMode::parse(&v.text)
            .ok_or_else(|| format!("{}: expected {MODES}", name(&v, "sslmode")))?,
    };
    let rootcert = take("sslrootcert").map(|v| v.text);
    if rootcert.as_deref() == Some("system") && mode != SslMode::VerifyFull {
        // libpq's rule: the system's roots vouch for any name, so only with the name checked.
        return Err("sslrootcert=system needs sslmode=verify-full (as libpq)".into());
    }
    Ok(tls::Settings {
        mode,
        rootcert,
        cert: take("sslcert").map(|v| v.text),
        key: take("sslkey").map(|v| v.text),
        home,
    })
}

/// How an error names a value: its variable when it came from the environment.
fn name(v: &Value, key: &str) -> String {
    match v.from {
        Some(var) => format!("{var} (libpq's {key})"),
        None => key.to_string(),
    }
}

/// tokio-postgres' config of every keyword but the TLS ones (already taken out).
fn config(options: &Options) -> Result<tokio_postgres::Config, String> {
    debug_assert!(TLS_KEYS.iter().all(|k| !options.contains_key(*k)));
    keywords(options.iter())
        .parse()
        .map_err(|e: tokio_postgres::Error| {
            // Name the variable when one of them is the culprit.
            let culprit = options.iter().filter(|(_, v)| v.from.is_some()).find(|o| {
                keywords(std::iter::once(*o))
                    .parse::<tokio_postgres::Config>()
                    .is_err()
            });
            match culprit {
                Some((key, v)) => format!("{}: {}", name(v, key), chain(&e)),
                None => chain(&e),
            }
        })
}

/// An error and its causes on one line (tokio-postgres keeps the keyword in the cause).
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(&format!(": {c}"));
        cause = c.source();
    }
    text
}

/// libpq's `key='value'` form of `options`, quoted and escaped as libpq reads it.
fn keywords<'a>(options: impl Iterator<Item = (&'a String, &'a Value)>) -> String {
    let mut out = String::new();
    for (key, v) in options {
        let value = v.text.replace('\\', "\\\\").replace('\'', "\\'");
        out.push_str(&format!("{key}='{value}' "));
    }
    out
}

/// libpq's keywords of a connection string in either form.
fn options(dsn: &str) -> Result<Options, String> {
    let pairs = match url_rest(dsn) {
        Some(rest) => url(rest)?,
        None => key_values(dsn)?,
    };
    let mut options = Options::new();
    for (key, text) in pairs {
        if !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') || key.is_empty() {
            return Err("a keyword that is not one of libpq's (letters, digits and _)".into());
        }
        // libpq reads an empty value as the default for most keywords: unset here.
        if text.is_empty() {
            options.remove(&key);
        } else {
            options.insert(key, Value { text, from: None });
        }
    }
    Ok(options)
}

/// What follows `postgres://` or `postgresql://` (the scheme in any case).
fn url_rest(dsn: &str) -> Option<&str> {
    let (scheme, rest) = dsn.split_once("://")?;
    (scheme.eq_ignore_ascii_case("postgres") || scheme.eq_ignore_ascii_case("postgresql"))
        .then_some(rest)
}

/// libpq's keyword form: `key = value` pairs apart by spaces; a value in single quotes may
/// hold spaces; `\` escapes the next character, in quotes or not.
fn key_values(dsn: &str) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    let mut chars = dsn.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(pairs);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| !c.is_whitespace() && *c != '=') {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(format!(
                "missing = after a keyword ({}): expected key=value pairs",
                shown(&key)
            ));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let quoted = chars.next_if_eq(&'\'').is_some();
        let mut value = String::new();
        loop {
            match chars.next() {
                Some('\'') if quoted => break,
                Some(c) if c.is_whitespace() && !quoted => break,
                Some('\\') => value.extend(chars.next()),
                Some(c) => value.push(c),
                None if quoted => {
                    return Err(format!("the value of {} has no closing quote", shown(&key)))
                }
                None => break,
            }
        }
        pairs.push((key, value));
    }
}

/// libpq's keywords, the only words errors show of a string (another may be a password).
const LIBPQ_KEYS: &[&str] = &[
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "passfile",
    "options",
    "application_name",
    "fallback_application_name",
    "connect_timeout",
    "client_encoding",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_count",
    "tcp_user_timeout",
    "channel_binding",
    "target_session_attrs",
    "load_balance_hosts",
    "sslmode",
    "sslnegotiation",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "sslpassword",
    "sslcrl",
    "sslsni",
    "gssencmode",
    "service",
];

/// A word as errors show it: only when it is one of libpq's keywords.
fn shown(key: &str) -> String {
    match LIBPQ_KEYS.contains(&key) {
        true => format!("`{key}`"),
        false => "a word that is not a keyword".into(),
    }
}

/// libpq's URL form, after the scheme: `[user[:password]@][host][:port][,…][/dbname][?k=v&…]`,
/// every part percent-decoded.
fn url(rest: &str) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    let (head, query) = match rest.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (rest, None),
    };
    let (authority, dbname) = match head.split_once('/') {
        Some((a, d)) => (a, Some(d)),
        None => (head, None),
    };
    // Credentials end at the last @ before the path (a password may hold an @ unencoded).
    let hosts = match authority.rsplit_once('@') {
        Some((creds, hosts)) => {
            let (user, password) = match creds.split_once(':') {
                Some((u, p)) => (u, Some(p)),
                None => (creds, None),
            };
            pairs.push(("user".into(), decode(user, "user name")?));
            if let Some(p) = password {
                pairs.push(("password".into(), decode(p, "password")?));
            }
            hosts
        }
        None => authority,
    };
    let (host, port) = hosts_and_ports(hosts)?;
    pairs.push(("host".into(), host));
    pairs.push(("port".into(), port));
    if let Some(db) = dbname {
        pairs.push(("dbname".into(), decode(db, "database name")?));
    }
    for param in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let Some((key, value)) = param.split_once('=') else {
            return Err("a URL query parameter without =: expected ?key=value&key=value".into());
        };
        let key = decode(key, "query parameter name")?;
        let value = decode(value, "query parameter value")?;
        // libpq reads JDBC's ssl=true as sslmode=require.
        match (key.as_str(), value.as_str()) {
            ("ssl", "true") => pairs.push(("sslmode".into(), "require".into())),
            _ => pairs.push((key, value)),
        }
    }
    Ok(pairs)
}

/// `host[:port],…` (an IPv6 address in brackets) as libpq's `host` and `port` lists.
fn hosts_and_ports(text: &str) -> Result<(String, String), String> {
    let (mut hosts, mut ports) = (Vec::new(), Vec::new());
    for item in text.split(',') {
        let (host, port) = match item.strip_prefix('[') {
            Some(v6) => {
                let (addr, after) = v6.split_once(']').ok_or(
                    "an IPv6 address in the URL has no closing ]: expected [ADDRESS]:PORT",
                )?;
                match after {
                    "" => (addr, ""),
                    _ => match after.strip_prefix(':') {
                        Some(port) => (addr, port),
                        None => return Err("after ] in the URL: expected :PORT".into()),
                    },
                }
            }
            None => item.split_once(':').unwrap_or((item, "")),
        };
        hosts.push(decode(host, "host")?);
        ports.push(decode(port, "port")?);
    }
    // An empty list is unset (the environment's or the default); one empty item is 5432.
    let join = |v: Vec<String>| match v.iter().all(String::is_empty) {
        true => String::new(),
        false => v.join(","),
    };
    Ok((join(hosts), join(ports)))
}

/// Percent-decodes a part of the URL; `what` names it in errors (never its text).
fn decode(text: &str, what: &str) -> Result<String, String> {
    let bytes: Vec<u8> = percent_encoding::percent_decode_str(text).collect();
    let bad = text
        .split('%')
        .skip(1)
        .any(|s| s.len() < 2 || !s.as_bytes()[..2].iter().all(u8::is_ascii_hexdigit));
    match String::from_utf8(bytes) {
        Ok(s) if !bad && !s.contains('\0') => Ok(s),
        _ => Err(format!(
            "the URL's {what} is not valid percent-encoding (write % as %25)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_postgres::config::SslMode as Wire;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn spec(dsn: &str) -> ConnectSpec {
        match read_with(dsn, &no_env) {
            Ok(spec) => spec,
            Err(e) => panic!("{dsn}: {e}"),
        }
    }

    fn error(dsn: &str, env: &dyn Fn(&str) -> Option<String>) -> String {
        match read_with(dsn, env) {
            Ok(_) => panic!("{dsn}: read, expected an error"),
            Err(e) => e,
        }
    }

    fn env_of(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    /// A URL and libpq's keywords saying the same thing give the same connection.
    #[test]
    fn a_url_and_keywords_read_alike() {
        let url = spec("postgresql://ann:p%40ss%2Fw@db.example:6432/seg?application_name=x&connect_timeout=7&sslmode=require");
        let kw = spec("host=db.example port = 6432 dbname=seg user=ann password=p@ss/w application_name=x connect_timeout=7 sslmode=require");
        for c in [&url.config, &kw.config] {
            assert_eq!(describe(c), "db.example:6432/seg");
            assert_eq!(c.get_user(), Some("ann"));
            assert_eq!(c.get_password(), Some(&b"p@ss/w"[..]));
            assert_eq!(c.get_application_name(), Some("x"));
            assert_eq!(
                c.get_connect_timeout(),
                Some(&std::time::Duration::from_secs(7))
            );
            assert_eq!(c.get_ssl_mode(), Wire::Require);
        }
        assert_eq!((url.mode, kw.mode), (SslMode::Require, SslMode::Require));
    }

    /// Quoted values keep their spaces; `\'` and `\\` are a quote and a backslash.
    #[test]
    fn quoted_keyword_values_keep_spaces_quotes_and_backslashes() {
        let c = spec(r"user=u password='a b\'c\\d' dbname = 'my db' host=h").config;
        assert_eq!(c.get_password(), Some(&br"a b'c\d"[..]));
        assert_eq!(c.get_dbname(), Some("my db"));
        let c = spec(r"user=u password=x\ y host=h").config;
        assert_eq!(c.get_password(), Some(&b"x y"[..]));
        let e = error("user=u password='unclosed", &no_env);
        assert!(
            e.contains("no closing quote") && !e.contains("unclosed"),
            "{e}"
        );
    }

    /// Several hosts, an IPv6 address, a Unix socket (where libpq speaks no TLS).
    #[test]
    fn url_hosts_ports_and_sockets_read_as_libpq() {
        let c = spec("postgres://u@h1,h2:5433,[::1]:5434/db").config;
        let hosts: Vec<_> = c.get_hosts().iter().map(|h| format!("{h:?}")).collect();
        assert_eq!(hosts, [r#"Tcp("h1")"#, r#"Tcp("h2")"#, r#"Tcp("::1")"#]);
        assert_eq!(c.get_ports(), [5432, 5433, 5434]);
        let c = spec("postgres://u@%2Fvar%2Frun%2Fpostgresql/db?sslmode=require").config;
        assert_eq!(describe(&c), "/var/run/postgresql:5432/db");
        assert_eq!(c.get_ssl_mode(), Wire::Disable);
        let c = spec("postgres://u@/db?host=/tmp/pg").config;
        assert_eq!(describe(&c), "/tmp/pg:5432/db");
        // No host anywhere: localhost (tokio-postgres knows no socket default).
        assert_eq!(
            describe(&spec("postgres://u@/db").config),
            "localhost:5432/db"
        );
        // JDBC's ssl=true, as libpq reads it.
        assert_eq!(spec("postgres://u@h/db?ssl=true").mode, SslMode::Require);
    }

    /// The environment fills what the string leaves unset, and never overrides it.
    #[test]
    fn pg_variables_fill_what_the_string_leaves_unset() {
        let env = env_of(&[
            ("PGHOST", "envhost"),
            ("PGPORT", "7777"),
            ("PGDATABASE", "envdb"),
            ("PGUSER", "envuser"),
            ("PGPASSWORD", "envpw"),
            ("PGAPPNAME", "envapp"),
            ("PGCONNECT_TIMEOUT", "9"),
            ("PGSSLMODE", "disable"),
        ]);
        let s = read_with("", &env).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(describe(&s.config), "envhost:7777/envdb");
        assert_eq!(s.config.get_user(), Some("envuser"));
        assert_eq!(s.config.get_password(), Some(&b"envpw"[..]));
        assert_eq!(s.config.get_application_name(), Some("envapp"));
        assert_eq!(
            s.config.get_connect_timeout(),
            Some(&std::time::Duration::from_secs(9))
        );
        assert_eq!(
            (s.mode, s.config.get_ssl_mode()),
            (SslMode::Disable, Wire::Disable)
        );
        let dsn = "postgres://u:pw@h:1/db?sslmode=require&application_name=a&connect_timeout=3";
        let s = read_with(dsn, &env).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(describe(&s.config), "h:1/db");
        assert_eq!(s.config.get_user(), Some("u"));
        assert_eq!(s.config.get_password(), Some(&b"pw"[..]));
        assert_eq!(s.config.get_application_name(), Some("a"));
        assert_eq!(
            s.config.get_connect_timeout(),
            Some(&std::time::Duration::from_secs(3))
        );
        assert_eq!(s.mode, SslMode::Require);
    }

    /// Each libpq mode; the verify ones need roots; the default is prefer.
    #[test]
    fn each_sslmode_maps_to_what_tokio_postgres_knows() {
        for (mode, want, wire) in [
            ("disable", SslMode::Disable, Wire::Disable),
            ("allow", SslMode::Allow, Wire::Prefer),
            ("prefer", SslMode::Prefer, Wire::Prefer),
            ("require", SslMode::Require, Wire::Require),
        ] {
            let s = spec(&format!("host=h user=u sslmode={mode}"));
            assert_eq!((s.mode, s.config.get_ssl_mode()), (want, wire), "{mode}");
        }
        let s = spec("host=h user=u");
        assert_eq!(
            (s.mode, s.config.get_ssl_mode()),
            (SslMode::Prefer, Wire::Prefer)
        );
        for mode in ["verify-ca", "verify-full"] {
            let e = error(&format!("host=h user=u sslmode={mode}"), &no_env);
            assert!(
                e.contains(&format!("sslmode={mode}")) && e.contains("sslrootcert"),
                "{e}"
            );
        }
        let e = error("host=h user=u sslmode=verify_full", &no_env);
        assert_eq!(e, format!("sslmode: expected {MODES}"));
        let e = error("host=h user=u", &env_of(&[("PGSSLMODE", "strict")]));
        assert_eq!(e, format!("PGSSLMODE (libpq's sslmode): expected {MODES}"));
        let e = error("host=h user=u sslmode=require sslrootcert=system", &no_env);
        assert!(e.contains("sslmode=verify-full"), "{e}");
    }

    /// Errors name what was wrong, never the password, wherever it was.
    #[test]
    fn errors_never_show_the_password() {
        let pw = &[("PGPASSWORD", "sekret-env")];
        for dsn in [
            "postgres://u:sekret@h/db?nonsense=1",
            "postgres://u:sekret@h:port/db",
            "postgres://u:sek%zzret@h/db",
            "postgres://u:sekret@[::1/db",
            "host=h password=sekret dbname",
            "host=h password=sekret sekret",
            "host=h password=sekret sslmode=sekret",
            "host=h password=sekret port=sekret",
            "host=h password='sekret",
        ] {
            let e = error(dsn, &env_of(pw));
            assert!(!e.contains("sekret"), "{dsn}: {e}");
            let c = check(dsn).expect_err(dsn);
            assert!(!c.contains("sekret"), "{dsn}: {c}");
        }
        let e = error("host=h password=sekret", &env_of(&[("PGPORT", "x")]));
        assert!(
            e.starts_with("PGPORT (libpq's port): ") && e.contains("`port`"),
            "{e}"
        );
        let e = error("host=h password=sekret", &no_env);
        assert!(e.starts_with("no user") && !e.contains("sekret"), "{e}");
    }

    /// `check` reads the TLS keywords without opening their files.
    #[test]
    fn check_accepts_libpq_tls_keywords_without_reading_files() {
        for dsn in [
            "postgres://u:pw@h/db?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
            "host=h sslmode=verify-ca sslrootcert=/nonexistent/ca.pem sslcert=/x.crt sslkey=/x.key",
            "postgres://u@h/db?sslmode=verify-full&sslrootcert=system",
            "",
        ] {
            assert_eq!(check(dsn), Ok(()), "{dsn}");
        }
        let e = read_with(
            "postgres://u:pw@h/db?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
            &no_env,
        )
        .err()
        .unwrap_or_default();
        assert!(
            e.starts_with("sslrootcert /nonexistent/ca.pem: cannot read it"),
            "{e}"
        );
    }
}

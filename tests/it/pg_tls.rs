//! TLS to PostgreSQL as libpq does it, against a real PostgreSQL started with `ssl=on` and
//! certificates the tests make with the `openssl` command: a CA, a server certificate for
//! `localhost` and `127.0.0.1`, a client certificate, and a CA nobody uses.
//!
//! Connections go through `dsn::read_with` and `tokio_postgres::Config::connect`, so they
//! test what the store's pool is handed; the last test goes through `segmentctl serve`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use segmentctl::server::store::pg::dsn::{self, SslMode};
use segmentctl::server::store::sql::pg_text;

use crate::pg::{self, Cluster};
use crate::server_crash::spawn_server_with;

/// The test's certificates and keys, in a folder of this run's (removed by a later run).
struct Pki {
    dir: PathBuf,
}

impl Pki {
    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("the TLS tests need the openssl command (Debian: apt-get install openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A P-256 key `name.key` and a certificate `name.crt` for `subject`: self-signed as a CA
/// when `ca` is none, else signed by that CA with `extensions` (an openssl extfile).
fn certificate(dir: &Path, name: &str, subject: &str, ca: Option<&str>, extensions: &str) {
    let (key, crt, csr) = (
        format!("{name}.key"),
        format!("{name}.crt"),
        format!("{name}.csr"),
    );
    let new_key = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let Some(ca) = ca else {
        let mut args = vec!["req", "-x509", "-days", "30", "-subj", subject];
        args.extend(new_key);
        args.extend(["-keyout", &key, "-out", &crt]);
        args.extend(["-addext", "basicConstraints=critical,CA:TRUE"]);
        args.extend(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
        return openssl(dir, &args);
    };
    let mut args = vec![
        "req", "-new", "-subj", subject, "-keyout", &key, "-out", &csr,
    ];
    args.extend(new_key);
    openssl(dir, &args);
    let ext = format!("{name}.ext");
    std::fs::write(dir.join(&ext), extensions).unwrap();
    let (ca_crt, ca_key) = (format!("{ca}.crt"), format!("{ca}.key"));
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_crt,
            "-CAkey",
            &ca_key,
            "-days",
            "30",
            "-set_serial",
            "2",
            "-extfile",
            &ext,
            "-out",
            &crt,
        ],
    );
}

/// The certificates, made once per run.
fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        let dir = pg::root().join("pki");
        std::fs::create_dir_all(&dir).unwrap();
        certificate(&dir, "ca", "/CN=segmentctl test CA", None, "");
        certificate(&dir, "other-ca", "/CN=a CA nobody uses", None, "");
        let server = "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n";
        certificate(&dir, "server", "/CN=localhost", Some("ca"), server);
        let client = "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n";
        certificate(&dir, "client", "/CN=certuser", Some("ca"), client);
        // No extensions: OpenSSL makes an X.509 version 1 certificate, which rustls refuses.
        certificate(&dir, "client-v1", "/CN=certuser", Some("ca"), "");
        // PostgreSQL reads only a key of its own that nobody else may read; libpq's rule for
        // the client key is the same.
        pg::chown(&dir);
        pg::chown(&dir.join("server.key"));
        for key in ["server.key", "client.key", "client-v1.key"] {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::Permissions::from_mode(0o600);
            std::fs::set_permissions(dir.join(key), mode).unwrap();
        }
        Pki { dir }
    })
}

/// A PostgreSQL with `ssl=on` and the test's server certificate; `certuser` must present a
/// client certificate (over TLS only), everyone else is trusted, in clear or not.
fn tls_cluster() -> &'static Cluster {
    static TLS: OnceLock<&'static Cluster> = OnceLock::new();
    TLS.get_or_init(|| {
        let pki = pki();
        let hba = pki.dir.join("pg_hba.conf");
        std::fs::write(
            &hba,
            "local all all trust\n\
             hostnossl all certuser 127.0.0.1/32 reject\n\
             hostssl all certuser 127.0.0.1/32 cert\n\
             host all all 127.0.0.1/32 trust\n",
        )
        .unwrap();
        let settings = vec![
            "ssl=on".to_string(),
            format!("ssl_cert_file={}", pki.path("server.crt")),
            format!("ssl_key_file={}", pki.path("server.key")),
            format!("ssl_ca_file={}", pki.path("ca.crt")),
            format!("hba_file={}", hba.display()),
        ];
        let cluster = pg::lasting(move || Cluster::with_settings(settings));
        let admin = cluster.dsn("postgres");
        pg::off_runtime(move || {
            let mut c = postgres::Client::connect(&admin, postgres::NoTls).expect("connect");
            c.batch_execute("CREATE ROLE certuser LOGIN")
                .expect("CREATE ROLE");
        });
        cluster
    })
}

/// The environment of a machine with no `PG*` variables and no `~/.postgresql`.
fn bare(_: &str) -> Option<String> {
    None
}

/// Connects as the store would; the error as the store would show it.
async fn connect(
    dsn: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<tokio_postgres::Client, String> {
    let spec = dsn::read_with(dsn, env)?;
    let (client, connection) = spec
        .config
        .connect(spec.tls)
        .await
        .map_err(|e| pg_text(&e))?;
    tokio::spawn(connection);
    Ok(client)
}

async fn connected(dsn: &str) -> tokio_postgres::Client {
    match connect(dsn, &bare).await {
        Ok(c) => c,
        Err(e) => panic!("{dsn}: {e}"),
    }
}

async fn refused(dsn: &str) -> String {
    match connect(dsn, &bare).await {
        Ok(_) => panic!("{dsn}: connected, expected a refusal"),
        Err(e) => e,
    }
}

/// Whether the session runs over TLS, as the server sees it.
async fn encrypted(client: &tokio_postgres::Client) -> bool {
    let sql = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()";
    client
        .query_one(sql, &[])
        .await
        .expect("pg_stat_ssl")
        .get(0)
}

#[tokio::test]
async fn verify_full_with_the_test_ca_connects_encrypted_by_name_and_by_address() {
    let (pki, port) = (pki(), tls_cluster().port);
    let ca = pki.path("ca.crt");
    for host in ["localhost", "127.0.0.1"] {
        let url = format!(
            "postgres://postgres@{host}:{port}/postgres?sslmode=verify-full&sslrootcert={ca}"
        );
        assert!(encrypted(&connected(&url).await).await, "{url}");
    }
    let kw =
        format!("host=localhost port={port} user=postgres sslmode=verify-full sslrootcert='{ca}'");
    assert!(encrypted(&connected(&kw).await).await, "{kw}");
}

/// The certificate names `localhost` and `127.0.0.1`; the client asks for `db.example`
/// (reached at 127.0.0.1 through libpq's `hostaddr`).
#[tokio::test]
async fn verify_full_refuses_another_name_and_verify_ca_does_not_check_it() {
    let (pki, port) = (pki(), tls_cluster().port);
    let dsn = |mode: &str| {
        format!(
            "host=db.example hostaddr=127.0.0.1 port={port} user=postgres sslmode={mode} sslrootcert={}",
            pki.path("ca.crt")
        )
    };
    let e = refused(&dsn("verify-full")).await;
    assert!(
        e.contains("certificate not valid for name \"db.example\"") && e.contains("only valid for"),
        "{e}"
    );
    assert!(encrypted(&connected(&dsn("verify-ca")).await).await);
}

/// A server whose certificate the roots do not vouch for is refused under every mode that
/// checks it, `require` with an explicit root file included (as libpq).
#[tokio::test]
async fn a_certificate_from_an_unknown_ca_is_refused() {
    let (pki, port) = (pki(), tls_cluster().port);
    let other = pki.path("other-ca.crt");
    for mode in ["verify-full", "verify-ca", "require"] {
        let url = format!(
            "postgres://postgres@localhost:{port}/postgres?sslmode={mode}&sslrootcert={other}"
        );
        let e = refused(&url).await;
        assert!(
            e.contains(&format!("not issued by a CA of {other}")),
            "{mode}: {e}"
        );
    }
    // Without roots, require encrypts and checks nothing.
    let url = format!("postgres://postgres@localhost:{port}/postgres?sslmode=require");
    assert!(encrypted(&connected(&url).await).await);
}

#[tokio::test]
async fn require_refuses_a_server_without_tls_and_prefer_connects_in_clear() {
    let plain = pg::shared();
    let ca = pki().path("ca.crt");
    let url = |mode: &str| {
        format!(
            "postgres://postgres@127.0.0.1:{}/postgres?sslmode={mode}&sslrootcert={ca}",
            plain.port
        )
    };
    for mode in ["require", "verify-ca", "verify-full"] {
        let e = refused(&url(mode)).await;
        assert!(e.contains("server does not support TLS"), "{mode}: {e}");
    }
    for mode in ["prefer", "allow", "disable"] {
        assert!(!encrypted(&connected(&url(mode)).await).await, "{mode}");
    }
    // The default mode is prefer, as libpq's.
    let url = format!("postgres://postgres@127.0.0.1:{}/postgres", plain.port);
    assert_eq!(dsn::read_with(&url, &bare).unwrap().mode, SslMode::Prefer);
    assert!(!encrypted(&connected(&url).await).await);
}

/// pg_hba says `hostssl … certuser … cert`: the client's certificate logs it in, and no
/// certificate, no login.
#[tokio::test]
async fn a_client_certificate_is_accepted_where_pg_hba_demands_one() {
    let (pki, port) = (pki(), tls_cluster().port);
    let base = format!(
        "postgres://certuser@localhost:{port}/postgres?sslmode=verify-full&sslrootcert={}",
        pki.path("ca.crt")
    );
    let with_cert = format!(
        "{base}&sslcert={}&sslkey={}",
        pki.path("client.crt"),
        pki.path("client.key")
    );
    let client = connected(&with_cert).await;
    let who: String = client
        .query_one("SELECT current_user::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(who, "certuser");
    let e = refused(&base).await;
    assert!(e.contains("certificate"), "{e}");
}

/// libpq's variables fill what the string leaves out, the client certificate included,
/// and the string wins over them.
#[tokio::test]
async fn pg_variables_are_honoured_and_the_string_wins() {
    let (pki, port) = (pki(), tls_cluster().port);
    let vars = [
        ("PGHOST", "localhost".to_string()),
        ("PGPORT", port.to_string()),
        ("PGUSER", "certuser".to_string()),
        ("PGDATABASE", "postgres".to_string()),
        ("PGSSLMODE", "verify-full".to_string()),
        ("PGSSLROOTCERT", pki.path("ca.crt")),
        ("PGSSLCERT", pki.path("client.crt")),
        ("PGSSLKEY", pki.path("client.key")),
        ("PGAPPNAME", "from-pgappname".to_string()),
    ];
    let env = move |name: &str| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
    };
    let client = connect("", &env).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(encrypted(&client).await);
    let row = client
        .query_one(
            "SELECT current_user::text, current_setting('application_name')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "certuser");
    assert_eq!(row.get::<_, String>(1), "from-pgappname");
    // The string's user and mode win: postgres, in clear.
    let client = connect("user=postgres sslmode=disable", &env)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!encrypted(&client).await);
}

/// `segmentctl serve` over PostgreSQL with `sslmode=verify-full`: an application is
/// created through the SDK, over TLS connections the database sees.
///
/// Needs the store's pool to connect through `dsn::read`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_verify_full_creates_an_app_over_tls() {
    let cluster = tls_cluster();
    let url = cluster.database();
    let db = url.rsplit('/').next().unwrap().to_string();
    let dsn = url.replacen("127.0.0.1", "localhost", 1)
        + &format!("?sslmode=verify-full&sslrootcert={}", pki().path("ca.crt"));
    let (mut child, endpoint) = spawn_server_with(Path::new(&dsn), &[]);
    let client = segmentctl::targets::pinpoint::convert::endpoint_client(
        &endpoint,
        "us-east-1",
        "k",
        "s",
        1,
    );
    let created = client
        .create_app()
        .create_application_request(
            aws_sdk_pinpoint::types::CreateApplicationRequest::builder()
                .name("over-tls")
                .build(),
        )
        .send()
        .await;
    let sql = format!(
        "SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) WHERE datname = '{db}' AND ssl"
    );
    let admin = cluster.dsn("postgres");
    let over_tls = pg::off_runtime(move || {
        let mut c = postgres::Client::connect(&admin, postgres::NoTls).expect("connect");
        c.query_one(&sql, &[]).expect("query").get::<_, i64>(0)
    });
    let _ = child.kill();
    let _ = child.wait();
    let app = created.expect("CreateApp").application_response.unwrap();
    assert_eq!(app.name.as_deref(), Some("over-tls"));
    assert!(over_tls > 0, "the server's connections are not over TLS");
}

/// A connection the client refuses will not pass by waiting (a certificate from another
/// CA, a server without TLS under `require`): `segmentctl serve` stops at start and says
/// why, rather than serve 503 and retry for ever. The cases a restart or a failover cures
/// are tested where the database stops (`replicas`).
#[test]
fn serve_stops_at_start_when_the_client_refuses_the_database() {
    let (pki, port) = (pki(), tls_cluster().port);
    let plain = pg::shared();
    for (dsn, why) in [
        (
            format!(
                "postgres://postgres@localhost:{port}/postgres?sslmode=verify-full&sslrootcert={}",
                pki.path("other-ca.crt")
            ),
            "not issued by a CA of",
        ),
        (
            format!(
                "postgres://postgres@127.0.0.1:{}/postgres?sslmode=require",
                plain.port
            ),
            "server does not support TLS",
        ),
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_segmentctl"))
            .args([
                "serve",
                "--no-auth",
                "--listen",
                "127.0.0.1:0",
                "--data",
                &dsn,
            ])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Bounded so that a server that keeps running fails the test instead of hanging it.
        let mut exited = None;
        for _ in 0..600 {
            if let Some(status) = child.try_wait().unwrap() {
                exited = Some(status);
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        if exited.is_none() {
            let _ = child.kill();
        }
        let mut err = String::new();
        std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
        let status = exited.unwrap_or_else(|| panic!("{why}: still serving after a minute: {err}"));
        assert_eq!(status.code(), Some(1), "{why}: {err}");
        assert!(err.contains(why), "{why}: {err}");
        assert!(!err.contains("serving 503"), "{why}: {err}");
    }
}

/// A client certificate of X.509 version 1 (what `openssl x509 -req` makes without
/// extensions; libpq takes it, rustls does not) is refused saying so and how to reissue it.
#[test]
fn a_version_1_client_certificate_is_refused_saying_how_to_reissue_it() {
    let pki = pki();
    let url = format!(
        "postgres://certuser@localhost:5432/postgres?sslmode=verify-full&sslrootcert={}&sslcert={}&sslkey={}",
        pki.path("ca.crt"),
        pki.path("client-v1.crt"),
        pki.path("client-v1.key")
    );
    let e = match dsn::read_with(&url, &bare) {
        Ok(_) => panic!("a version 1 certificate was taken"),
        Err(e) => e,
    };
    assert!(
        e.contains("an X.509 version 1 certificate; reissue it as version 3"),
        "{e}"
    );
}

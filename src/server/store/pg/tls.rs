//! The rustls client configuration for each of libpq's `sslmode`s, with libpq's files.
//!
//! As libpq: `disable` never speaks TLS; `allow`, `prefer` and `require` encrypt without
//! checking the certificate, unless a root file is there (named by `sslrootcert`, or
//! libpq's default `~/.postgresql/root.crt`), when the chain is checked as under
//! `verify-ca`; `verify-ca` checks the chain against the roots and not the host name;
//! `verify-full` checks both. Client certificates come from `sslcert`/`sslkey`, or libpq's
//! default `~/.postgresql/postgresql.crt`/`.key` when they exist.
//!
//! The crypto provider is aws-lc-rs, given explicitly: nothing depends on a process-wide
//! default that another part of the program might install differently.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

use super::dsn::SslMode;

/// libpq's TLS settings of one connection string (after the environment).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Settings {
    pub mode: SslMode,
    /// A PEM file of CA certificates, or `system` for the operating system's store.
    pub rootcert: Option<String>,
    pub cert: Option<String>,
    pub key: Option<String>,
    /// Where libpq's default files are (`~/.postgresql/`); none without a home.
    pub home: Option<PathBuf>,
}

/// Where the roots to check a server's chain come from.
enum Roots {
    None,
    File(PathBuf),
    System,
}

/// The rustls client configuration `settings` call for. Reads the files they name (not
/// under `disable`, as libpq).
///
/// Errors: the setting or file that could not be used and what was expected; never a
/// file's content.
pub fn client_config(settings: &Settings) -> Result<ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let algs = provider.signature_verification_algorithms;
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS with aws-lc-rs: {e}"))?;
    if settings.mode == SslMode::Disable {
        let none = Verifier {
            webpki: None,
            check_name: false,
            algs,
            roots: String::new(),
        };
        return Ok(builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(none))
            .with_no_client_auth());
    }
    let builder = builder
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier(settings, provider)?));
    match identity(settings)? {
        Some((certs, key, names)) => builder
            .with_client_auth_cert(certs, key)
            .map_err(|e| {
                // OpenSSL makes a version 1 certificate when no extensions are given, which
                // libpq takes and rustls does not.
                let v1 = if format!("{e:?}").contains("UnsupportedCertVersion") {
                    ": an X.509 version 1 certificate; reissue it as version 3 (openssl x509 -req … -extfile with basicConstraints=CA:FALSE)"
                } else {
                    ""
                };
                format!("{names}: not a certificate and its private key ({e}){v1}")
            }),
        None => Ok(builder.with_no_client_auth()),
    }
}

/// The verifier `settings.mode` and the roots found call for.
fn verifier(settings: &Settings, provider: Arc<CryptoProvider>) -> Result<Verifier, String> {
    let algs = provider.signature_verification_algorithms;
    let (store, roots) = match roots(settings) {
        Roots::None => {
            if matches!(settings.mode, SslMode::VerifyCa | SslMode::VerifyFull) {
                return Err(format!(
                    "sslmode={} checks the server's certificate and there are no roots to check it with: set sslrootcert (or PGSSLROOTCERT) to a PEM file of CA certificates, or to system, or put them in ~/.postgresql/root.crt",
                    mode_name(settings.mode)
                ));
            }
            let none = Verifier {
                webpki: None,
                check_name: false,
                algs,
                roots: String::new(),
            };
            return Ok(none);
        }
        Roots::File(path) => (file_roots(&path)?, path.display().to_string()),
        Roots::System => (system_roots()?, "the system's trusted roots".to_string()),
    };
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider)
        .build()
        .map_err(|e| format!("the roots of {roots}: {e}"))?;
    Ok(Verifier {
        webpki: Some(webpki),
        check_name: settings.mode == SslMode::VerifyFull,
        algs,
        roots,
    })
}

fn mode_name(mode: SslMode) -> &'static str {
    match mode {
        SslMode::Disable => "disable",
        SslMode::Allow => "allow",
        SslMode::Prefer => "prefer",
        SslMode::Require => "require",
        SslMode::VerifyCa => "verify-ca",
        SslMode::VerifyFull => "verify-full",
    }
}

/// Where the roots come from: `sslrootcert`, else libpq's default file if it exists.
fn roots(settings: &Settings) -> Roots {
    match settings.rootcert.as_deref() {
        Some("system") => Roots::System,
        Some(path) => Roots::File(PathBuf::from(path)),
        None => match default_file(settings, "root.crt") {
            Some(path) => Roots::File(path),
            None => Roots::None,
        },
    }
}

/// `~/.postgresql/NAME` if it exists (libpq's default files are used only then).
fn default_file(settings: &Settings, name: &str) -> Option<PathBuf> {
    let path = settings.home.as_ref()?.join(".postgresql").join(name);
    path.exists().then_some(path)
}

/// The CA certificates of a PEM file, as a root store.
fn file_roots(path: &Path) -> Result<RootCertStore, String> {
    let expected = "a PEM file of CA certificates (-----BEGIN CERTIFICATE-----)";
    let certs = pem_certs(path, "sslrootcert", expected)?;
    let mut store = RootCertStore::empty();
    for cert in certs {
        store.add(cert).map_err(|e| {
            format!(
                "sslrootcert {}: a certificate that is not a usable CA ({e})",
                path.display()
            )
        })?;
    }
    Ok(store)
}

/// The operating system's trusted roots (`sslrootcert=system`).
fn system_roots() -> Result<RootCertStore, String> {
    let found = rustls_native_certs::load_native_certs();
    let mut store = RootCertStore::empty();
    store.add_parsable_certificates(found.certs);
    if store.is_empty() {
        return Err("sslrootcert=system: the system has no trusted roots (install its CA certificates, e.g. Debian's ca-certificates, or name a PEM file)".into());
    }
    Ok(store)
}

/// Every certificate of a PEM file; `key` and `expected` name it in errors.
fn pem_certs(
    path: &Path,
    key: &str,
    expected: &str,
) -> Result<Vec<CertificateDer<'static>>, String> {
    let bad = |e: pem::Error| match e {
        pem::Error::Io(e) => format!("{key} {}: cannot read it ({e})", path.display()),
        // The other errors quote a line of the file: not shown.
        _ => format!("{key} {}: not {expected}", path.display()),
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(bad)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(bad)?;
    if certs.is_empty() {
        return Err(format!("{key} {}: not {expected}", path.display()));
    }
    Ok(certs)
}

type Identity = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>, String);

/// The client certificate and key: `sslcert`/`sslkey`, else libpq's defaults when they
/// exist; none when there is no certificate.
fn identity(settings: &Settings) -> Result<Option<Identity>, String> {
    let cert = match &settings.cert {
        Some(path) => PathBuf::from(path),
        None => match default_file(settings, "postgresql.crt") {
            Some(path) => path,
            None => return Ok(None),
        },
    };
    let key = match &settings.key {
        Some(path) => PathBuf::from(path),
        None => cert_key_default(settings)?,
    };
    check_key_mode(&key)?;
    let certs = pem_certs(
        &cert,
        "sslcert",
        "a PEM file of certificates (-----BEGIN CERTIFICATE-----)",
    )?;
    let private = PrivateKeyDer::from_pem_file(&key).map_err(|e| match e {
        pem::Error::Io(e) => format!("sslkey {}: cannot read it ({e})", key.display()),
        _ => format!(
            "sslkey {}: not a PEM private key (-----BEGIN PRIVATE KEY-----, RSA or EC; unencrypted)",
            key.display()
        ),
    })?;
    let names = format!("sslcert {} and sslkey {}", cert.display(), key.display());
    Ok(Some((certs, private, names)))
}

/// libpq's default key file, which must be there when a certificate is.
fn cert_key_default(settings: &Settings) -> Result<PathBuf, String> {
    default_file(settings, "postgresql.key").ok_or_else(|| {
        "sslcert is set and there is no key for it: set sslkey (or PGSSLKEY), or put it in ~/.postgresql/postgresql.key".to_string()
    })
}

/// libpq's rule: a private key readable by others is refused, not used.
fn check_key_mode(key: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(key)
        .map_err(|e| format!("sslkey {}: cannot read it ({e})", key.display()))?;
    let (mode, root) = (meta.mode() & 0o777, meta.uid() == 0);
    let allowed = if root { 0o640 } else { 0o600 };
    if mode & !allowed != 0 {
        return Err(format!(
            "sslkey {}: others may read it (mode {mode:o}): chmod 600 it (or 640 owned by root), as libpq demands",
            key.display()
        ));
    }
    Ok(())
}

/// The server certificate check of one mode: none, the chain only, or chain and name.
#[derive(Debug)]
struct Verifier {
    webpki: Option<Arc<WebPkiServerVerifier>>,
    check_name: bool,
    algs: WebPkiSupportedAlgorithms,
    /// Where the roots came from, for errors.
    roots: String,
}

impl ServerCertVerifier for Verifier {
    /// Guarantees: under `verify-ca`, a name mismatch is forgiven only once the chain is
    /// good (webpki checks the chain first and the name last, so the mismatch is the only
    /// failure left).
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(webpki) = &self.webpki else {
            return Ok(ServerCertVerified::assertion());
        };
        match webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.check_name => Ok(ServerCertVerified::assertion()),
            Err(rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)) => {
                Err(rustls::Error::Other(rustls::OtherError(Arc::new(
                    UnknownIssuer(self.roots.clone()),
                ))))
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// The server's certificate chains to none of the roots: says which roots.
#[derive(Debug)]
struct UnknownIssuer(String);

impl std::fmt::Display for UnknownIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "invalid peer certificate: not issued by a CA of {} (UnknownIssuer)",
            self.0
        )
    }
}

impl std::error::Error for UnknownIssuer {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn settings(mode: SslMode, home: &Path) -> Settings {
        Settings {
            mode,
            home: Some(home.to_path_buf()),
            ..Settings::default()
        }
    }

    fn error(s: &Settings) -> String {
        match client_config(s) {
            Ok(_) => panic!("{s:?}: built, expected an error"),
            Err(e) => e,
        }
    }

    /// A file that is not what it should be, holding a line that must never be shown.
    fn garbage(path: &Path, mode: u32) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, "-----BEGIN CERTIFICATE-----\nsecret-line\n").unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn verify_modes_without_roots_name_the_setting_and_weaker_ones_check_nothing() {
        let home = tempfile::tempdir().unwrap();
        for mode in [SslMode::VerifyCa, SslMode::VerifyFull] {
            let e = error(&settings(mode, home.path()));
            assert!(
                e.contains(mode_name(mode)) && e.contains("sslrootcert"),
                "{e}"
            );
        }
        for mode in [
            SslMode::Disable,
            SslMode::Allow,
            SslMode::Prefer,
            SslMode::Require,
        ] {
            assert!(
                client_config(&settings(mode, home.path())).is_ok(),
                "{mode:?}"
            );
        }
    }

    /// libpq's default root file is read when there, and a bad one is an error naming it.
    #[test]
    fn the_default_root_file_is_read_and_its_content_never_shown() {
        let home = tempfile::tempdir().unwrap();
        let root = home.path().join(".postgresql/root.crt");
        garbage(&root, 0o644);
        let e = error(&settings(SslMode::Prefer, home.path()));
        assert_eq!(
            e,
            format!(
                "sslrootcert {}: not a PEM file of CA certificates (-----BEGIN CERTIFICATE-----)",
                root.display()
            )
        );
        // Under disable, as libpq, no file is read.
        assert!(client_config(&settings(SslMode::Disable, home.path())).is_ok());
        let mut s = settings(SslMode::VerifyFull, home.path());
        s.rootcert = Some(home.path().join("missing.pem").display().to_string());
        let e = error(&s);
        assert!(
            e.contains("missing.pem: cannot read it (") && !e.contains("secret"),
            "{e}"
        );
    }

    /// Client certificates: a key others may read is refused, as libpq; a certificate
    /// without a key is named; a bad certificate file is named, not shown.
    #[test]
    fn client_certificate_files_are_checked_as_libpq_does() {
        let home = tempfile::tempdir().unwrap();
        let (cert, key) = (home.path().join("c.crt"), home.path().join("c.key"));
        garbage(&cert, 0o644);
        garbage(&key, 0o644);
        let mut s = settings(SslMode::Require, home.path());
        s.cert = Some(cert.display().to_string());
        let e = error(&s);
        assert!(e.starts_with("sslcert is set and there is no key"), "{e}");
        s.key = Some(key.display().to_string());
        // SAFETY: geteuid has no preconditions.
        let allowed = if unsafe { libc::geteuid() } == 0 {
            "640"
        } else {
            "600"
        };
        let e = error(&s);
        assert!(
            e.contains("others may read it (mode 644)") && e.contains(allowed),
            "{e}"
        );
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let e = error(&s);
        assert!(
            e.starts_with(&format!("sslcert {}: not a PEM file", cert.display())),
            "{e}"
        );
        assert!(!e.contains("secret"), "{e}");
    }
}

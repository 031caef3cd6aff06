//! SigV4 verification of incoming requests (signing name `mobiletargeting`).
//!
//! The canonical request is rebuilt exactly as aws-sigv4 and botocore build it for a
//! non-S3 service: the path normalized and percent-encoded a second time, query pairs decoded,
//! re-encoded and sorted, the signed headers trimmed, and the payload's SHA-256.

use std::collections::HashMap;
use std::path::Path;

use axum::http::{HeaderMap, Method, Uri};
use hmac::{Hmac, KeyInit, Mac};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha2::{Digest, Sha256};
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};

use super::error::ApiError;

/// The service name in the credential scope.
pub const SIGNING_NAME: &str = "mobiletargeting";
/// How far a request's `x-amz-date` may be from the server's clock.
pub const MAX_SKEW: time::Duration = time::Duration::minutes(15);

/// Everything but the RFC 3986 unreserved characters is encoded.
const SIGV4_SET: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');
/// The same, keeping `/` so a path's segments stay apart.
const SIGV4_PATH_SET: &AsciiSet = &SIGV4_SET.remove(b'/');

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Every operation.
    ReadWrite,
    /// Reads only (GET, and OPTIONS); every write is a 403 ForbiddenException. For plans made
    /// from pull requests, which must not be able to change anything.
    ReadOnly,
}

/// Access key id → secret access key and access level.
#[derive(Clone, Default)]
pub struct Credentials {
    keys: HashMap<String, (String, Access)>,
}

/// The most names a real client signs (the SDKs sign 4 to 8).
pub const MAX_SIGNED_HEADERS: usize = 32;
/// The most bytes of signed header values a canonical request may carry.
pub const MAX_SIGNED_HEADER_BYTES: usize = 16 * 1024;

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print a secret, even in debug output.
        f.debug_struct("Credentials")
            .field("access_key_ids", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("cannot read credentials file {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: expected `ACCESS_KEY_ID SECRET_ACCESS_KEY [read-write|read-only]`; a comment is a whole line starting with #")]
    Malformed { path: String, line: usize },
    #[error("{path}: no credentials found; add a line `ACCESS_KEY_ID SECRET_ACCESS_KEY`")]
    Empty { path: String },
}

impl Credentials {
    pub fn single(access_key_id: &str, secret: &str) -> Self {
        let mut keys = HashMap::new();
        keys.insert(
            access_key_id.to_string(),
            (secret.to_string(), Access::ReadWrite),
        );
        Self { keys }
    }

    /// Adds a key.
    pub fn with(mut self, access_key_id: &str, secret: &str, access: Access) -> Self {
        self.keys
            .insert(access_key_id.to_string(), (secret.to_string(), access));
        self
    }

    /// Reads one `ACCESS_KEY_ID SECRET_ACCESS_KEY [read-write|read-only]` per line (access
    /// defaults to read-write). A comment is a whole line whose first character (after
    /// blanks) is `#`; a `#` anywhere else belongs to the secret, so a secret is never cut
    /// short silently.
    pub fn from_file(path: &Path) -> Result<Self, CredentialsError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| CredentialsError::Read {
            path: shown.clone(),
            source,
        })?;
        let mut keys = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut parts = line.split_whitespace();
            let access = |a: Option<&str>| match a {
                None | Some("read-write") => Some(Access::ReadWrite),
                Some("read-only") => Some(Access::ReadOnly),
                Some(_) => None,
            };
            match (
                parts.next(),
                parts.next(),
                access(parts.next()),
                parts.next(),
            ) {
                (Some(id), Some(secret), Some(access), None) => {
                    keys.insert(id.to_string(), (secret.to_string(), access));
                }
                _ => {
                    return Err(CredentialsError::Malformed {
                        path: shown,
                        line: i + 1,
                    })
                }
            }
        }
        if keys.is_empty() {
            return Err(CredentialsError::Empty { path: shown });
        }
        Ok(Self { keys })
    }
}

/// The parts of an `Authorization: AWS4-HMAC-SHA256 …` header.
struct Authorization<'a> {
    access_key_id: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
    signed_headers: Vec<&'a str>,
    signature: &'a str,
}

fn parse_authorization(value: &str) -> Option<Authorization<'_>> {
    let rest = value.strip_prefix("AWS4-HMAC-SHA256")?.trim_start();
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',').take(8) {
        let (k, v) = part.trim().split_once('=')?;
        match k {
            "Credential" => credential = Some(v),
            "SignedHeaders" => signed = Some(v),
            "Signature" => signature = Some(v),
            _ => {}
        }
    }
    let mut scope = credential?.split('/');
    let auth = Authorization {
        access_key_id: scope.next()?,
        date: scope.next()?,
        region: scope.next()?,
        service: scope.next()?,
        signed_headers: signed?.split(';').collect(),
        signature: signature?,
    };
    (scope.next()? == "aws4_request" && scope.next().is_none()).then_some(auth)
}

/// What the Authorization header says, checked before anything else of the request is
/// read: its form, the key, the scope, the date and the list of signed headers.
#[derive(Debug, Clone)]
pub struct Checked {
    access_key_id: String,
    secret: String,
    pub access: Access,
    date: String,
    region: String,
    signed_headers: Vec<String>,
    signature: String,
    amz_date: String,
}

/// Checks everything about a request's signature that does not need its body: cheap and
/// bounded, so an unauthenticated request costs no more than reading its headers.
///
/// Errors: a 403 ForbiddenException naming what is wrong (missing header, unknown key, a
/// date too far from now, wrong region or service, signed headers no client sends).
pub fn precheck(
    creds: &Credentials,
    region: &str,
    headers: &HeaderMap,
    now: OffsetDateTime,
) -> Result<Checked, ApiError> {
    let header = headers
        .get("authorization")
        .ok_or_else(|| {
            ApiError::forbidden(
                "Missing Authentication Token: the request is not signed with SigV4",
            )
        })?
        .to_str()
        .map_err(|_| ApiError::forbidden("The Authorization header is not valid"))?;
    let auth = parse_authorization(header).ok_or_else(|| {
        ApiError::forbidden("Authorization header requires AWS4-HMAC-SHA256 with Credential, SignedHeaders and Signature")
    })?;
    let (secret, access) = creds.keys.get(auth.access_key_id).ok_or_else(|| {
        ApiError::forbidden(
            "The security token included in the request is invalid: unknown access key id",
        )
    })?;
    if auth.service != SIGNING_NAME {
        return Err(ApiError::forbidden(format!(
            "Credential should be scoped to correct service: '{SIGNING_NAME}'"
        )));
    }
    if auth.region != region {
        return Err(ApiError::forbidden(format!(
            "Credential should be scoped to a valid region: this server serves '{region}', the request was signed for '{}'",
            crate::text::safe(auth.region)
        )));
    }
    let names = &auth.signed_headers;
    if names.len() > MAX_SIGNED_HEADERS {
        return Err(ApiError::forbidden(format!(
            "SignedHeaders names {} headers; at most {MAX_SIGNED_HEADERS} are accepted",
            names.len()
        )));
    }
    if names.windows(2).any(|w| w[0] >= w[1])
        || names
            .iter()
            .any(|n| n.is_empty() || n.bytes().any(|b| b.is_ascii_uppercase()))
    {
        return Err(ApiError::forbidden(
            "SignedHeaders must list distinct lowercase header names in sorted order",
        ));
    }
    if !names.contains(&"host") {
        return Err(ApiError::forbidden("The host header must be signed"));
    }
    let signed_bytes: usize = names
        .iter()
        .flat_map(|n| headers.get_all(*n).iter())
        .map(|v| v.len() + 1)
        .sum();
    if signed_bytes > MAX_SIGNED_HEADER_BYTES {
        return Err(ApiError::forbidden(format!(
            "the signed headers hold {signed_bytes} bytes; at most {MAX_SIGNED_HEADER_BYTES} are accepted"
        )));
    }
    let amz_date = headers
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ApiError::forbidden("Missing x-amz-date header"))?;
    let when = PrimitiveDateTime::parse(
        amz_date,
        format_description!("[year][month][day]T[hour][minute][second]Z"),
    )
    .map_err(|_| ApiError::forbidden("x-amz-date is not of the form YYYYMMDDTHHMMSSZ"))?
    .assume_utc();
    if (now - when).abs() > MAX_SKEW {
        return Err(ApiError::forbidden(format!(
            "Signature expired: {amz_date} is more than 15 minutes from the server's time"
        )));
    }
    if !amz_date.starts_with(auth.date) || auth.date.len() != 8 {
        return Err(ApiError::forbidden(
            "The credential scope date does not match x-amz-date",
        ));
    }
    Ok(Checked {
        access_key_id: auth.access_key_id.to_string(),
        secret: secret.clone(),
        access: *access,
        date: auth.date.to_string(),
        region: auth.region.to_string(),
        signed_headers: names.iter().map(|n| n.to_string()).collect(),
        signature: auth.signature.to_string(),
        amz_date: amz_date.to_string(),
    })
}

impl Checked {
    /// The access key id, for logs.
    pub fn key(&self) -> &str {
        &self.access_key_id
    }

    /// Verifies the signature over the request; `payload_hash` is the hex SHA-256 of the
    /// body.
    ///
    /// Errors: a 403 ForbiddenException when the signature does not match.
    pub fn verify(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        payload_hash: &str,
    ) -> Result<(), ApiError> {
        let signed: Vec<&str> = self.signed_headers.iter().map(String::as_str).collect();
        let canonical = canonical_request(method, uri, headers, &signed, payload_hash)
            .ok_or_else(|| ApiError::forbidden("A signed header is missing from the request"))?;
        let scope = format!("{}/{}/{SIGNING_NAME}/aws4_request", self.date, self.region);
        let string_to_sign = format!(
            "AWS4-HMAC-SHA256\n{}\n{scope}\n{}",
            self.amz_date,
            hex::encode(Sha256::digest(canonical.as_bytes()))
        );
        let mut key = hmac(
            format!("AWS4{}", self.secret).as_bytes(),
            self.date.as_bytes(),
        );
        for part in [self.region.as_str(), SIGNING_NAME, "aws4_request"] {
            key = hmac(&key, part.as_bytes());
        }
        let expected = hex::encode(hmac(&key, string_to_sign.as_bytes()));
        if !constant_time_eq(expected.as_bytes(), self.signature.as_bytes()) {
            return Err(ApiError::forbidden(
                "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.",
            ));
        }
        Ok(())
    }
}

/// The hex SHA-256 of a body, as the canonical request carries it.
pub fn payload_hash(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

/// Verifies a request's SigV4 signature in one step (tests and the fuzz target).
pub fn verify(
    creds: &Credentials,
    region: &str,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    now: OffsetDateTime,
) -> Result<(), ApiError> {
    precheck(creds, region, headers, now)?.verify(method, uri, headers, &payload_hash(body))
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Builds the SigV4 canonical request; `None` when a signed header is absent.
fn canonical_request(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    signed: &[&str],
    payload_hash: &str,
) -> Option<String> {
    let path = normalize_path(uri.path());
    let path = utf8_percent_encode(&path, SIGV4_PATH_SET).to_string();

    let mut query: Vec<(String, String)> =
        form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
            .map(|(k, v)| {
                (
                    utf8_percent_encode(&k, SIGV4_SET).to_string(),
                    utf8_percent_encode(&v, SIGV4_SET).to_string(),
                )
            })
            .collect();
    query.sort();
    let query = query
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");

    let mut canonical_headers = String::new();
    for name in signed {
        let values: Vec<String> = headers
            .get_all(*name)
            .iter()
            .map(|v| trim_all(&String::from_utf8_lossy(v.as_bytes())))
            .collect();
        if values.is_empty() {
            return None;
        }
        canonical_headers.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    Some(format!(
        "{method}\n{path}\n{query}\n{canonical_headers}\n{}\n{payload_hash}",
        signed.join(";")
    ))
}

/// Removes `.` and `..` segments and duplicate slashes, as the signers do before encoding.
fn normalize_path(path: &str) -> String {
    if !path.split('/').any(|s| s == "." || s == "..") && !path.contains("//") {
        return if path.is_empty() {
            "/".into()
        } else {
            path.into()
        };
    }
    let mut out: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    let mut joined = format!("/{}", out.join("/"));
    if path.ends_with('/') && joined.len() > 1 {
        joined.push('/');
    }
    joined
}

fn trim_all(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked example from the SigV4 documentation's test suite ("get-vanilla"), with
    /// the service and region of that example.
    #[test]
    fn canonical_request_matches_the_aws_reference_shape() {
        let mut headers = HeaderMap::new();
        headers.insert("host", "example.amazonaws.com".parse().unwrap());
        headers.insert("x-amz-date", "20150830T123600Z".parse().unwrap());
        let uri: Uri = "/v1/tags/arn%3Aaws%3Amobiletargeting?tagKeys=b&tagKeys=a%20c"
            .parse()
            .unwrap();
        let c = canonical_request(
            &Method::DELETE,
            &uri,
            &headers,
            &["host", "x-amz-date"],
            &payload_hash(b""),
        )
        .unwrap();
        assert_eq!(
            c,
            "DELETE\n/v1/tags/arn%253Aaws%253Amobiletargeting\ntagKeys=a%20c&tagKeys=b\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn dot_segments_are_removed_before_signing() {
        assert_eq!(normalize_path("/v1/apps/../apps/x"), "/v1/apps/x");
        assert_eq!(normalize_path("/v1//apps/"), "/v1/apps/");
        assert_eq!(normalize_path("/v1/apps"), "/v1/apps");
    }

    #[test]
    fn a_hash_in_a_secret_is_part_of_it_and_access_levels_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("creds");
        std::fs::write(
            &path,
            "# comment\nAKIDRW short#long\n  # another\nAKIDRO s3cret read-only\n",
        )
        .unwrap();
        let c = Credentials::from_file(&path).unwrap();
        assert_eq!(
            c.keys["AKIDRW"],
            ("short#long".to_string(), Access::ReadWrite)
        );
        assert_eq!(c.keys["AKIDRO"], ("s3cret".to_string(), Access::ReadOnly));
        std::fs::write(&path, "AKID secret # trailing words\n").unwrap();
        assert!(matches!(
            Credentials::from_file(&path),
            Err(CredentialsError::Malformed { line: 1, .. })
        ));
    }

    #[test]
    fn amplified_signed_headers_are_refused_before_any_signature_work() {
        let creds = Credentials::single("AKID", "secret");
        let now = OffsetDateTime::now_utc();
        let date = now
            .format(format_description!(
                "[year][month][day]T[hour][minute][second]Z"
            ))
            .unwrap();
        let with = |signed: &str| {
            let mut h = HeaderMap::new();
            h.insert("host", "x".parse().unwrap());
            h.insert("x-amz-date", date.parse().unwrap());
            h.insert("x-a", "v".repeat(40_000).parse().unwrap());
            let auth = format!(
                "AWS4-HMAC-SHA256 Credential=AKID/{}/us-east-1/mobiletargeting/aws4_request, SignedHeaders={signed}, Signature=00",
                &date[..8]
            );
            h.insert("authorization", auth.parse().unwrap());
            precheck(&creds, "us-east-1", &h, now).map(|_| ())
        };
        let repeated = format!("host;{}", vec!["x-a"; 40_000].join(";"));
        let err = with(&repeated).unwrap_err();
        assert!(err.message.contains("at most 32"), "{}", err.message);
        let err = with("host;x-a;x-a").unwrap_err();
        assert!(
            err.message.contains("distinct lowercase"),
            "{}",
            err.message
        );
        let err = with("x-amz-date;host").unwrap_err();
        assert!(err.message.contains("sorted"), "{}", err.message);
        let err = with("host;x-a;x-amz-date").unwrap_err();
        assert!(err.message.contains("at most 16384"), "{}", err.message);
    }

    #[test]
    fn credentials_debug_output_hides_secrets() {
        let c = Credentials::single("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY");
        let shown = format!("{c:?}");
        assert!(shown.contains("AKIDEXAMPLE"));
        assert!(!shown.contains("wJalr"));
    }
}

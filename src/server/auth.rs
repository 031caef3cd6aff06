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

/// Access key id → secret access key.
#[derive(Clone, Default)]
pub struct Credentials {
    keys: HashMap<String, String>,
}

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
    #[error("{path}:{line}: expected `ACCESS_KEY_ID SECRET_ACCESS_KEY`")]
    Malformed { path: String, line: usize },
    #[error("{path}: no credentials found; add a line `ACCESS_KEY_ID SECRET_ACCESS_KEY`")]
    Empty { path: String },
}

impl Credentials {
    pub fn single(access_key_id: &str, secret: &str) -> Self {
        let mut keys = HashMap::new();
        keys.insert(access_key_id.to_string(), secret.to_string());
        Self { keys }
    }

    /// Reads one `ACCESS_KEY_ID SECRET_ACCESS_KEY` pair per line; `#` starts a comment.
    pub fn from_file(path: &Path) -> Result<Self, CredentialsError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| CredentialsError::Read {
            path: shown.clone(),
            source,
        })?;
        let mut keys = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let mut parts = line.split_whitespace();
            match (parts.next(), parts.next(), parts.next()) {
                (Some(id), Some(secret), None) => {
                    keys.insert(id.to_string(), secret.to_string());
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
    for part in rest.split(',') {
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

/// Verifies a request's SigV4 signature.
///
/// Errors: a 403 ForbiddenException naming what is wrong (missing header, unknown key, a
/// date too far from now, wrong region or service, a signature that does not match).
pub fn verify(
    creds: &Credentials,
    region: &str,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    now: OffsetDateTime,
) -> Result<(), ApiError> {
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
    let secret = creds.keys.get(auth.access_key_id).ok_or_else(|| {
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
            auth.region
        )));
    }
    if !auth.signed_headers.contains(&"host") {
        return Err(ApiError::forbidden("The host header must be signed"));
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

    let canonical = canonical_request(method, uri, headers, &auth.signed_headers, body)
        .ok_or_else(|| ApiError::forbidden("A signed header is missing from the request"))?;
    let scope = format!(
        "{}/{}/{}/aws4_request",
        auth.date, auth.region, auth.service
    );
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let mut key = hmac(format!("AWS4{secret}").as_bytes(), auth.date.as_bytes());
    for part in [auth.region, auth.service, "aws4_request"] {
        key = hmac(&key, part.as_bytes());
    }
    let expected = hex::encode(hmac(&key, string_to_sign.as_bytes()));
    if !constant_time_eq(expected.as_bytes(), auth.signature.as_bytes()) {
        return Err(ApiError::forbidden(
            "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.",
        ));
    }
    Ok(())
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
    body: &[u8],
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
    let payload_hash = hex::encode(Sha256::digest(body));
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
            b"",
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
    fn credentials_debug_output_hides_secrets() {
        let c = Credentials::single("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY");
        let shown = format!("{c:?}");
        assert!(shown.contains("AKIDEXAMPLE"));
        assert!(!shown.contains("wJalr"));
    }
}

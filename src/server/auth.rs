//! SigV4 verification of incoming requests (signing name `mobiletargeting`).
//!
//! The canonical request is rebuilt exactly as aws-sigv4 and botocore build it for a
//! non-S3 service: the path normalized and percent-encoded a second time, query pairs decoded,
//! re-encoded and sorted, the signed headers trimmed, and the payload's SHA-256.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, Method, Uri};
use hmac::{Hmac, KeyInit, Mac};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha2::{Digest, Sha256};
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};

use super::error::ApiError;

/// The service name in the credential scope of Pinpoint's requests (Customer Profiles':
/// `profile`, see [`super::api::Api::signing_name`]).
pub const SIGNING_NAME: &str = super::api::Api::Pinpoint.signing_name();
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

/// Access key id → secret access key and access level, and the signing keys derived from
/// them (shared by clones).
#[derive(Clone, Default)]
pub struct Credentials {
    keys: HashMap<String, (String, Access)>,
    signing_keys: Arc<SigningKeys>,
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
        Self {
            keys,
            signing_keys: Arc::default(),
        }
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
        Ok(Self {
            keys,
            signing_keys: Arc::default(),
        })
    }
}

/// The parts of an `Authorization: AWS4-HMAC-SHA256 …` header.
struct Authorization<'a> {
    access_key_id: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
    /// `SignedHeaders` as sent: names apart by `;`.
    signed_headers: &'a str,
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
        signed_headers: signed?,
        signature: signature?,
    };
    (scope.next()? == "aws4_request" && scope.next().is_none()).then_some(auth)
}

/// What the Authorization header says, checked before anything else of the request is
/// read: its form, the key, the scope, the date and the list of signed headers. Borrows
/// the request's headers and the credentials: checking a request copies nothing.
pub struct Checked<'a> {
    access_key_id: &'a str,
    secret: &'a str,
    pub access: Access,
    date: &'a str,
    region: &'a str,
    /// Checked: at most [`MAX_SIGNED_HEADERS`] distinct lowercase names, sorted, `host`
    /// among them.
    signed_headers: &'a str,
    signature: &'a str,
    amz_date: &'a str,
    /// The service the credential scope names (checked: the one the request's path is for).
    service: &'static str,
    signing_keys: &'a SigningKeys,
}

impl std::fmt::Debug for Checked<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret.
        f.debug_struct("Checked")
            .field("access_key_id", &self.access_key_id)
            .field("access", &self.access)
            .field("date", &self.date)
            .field("region", &self.region)
            .field("signed_headers", &self.signed_headers)
            .finish_non_exhaustive()
    }
}

/// Checks everything about a request's signature that does not need its body: cheap and
/// bounded, so an unauthenticated request costs no more than reading its headers.
///
/// Errors: a 403 ForbiddenException naming what is wrong (missing header, unknown key, a
/// date too far from now, wrong region or service, signed headers no client sends).
pub fn precheck<'a>(
    creds: &'a Credentials,
    region: &str,
    service: &'static str,
    headers: &'a HeaderMap,
    now: OffsetDateTime,
) -> Result<Checked<'a>, ApiError> {
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
    if auth.service != service {
        return Err(ApiError::forbidden(format!(
            "Credential should be scoped to correct service: '{service}'"
        )));
    }
    if auth.region != region {
        return Err(ApiError::forbidden(format!(
            "Credential should be scoped to a valid region: this server serves '{region}', the request was signed for '{}'",
            crate::text::safe(auth.region)
        )));
    }
    let names = || auth.signed_headers.split(';');
    let count = names().count();
    if count > MAX_SIGNED_HEADERS {
        return Err(ApiError::forbidden(format!(
            "SignedHeaders names {count} headers; at most {MAX_SIGNED_HEADERS} are accepted"
        )));
    }
    let mut previous: Option<&str> = None;
    for name in names() {
        if name.is_empty()
            || name.bytes().any(|b| b.is_ascii_uppercase())
            || previous.is_some_and(|p| p >= name)
        {
            return Err(ApiError::forbidden(
                "SignedHeaders must list distinct lowercase header names in sorted order",
            ));
        }
        previous = Some(name);
    }
    if !names().any(|n| n == "host") {
        return Err(ApiError::forbidden("The host header must be signed"));
    }
    let signed_bytes: usize = names()
        .flat_map(|n| headers.get_all(n).iter())
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
        access_key_id: auth.access_key_id,
        secret,
        access: *access,
        date: auth.date,
        region: auth.region,
        signed_headers: auth.signed_headers,
        signature: auth.signature,
        amz_date,
        service,
        signing_keys: &creds.signing_keys,
    })
}

impl Checked<'_> {
    /// The access key id, for logs.
    pub fn key(&self) -> &str {
        self.access_key_id
    }

    /// Verifies the signature over the request; `payload_hash` is the hex SHA-256 of the
    /// body. The canonical request is hashed as it is written, never held whole; the
    /// signing key comes from [`SigningKeys`].
    ///
    /// Errors: a 403 ForbiddenException when the signature does not match.
    pub fn verify(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        payload_hash: &str,
    ) -> Result<(), ApiError> {
        let mut canonical = Sha256::new();
        write_canonical_request(
            &mut canonical,
            method,
            uri,
            headers,
            self.signed_headers,
            payload_hash,
        )
        .ok_or_else(|| ApiError::forbidden("A signed header is missing from the request"))?;
        let canonical = hex_32(&canonical.finalize());
        let mut mac = self.signing_keys.mac(
            self.access_key_id,
            self.secret,
            self.date,
            self.region,
            self.service,
        );
        // The string to sign: algorithm, time, scope, and the canonical request's hash.
        for part in [
            "AWS4-HMAC-SHA256\n",
            self.amz_date,
            "\n",
            self.date,
            "/",
            self.region,
            "/",
            self.service,
            "/aws4_request\n",
        ] {
            mac.update(part.as_bytes());
        }
        mac.update(&canonical);
        let expected = hex_32(&mac.finalize().into_bytes());
        if !constant_time_eq(&expected, self.signature.as_bytes()) {
            return Err(ApiError::forbidden(
                "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.",
            ));
        }
        Ok(())
    }
}

/// The SHA-256 of nothing, in hex: the payload hash of every request without a body.
const EMPTY_PAYLOAD_HASH: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// The hex SHA-256 of a body, as the canonical request carries it.
pub fn payload_hash(body: &[u8]) -> Cow<'static, str> {
    if body.is_empty() {
        return Cow::Borrowed(EMPTY_PAYLOAD_HASH);
    }
    Cow::Owned(hex::encode(Sha256::digest(body)))
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
    let service = super::api::Api::of_path(uri.path()).signing_name();
    precheck(creds, region, service, headers, now)?.verify(
        method,
        uri,
        headers,
        &payload_hash(body),
    )
}

/// The most signing keys [`SigningKeys`] holds: a key a day per access key, with room for
/// many keys and for yesterday's and tomorrow's dates (a request may be signed up to 15
/// minutes either side of midnight).
pub const SIGNING_KEYS: usize = 64;

/// Signing keys derived from secrets, so a request costs one HMAC (over its string to sign)
/// instead of five: a key depends only on the secret, the date, the region and the service,
/// and a client signs a whole day's requests with the same one.
///
/// Guarantees: a key is reused only for the same access key id, secret, date, region and
/// service, so a rotated secret, another day, region or service each derive a new one; at
/// most [`SIGNING_KEYS`] are held, the oldest replaced first. Only requests that passed
/// [`precheck`] reach it (a known key, this server's region and service, a date within 15
/// minutes of now), so a stranger cannot fill it.
#[derive(Default)]
pub struct SigningKeys {
    slots: Mutex<Slots>,
}

#[derive(Default)]
struct Slots {
    held: Vec<Slot>,
    /// The slot replaced next once all are taken.
    next: usize,
}

struct Slot {
    access_key_id: Box<str>,
    secret: Box<str>,
    date: Box<str>,
    region: Box<str>,
    service: Box<str>,
    /// An HMAC keyed with the signing key (its inner and outer pads already hashed).
    mac: Hmac<Sha256>,
}

impl SigningKeys {
    /// An HMAC-SHA256 keyed with the signing key of `secret` for `date` (`YYYYMMDD`),
    /// `region` and `service`, ready for the string to sign.
    pub fn mac(
        &self,
        access_key_id: &str,
        secret: &str,
        date: &str,
        region: &str,
        service: &str,
    ) -> Hmac<Sha256> {
        // Not constant-time: every field compared is the server's own (a secret from the
        // credentials file) or checked against it already, never a guess of a caller's.
        let same = |s: &Slot| {
            *s.date == *date
                && *s.access_key_id == *access_key_id
                && *s.region == *region
                && *s.service == *service
                && *s.secret == *secret
        };
        if let Some(s) = self.lock().held.iter().find(|s| same(s)) {
            return s.mac.clone();
        }
        // Derived outside the lock: other requests keep their keys meanwhile.
        let mac = derive_signing_key(secret, date, region, service);
        let mut slots = self.lock();
        if !slots.held.iter().any(same) {
            let slot = Slot {
                access_key_id: access_key_id.into(),
                secret: secret.into(),
                date: date.into(),
                region: region.into(),
                service: service.into(),
                mac: mac.clone(),
            };
            if slots.held.len() < SIGNING_KEYS {
                slots.held.push(slot);
            } else {
                let i = slots.next;
                slots.held[i] = slot;
                slots.next = (i + 1) % SIGNING_KEYS;
            }
        }
        mac
    }

    /// How many keys are held.
    pub fn len(&self) -> usize {
        self.lock().held.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// SigV4's key derivation: HMACs of the date, region, service and `aws4_request`, starting
/// from `AWS4` + the secret; the result keys an HMAC.
fn derive_signing_key(secret: &str, date: &str, region: &str, service: &str) -> Hmac<Sha256> {
    let mut key = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    for part in [region, service, "aws4_request"] {
        key = hmac(&key, part.as_bytes());
    }
    <Hmac<Sha256> as KeyInit>::new_from_slice(&key).expect("HMAC takes any key length")
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// 32 bytes in lowercase hex, on the stack.
fn hex_32(bytes: &[u8]) -> [u8; 64] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 64];
    for (i, b) in bytes.iter().take(32).enumerate() {
        out[2 * i] = DIGITS[usize::from(b >> 4)];
        out[2 * i + 1] = DIGITS[usize::from(b & 0x0f)];
    }
    out
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Where a canonical request is written: a running hash when verifying, bytes in tests.
trait Sink {
    fn put(&mut self, bytes: &[u8]);
}

impl Sink for Sha256 {
    fn put(&mut self, bytes: &[u8]) {
        Digest::update(self, bytes);
    }
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// Writes the SigV4 canonical request to `out`; `None` when a signed header is absent.
/// `signed` is the checked `SignedHeaders` (names apart by `;`).
fn write_canonical_request(
    out: &mut impl Sink,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    signed: &str,
    payload_hash: &str,
) -> Option<()> {
    out.put(method.as_str().as_bytes());
    out.put(b"\n");
    let path = normalize_path(uri.path());
    for piece in utf8_percent_encode(&path, SIGV4_PATH_SET) {
        out.put(piece.as_bytes());
    }
    out.put(b"\n");

    if let Some(query) = uri.query().filter(|q| !q.is_empty()) {
        let mut pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
            .map(|(k, v)| {
                (
                    utf8_percent_encode(&k, SIGV4_SET).to_string(),
                    utf8_percent_encode(&v, SIGV4_SET).to_string(),
                )
            })
            .collect();
        pairs.sort();
        for (i, (k, v)) in pairs.iter().enumerate() {
            if i > 0 {
                out.put(b"&");
            }
            out.put(k.as_bytes());
            out.put(b"=");
            out.put(v.as_bytes());
        }
    }
    out.put(b"\n");

    // Each signed header: its values trimmed, runs of blanks made one space, joined by `,`.
    for name in signed.split(';') {
        let mut values = headers.get_all(name).iter().peekable();
        values.peek()?;
        out.put(name.as_bytes());
        out.put(b":");
        for (i, value) in values.enumerate() {
            if i > 0 {
                out.put(b",");
            }
            let value = String::from_utf8_lossy(value.as_bytes());
            for (j, word) in value.split_whitespace().enumerate() {
                if j > 0 {
                    out.put(b" ");
                }
                out.put(word.as_bytes());
            }
        }
        out.put(b"\n");
    }
    out.put(b"\n");
    out.put(signed.as_bytes());
    out.put(b"\n");
    out.put(payload_hash.as_bytes());
    Some(())
}

/// Removes `.` and `..` segments and duplicate slashes, as the signers do before encoding.
fn normalize_path(path: &str) -> Cow<'_, str> {
    if !path.split('/').any(|s| s == "." || s == "..") && !path.contains("//") {
        return Cow::Borrowed(if path.is_empty() { "/" } else { path });
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
    Cow::Owned(joined)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canonical_request(
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        signed: &str,
        payload_hash: &str,
    ) -> Option<String> {
        let mut out = Vec::new();
        write_canonical_request(&mut out, method, uri, headers, signed, payload_hash)?;
        String::from_utf8(out).ok()
    }

    /// A string signed with `mac`, in hex.
    fn tag(mac: Hmac<Sha256>, message: &str) -> String {
        let mut mac = mac;
        mac.update(message.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// A GetSegment request signed by botocore (SigV4Auth) for `AKIDEXAMPLE` at `amz_date`.
    fn botocore_request(amz_date: &str, signature: &str) -> (Uri, HeaderMap) {
        let mut h = HeaderMap::new();
        h.insert("host", "127.0.0.1:4601".parse().unwrap());
        h.insert("x-amz-date", amz_date.parse().unwrap());
        let auth = format!(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/{}/us-east-1/mobiletargeting/aws4_request, SignedHeaders=host;x-amz-date, Signature={signature}",
            &amz_date[..8]
        );
        h.insert("authorization", auth.parse().unwrap());
        ("/v1/apps/app1/segments/seg1".parse().unwrap(), h)
    }

    fn at(amz_date: &str) -> OffsetDateTime {
        PrimitiveDateTime::parse(
            amz_date,
            format_description!("[year][month][day]T[hour][minute][second]Z"),
        )
        .unwrap()
        .assume_utc()
    }

    /// The signatures botocore 1.44 gives GetSegment of app1/seg1 with `old-secret-0123`
    /// on either side of midnight, and with `new-secret-4567` before it.
    const BEFORE_MIDNIGHT: (&str, &str) = (
        "20260314T235900Z",
        "4242e485957a25f089867b631d9f36d8541fdc4b89c4fb8b8744eb773bae20ac",
    );
    const AFTER_MIDNIGHT: (&str, &str) = (
        "20260315T000100Z",
        "c70f2b358b1d27d66f070f39f7ec7019b33d7bc0474023ff633e290cdf242975",
    );
    const ROTATED_BEFORE_MIDNIGHT: &str =
        "e3736f37e8e955f709f8139b19833e9bd57a92758fb6cf9bc7795b390e9421d5";

    fn check(creds: &Credentials, (amz_date, signature): (&str, &str)) -> Result<(), ApiError> {
        let (uri, headers) = botocore_request(amz_date, signature);
        verify(
            creds,
            "us-east-1",
            &Method::GET,
            &uri,
            &headers,
            b"",
            at(amz_date),
        )
    }

    #[test]
    fn a_cached_signing_key_gives_the_aws_test_suite_signature() {
        // get-vanilla from the SigV4 test suite: its string to sign and its signature.
        let keys = SigningKeys::default();
        let string_to_sign = "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\nbb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63";
        let expected = "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31";
        let secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
        for _ in 0..2 {
            let mac = keys.mac("AKIDEXAMPLE", secret, "20150830", "us-east-1", "service");
            assert_eq!(tag(mac, string_to_sign), expected);
        }
        assert_eq!(keys.len(), 1, "the second signature reused the first key");
    }

    #[test]
    fn requests_signed_by_botocore_verify_on_either_side_of_midnight_with_the_key_cached() {
        let creds = Credentials::single("AKIDEXAMPLE", "old-secret-0123");
        for _ in 0..2 {
            check(&creds, BEFORE_MIDNIGHT).unwrap();
            check(&creds, AFTER_MIDNIGHT).unwrap();
        }
        assert_eq!(creds.signing_keys.len(), 2, "one key a day");
        let (date, signature) = BEFORE_MIDNIGHT;
        let mut wrong = signature.to_string();
        wrong.replace_range(..1, "5");
        let err = check(&creds, (date, wrong.as_str())).unwrap_err();
        assert!(err.message.contains("does not match"), "{}", err.message);
    }

    #[test]
    fn a_rotated_secret_never_reuses_the_key_of_the_old_one() {
        let old = Credentials::single("AKIDEXAMPLE", "old-secret-0123");
        check(&old, BEFORE_MIDNIGHT).unwrap();
        // The same access key id with a new secret, sharing the old one's cache.
        let rotated = old
            .clone()
            .with("AKIDEXAMPLE", "new-secret-4567", Access::ReadWrite);
        assert!(Arc::ptr_eq(&old.signing_keys, &rotated.signing_keys));
        let err = check(&rotated, BEFORE_MIDNIGHT).unwrap_err();
        assert!(err.message.contains("does not match"), "{}", err.message);
        check(&rotated, (BEFORE_MIDNIGHT.0, ROTATED_BEFORE_MIDNIGHT)).unwrap();
        // And the old secret's key is still its own.
        check(&old, BEFORE_MIDNIGHT).unwrap();
        let err = check(&old, (BEFORE_MIDNIGHT.0, ROTATED_BEFORE_MIDNIGHT)).unwrap_err();
        assert!(err.message.contains("does not match"), "{}", err.message);
    }

    #[test]
    fn a_cached_key_is_reused_only_for_the_same_key_secret_date_region_and_service() {
        let keys = SigningKeys::default();
        let base = ("AKID", "secret", "20260314", "us-east-1", "mobiletargeting");
        let variants = [
            base,
            (
                "AKID2",
                "secret",
                "20260314",
                "us-east-1",
                "mobiletargeting",
            ),
            (
                "AKID",
                "secret2",
                "20260314",
                "us-east-1",
                "mobiletargeting",
            ),
            ("AKID", "secret", "20260315", "us-east-1", "mobiletargeting"),
            ("AKID", "secret", "20260314", "eu-west-1", "mobiletargeting"),
            ("AKID", "secret", "20260314", "us-east-1", "s3"),
        ];
        // Warm the cache with every variant, then ask for each again: each answer is the
        // key derived from its own fields, never another's.
        for round in 0..2 {
            for (id, secret, date, region, service) in variants {
                let cached = tag(keys.mac(id, secret, date, region, service), "x");
                let fresh = tag(derive_signing_key(secret, date, region, service), "x");
                assert_eq!(
                    cached, fresh,
                    "round {round}: {id} {date} {region} {service}"
                );
            }
        }
        assert_eq!(keys.len(), variants.len());
        let tags: std::collections::HashSet<String> = variants
            .iter()
            .map(|(id, s, d, r, v)| tag(keys.mac(id, s, d, r, v), "x"))
            .collect();
        // AKID and AKID2 share a secret: the same key, as SigV4 derives it; every other
        // field changes the key.
        assert_eq!(tags.len(), variants.len() - 1);
    }

    #[test]
    fn the_signing_key_cache_is_bounded_and_replaces_its_oldest_first() {
        let keys = SigningKeys::default();
        let date = |i: usize| format!("2026{:04}", i);
        for i in 0..SIGNING_KEYS * 3 {
            keys.mac("AKID", "secret", &date(i), "us-east-1", "mobiletargeting");
            assert!(keys.len() <= SIGNING_KEYS);
        }
        assert_eq!(keys.len(), SIGNING_KEYS);
        // The last SIGNING_KEYS dates are held; the first is not.
        let held = |d: &str| {
            keys.lock()
                .held
                .iter()
                .any(|s| &*s.date == d && &*s.secret == "secret")
        };
        assert!(held(&date(SIGNING_KEYS * 3 - 1)));
        assert!(held(&date(SIGNING_KEYS * 2)));
        assert!(!held(&date(SIGNING_KEYS * 2 - 1)));
        assert!(!held(&date(0)));
        // A key asked for again after being replaced is derived again, correctly.
        let again = tag(
            keys.mac("AKID", "secret", &date(0), "us-east-1", "mobiletargeting"),
            "x",
        );
        let fresh = tag(
            derive_signing_key("secret", &date(0), "us-east-1", "mobiletargeting"),
            "x",
        );
        assert_eq!(again, fresh);
        assert_eq!(keys.len(), SIGNING_KEYS);
    }

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
            "host;x-amz-date",
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
            precheck(&creds, "us-east-1", SIGNING_NAME, &h, now).map(|_| ())
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

//! Where import jobs read and export jobs write: S3 (through `aws-sdk-s3` and the standard
//! credential, region and endpoint chain, so `AWS_ENDPOINT_URL_S3` points at any
//! S3-compatible store, addressed path-style then), or `file://` URLs, accepted only inside
//! the folders the server was told it may use (`serve --import-root`), so a caller cannot
//! make the server read or write anywhere else.

use std::path::{Path, PathBuf};
use std::pin::Pin;

use tokio::io::AsyncBufRead;

/// A location named by a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    S3 { bucket: String, key: String },
    File(PathBuf),
}

/// One object (file) to read.
#[derive(Debug, Clone)]
pub struct Object {
    /// As shown in failures: `s3://bucket/key` or the file path.
    pub name: String,
    pub location: Location,
    pub size: u64,
}

pub type Reader = Pin<Box<dyn AsyncBufRead + Send>>;

/// Parses `s3://bucket/key` or `file:///absolute/path`.
pub fn parse(url: &str) -> Result<Location, String> {
    if let Some(rest) = url.strip_prefix("s3://") {
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(format!("{url}: no bucket; expected s3://bucket/key"));
        }
        return Ok(Location::S3 {
            bucket: bucket.to_string(),
            key: key.to_string(),
        });
    }
    if let Some(rest) = url.strip_prefix("file://") {
        let path = percent_encoding::percent_decode_str(rest)
            .decode_utf8()
            .map_err(|_| format!("{url}: not UTF-8 once decoded"))?;
        if !path.starts_with('/') {
            return Err(format!(
                "{url}: a file URL names an absolute path (file:///…)"
            ));
        }
        return Ok(Location::File(PathBuf::from(path.as_ref())));
    }
    Err(format!(
        "{url}: expected an s3://bucket/key URL (or file:///path inside the server's --import-root)"
    ))
}

/// What a server may reach.
#[derive(Debug, Clone, Default)]
pub struct Objects {
    /// Folders `file://` URLs may name (canonical).
    pub roots: Vec<PathBuf>,
    /// The S3 client configuration; `None`: the standard chain, at first use.
    pub s3_config: Option<aws_sdk_s3::Config>,
    pub region: String,
    client: std::sync::Arc<tokio::sync::OnceCell<aws_sdk_s3::Client>>,
}

fn s3_error<E: std::error::Error>(what: &str, e: E) -> String {
    use std::fmt::Write as _;
    let mut text = format!("{what}: {e}");
    let mut source = e.source();
    while let Some(s) = source {
        let _ = write!(text, ": {s}");
        source = s.source();
    }
    text
}

impl Objects {
    pub fn new(roots: Vec<PathBuf>, s3_config: Option<aws_sdk_s3::Config>, region: &str) -> Self {
        Self {
            roots: roots
                .into_iter()
                .map(|r| std::fs::canonicalize(&r).unwrap_or(r))
                .collect(),
            s3_config,
            region: region.to_string(),
            client: Default::default(),
        }
    }

    async fn client(&self) -> aws_sdk_s3::Client {
        self.client
            .get_or_init(|| async {
                if let Some(c) = &self.s3_config {
                    return aws_sdk_s3::Client::from_conf(c.clone());
                }
                let region = aws_config::meta::region::RegionProviderChain::default_provider()
                    .or_else(aws_config::Region::new(self.region.clone()));
                let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
                    .region(region)
                    .load()
                    .await;
                let custom = ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"]
                    .iter()
                    .any(|v| std::env::var_os(v).is_some_and(|v| !v.is_empty()));
                let conf = aws_sdk_s3::config::Builder::from(&shared)
                    .force_path_style(custom)
                    .build();
                aws_sdk_s3::Client::from_conf(conf)
            })
            .await
            .clone()
    }

    /// A `file://` path, if it lies inside a root.
    fn allowed(&self, path: &Path) -> Result<PathBuf, String> {
        if self.roots.is_empty() {
            return Err(format!(
                "file://{}: this server reads and writes file:// URLs only inside --import-root folders, and has none",
                path.display()
            ));
        }
        // The deepest existing ancestor, resolved: links cannot lead out of a root.
        let mut existing = path.to_path_buf();
        let mut rest = Vec::new();
        while !existing.exists() {
            match (existing.parent(), existing.file_name()) {
                (Some(p), Some(n)) => {
                    rest.push(n.to_os_string());
                    existing = p.to_path_buf();
                }
                _ => break,
            }
        }
        let mut real =
            std::fs::canonicalize(&existing).map_err(|e| format!("{}: {e}", path.display()))?;
        for n in rest.iter().rev() {
            if n == ".." || n == "." {
                return Err(format!("{}: `.` and `..` are not allowed", path.display()));
            }
            real.push(n);
        }
        if self.roots.iter().any(|r| real.starts_with(r)) {
            Ok(real)
        } else {
            Err(format!(
                "file://{}: outside the server's --import-root folders",
                path.display()
            ))
        }
    }

    /// The objects an import URL names: one object, or every object under a folder
    /// (prefix), in key order.
    pub async fn list(&self, loc: &Location) -> Result<Vec<Object>, String> {
        match loc {
            Location::File(path) => {
                let path = self.allowed(path)?;
                let meta =
                    std::fs::metadata(&path).map_err(|e| format!("{}: {e}", path.display()))?;
                let mut out = Vec::new();
                if meta.is_file() {
                    out.push(file_object(&path, meta.len()));
                } else {
                    walk(&path, &mut out).map_err(|e| format!("{}: {e}", path.display()))?;
                    out.sort_by(|a, b| a.name.cmp(&b.name));
                }
                Ok(out)
            }
            Location::S3 { bucket, key } => {
                let client = self.client().await;
                if !key.is_empty() && !key.ends_with('/') {
                    match client.head_object().bucket(bucket).key(key).send().await {
                        Ok(h) => {
                            return Ok(vec![Object {
                                name: format!("s3://{bucket}/{key}"),
                                location: loc.clone(),
                                size: h.content_length().unwrap_or(0).max(0) as u64,
                            }])
                        }
                        Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => {}
                        Err(e) => return Err(s3_error(&format!("s3://{bucket}/{key}"), e)),
                    }
                }
                let prefix = if key.is_empty() || key.ends_with('/') {
                    key.clone()
                } else {
                    format!("{key}/")
                };
                let mut out = Vec::new();
                let mut token = None;
                loop {
                    let page = client
                        .list_objects_v2()
                        .bucket(bucket)
                        .prefix(&prefix)
                        .set_continuation_token(token.take())
                        .send()
                        .await
                        .map_err(|e| s3_error(&format!("s3://{bucket}/{prefix}"), e))?;
                    for o in page.contents() {
                        let Some(k) = o.key() else { continue };
                        if k.ends_with('/') {
                            continue;
                        }
                        out.push(Object {
                            name: format!("s3://{bucket}/{k}"),
                            location: Location::S3 {
                                bucket: bucket.clone(),
                                key: k.to_string(),
                            },
                            size: o.size().unwrap_or(0).max(0) as u64,
                        });
                    }
                    match page.next_continuation_token() {
                        Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_string()),
                        _ => break,
                    }
                }
                Ok(out)
            }
        }
    }

    /// Opens an object for reading, streamed.
    pub async fn open(&self, obj: &Object) -> Result<Reader, String> {
        match &obj.location {
            Location::File(path) => {
                let f = tokio::fs::File::open(path)
                    .await
                    .map_err(|e| format!("{}: {e}", obj.name))?;
                Ok(Box::pin(tokio::io::BufReader::with_capacity(256 * 1024, f)))
            }
            Location::S3 { bucket, key } => {
                let out = self
                    .client()
                    .await
                    .get_object()
                    .bucket(bucket)
                    .key(key)
                    .send()
                    .await
                    .map_err(|e| s3_error(&obj.name, e))?;
                Ok(Box::pin(tokio::io::BufReader::with_capacity(
                    256 * 1024,
                    out.body.into_async_read(),
                )))
            }
        }
    }

    /// Writes one object under an export prefix.
    pub async fn put(
        &self,
        prefix: &Location,
        name: &str,
        bytes: Vec<u8>,
    ) -> Result<String, String> {
        match prefix {
            Location::File(dir) => {
                let dir = self.allowed(dir)?;
                let path = dir.join(name);
                if let Some(p) = path.parent() {
                    tokio::fs::create_dir_all(p)
                        .await
                        .map_err(|e| format!("{}: {e}", p.display()))?;
                }
                tokio::fs::write(&path, bytes)
                    .await
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                Ok(path.display().to_string())
            }
            Location::S3 { bucket, key } => {
                let key = if key.is_empty() || key.ends_with('/') {
                    format!("{key}{name}")
                } else {
                    format!("{key}/{name}")
                };
                self.client()
                    .await
                    .put_object()
                    .bucket(bucket)
                    .key(&key)
                    .content_type("application/gzip")
                    .body(bytes.into())
                    .send()
                    .await
                    .map_err(|e| s3_error(&format!("s3://{bucket}/{key}"), e))?;
                Ok(format!("s3://{bucket}/{key}"))
            }
        }
    }
}

fn file_object(path: &Path, size: u64) -> Object {
    Object {
        name: path.display().to_string(),
        location: Location::File(path.to_path_buf()),
        size,
    }
}

/// How deep a folder named by an import may nest.
pub const MAX_DEPTH: usize = 32;

/// Every regular file under `dir`, without recursion (a deep tree cannot exhaust the
/// stack); deeper than [`MAX_DEPTH`] levels is an error.
fn walk(dir: &Path, out: &mut Vec<Object>) -> std::io::Result<()> {
    let mut stack = vec![(dir.to_path_buf(), 0usize)];
    while let Some((d, depth)) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let entry = entry?;
            let t = entry.file_type()?;
            let path = entry.path();
            if t.is_dir() {
                if depth + 1 > MAX_DEPTH {
                    return Err(std::io::Error::other(format!(
                        "folders nest deeper than {MAX_DEPTH} levels"
                    )));
                }
                stack.push((path, depth + 1));
            } else if t.is_file() {
                out.push(file_object(&path, entry.metadata()?.len()));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_file_urls_stay_inside_the_roots() {
        assert_eq!(
            parse("s3://b/a/c.csv").unwrap(),
            Location::S3 {
                bucket: "b".into(),
                key: "a/c.csv".into()
            }
        );
        assert!(parse("https://x").is_err());
        assert!(parse("file://relative").is_err());
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("a.csv"), "x").unwrap();
        let o = Objects::new(vec![root.path().to_path_buf()], None, "us-east-1");
        assert!(o.allowed(&root.path().join("a.csv")).is_ok());
        assert!(o.allowed(&root.path().join("new/b.gz")).is_ok());
        assert!(o.allowed(Path::new("/etc/passwd")).is_err());
        assert!(o.allowed(&root.path().join("../escape")).is_err());
        let none = Objects::new(vec![], None, "us-east-1");
        assert!(none.allowed(&root.path().join("a.csv")).is_err());
    }
}

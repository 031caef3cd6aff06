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
    /// The size the listing reported: no more is ever read.
    pub size: u64,
    /// For a file: the root it lies in, and its path relative to the root (opened from a
    /// handle of the root, following no link).
    beneath: Option<(PathBuf, PathBuf)>,
    /// For an S3 object: the ETag the listing saw; the read is pinned to it (`If-Match`).
    etag: Option<String>,
}

pub type Reader = Pin<Box<dyn AsyncBufRead + Send>>;

/// Parses `s3://bucket/key` or `file:///absolute/path`. A control character is refused,
/// in either, or percent-encoded in a file URL (which is decoded; an S3 key is taken as
/// written): it would name a key or a folder that a log line shows broken. The URL is not
/// echoed then.
pub fn parse(url: &str) -> Result<Location, String> {
    let control = |text: &str| {
        text.chars().find(|c| c.is_control()).map(|c| {
            format!(
                "a URL holds no control character, written or percent-encoded (found U+{:04X})",
                c as u32
            )
        })
    };
    if let Some(e) = control(url) {
        return Err(e);
    }
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
        if let Some(e) = control(&path) {
            return Err(e);
        }
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
    /// `(bucket, key prefix)` jobs may name; empty: any.
    s3_allow: Vec<(String, String)>,
    client: std::sync::Arc<tokio::sync::OnceCell<aws_sdk_s3::Client>>,
}

fn s3_error<E: std::error::Error + 'static>(what: &str, e: E) -> String {
    format!("{what}: {}", crate::text::error_chain(&e))
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
            s3_allow: Vec::new(),
            client: Default::default(),
        }
    }

    /// Only these buckets (or `bucket/prefix`es) may be named by jobs.
    pub fn with_s3_allow(mut self, allow: &[String]) -> Self {
        self.s3_allow = allow
            .iter()
            .map(|a| {
                let a = a.strip_prefix("s3://").unwrap_or(a);
                let (b, p) = a.split_once('/').unwrap_or((a, ""));
                (b.to_string(), p.to_string())
            })
            .collect();
        self
    }

    /// Whether jobs may name `s3://bucket/key` (a prefix `p` allows `p` itself and what is
    /// under `p/`, or under `p` when it ends with `/`).
    fn s3_allowed(&self, bucket: &str, key: &str) -> Result<(), String> {
        let inside = |(b, p): &(String, String)| {
            b == bucket
                && (p.is_empty()
                    || key == p.trim_end_matches('/')
                    || key.starts_with(&format!("{}/", p.trim_end_matches('/'))))
        };
        if self.s3_allow.is_empty() || self.s3_allow.iter().any(inside) {
            Ok(())
        } else {
            Err(format!(
                "s3://{bucket}/{key}: outside the buckets and prefixes this server may use (--s3-allow)"
            ))
        }
    }

    async fn client(&self) -> aws_sdk_s3::Client {
        self.client
            .get_or_init(|| async {
                if let Some(c) = &self.s3_config {
                    return aws_sdk_s3::Client::from_conf(c.clone());
                }
                crate::audience::s3::client(&self.region).await
            })
            .await
            .clone()
    }

    /// A `file://` path inside a root: the root, and the path relative to it.
    fn beneath(&self, path: &Path) -> Result<(PathBuf, PathBuf), String> {
        let real = self.allowed(path)?;
        let root = self
            .roots
            .iter()
            .filter(|r| real.starts_with(r))
            .max_by_key(|r| r.as_os_str().len())
            .ok_or_else(|| {
                format!(
                    "file://{}: outside the server's --import-root folders",
                    path.display()
                )
            })?;
        let rel = real
            .strip_prefix(root)
            .unwrap_or(Path::new(""))
            .to_path_buf();
        Ok((root.clone(), rel))
    }

    /// A `file://` path, if it lies inside a root.
    fn allowed(&self, path: &Path) -> Result<PathBuf, String> {
        if self.roots.is_empty() {
            return Err(format!(
                "file://{}: this server reads and writes file:// URLs only inside --import-root folders, and has none",
                path.display()
            ));
        }
        let outside = || {
            format!(
                "file://{}: outside the server's --import-root folders",
                path.display()
            )
        };
        // Refused as written, before the file system is asked anything: `/etc/passwd/..`
        // would otherwise tell a file from a folder, or a missing path, outside every root.
        let text = path.as_os_str().as_encoded_bytes();
        if text.split(|b| *b == b'/').any(|c| c == b"." || c == b"..") {
            return Err(format!(
                "file://{}: `.` and `..` are not allowed",
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
        // Why a path outside every root cannot be resolved is not said: the answer is the
        // same as for any other path outside them.
        let mut real = std::fs::canonicalize(&existing).map_err(|e| {
            if self.roots.iter().any(|r| path.starts_with(r)) {
                format!("{}: {e}", path.display())
            } else {
                outside()
            }
        })?;
        for n in rest.iter().rev() {
            real.push(n);
        }
        if self.roots.iter().any(|r| real.starts_with(r)) {
            Ok(real)
        } else {
            Err(outside())
        }
    }

    /// The objects an import URL names: one object, or every object under a folder
    /// (prefix), in key order.
    pub async fn list(&self, loc: &Location) -> Result<Vec<Object>, String> {
        match loc {
            Location::File(path) => {
                let (root, rel) = self.beneath(path)?;
                let path = root.join(&rel);
                let meta = std::fs::symlink_metadata(&path)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                let mut out = Vec::new();
                if meta.is_file() {
                    out.push(file_object(&root, &path, meta.len()));
                } else if meta.is_dir() {
                    walk(&root, &path, &mut out).map_err(|e| format!("{}: {e}", path.display()))?;
                    out.sort_by(|a, b| a.name.cmp(&b.name));
                } else {
                    return Err(format!(
                        "{}: neither a regular file nor a folder",
                        path.display()
                    ));
                }
                Ok(out)
            }
            Location::S3 { bucket, key } => {
                self.s3_allowed(bucket, key)?;
                let client = self.client().await;
                if !key.is_empty() && !key.ends_with('/') {
                    match client.head_object().bucket(bucket).key(key).send().await {
                        Ok(h) => {
                            return Ok(vec![Object {
                                name: format!("s3://{bucket}/{key}"),
                                location: loc.clone(),
                                size: h.content_length().unwrap_or(0).max(0) as u64,
                                beneath: None,
                                etag: h.e_tag().map(String::from),
                            }])
                        }
                        Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => {}
                        Err(e) => return Err(s3_error(&format!("s3://{bucket}/{key}"), e)),
                    }
                }
                let prefix = crate::audience::s3::folder(key);
                let mut out = Vec::new();
                let mut pages = crate::audience::s3::listing(&client, bucket, &prefix).send();
                while let Some(page) = pages.next().await {
                    let page = page.map_err(|e| s3_error(&format!("s3://{bucket}/{prefix}"), e))?;
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
                            beneath: None,
                            etag: o.e_tag().map(String::from),
                        });
                    }
                }
                Ok(out)
            }
        }
    }

    /// Opens an object for reading, streamed.
    pub async fn open(&self, obj: &Object) -> Result<Reader, String> {
        match &obj.location {
            Location::File(_) => {
                let Some((root, rel)) = obj.beneath.clone() else {
                    return Err(format!("{}: not listed from a root", obj.name));
                };
                let f = tokio::task::spawn_blocking(move || beneath::open_file(&root, &rel))
                    .await
                    .map_err(|e| format!("{}: {e}", obj.name))?
                    .map_err(|e| format!("{}: {e}", obj.name))?;
                // No more than the listing saw (a file that grew since, or was swapped for
                // a larger one, is cut there).
                let f = tokio::io::AsyncReadExt::take(tokio::fs::File::from_std(f), obj.size);
                Ok(Box::pin(tokio::io::BufReader::with_capacity(256 * 1024, f)))
            }
            Location::S3 { bucket, key } => {
                self.s3_allowed(bucket, key)?;
                // Pinned to what the listing saw: an object replaced since is refused (412),
                // and no more than its listed size is read.
                let out = self
                    .client()
                    .await
                    .get_object()
                    .bucket(bucket)
                    .key(key)
                    .set_if_match(obj.etag.clone())
                    .send()
                    .await
                    .map_err(|e| {
                        if e.raw_response().is_some_and(|r| r.status().as_u16() == 412) {
                            format!(
                                "{}: replaced since the job listed it; run the import again",
                                obj.name
                            )
                        } else {
                            s3_error(&obj.name, e)
                        }
                    })?;
                let body = tokio::io::AsyncReadExt::take(out.body.into_async_read(), obj.size);
                Ok(Box::pin(tokio::io::BufReader::with_capacity(
                    256 * 1024,
                    body,
                )))
            }
        }
    }

    /// Writes one object under an export prefix, streamed from `file` (read from where it
    /// stands).
    pub async fn put(
        &self,
        prefix: &Location,
        name: &str,
        file: std::fs::File,
    ) -> Result<String, String> {
        match prefix {
            Location::File(dir) => {
                let (root, rel) = self.beneath(dir)?;
                let rel = rel.join(name);
                let shown = root.join(&rel).display().to_string();
                let written = shown.clone();
                tokio::task::spawn_blocking(move || beneath::create_file(&root, &rel, file))
                    .await
                    .map_err(|e| format!("{shown}: {e}"))?
                    .map_err(|e| format!("{shown}: {e}"))?;
                Ok(written)
            }
            Location::S3 { bucket, key } => {
                let key = if key.is_empty() || key.ends_with('/') {
                    format!("{key}{name}")
                } else {
                    format!("{key}/{name}")
                };
                self.s3_allowed(bucket, &key)?;
                let len = file.metadata().map_err(|e| e.to_string())?.len();
                let body = aws_sdk_s3::primitives::ByteStream::read_from()
                    .file(tokio::fs::File::from_std(file))
                    .length(aws_sdk_s3::primitives::Length::Exact(len))
                    .build()
                    .await
                    .map_err(|e| format!("s3://{bucket}/{key}: {e}"))?;
                self.client()
                    .await
                    .put_object()
                    .bucket(bucket)
                    .key(&key)
                    .content_type("application/gzip")
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| s3_error(&format!("s3://{bucket}/{key}"), e))?;
                Ok(format!("s3://{bucket}/{key}"))
            }
        }
    }
}

fn file_object(root: &Path, path: &Path, size: u64) -> Object {
    Object {
        name: path.display().to_string(),
        location: Location::File(path.to_path_buf()),
        size,
        etag: None,
        beneath: Some((
            root.to_path_buf(),
            path.strip_prefix(root).unwrap_or(path).to_path_buf(),
        )),
    }
}

/// Files opened and created from a handle of their root folder, one component at a time,
/// following no symbolic link: a link planted after a listing, or at an export's job folder
/// after its id was returned, is refused instead of leading out of the root.
mod beneath {
    use std::os::fd::OwnedFd;
    use std::path::{Component, Path};

    use rustix::fs::{fstat, mkdirat, openat, FileType, Mode, OFlags};

    fn invalid(what: &str) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, what.to_string())
    }

    /// The folder `rel` names under `root`, opened; with `create`, missing folders are made.
    fn folder(root: &Path, rel: &Path, create: bool) -> std::io::Result<OwnedFd> {
        let dir_flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let mut fd = openat(rustix::fs::CWD, root, dir_flags, Mode::empty())?;
        for c in rel.components() {
            let Component::Normal(name) = c else {
                return Err(invalid("only plain names may follow the root"));
            };
            if create {
                match mkdirat(&fd, name, Mode::from_raw_mode(0o755)) {
                    Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            fd = openat(&fd, name, dir_flags, Mode::empty()).map_err(|e| {
                if e == rustix::io::Errno::LOOP || e == rustix::io::Errno::NOTDIR {
                    invalid("a symbolic link or a file where a folder was expected")
                } else {
                    e.into()
                }
            })?;
        }
        Ok(fd)
    }

    fn split(rel: &Path) -> std::io::Result<(&Path, &std::ffi::OsStr)> {
        match (rel.parent(), rel.file_name()) {
            (Some(parent), Some(name)) => Ok((parent, name)),
            _ => Err(invalid("no file name")),
        }
    }

    /// Opens the regular file `rel` under `root` to read.
    pub fn open_file(root: &Path, rel: &Path) -> std::io::Result<std::fs::File> {
        let (parent, name) = split(rel)?;
        let dir = folder(root, parent, false)?;
        let fd = openat(
            &dir,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| {
            if e == rustix::io::Errno::LOOP {
                invalid("a symbolic link; links are not followed")
            } else {
                e.into()
            }
        })?;
        if FileType::from_raw_mode(fstat(&fd)?.st_mode) != FileType::RegularFile {
            return Err(invalid("not a regular file"));
        }
        Ok(std::fs::File::from(fd))
    }

    /// Creates the file `rel` under `root` (its folders made as needed) and writes `bytes`:
    /// a file or link already there is refused, never written through.
    pub fn create_file(root: &Path, rel: &Path, mut from: std::fs::File) -> std::io::Result<()> {
        let (parent, name) = split(rel)?;
        let dir = folder(root, parent, true)?;
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let mode = Mode::from_raw_mode(0o644);
        let fd = match openat(&dir, name, flags, mode) {
            // A piece of an earlier run of the same job (a restart runs it again): the name
            // is removed (a link itself, never what it points to) and created afresh.
            Err(rustix::io::Errno::EXIST) => {
                rustix::fs::unlinkat(&dir, name, rustix::fs::AtFlags::empty())?;
                openat(&dir, name, flags, mode)?
            }
            other => other?,
        };
        let mut f = std::fs::File::from(fd);
        std::io::copy(&mut from, &mut f)?;
        f.sync_all()
    }
}

/// How deep a folder named by an import may nest (as `estimate` walks it).
pub use crate::audience::rows::MAX_DEPTH;

/// Every regular file under `dir`, without recursion (a deep tree cannot exhaust the
/// stack); deeper than [`MAX_DEPTH`] levels is an error.
fn walk(root: &Path, dir: &Path, out: &mut Vec<Object>) -> std::io::Result<()> {
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
                out.push(file_object(root, &path, entry.metadata()?.len()));
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
        for bad in [
            "file:///in/x\n2026 ERROR forged",
            "file:///in/x%0Ay",
            "s3://b/k\u{1b}[31m",
        ] {
            assert_eq!(
                parse(bad).unwrap_err(),
                format!(
                    "a URL holds no control character, written or percent-encoded (found U+{:04X})",
                    if bad.contains('\u{1b}') { 0x1b } else { 0x0a }
                ),
                "{bad:?}"
            );
        }
        // An S3 key is taken as written: `%0A` there is three characters of the key.
        assert!(parse("s3://b/a%0Ab").is_ok());
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

    #[test]
    fn a_path_outside_the_roots_tells_nothing_of_what_is_there() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("file"), "x").unwrap();
        std::fs::create_dir(outside.path().join("folder")).unwrap();
        let o = Objects::new(vec![root.path().to_path_buf()], None, "us-east-1");
        let at = |rel: &str| {
            let path = outside.path().join(rel);
            (path.clone(), o.allowed(&path).unwrap_err())
        };
        // A file, a folder, a missing path, and below a file: one answer, the same words.
        for rel in [
            "file",
            "folder",
            "missing/a.csv",
            "file/a.csv",
            "folder/new/b.gz",
        ] {
            let (path, err) = at(rel);
            assert_eq!(
                err,
                format!(
                    "file://{}: outside the server's --import-root folders",
                    path.display()
                )
            );
        }
        // `.` and `..` anywhere are refused as written, before anything is looked up.
        for rel in ["file/..", "missing/..", "folder/./x", "."] {
            let (path, err) = at(rel);
            assert_eq!(
                err,
                format!("file://{}: `.` and `..` are not allowed", path.display())
            );
        }
        let err = o.allowed(&root.path().join("in/../a.csv")).unwrap_err();
        assert!(err.ends_with("`.` and `..` are not allowed"), "{err}");
    }

    #[tokio::test]
    async fn a_file_swapped_for_a_link_after_the_listing_is_not_read_and_no_more_than_listed_is() {
        use tokio::io::AsyncReadExt as _;
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "TOKEN=sekrit\n").unwrap();
        std::fs::create_dir(root.path().join("in")).unwrap();
        std::fs::write(root.path().join("in/a.csv"), "ChannelType\n").unwrap();
        std::fs::write(root.path().join("in/b.csv"), "ChannelType\n").unwrap();
        let o = Objects::new(vec![root.path().to_path_buf()], None, "us-east-1");
        let url = format!("file://{}/in", root.path().display());
        let files = o.list(&parse(&url).unwrap()).await.unwrap();
        assert_eq!(files.len(), 2);
        // After the listing: a.csv becomes a link out of the root, b.csv grows.
        std::fs::remove_file(root.path().join("in/a.csv")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), root.path().join("in/a.csv"))
            .unwrap();
        std::fs::write(
            root.path().join("in/b.csv"),
            "ChannelType\nSMS,then a lot more\n",
        )
        .unwrap();
        let err = o.open(&files[0]).await.err().expect("the link is refused");
        assert!(err.contains("a symbolic link"), "{err}");
        assert!(!err.contains("sekrit"), "{err}");
        let mut text = String::new();
        o.open(&files[1])
            .await
            .unwrap()
            .read_to_string(&mut text)
            .await
            .unwrap();
        assert_eq!(text, "ChannelType\n", "no more than the listing saw");
        // A folder on the way swapped for a link is refused as well.
        std::fs::rename(root.path().join("in"), root.path().join("was")).unwrap();
        std::os::unix::fs::symlink(root.path().join("was"), root.path().join("in")).unwrap();
        assert!(o.open(&files[1]).await.is_err());
        // A FIFO is refused without blocking.
        let fifo = root.path().join("was/b.csv");
        std::fs::remove_file(&fifo).unwrap();
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a path made above.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        std::fs::remove_file(root.path().join("in")).unwrap();
        std::fs::rename(root.path().join("was"), root.path().join("in")).unwrap();
        let err = o.open(&files[1]).await.err().expect("a FIFO is refused");
        assert!(err.contains("not a regular file"), "{err}");
    }

    /// A piece's temporary file holding `bytes`, read from its start.
    fn piece(bytes: &[u8]) -> std::fs::File {
        use std::io::{Seek as _, Write as _};
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(bytes).unwrap();
        f.rewind().unwrap();
        f
    }

    #[tokio::test]
    async fn an_export_never_writes_through_a_link_planted_at_its_job_folder_or_piece() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let o = Objects::new(vec![root.path().to_path_buf()], None, "us-east-1");
        let prefix = parse(&format!("file://{}/out", root.path().display())).unwrap();
        o.put(&prefix, "job1/part-00000.gz", piece(b"one"))
            .await
            .unwrap();
        assert_eq!(
            std::fs::read(root.path().join("out/job1/part-00000.gz")).unwrap(),
            b"one"
        );
        // The same piece again (a job run again after a restart) replaces it.
        o.put(&prefix, "job1/part-00000.gz", piece(b"two"))
            .await
            .unwrap();
        assert_eq!(
            std::fs::read(root.path().join("out/job1/part-00000.gz")).unwrap(),
            b"two"
        );
        // A link planted where the job folder goes.
        std::os::unix::fs::symlink(outside.path(), root.path().join("out/job2")).unwrap();
        let err = o
            .put(&prefix, "job2/part-00000.gz", piece(b"x"))
            .await
            .unwrap_err();
        assert!(err.contains("symbolic link"), "{err}");
        // A link planted where the piece goes is replaced, not written through.
        std::fs::create_dir(root.path().join("out/job3")).unwrap();
        std::fs::write(outside.path().join("victim"), "keep").unwrap();
        std::os::unix::fs::symlink(
            outside.path().join("victim"),
            root.path().join("out/job3/part-00000.gz"),
        )
        .unwrap();
        o.put(&prefix, "job3/part-00000.gz", piece(b"x"))
            .await
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(outside.path().join("victim")).unwrap(),
            "keep"
        );
        assert!(
            std::fs::read_dir(outside.path()).unwrap().count() == 1,
            "nothing landed outside"
        );
    }
}

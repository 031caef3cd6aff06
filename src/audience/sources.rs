//! The sources of imported segments, fingerprinted: what `plan` compares with the
//! fingerprint recorded at the last import, so a changed file is imported again.
//!
//! A local file's fingerprint is its MD5 (what S3 gives as the ETag of an object uploaded in
//! one part); a folder's, the MD5 of its files' names and fingerprints. An `s3://` source's is
//! its ETag (HeadObject), or for a prefix, the MD5 of every object's key and ETag. S3 is read
//! with the standard AWS chain (`AWS_ENDPOINT_URL_S3` for an S3-compatible store,
//! addressed path-style then).

use std::path::Path;

use md5::{Digest, Md5};

use crate::manifests::desired::DesiredState;

/// Fills in every imported segment's fingerprint (`Err`: why its source cannot be read).
pub async fn fingerprint(desired: &mut DesiredState) {
    let mut client: Option<aws_sdk_s3::Client> = None;
    for app in &mut desired.apps {
        for seg in &mut app.segments {
            let Some(imp) = seg.import.as_mut() else {
                continue;
            };
            imp.etag = Some(match &imp.local {
                Some(path) => {
                    let path = path.clone();
                    tokio::task::spawn_blocking(move || local(&path))
                        .await
                        .unwrap_or_else(|e| Err(e.to_string()))
                }
                None => {
                    if client.is_none() {
                        client = Some(crate::audience::s3::client("us-east-1").await);
                    }
                    s3(client.as_ref().expect("set above"), &imp.url).await
                }
            });
        }
    }
}

/// Whether any segment is imported (and so needs [`fingerprint`]).
pub fn any(desired: &DesiredState) -> bool {
    desired
        .apps
        .iter()
        .any(|a| a.segments.iter().any(|s| s.import.is_some()))
}

fn md5_file(path: &Path) -> std::io::Result<String> {
    use std::io::Read as _;
    let mut f = crate::manifests::folder::open_regular(path)?;
    let mut h = Md5::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

fn local(path: &Path) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if meta.is_file() {
        return md5_file(path).map_err(|e| format!("{}: {e}", path.display()));
    }
    let mut files = Vec::new();
    collect(path, &mut files).map_err(|e| format!("{}: {e}", path.display()))?;
    files.sort();
    let mut h = Md5::new();
    for f in &files {
        let e = md5_file(f).map_err(|e| format!("{}: {e}", f.display()))?;
        h.update(
            f.strip_prefix(path)
                .unwrap_or(f)
                .display()
                .to_string()
                .as_bytes(),
        );
        h.update(e.as_bytes());
    }
    Ok(format!("{}-{}", hex::encode(h.finalize()), files.len()))
}

/// Every regular file under `dir`, iteratively, at most 32 levels deep (as the server).
fn collect(dir: &Path, out: &mut Vec<std::path::PathBuf>) -> std::io::Result<()> {
    let mut stack = vec![(dir.to_path_buf(), 0usize)];
    while let Some((d, depth)) = stack.pop() {
        for e in std::fs::read_dir(&d)? {
            let e = e?;
            let t = e.file_type()?;
            if t.is_dir() {
                if depth + 1 > crate::audience::rows::MAX_DEPTH {
                    return Err(std::io::Error::other("folders nest deeper than 32 levels"));
                }
                stack.push((e.path(), depth + 1));
            } else if t.is_file() {
                out.push(e.path());
            }
        }
    }
    Ok(())
}

async fn s3(client: &aws_sdk_s3::Client, url: &str) -> Result<String, String> {
    let rest = url.strip_prefix("s3://").unwrap_or(url);
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    if !key.is_empty() && !key.ends_with('/') {
        match client.head_object().bucket(bucket).key(key).send().await {
            Ok(h) => return Ok(h.e_tag().unwrap_or_default().trim_matches('"').to_string()),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => {}
            Err(e) => return Err(format!("{url}: {}", crate::text::error_chain(&e))),
        }
    }
    let prefix = super::s3::folder(key);
    let mut h = Md5::new();
    let mut n = 0;
    let mut pages = super::s3::listing(client, bucket, &prefix).send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| format!("{url}: {}", crate::text::error_chain(&e)))?;
        for o in page.contents() {
            h.update(o.key().unwrap_or_default().as_bytes());
            h.update(o.e_tag().unwrap_or_default().as_bytes());
            n += 1;
        }
    }
    if n == 0 {
        return Err(format!("{url}: no such object or folder"));
    }
    Ok(format!("{}-{n}", hex::encode(h.finalize())))
}

/// Who an imported segment's local source holds, read as the server reads it (by
/// [`crate::audience::rows`], the rows it refuses left out): for `estimate` and
/// `plan --endpoints`. An `s3://` source is not read here: the server reads it at apply.
pub fn members(
    imp: &crate::manifests::desired::ImportSpec,
) -> Result<crate::audience::evaluate::Members, String> {
    use crate::audience::rows::{self, Row};
    let Some(path) = &imp.local else {
        return Err(format!(
            "{}: an s3:// source is read by the server at apply; give the file locally to count it",
            imp.url
        ));
    };
    let mut files = Vec::new();
    if path.is_dir() {
        collect(path, &mut files).map_err(|e| format!("{}: {e}", path.display()))?;
        files.sort();
    } else {
        files.push(path.clone());
    }
    let format = match imp.source.format {
        crate::manifests::manifest::ImportFormat::Csv => rows::Format::Csv,
        crate::manifests::manifest::ImportFormat::Json => rows::Format::Json,
    };
    let mut m = crate::audience::evaluate::Members::default();
    for f in files {
        let file = crate::manifests::folder::open_regular(&f)
            .map_err(|e| format!("{}: {e}", f.display()))?;
        let mut input = std::io::BufReader::with_capacity(1 << 20, file);
        let mut reader = rows::Reader::new(format);
        let failed = |e: rows::Error| match e {
            rows::Error::File(e) => format!("{}:{e}", f.display()),
            rows::Error::Io(e) => format!("{}: {e}", f.display()),
        };
        while let Some(row) = reader.next_row(&mut input).map_err(failed)? {
            let Row::Endpoint { id, endpoint, .. } = row else {
                continue;
            };
            if let Some(u) = endpoint.user_id() {
                m.users.insert(u.into());
            }
            m.ids.insert(id.into_boxed_str());
        }
    }
    Ok(m)
}

/// Imported segments' members by manifest name.
pub type MembersByName =
    std::collections::BTreeMap<String, std::sync::Arc<crate::audience::evaluate::Members>>;

/// The members of each imported segment of an application whose source can be read here,
/// by manifest name (empty for the others), and the others with why, for a note.
pub fn members_by_name(
    app: &crate::manifests::desired::DesiredApp,
) -> (MembersByName, Vec<(String, String)>) {
    let mut out = std::collections::BTreeMap::new();
    let mut unread = Vec::new();
    for s in &app.segments {
        let Some(imp) = &s.import else { continue };
        match members(imp) {
            Ok(m) => {
                out.insert(s.name.clone(), std::sync::Arc::new(m));
            }
            Err(why) => {
                out.insert(s.name.clone(), std::sync::Arc::default());
                unread.push((s.name.clone(), why));
            }
        }
    }
    (out, unread)
}

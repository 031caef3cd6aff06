//! The manifest folder on disk: which files are manifests, and reading them safely.
//!
//! The folder comes from a Git repository, which anyone who can open a pull request shapes,
//! so reading it assumes nothing about what is there:
//! - only regular files are read: a FIFO would block the reader for good, a device
//!   (`/dev/zero`) would never end; both are named as invalid files instead;
//! - a symbolic link is followed only when it resolves inside the folder (the folder itself
//!   may be a link, as git-sync publishes each revision); a link out of it is refused without
//!   being opened, so nothing of a foreign file reaches an error message;
//! - no file is read past [`MAX_FILE_BYTES`]: a larger one is an error, not a memory spike.

use std::collections::HashSet;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::manifests::manifest::{ManifestError, Source, CONFIG_FILE};

/// The largest manifest file read: 8 MiB, about 4,000 segments of an ordinary size. A folder
/// with more puts them in several files.
pub const MAX_FILE_BYTES: u64 = 8 * 1024 * 1024;

/// The largest configuration file read.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// Why a file is not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Not a regular file: a FIFO, a socket, a device.
    NotRegular(&'static str),
    /// A symbolic link that resolves outside the folder.
    LinkOutside,
    /// A symbolic link to nothing.
    Dangling,
    /// Larger than the cap.
    TooLarge { limit: u64 },
    /// The system refused (permissions, a file removed while we looked).
    Io(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::NotRegular(what) => {
                write!(f, "not a regular file ({what}); manifests are regular files")
            }
            Refusal::LinkOutside => f.write_str(
                "a symbolic link to outside the manifest folder; links are followed only inside it",
            ),
            Refusal::Dangling => f.write_str("a symbolic link to nothing"),
            Refusal::TooLarge { limit } => write!(
                f,
                "larger than {} MiB, the most segmentctl reads of one file; split it into several files",
                limit / (1024 * 1024)
            ),
            Refusal::Io(e) => write!(f, "cannot read the file: {e}"),
        }
    }
}

fn kind_of(ft: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_fifo() {
        "a FIFO"
    } else if ft.is_socket() {
        "a socket"
    } else if ft.is_char_device() {
        "a character device"
    } else if ft.is_block_device() {
        "a block device"
    } else if ft.is_dir() {
        "a folder"
    } else {
        "not a file"
    }
}

/// Reads a regular file, at most `limit` bytes, without ever blocking on what is not one: the
/// file is opened non-blocking (a FIFO with no writer opens at once) and checked after
/// opening, so a file swapped for a FIFO between a look and the open is still refused.
pub fn read_regular(path: &Path, limit: u64) -> Result<Vec<u8>, Refusal> {
    use std::os::unix::fs::OpenOptionsExt;
    let io = |e: std::io::Error| Refusal::Io(e.to_string());
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if !meta.file_type().is_file() {
        return Err(Refusal::NotRegular(kind_of(&meta.file_type())));
    }
    if meta.len() > limit {
        return Err(Refusal::TooLarge { limit });
    }
    // The size can change while we read (a file being written): never read past the cap.
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(limit + 1).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > limit {
        return Err(Refusal::TooLarge { limit });
    }
    Ok(bytes)
}

/// A file under the folder, as found by [`list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A manifest file to read.
    Manifest(PathBuf),
    /// A `*.yaml` name that is not read, and why.
    Refused(PathBuf, Refusal),
}

fn is_manifest_name(name: &str) -> bool {
    name.ends_with(".yaml") || name.ends_with(".yml")
}

/// Lists the manifest files under `dir`: `*.yaml` / `*.yml`, recursively, in a stable order,
/// skipping hidden entries (`.git`, `.segmentctl`) and the configuration file at the root.
/// A manifest name that cannot be read safely is listed as refused, never skipped: a
/// manifest that silently vanished would read as deleted.
///
/// Errors: the folder cannot be read (missing, not a folder, no permission).
///
/// `dir` may also name one manifest file, read alone.
pub fn list(dir: &Path) -> std::io::Result<Vec<Entry>> {
    let root = dir.canonicalize()?;
    if root.is_file() {
        let name = dir.file_name().unwrap_or_default().to_string_lossy();
        if !is_manifest_name(&name) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "neither a folder nor a manifest file (*.yaml, *.yml)",
            ));
        }
        return Ok(vec![Entry::Manifest(dir.to_path_buf())]);
    }
    if !root.is_dir() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "neither a folder nor a manifest file (*.yaml, *.yml)",
        ));
    }
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    walk(&root, dir, true, &mut out, &mut seen)?;
    out.sort_by(|a, b| path_of(a).cmp(path_of(b)));
    Ok(out)
}

fn path_of(e: &Entry) -> &Path {
    match e {
        Entry::Manifest(p) | Entry::Refused(p, _) => p,
    }
}

fn walk(
    root: &Path,
    dir: &Path,
    at_root: bool,
    out: &mut Vec<Entry>,
    seen: &mut HashSet<PathBuf>,
) -> std::io::Result<()> {
    // Folders linked inside the folder are followed once each, so a loop ends.
    if let Ok(canonical) = dir.canonicalize() {
        if !seen.insert(canonical) {
            return Ok(());
        }
    }
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.filter_map(Result::ok).collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        let Ok(ft) = entry.file_type() else {
            continue; // removed while we looked
        };
        let manifest_name = is_manifest_name(&name) && !(at_root && name == CONFIG_FILE);
        let resolved = if ft.is_symlink() {
            match path.canonicalize() {
                Err(_) => {
                    if manifest_name {
                        out.push(Entry::Refused(path, Refusal::Dangling));
                    }
                    continue;
                }
                Ok(target) if !target.starts_with(root) => {
                    if manifest_name {
                        out.push(Entry::Refused(path, Refusal::LinkOutside));
                    }
                    continue;
                }
                Ok(target) => match std::fs::metadata(&target) {
                    Ok(m) => m.file_type(),
                    Err(_) => continue,
                },
            }
        } else {
            ft
        };
        if resolved.is_dir() {
            walk(root, &path, false, out, seen)?;
        } else if manifest_name {
            out.push(if resolved.is_file() {
                Entry::Manifest(path)
            } else {
                Entry::Refused(path, Refusal::NotRegular(kind_of(&resolved)))
            });
        }
    }
    Ok(())
}

/// The manifest folder a command reads, canonical: `dir`, or the folder holding it when
/// `dir` is one manifest file. Local import sources must lie inside it.
pub fn root_of(dir: &Path) -> std::io::Result<PathBuf> {
    let canonical = dir.canonicalize()?;
    if canonical.is_file() {
        Ok(canonical
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or(canonical))
    } else {
        Ok(canonical)
    }
}

/// Where a local import source is, checked like a manifest path: `path` (as the manifest
/// resolves it) made canonical, which must lie inside `root` (links are followed only
/// within it) and be a regular file or a folder. Nothing of the file is read.
///
/// Errors: what is wrong, naming the path as the manifest gave it, never its content.
pub fn resolve_source(root: &Path, path: &Path) -> Result<PathBuf, String> {
    let canonical = path.canonicalize().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or folder".to_string(),
        _ => format!("cannot be read: {e}"),
    })?;
    if !canonical.starts_with(root) {
        return Err(format!(
            "resolves outside the manifest folder {}; a local source is a file or folder inside it (links are followed only within it), or an s3:// URL",
            root.display()
        ));
    }
    let meta = std::fs::metadata(&canonical).map_err(|e| format!("cannot be read: {e}"))?;
    let ft = meta.file_type();
    if !(ft.is_file() || ft.is_dir()) {
        return Err(format!(
            "not a regular file ({}); a local source is a regular file or a folder of them",
            kind_of(&ft)
        ));
    }
    Ok(canonical)
}

/// Opens a regular file to read: a link in its last component is not followed, and what
/// is not a regular file (a FIFO, a device) is refused after opening, without blocking.
pub fn open_regular(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_NOFOLLOW)
        .open(path)?;
    let ft = file.metadata()?.file_type();
    if !ft.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            Refusal::NotRegular(kind_of(&ft)).to_string(),
        ));
    }
    Ok(file)
}

/// A file-level error: no line, no field.
pub fn file_error(file: String, message: String) -> ManifestError {
    ManifestError {
        file,
        line: 0,
        column: 0,
        path: String::new(),
        message,
    }
}

/// Reads every manifest file under `dir`: the files' bytes, and an error per file that
/// could not be read safely; `config`, the file --config names, is not one of them.
///
/// Errors: the folder itself cannot be read.
pub fn read(
    dir: &Path,
    config: Option<&Path>,
) -> Result<(Vec<Source>, Vec<ManifestError>), ManifestError> {
    let shown = dir.display().to_string();
    let entries = list(dir).map_err(|e| {
        file_error(
            shown.clone(),
            match e.kind() {
                std::io::ErrorKind::NotFound => "no such folder or manifest file".to_string(),
                _ => format!("cannot read the folder: {e}"),
            },
        )
    })?;
    // The configuration file given with --config is not a manifest, wherever it is kept
    // (`envs/prod.yaml` beside the manifests, say).
    let config = config.and_then(|c| c.canonicalize().ok());
    let is_config = |p: &Path| config.is_some() && p.canonicalize().ok() == config;
    let mut sources = Vec::with_capacity(entries.len());
    let mut errors = Vec::new();
    for entry in entries {
        if is_config(path_of(&entry)) {
            continue;
        }
        match entry {
            Entry::Manifest(path) => {
                let name = path.display().to_string();
                match read_regular(&path, MAX_FILE_BYTES) {
                    Ok(bytes) => sources.push(Source {
                        name,
                        bytes: bytes.into(),
                    }),
                    Err(why) => errors.push(file_error(name, why.to_string())),
                }
            }
            Entry::Refused(path, why) => {
                errors.push(file_error(path.display().to_string(), why.to_string()))
            }
        }
    }
    Ok((sources, errors))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("x.yaml");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo reads a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        assert_eq!(
            list(dir.path()).unwrap(),
            vec![Entry::Refused(fifo.clone(), Refusal::NotRegular("a FIFO"))]
        );
        assert_eq!(
            read_regular(&fifo, MAX_FILE_BYTES),
            Err(Refusal::NotRegular("a FIFO"))
        );
    }

    #[test]
    fn a_device_is_refused_and_a_large_file_is_not_read_past_the_cap() {
        assert_eq!(
            read_regular(Path::new("/dev/zero"), 1024),
            Err(Refusal::NotRegular("a character device"))
        );
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big.yaml");
        std::fs::write(&big, vec![b'#'; 2048]).unwrap();
        assert_eq!(
            read_regular(&big, 1024),
            Err(Refusal::TooLarge { limit: 1024 })
        );
        assert_eq!(read_regular(&big, 2048).unwrap().len(), 2048);
    }

    #[test]
    fn links_are_followed_inside_the_folder_only() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret.yaml"), "password: hunter2\n").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("rev");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/a.yaml"), "").unwrap();
        let link = |to: &Path, at: &Path| std::os::unix::fs::symlink(to, at).unwrap();
        link(&root.join("sub/a.yaml"), &root.join("b.yaml"));
        link(&outside.path().join("secret.yaml"), &root.join("c.yaml"));
        link(outside.path(), &root.join("d"));
        link(&root.join("missing.yaml"), &root.join("e.yaml"));
        link(Path::new("/dev/zero"), &root.join("f.yaml"));
        // The folder itself is a link, as git-sync publishes it.
        let current = dir.path().join("current");
        link(&root, &current);
        let got = list(&current).unwrap();
        assert_eq!(
            got,
            vec![
                Entry::Manifest(current.join("b.yaml")),
                Entry::Refused(current.join("c.yaml"), Refusal::LinkOutside),
                Entry::Refused(current.join("e.yaml"), Refusal::Dangling),
                Entry::Refused(current.join("f.yaml"), Refusal::LinkOutside),
                Entry::Manifest(current.join("sub/a.yaml")),
            ]
        );
        let (_, errors) = read(&current, None).unwrap();
        let shown: String = errors.iter().map(|e| format!("{e}\n")).collect();
        assert!(
            !shown.contains("hunter2") && !shown.contains("password"),
            "{shown}"
        );
    }
}

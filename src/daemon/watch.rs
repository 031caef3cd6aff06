//! Watching the manifest folder: a burst of changes becomes one signal once it settles.
//!
//! Editors save by writing a temporary file and renaming it over the old one; git-sync
//! publishes a revision by checking it out into a new folder and swapping a symlink onto it;
//! folders get deleted and recreated. So the watcher follows the folder's *resolved* path:
//! it watches the target recursively and the folder's parent for the swap, and re-resolves
//! after every burst, moving its watch when the target changed.

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// How long the folder must be quiet before a change is reported.
pub const DEBOUNCE: Duration = Duration::from_millis(250);

/// Whether an event path matters: not inside a hidden entry of the folder (`.git`,
/// `.segmentctl` where the embedded target keeps its database), or the folder itself.
fn relevant(dir: &Path, resolved: &Path, path: &Path) -> bool {
    for root in [resolved, dir] {
        if let Ok(rel) = path.strip_prefix(root) {
            return !rel.components().any(
                |c| matches!(c, Component::Normal(n) if n.to_string_lossy().starts_with('.')),
            );
        }
    }
    // An event in the parent folder: only the folder's own entry (a symlink swap, a
    // rename, a deletion or re-creation of the folder).
    path.file_name().is_some() && path.file_name() == dir.file_name()
}

/// Runs the watcher until `tx` closes. Sends `()` after each settled burst.
///
/// Guarantees: a change made while a reconcile is running is not lost (the channel holds
/// one pending signal); the watch survives the folder being replaced.
pub async fn watch(dir: PathBuf, tx: mpsc::Sender<()>) -> notify::Result<()> {
    let (raw_tx, mut raw_rx) = mpsc::unbounded_channel::<PathBuf>();
    let mut watcher: RecommendedWatcher =
        notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            // Reading the folder (as every reconcile does) produces access events; only
            // changes count.
            if let Some(ev) = res
                .ok()
                .filter(|ev| !matches!(ev.kind, notify::EventKind::Access(_)))
            {
                for p in ev.paths {
                    let _ = raw_tx.send(p);
                }
            }
        })?;
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let _ = watcher.watch(&parent, RecursiveMode::NonRecursive);
    let mut resolved = dir.canonicalize().ok();
    if let Some(r) = &resolved {
        let _ = watcher.watch(r, RecursiveMode::Recursive);
    }
    loop {
        // Wait for a relevant event.
        let Some(first) = raw_rx.recv().await else {
            return Ok(());
        };
        let current = resolved.clone().unwrap_or_else(|| dir.clone());
        if !relevant(&dir, &current, &first) {
            continue;
        }
        // Drain the burst: until the folder has been quiet for DEBOUNCE.
        loop {
            match tokio::time::timeout(DEBOUNCE, raw_rx.recv()).await {
                Ok(Some(_)) => continue,
                Ok(None) => return Ok(()),
                Err(_) => break,
            }
        }
        // Re-arm on the folder's current target (a swapped symlink, a recreated folder).
        let now = dir.canonicalize().ok();
        if now != resolved {
            if let Some(old) = &resolved {
                let _ = watcher.unwatch(old);
            }
            if let Some(new) = &now {
                let _ = watcher.watch(new, RecursiveMode::Recursive);
            }
            tracing::info!(target = ?now, "the manifest folder now points elsewhere; watching it");
            resolved = now;
        }
        if tx.send(()).await.is_err() {
            return Ok(());
        }
    }
}

/// What the folder currently resolves to, as a revision: git-sync names each checkout after
/// its commit, so the symlink target's last component is the commit.
pub fn revision(dir: &Path) -> Option<String> {
    let resolved = dir.canonicalize().ok()?;
    let own = dir.file_name()?;
    let target = resolved.file_name()?;
    (own != target).then(|| target.to_string_lossy().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_entries_and_unrelated_siblings_are_ignored() {
        let dir = Path::new("/git/current");
        let resolved = Path::new("/git/.worktrees/abc");
        assert!(relevant(
            dir,
            resolved,
            Path::new("/git/.worktrees/abc/a.yaml")
        ));
        assert!(relevant(
            dir,
            resolved,
            Path::new("/git/current/sub/b.yaml")
        ));
        assert!(!relevant(
            dir,
            resolved,
            Path::new("/git/.worktrees/abc/.segmentctl/pinpoint.db-wal")
        ));
        assert!(relevant(dir, resolved, Path::new("/git/current")));
        assert!(!relevant(dir, resolved, Path::new("/git/other")));
    }
}

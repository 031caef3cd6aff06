//! SQLite's WAL checkpoints, on a thread of their own: the writer's commits append to the
//! log, and the pages they wrote are copied into the database file meanwhile, instead of by
//! the commit that happens to pass SQLite's automatic threshold (which then holds the writer,
//! and every write waiting behind it, for the copy and its fsync).
//!
//! Measured on `cargo bench --bench imports` (SQLite, 1,000,000 endpoints, beside main's
//! build in the same run): 1.21× and 1.24× the records/s; the log grew to 83 MB at most.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::time::Duration;

use super::sql::DbError;

/// Checkpoints are at most this often: the commits in between are copied by one.
const INTERVAL: Duration = Duration::from_millis(100);

/// A log of this many pages (8 KiB each in a file this server made, 64 MiB at 4 KiB) or
/// more after a checkpoint is finished by the
/// writer after its next commit (copying the few pages written since), so that the log
/// starts again from its beginning: the log restarts only once all of it is copied, which a
/// thread beside a writer that never pauses never sees, and it would grow for as long as the
/// writes last. (A checkpoint here that waits for the writer instead is starved by it: the
/// writer takes its lock again the moment it commits.) SQLite's automatic checkpoint starts
/// at 1,000 pages; at 4,000 here the writer finished so often that an import gained little.
const FINISH_AT: i64 = 16_000;

/// The checkpointing thread of one SQLite database, stopped when dropped.
pub(super) struct Checkpointer {
    nudge: Option<SyncSender<()>>,
    /// Set by the thread when the writer is to finish a checkpoint ([`FINISH_AT`]).
    finish: std::sync::Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts checkpointing the database at `path` on a connection of its own. The writer's
    /// connection must have its automatic checkpoints off (`PRAGMA wal_autocheckpoint = 0`).
    pub fn start(path: &Path) -> Result<Self, DbError> {
        let conn = super::open(path, false)?;
        // One nudge waiting is enough: the checkpoint after it copies every commit before.
        let (nudge, nudged) = sync_channel(1);
        let finish = std::sync::Arc::new(AtomicBool::new(false));
        let due = finish.clone();
        let thread = std::thread::Builder::new()
            .name("segmentctl-wal".into())
            .spawn(move || run(&conn, &nudged, &due))
            .map_err(|e| {
                DbError::Unavailable(format!("starting the WAL checkpoint thread: {e}"))
            })?;
        Ok(Self {
            nudge: Some(nudge),
            finish,
            thread: Some(thread),
        })
    }

    /// Called by the writer, on its connection, after each commit: a checkpoint follows on
    /// the thread within [`INTERVAL`], or is finished here if the log has grown long.
    pub fn committed(&self, writer: &rusqlite::Connection) {
        if self.finish.swap(false, Ordering::Relaxed) {
            // Nothing else writes meanwhile: all of the log is copied, and the next write
            // starts it again from its beginning. A failure leaves the log whole.
            let _ = checkpoint(writer);
        }
        if let Some(nudge) = &self.nudge {
            match nudge.try_send(()) {
                Ok(()) | Err(TrySendError::Full(())) | Err(TrySendError::Disconnected(())) => {}
            }
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        // The thread ends once the channel is closed and its last checkpoint is done.
        self.nudge.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Checkpoints after each nudge, then waits [`INTERVAL`] (the commits meanwhile wait for
/// the next one); asks the writer to finish when the log is long (`finish`). A failed
/// checkpoint is left for the next: the log stays whole meanwhile, as it does when
/// SQLite's own checkpoint fails.
fn run(conn: &rusqlite::Connection, nudged: &Receiver<()>, finish: &AtomicBool) {
    while nudged.recv().is_ok() {
        if checkpoint(conn).is_some_and(|log| log >= FINISH_AT) {
            finish.store(true, Ordering::Relaxed);
        }
        std::thread::sleep(INTERVAL);
    }
}

/// `PRAGMA wal_checkpoint(PASSIVE)` (copying what no reader still needs, waiting for no
/// one): the pages in the log.
fn checkpoint(conn: &rusqlite::Connection) -> Option<i64> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get(1))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Polls `done` until it holds (the thread works on its own time), failing after a
    /// minute: a bound no correct run comes near, not a measure of speed.
    fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
        for _ in 0..600 {
            if done() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("never happened: {what}");
    }

    /// A row's bytes: one to a page of the server's files.
    const ROW: i64 = super::super::SQLITE_PAGE_BYTES - 200;

    /// `pages` pages of new rows, committed by the writer in one transaction.
    fn write(writer: &rusqlite::Connection, pages: usize) {
        writer
            .execute(
                "INSERT INTO t (b) SELECT randomblob(?2) FROM generate_series(1, ?1)",
                [pages as i64, ROW],
            )
            .or_else(|_| {
                // generate_series is an extension some builds leave out: a recursive CTE.
                writer.execute(
                    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
                     INSERT INTO t (b) SELECT randomblob(?2) FROM n",
                    [pages as i64, ROW],
                )
            })
            .unwrap();
    }

    fn size(path: &Path) -> u64 {
        std::fs::metadata(path).map_or(0, |m| m.len())
    }

    /// A database in WAL mode with a table of blobs: its path, and the writer's connection.
    fn database(dir: &tempfile::TempDir) -> (std::path::PathBuf, rusqlite::Connection) {
        let path = dir.path().join("c.db");
        let writer = super::super::open(&path, true).unwrap();
        writer
            .execute_batch("CREATE TABLE t (a INTEGER PRIMARY KEY, b BLOB)")
            .unwrap();
        (path, writer)
    }

    /// The pages in the log, as another connection sees them (copying what it can).
    fn log_pages(path: &Path) -> i64 {
        let reader = super::super::open(path, false).unwrap();
        reader
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get(1))
            .unwrap()
    }

    /// The writer's commits leave the log alone (no automatic checkpoint holds them up);
    /// the thread copies it into the database file once told of a commit, and asks the
    /// writer to finish once the log has grown past [`FINISH_AT`].
    #[test]
    fn commits_are_checkpointed_beside_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let (path, writer) = database(&dir);
        let checkpointer = Checkpointer::start(&path).unwrap();
        let before = size(&path);
        write(&writer, 2_000);
        assert_eq!(
            size(&path),
            before,
            "the commit copied nothing into the database file itself"
        );
        checkpointer.committed(&writer);
        wait_until("the thread copies the log into the database file", || {
            size(&path) > before + 2_000 * 4_000
        });
        assert!(!checkpointer.finish.load(Ordering::Relaxed));
        write(&writer, FINISH_AT as usize + 100);
        checkpointer.committed(&writer);
        wait_until("the thread asks the writer to finish the long log", || {
            checkpointer.finish.load(Ordering::Relaxed)
        });
    }

    /// Asked to finish, the writer's next commit copies all of the log itself (a thread
    /// beside a writer that never pauses cannot), and the write after it starts the log
    /// again from its beginning instead of making it longer.
    #[test]
    fn a_long_log_is_finished_by_the_writer_and_starts_again() {
        let dir = tempfile::tempdir().unwrap();
        let (path, writer) = database(&dir);
        // No thread: what the writer does alone.
        let checkpointer = Checkpointer {
            nudge: None,
            finish: std::sync::Arc::new(AtomicBool::new(true)),
            thread: None,
        };
        let before = size(&path);
        write(&writer, 2_000);
        checkpointer.committed(&writer);
        assert!(
            size(&path) > before + 2_000 * 4_000,
            "the writer copied the log into the database file"
        );
        assert!(!checkpointer.finish.load(Ordering::Relaxed));
        write(&writer, 1);
        let log = log_pages(&path);
        assert!(log < 10, "the log started again: {log} pages");
    }
}

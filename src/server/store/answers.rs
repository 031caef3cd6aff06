//! GetSegment's answers kept in memory.
//!
//! On SQLite ([`Answers`]), whose file one process holds (`serve`'s lock): an answer read
//! since the last write anywhere in the database is given again without a read transaction.
//! Every write transaction moves the database's generation, ending them all, so an answer
//! is never older than the last write a client saw acknowledged.
//!
//! Measured on `bash benches/load/run.sh` (GetSegment replayed by wrk, 32 connections): the
//! read transaction (a reader taken, the WAL's shared-memory locks, the statement) was 27 %
//! of the server's samples; with the answers kept, GetSegment went from 0.33× the bare axum
//! handler's requests/s to 0.48×.
//!
//! On PostgreSQL ([`Checked`]), where other replicas write too, nothing here can know of a
//! write: each GetSegment still reads the segment's row, but only what can change in its
//! answer (its latest version and its tags, one index probe), and the answer kept is given
//! when both are as they were. A version's definition and time are never rewritten once
//! stored, a segment's creation time never changes, and ids are never reused; so the
//! answer is the one a full read would make, as of that read. That holds for one history
//! of the database only: an answer is kept and given at the epoch of the shared connection
//! it was read on, and a database that went away (a failover, a restore, which can bring
//! back a different version of the same number) breaks that connection, so the next one
//! starts a new epoch and every answer is read again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use bytes::Bytes;

/// Answers kept at most; beyond, the map starts again empty.
const MAX_ANSWERS: usize = 4096;

#[derive(Default)]
pub(super) struct Answers {
    /// Moved after each write transaction ends, committed or not.
    generation: AtomicU64,
    /// The answers read at one generation, by `app/segment`.
    kept: Mutex<(u64, HashMap<String, Bytes>)>,
}

impl Answers {
    /// A write transaction ended: every answer kept is dropped (lazily, at the next put).
    pub fn written(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// The generation to read at: taken before the read, so a write after it ends the answer.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (u64, HashMap<String, Bytes>)> {
        self.kept.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The answer for `key` read at the current generation, if one was.
    pub fn get(&self, key: &str) -> Option<Bytes> {
        let now = self.generation();
        let kept = self.lock();
        (kept.0 == now).then(|| kept.1.get(key).cloned()).flatten()
    }

    /// Keeps `answer`, read at generation `read_at`, unless a write ended since.
    pub fn put(&self, key: String, read_at: u64, answer: Bytes) {
        let mut kept = self.lock();
        if read_at != self.generation() || read_at < kept.0 {
            return;
        }
        if read_at > kept.0 || kept.1.len() >= MAX_ANSWERS {
            kept.1.clear();
            kept.0 = read_at;
        }
        kept.1.insert(key, answer);
    }
}

/// Bytes of answers [`Checked`] keeps at most; beyond, it starts again empty.
const MAX_CHECKED_BYTES: usize = 16 << 20;

/// The answers kept on PostgreSQL, by `app/segment`, each with the version and tags it was
/// made at, all read on one shared connection to the database (its epoch:
/// [`super::pg::Pooled::shared_epoch`]): a new one ends them.
#[derive(Default)]
pub(super) struct Checked {
    kept: Mutex<Kept>,
}

#[derive(Default)]
struct Kept {
    epoch: u64,
    bytes: usize,
    answers: HashMap<String, Stamped>,
}

struct Stamped {
    version: i32,
    tags: String,
    answer: Bytes,
}

impl Checked {
    fn lock(&self) -> std::sync::MutexGuard<'_, Kept> {
        self.kept.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether an answer for `key` read at `epoch` is kept (at whatever version).
    pub fn has(&self, key: &str, epoch: u64) -> bool {
        let kept = self.lock();
        kept.epoch == epoch && kept.answers.contains_key(key)
    }

    /// The answer kept for `key`, if it was read at `epoch` and made at `version` with
    /// `tags`.
    pub fn get(&self, key: &str, epoch: u64, version: i32, tags: &str) -> Option<Bytes> {
        let kept = self.lock();
        let s = kept.answers.get(key).filter(|_| kept.epoch == epoch)?;
        (s.version == version && s.tags == tags).then(|| s.answer.clone())
    }

    /// Keeps `answer` for `key`, read at `epoch` and made at `version` with `tags`, in place
    /// of any before (an answer read at an earlier epoch than those kept, or too large to
    /// keep, is not; one read at a later epoch ends those kept).
    pub fn put(&self, key: String, epoch: u64, version: i32, tags: String, answer: Bytes) {
        let size = key.len() + tags.len() + answer.len();
        let mut kept = self.lock();
        if size > MAX_CHECKED_BYTES || epoch < kept.epoch {
            return;
        }
        if epoch > kept.epoch {
            *kept = Kept {
                epoch,
                ..Kept::default()
            };
        }
        if let Some(old) = kept.answers.remove(&key) {
            kept.bytes -= key.len() + old.tags.len() + old.answer.len();
        }
        if kept.bytes + size > MAX_CHECKED_BYTES || kept.answers.len() >= MAX_ANSWERS {
            kept.answers.clear();
            kept.bytes = 0;
        }
        kept.bytes += size;
        let stamped = Stamped {
            version,
            tags,
            answer,
        };
        kept.answers.insert(key, stamped);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_is_given_until_a_write_ends_and_one_read_before_a_write_is_not_kept() {
        let a = Answers::default();
        let at = a.generation();
        a.put("app/s".into(), at, Bytes::from_static(b"v1"));
        assert_eq!(a.get("app/s").as_deref(), Some(&b"v1"[..]));
        assert_eq!(a.get("app/t"), None);
        a.written();
        assert_eq!(a.get("app/s"), None, "a write ends every answer");
        // Read before the write, kept after it: not kept.
        a.put("app/s".into(), at, Bytes::from_static(b"v1"));
        assert_eq!(a.get("app/s"), None);
        let at = a.generation();
        a.put("app/s".into(), at, Bytes::from_static(b"v2"));
        assert_eq!(a.get("app/s").as_deref(), Some(&b"v2"[..]));
    }

    #[test]
    fn a_checked_answer_is_given_only_at_the_version_and_tags_it_was_made_at() {
        let c = Checked::default();
        assert!(!c.has("app/s", 0));
        c.put("app/s".into(), 0, 1, "{}".into(), Bytes::from_static(b"v1"));
        assert!(c.has("app/s", 0));
        assert_eq!(c.get("app/s", 0, 1, "{}").as_deref(), Some(&b"v1"[..]));
        assert_eq!(c.get("app/s", 0, 2, "{}"), None, "a later version");
        assert_eq!(c.get("app/s", 0, 1, r#"{"k":"v"}"#), None, "other tags");
        assert_eq!(c.get("app/t", 0, 1, "{}"), None);
        c.put("app/s".into(), 0, 2, "{}".into(), Bytes::from_static(b"v2"));
        assert_eq!(c.get("app/s", 0, 1, "{}"), None, "replaced");
        assert_eq!(c.get("app/s", 0, 2, "{}").as_deref(), Some(&b"v2"[..]));
        assert_eq!(
            c.lock().bytes,
            "app/s".len() + 2 + 2,
            "bytes counted once per key"
        );
    }

    /// A new shared connection (the database restarted, or failed over) ends every answer
    /// read before it, and one read before it is not kept after.
    #[test]
    fn a_checked_answer_is_given_only_at_the_epoch_it_was_read_at() {
        let c = Checked::default();
        c.put("app/s".into(), 3, 1, "{}".into(), Bytes::from_static(b"v1"));
        assert_eq!(c.get("app/s", 3, 1, "{}").as_deref(), Some(&b"v1"[..]));
        assert!(!c.has("app/s", 4));
        assert_eq!(
            c.get("app/s", 4, 1, "{}"),
            None,
            "read again on a new connection"
        );
        c.put("app/t".into(), 4, 1, "{}".into(), Bytes::from_static(b"t1"));
        assert!(!c.has("app/s", 3), "a later epoch ends the answers kept");
        c.put(
            "app/s".into(),
            3,
            1,
            "{}".into(),
            Bytes::from_static(b"old"),
        );
        assert!(!c.has("app/s", 4), "read at an earlier epoch: not kept");
        assert_eq!(c.get("app/t", 4, 1, "{}").as_deref(), Some(&b"t1"[..]));
    }

    #[test]
    fn the_checked_answers_are_bounded_in_number_and_bytes() {
        let c = Checked::default();
        for i in 0..=MAX_ANSWERS {
            c.put(
                format!("app/{i}"),
                0,
                1,
                "{}".into(),
                Bytes::from_static(b"x"),
            );
        }
        assert_eq!(c.lock().answers.len(), 1);
        let big = Bytes::from(vec![b'x'; MAX_CHECKED_BYTES / 2]);
        c.put("app/a".into(), 0, 1, "{}".into(), big.clone());
        c.put("app/b".into(), 0, 1, "{}".into(), big.clone());
        assert!(
            !c.has("app/a", 0),
            "past the bytes kept, the map starts again"
        );
        assert!(c.has("app/b", 0));
        assert!(c.lock().bytes <= MAX_CHECKED_BYTES);
        let huge = Bytes::from(vec![b'x'; MAX_CHECKED_BYTES]);
        c.put("app/c".into(), 0, 1, "{}".into(), huge);
        assert!(!c.has("app/c", 0), "an answer too large is not kept");
    }

    #[test]
    fn the_answers_kept_are_bounded() {
        let a = Answers::default();
        let at = a.generation();
        for i in 0..=MAX_ANSWERS {
            a.put(format!("app/{i}"), at, Bytes::from_static(b"x"));
        }
        assert_eq!(a.lock().1.len(), 1);
        assert!(a.get(&format!("app/{MAX_ANSWERS}")).is_some());
    }
}

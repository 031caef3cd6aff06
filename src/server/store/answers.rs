//! GetSegment's answers kept in memory on SQLite, whose file one process holds
//! (`serve`'s lock): an answer read since the last write anywhere in the database is given
//! again without a read transaction. Every write transaction moves the database's
//! generation, ending them all, so an answer is never older than the last write a client
//! saw acknowledged.
//!
//! Measured on `bash benches/load/run.sh` (GetSegment replayed by wrk, 32 connections): the
//! read transaction (a reader taken, the WAL's shared-memory locks, the statement) was 27 %
//! of the server's samples; with the answers kept, GetSegment went from 0.33× the bare axum
//! handler's requests/s to 0.48×.

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

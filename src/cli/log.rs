//! `serve`'s log: its lines gathered in a buffer and written in blocks, as a web server's
//! access log is (nginx's `buffer=` and `flush=`).
//!
//! A line per request written on its own costs a write(2) on the request's thread; handed
//! to a writer thread, it costs that thread's wake-up (measured: 13% of the server's time
//! on GetSegment either way). Here a line is copied into a shared buffer under a lock; the
//! buffer is written when it is full, at least every [`FLUSH_EVERY`] by a thread of its
//! own, and when the [`Flusher`] is dropped (the end of `main`). Lines are never split. A
//! process killed outright loses at most the last [`FLUSH_EVERY`] of its log.
//!
//! The same thread makes the request lines the server queues (`server::access`), each time
//! before it writes the buffer: they never wake it.

use std::io::{BufWriter, Write};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// How long a line may wait in the buffer (or a request line in the queue).
pub const FLUSH_EVERY: Duration = Duration::from_millis(10);
/// The buffer's size: a few hundred lines.
const CAPACITY: usize = 64 * 1024;

type Out = Box<dyn Write + Send>;
type Shared = Arc<Mutex<BufWriter<Out>>>;

/// Where the log's lines go (a `MakeWriter` for tracing-subscriber).
#[derive(Clone)]
pub struct Buffered(Shared);

/// Writes what is left when dropped, and stops the periodic writes.
pub struct Flusher {
    shared: Shared,
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The buffered stderr, and what keeps writing it out.
pub fn stderr() -> (Buffered, Flusher) {
    // This process's request lines, made by the log's thread (only `serve`'s log takes them).
    buffered(
        Box::new(std::io::stderr()),
        FLUSH_EVERY,
        crate::server::access::queue(),
    )
}

/// A buffer over `out`, written every `every`; its thread makes the request `lines` queued.
fn buffered(
    out: Out,
    every: Duration,
    lines: Option<crate::server::access::Lines>,
) -> (Buffered, Flusher) {
    let shared: Shared = Arc::new(Mutex::new(BufWriter::with_capacity(CAPACITY, out)));
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let periodic = shared.clone();
    let thread = std::thread::Builder::new()
        .name("segmentctl-log".into())
        .spawn(move || {
            let tick = || {
                if let Some(l) = &lines {
                    l.make();
                }
                let _ = lock(&periodic).flush();
            };
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(every)
            {
                tick();
            }
            tick();
        })
        .ok();
    (
        Buffered(shared.clone()),
        Flusher {
            shared,
            stop: Some(stop),
            thread,
        },
    )
}

fn lock(shared: &Shared) -> MutexGuard<'_, BufWriter<Out>> {
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

impl Drop for Flusher {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = lock(&self.shared).flush();
    }
}

/// One line's write, under the buffer's lock.
pub struct Line<'a>(MutexGuard<'a, BufWriter<Out>>);

impl Write for Line<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        // A closed stderr (the log's reader went away) loses the log, not the request.
        let _ = self.0.write_all(buf);
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        // Written in blocks; see the module's doc.
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Buffered {
    type Writer = Line<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        Line(lock(&self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Seen(Arc<Mutex<Vec<u8>>>);

    impl Write for Seen {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn lines(sink: &Buffered, lines: &[&str]) {
        use tracing_subscriber::fmt::MakeWriter as _;
        for line in lines {
            sink.make_writer().write_all(line.as_bytes()).unwrap();
        }
    }

    fn written(seen: &Seen) -> String {
        String::from_utf8(seen.0.lock().unwrap().clone()).unwrap()
    }

    /// Lines wait in the buffer (no write(2) each), whole and in order; dropping the
    /// Flusher writes them out.
    #[test]
    fn lines_wait_in_the_buffer_until_the_flusher_writes_them() {
        let seen = Seen::default();
        let (sink, flusher) = buffered(Box::new(seen.clone()), Duration::from_secs(3600), None);
        lines(&sink, &["line 0\n", "line 1\n"]);
        assert_eq!(written(&seen), "", "nothing written line by line");
        drop(flusher);
        assert_eq!(written(&seen), "line 0\nline 1\n");
    }

    /// The periodic write empties the buffer without being asked.
    #[test]
    fn lines_are_written_out_periodically() {
        let seen = Seen::default();
        let (sink, _flusher) = buffered(Box::new(seen.clone()), Duration::from_millis(10), None);
        lines(&sink, &["a\n", "b\n"]);
        let waited = std::time::Instant::now();
        while written(&seen).is_empty() {
            assert!(
                waited.elapsed() < Duration::from_secs(60),
                "the periodic write never came"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(written(&seen), "a\nb\n");
    }
}

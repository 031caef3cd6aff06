//! The request log's lines, made off the requests' threads: the request layer
//! ([`super::middleware`]) queues what a line says, and `serve`'s log thread makes the lines
//! a batch at a time, as the same `tracing` events the layer sent itself before (target
//! `segmentctl::server::middleware`, so `SEGMENTCTL_LOG` and `--log-format` apply as ever).
//! A server with no log thread (the one `plan` and `apply` embed) makes each line where its
//! request ends.
//!
//! Measured on GetSegment over SQLite (wrk as in `benches/load/postgres.sh`, six alternating
//! runs of 5 s beside the build before): 1.044× the requests/s (1.003× to 1.112×). Made on
//! the request's thread, the line cost 5.8 µs of user and 3.9 µs of system time a request
//! (the server with `SEGMENTCTL_LOG=warn` beside it: 1.10× to 1.20× the requests/s), where a
//! loop makes it in 1.2 µs; made in batches on the log thread, it costs 2.4 µs there.
//!
//! The queue is bounded ([`QUEUED`]): while it is full (the log thread behind), a line is
//! made on its request's thread. The lines keep their order. A line's time is when it is
//! made: at most a tick of the log thread (10 ms) after its request ended.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::OnceLock;
use std::time::Duration;

use axum::http::{Method, Uri};

/// Lines waiting at most: several ticks of the log thread at tens of thousands of requests/s.
const QUEUED: usize = 16 * 1024;

/// What a request's line says.
pub(super) struct Entry {
    pub method: Method,
    pub uri: Uri,
    pub status: u16,
    pub operation: &'static str,
    pub latency: Duration,
    pub id: String,
}

/// Where lines are queued: [`Queue::record`].
struct Queue(SyncSender<Entry>);

/// The lines queued, for the log thread to make: [`Lines::make`].
pub struct Lines(Receiver<Entry>);

fn queue_of(capacity: usize) -> (Queue, Lines) {
    let (tx, rx) = sync_channel(capacity);
    (Queue(tx), Lines(rx))
}

/// This process's queue, once its log thread takes the lines.
static QUEUE: OnceLock<Queue> = OnceLock::new();

/// Starts queueing this process's request lines, for the caller to make: `None` when
/// something else makes them already.
pub fn queue() -> Option<Lines> {
    let (queue, lines) = queue_of(QUEUED);
    QUEUE.set(queue).ok().map(|()| lines)
}

impl Queue {
    /// Queues `e`; handed back when the queue is full or its reader is gone.
    fn record(&self, e: Entry) -> Option<Entry> {
        match self.0.try_send(e) {
            Ok(()) => None,
            Err(TrySendError::Full(e) | TrySendError::Disconnected(e)) => Some(e),
        }
    }
}

impl Lines {
    /// Makes every line queued so far.
    pub fn make(&self) {
        while let Ok(e) = self.0.try_recv() {
            emit(&e);
        }
    }
}

/// Logs a request's line: queued for the log thread when there is one, made here otherwise.
pub(super) fn record(e: Entry) {
    if !tracing::enabled!(target: "segmentctl::server::middleware", tracing::Level::INFO) {
        return;
    }
    let left = match QUEUE.get() {
        Some(q) => q.record(e),
        None => Some(e),
    };
    if let Some(e) = left {
        emit(&e);
    }
}

/// The line: one event, whose fields never hold a secret or a body.
fn emit(e: &Entry) {
    tracing::info!(
        target: "segmentctl::server::middleware",
        method = %e.method,
        path = %crate::text::safe(e.uri.path()),
        status = e.status,
        operation = e.operation,
        latency_ms = %Millis(e.latency),
        request_id = %e.id,
        "request"
    );
}

/// A duration in milliseconds to a tenth, written straight into the log line.
struct Millis(Duration);

impl std::fmt::Display for Millis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.1}", self.0.as_secs_f64() * 1e3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Seen(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Seen {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn entry(i: u32) -> Entry {
        Entry {
            method: Method::GET,
            uri: format!("/v1/apps/a/segments/s{i}").parse().unwrap(),
            status: 200,
            operation: "GetSegment",
            latency: Duration::from_micros(1250),
            id: format!("id-{i}"),
        }
    }

    /// Queued lines are made only when the log thread asks, in order, as the events the
    /// request layer sends; a full queue hands the line back, to be made where it is.
    #[test]
    fn queued_lines_are_made_in_order_when_asked_and_a_full_queue_refuses() {
        let seen = Seen::default();
        let writer = seen.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .without_time()
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let (queue, lines) = queue_of(2);
            assert!(queue.record(entry(1)).is_none());
            assert!(queue.record(entry(2)).is_none());
            let refused = queue
                .record(entry(3))
                .expect("a full queue hands the line back");
            assert_eq!(refused.id, "id-3");
            assert!(
                seen.0.lock().unwrap().is_empty(),
                "nothing made until asked"
            );
            lines.make();
        });
        let text = String::from_utf8(seen.0.lock().unwrap().clone()).unwrap();
        assert_eq!(
            text,
            " INFO segmentctl::server::middleware: request method=GET path=/v1/apps/a/segments/s1 status=200 operation=\"GetSegment\" latency_ms=1.2 request_id=id-1\n \
             INFO segmentctl::server::middleware: request method=GET path=/v1/apps/a/segments/s2 status=200 operation=\"GetSegment\" latency_ms=1.2 request_id=id-2\n"
        );
    }
}

//! Reading endpoint records and counting audiences: newline-delimited JSON, plain or gzip,
//! streamed in blocks to a worker per core. Memory stays bounded by the blocks in flight
//! (recycled, never more than a few per worker), whatever the file's size. A line that is not
//! an endpoint record is counted and reported, never fatal.

use std::io::{BufRead, BufReader, IsTerminal, Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use crate::evaluate::{NodeId, Program};

/// The size of the blocks handed to workers (cut after a line end).
const BLOCK_BYTES: usize = 1 << 20;
/// The longest record read: 1 MiB, 70 times Pinpoint's largest endpoint (15 KB). A longer
/// line is counted as rejected, and skipped without being held in memory.
pub const MAX_RECORD_BYTES: usize = 1 << 20;
/// What stands in for a line over [`MAX_RECORD_BYTES`] in a block: one byte that is not
/// UTF-8, so the worker rejects it at its line number.
const OVERLONG: u8 = 0xff;
/// How many rejected line numbers are kept for the report.
pub const REJECTED_SHOWN: usize = 5;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    pub read: u64,
    pub rejected: u64,
    /// The first rejected line numbers (1-based), at most [`REJECTED_SHOWN`].
    pub rejected_lines: Vec<u64>,
    /// Per node counted, the endpoints that belong to it.
    pub counts: Vec<u64>,
}

/// An open file of endpoint records.
pub struct Input {
    pub reader: Box<dyn BufRead + Send>,
    pub progress: Progress,
}

/// How far reading a file has come, in bytes of the file (compressed, for gzip).
#[derive(Clone, Default)]
pub struct Progress {
    read: Arc<AtomicU64>,
    pub size: u64,
}

impl Progress {
    pub fn read(&self) -> u64 {
        self.read.load(Ordering::Relaxed)
    }
}

/// Counts the bytes read through it.
struct Counting<R> {
    inner: R,
    read: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Opens a file of endpoint records, decompressing it when it is gzip.
pub fn open(path: &Path) -> std::io::Result<Input> {
    let file = std::fs::File::open(path)?;
    let progress = Progress {
        read: Arc::default(),
        size: file.metadata()?.len(),
    };
    let mut file = BufReader::new(Counting {
        inner: file,
        read: progress.read.clone(),
    });
    let gzip = file.fill_buf()?.starts_with(&[0x1f, 0x8b]);
    let reader: Box<dyn BufRead + Send> = if gzip {
        Box::new(BufReader::new(flate2::read::MultiGzDecoder::new(file)))
    } else {
        Box::new(file)
    };
    Ok(Input { reader, progress })
}

/// Runs `work`, showing on standard error how much of the file has been read when it is a
/// terminal (a line rewritten in place, cleared at the end).
pub fn with_progress<T>(progress: &Progress, work: impl FnOnce() -> T) -> T {
    let mut err = std::io::stderr();
    if !err.is_terminal() || progress.size == 0 {
        return work();
    }
    let done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let mb = |b: u64| b as f64 / 1e6;
            while !done.load(Ordering::Relaxed) {
                std::thread::sleep(std::time::Duration::from_millis(200));
                let read = progress.read().min(progress.size);
                let _ = write!(
                    err,
                    "\rReading endpoint records: {:3.0} % ({:.0} of {:.0} MB)",
                    read as f64 * 100.0 / progress.size as f64,
                    mb(read),
                    mb(progress.size)
                );
                let _ = err.flush();
            }
            let _ = write!(err, "\r\x1b[2K");
        });
        let out = work();
        done.store(true, Ordering::Relaxed);
        out
    })
}

/// What one worker saw. Lines are numbered within their block until the blocks' line
/// counts are known.
#[derive(Default)]
struct Part {
    read: u64,
    rejected: u64,
    /// (block, line within the block), in order; the first [`REJECTED_SHOWN`].
    rejected_at: Vec<(usize, u64)>,
    /// (block, lines in it).
    lines: Vec<(usize, u64)>,
    counts: Vec<u64>,
}

/// Counts, for every node of `targets`, the records of `input` that belong to it.
///
/// Errors: only when `input` cannot be read (bad records are counted, not errors).
pub fn tally(input: impl Read, program: &Program, targets: &[NodeId]) -> std::io::Result<Tally> {
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .max(1);
    // Full blocks go to the workers (at most 2 per worker wait); empty ones come back.
    let (full_tx, full_rx) = mpsc::sync_channel::<(usize, Vec<u8>)>(workers * 2);
    let (empty_tx, empty_rx) = mpsc::channel::<Vec<u8>>();
    let full_rx = Mutex::new(full_rx);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                let (full_rx, empty_tx) = (&full_rx, empty_tx.clone());
                scope.spawn(move || {
                    let mut part = Part {
                        counts: vec![0; targets.len()],
                        ..Part::default()
                    };
                    let mut matched = Vec::with_capacity(program.len());
                    loop {
                        let next = full_rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                        let Ok((seq, block)) = next else { return part };
                        count_block(program, targets, seq, &block, &mut part, &mut matched);
                        let _ = empty_tx.send(block);
                    }
                })
            })
            .collect();
        drop(empty_tx);
        let result = read_blocks(input, &full_tx, &empty_rx);
        drop(full_tx);
        let parts: Vec<Part> = handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect();
        result.map(|()| merge(parts, targets.len()))
    })
}

fn count_block(
    program: &Program,
    targets: &[NodeId],
    seq: usize,
    block: &[u8],
    part: &mut Part,
    matched: &mut Vec<bool>,
) {
    let mut record = program.record();
    let mut start = 0;
    let mut index = 0u64;
    for end in memchr::memchr_iter(b'\n', block).chain([block.len()]) {
        let line = &block[start..end];
        start = end + 1;
        index += 1;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if line.len() > MAX_RECORD_BYTES {
            reject(part, seq, index);
            continue;
        }
        let Ok(line) = std::str::from_utf8(line) else {
            reject(part, seq, index);
            continue;
        };
        if program.read(line, &mut record).is_err() {
            reject(part, seq, index);
            continue;
        }
        part.read += 1;
        program.run(&record, matched);
        for (count, node) in part.counts.iter_mut().zip(targets) {
            *count += u64::from(matched[*node]);
        }
    }
    part.lines.push((seq, index));
}

/// Counts line `index` (1-based) of block `seq` as rejected.
fn reject(part: &mut Part, seq: usize, index: u64) {
    part.rejected += 1;
    if part.rejected_at.len() < REJECTED_SHOWN {
        part.rejected_at.push((seq, index - 1));
    }
}

fn merge(parts: Vec<Part>, targets: usize) -> Tally {
    let mut total = Tally {
        counts: vec![0; targets],
        ..Tally::default()
    };
    let mut lines = Vec::new();
    let mut rejected_at = Vec::new();
    for p in parts {
        total.read += p.read;
        total.rejected += p.rejected;
        for (a, b) in total.counts.iter_mut().zip(p.counts) {
            *a += b;
        }
        lines.extend(p.lines);
        rejected_at.extend(p.rejected_at);
    }
    // The first line number of each block, from the line counts of the blocks before it.
    lines.sort_unstable();
    let mut first = Vec::with_capacity(lines.len());
    let mut next = 1u64;
    for (_, n) in &lines {
        first.push(next);
        next += n;
    }
    rejected_at.sort_unstable();
    total.rejected_lines = rejected_at
        .into_iter()
        .take(REJECTED_SHOWN)
        .map(|(seq, i)| first[seq] + i)
        .collect();
    total
}

/// Reads `input` into blocks cut after a line end, numbered in order, reusing the blocks
/// the workers hand back. A line that grows past [`MAX_RECORD_BYTES`] without ending is
/// dropped as it is read (memory stays bounded whatever the line) and stands in the block
/// as one [`OVERLONG`] byte.
fn read_blocks(
    mut input: impl Read,
    tx: &mpsc::SyncSender<(usize, Vec<u8>)>,
    recycled: &mpsc::Receiver<Vec<u8>>,
) -> std::io::Result<()> {
    let mut seq = 0;
    let mut carry: Vec<u8> = Vec::new();
    // Inside a line over the cap: its bytes are dropped until it ends.
    let mut skipping = false;
    let mut send = |block: Vec<u8>| {
        let ok = tx.send((seq, block)).is_ok();
        seq += 1;
        ok
    };
    loop {
        let mut block = recycled.try_recv().unwrap_or_default();
        block.clear();
        block.extend_from_slice(&carry);
        carry.clear();
        let start = block.len();
        // A line longer than a block makes the block grow: read on until a line ends.
        block.resize(start + BLOCK_BYTES.max(start), 0);
        let n = loop {
            match input.read(&mut block[start..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        };
        block.truncate(start + n);
        if n == 0 {
            if skipping {
                block.push(OVERLONG);
            }
            if !block.is_empty() {
                send(block);
            }
            return Ok(());
        }
        if skipping {
            // `carry` is empty while skipping: the block holds only what was just read.
            match memchr::memchr(b'\n', &block) {
                None => {
                    block.clear();
                    carry = block; // empty, kept for its capacity
                    continue;
                }
                Some(end) => {
                    // The line's last bytes give way to the stand-in; its end stays.
                    block.splice(0..end, [OVERLONG]);
                    skipping = false;
                }
            }
        }
        match memchr::memrchr(b'\n', &block) {
            Some(end) => {
                carry.extend_from_slice(&block[end + 1..]);
                block.truncate(end);
                if !send(block) {
                    return Ok(());
                }
            }
            None if block.len() > MAX_RECORD_BYTES => {
                skipping = true;
                block.clear();
                carry = block;
            }
            None => carry = block,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evaluate::Catalog;
    use std::collections::BTreeMap;

    /// One segment, the endpoints on the SMS channel.
    fn sms_program() -> (Program, NodeId) {
        let segments = BTreeMap::from([(
            "sms".to_string(),
            serde_json::from_str(
                r#"{"Dimensions":{"Demographic":{"Channel":{"Values":["SMS"]}}}}"#,
            )
            .unwrap(),
        )]);
        let mut program = Program::new(time::OffsetDateTime::UNIX_EPOCH);
        let node = program.add(0, &Catalog::of(&segments), "sms");
        (program, node)
    }

    /// Blocks are cut anywhere; counts and the numbers of rejected lines come out the same.
    #[test]
    fn lines_are_counted_and_numbered_across_blocks() {
        let (program, node) = sms_program();
        let mut text = String::new();
        for i in 0..300_000u64 {
            match i {
                3 | 150_000 | 299_999 => text.push_str("not a record\n"),
                7 => text.push_str("   \n"),
                _ if i % 3 == 0 => text.push_str("{\"ChannelType\":\"SMS\",\"Address\":\"+1\"}\n"),
                _ => text.push_str("{\"ChannelType\":\"EMAIL\"}\n"),
            }
        }
        text.push_str("{\"ChannelType\":\"SMS\"}"); // no final newline
        assert!(text.len() > 3 * BLOCK_BYTES);
        let t = tally(text.as_bytes(), &program, &[node]).unwrap();
        assert_eq!(t.rejected, 3);
        assert_eq!(t.rejected_lines, [4, 150_001, 300_000]);
        assert_eq!(t.read, 300_000 - 3 - 1 + 1);
        assert_eq!(t.counts, [100_000 - 2 + 1]); // i % 3 == 0, less lines 3 and 150,000
    }

    /// A line past the cap is rejected at its line number and never held whole: 64 MiB
    /// without a newline read through blocks of 1 MiB, then a 3 MiB line that the file ends
    /// in; the records around them are counted.
    #[test]
    fn a_line_over_the_cap_is_rejected_and_the_reading_goes_on() {
        use std::io::{Cursor, Read};
        let (program, node) = sms_program();
        let rec = "{\"ChannelType\":\"SMS\"}\n";
        let input = Cursor::new(rec)
            .chain(std::io::repeat(b'x').take(64 << 20))
            .chain(Cursor::new(format!("\n{rec}\n{rec}")))
            .chain(std::io::repeat(b'y').take(3 << 20));
        let t = tally(input, &program, &[node]).unwrap();
        assert_eq!((t.read, t.rejected), (3, 2));
        assert_eq!(t.rejected_lines, [2, 6]);
        assert_eq!(t.counts, [3]);
        // Just over the cap, ending inside a block: rejected too; at the cap: read.
        let long = |n: usize| {
            format!(
                "{{\"ChannelType\":\"SMS\",\"Address\":\"{}\"}}\n",
                "1".repeat(n)
            )
        };
        let at_cap = long(MAX_RECORD_BYTES - long(0).len() + 1);
        assert_eq!(at_cap.len() - 1, MAX_RECORD_BYTES);
        let over = long(MAX_RECORD_BYTES - long(0).len() + 2);
        let t = tally(
            format!("{rec}{at_cap}{over}{rec}").as_bytes(),
            &program,
            &[node],
        )
        .unwrap();
        assert_eq!(
            (t.read, t.rejected, t.rejected_lines.clone()),
            (3, 1, vec![3])
        );
    }
}

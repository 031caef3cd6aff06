//! Reading endpoint records and counting audiences: newline-delimited JSON, plain or gzip,
//! streamed in blocks to a worker per core. Memory stays bounded by the blocks in flight
//! (recycled, never more than a few per worker), whatever the file's size. A line that is not
//! an endpoint record is counted and reported, never fatal.

use std::io::{BufRead, BufReader, IsTerminal, Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use crate::audience::evaluate::{NodeId, Program, BATCH};

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
    /// The file mapped into memory, when it is a plain (not gzip) regular file: the workers
    /// then read it in place, with no copy and no reading thread.
    pub mapped: Option<Mapped>,
}

/// A file mapped read-only into memory (by `memmap2`, as ripgrep maps its input).
///
/// A file truncated by another process while it is mapped makes the next read of the lost
/// pages fail with SIGBUS: as with any tool that maps its input (ripgrep, grep's mmap
/// mode), do not count a file a writer is truncating.
pub struct Mapped(memmap2::Mmap);

impl Mapped {
    /// Maps the first `len` bytes (the size seen at open); `None` for an empty file or when
    /// the file cannot be mapped: it is then read in blocks.
    fn map(file: &std::fs::File, len: u64) -> Option<Mapped> {
        let len = usize::try_from(len).ok().filter(|n| *n > 0)?;
        // SAFETY: a read-only mapping of an open file; see the SIGBUS note above for a file
        // changed while it is counted.
        let map = unsafe { memmap2::MmapOptions::new().len(len).map(file) }.ok()?;
        // Advice only: failure is harmless.
        #[cfg(unix)]
        let _ = map.advise(memmap2::Advice::Sequential);
        Some(Mapped(map))
    }

    /// Gives back the pages wholly inside `range` (already read): they stay in the page
    /// cache, but leave this process's resident memory, which stays bounded.
    fn release(&self, range: std::ops::Range<usize>) {
        #[cfg(unix)]
        {
            let page = rustix::param::page_size();
            let start = range.start.div_ceil(page) * page;
            let end = range.end / page * page;
            if start < end {
                // SAFETY: whole pages of this read-only file mapping that nothing reads
                // again (a block is read by one worker, once, and the range is rounded
                // inwards so the blocks beside it keep their pages); dropping them only
                // means a later read would fault them in again from the file. Failure is
                // harmless.
                let _ = unsafe {
                    self.0.unchecked_advise_range(
                        memmap2::UncheckedAdvice::DontNeed,
                        start,
                        end - start,
                    )
                };
            }
        }
        #[cfg(not(unix))]
        let _ = range;
    }

    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
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
    let regular = file.get_ref().inner.metadata()?.is_file();
    let mapped = if gzip || !regular {
        None
    } else {
        Mapped::map(&file.get_ref().inner, progress.size)
    };
    let reader: Box<dyn BufRead + Send> = if gzip {
        Box::new(BufReader::new(flate2::read::MultiGzDecoder::new(file)))
    } else {
        Box::new(file)
    };
    Ok(Input {
        reader,
        progress,
        mapped,
    })
}

/// [`tally`] over an open input: in place when the file is mapped, else read in blocks.
pub fn tally_input(input: Input, program: &Program, targets: &[NodeId]) -> std::io::Result<Tally> {
    match &input.mapped {
        Some(m) => Ok(tally_bytes(m, &input.progress, program, targets)),
        None => tally(input.reader, program, targets),
    }
}

/// Counts over bytes in memory: cut into blocks after a line end, taken in turn by a
/// worker per core.
fn tally_bytes(
    mapped: &Mapped,
    progress: &Progress,
    program: &Program,
    targets: &[NodeId],
) -> Tally {
    let bytes = mapped.bytes();
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .max(1);
    // The next block is cut when a worker takes it (cutting them all first would touch a
    // page of every block at once).
    let next = Mutex::new((0usize, 0usize)); // (where the next block starts, its number)
    let take = || {
        let mut n = next.lock().unwrap_or_else(|p| p.into_inner());
        let (start, seq) = *n;
        if start >= bytes.len() {
            return None;
        }
        let end = (start + BLOCK_BYTES).min(bytes.len());
        let end = memchr::memchr(b'\n', &bytes[end..]).map_or(bytes.len(), |i| end + i + 1);
        *n = (end, seq + 1);
        Some((seq, start..end))
    };
    let parts: Vec<Part> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                let take = &take;
                scope.spawn(move || {
                    let mut part = Part {
                        counts: vec![0; targets.len()],
                        ..Part::default()
                    };
                    let mut matched = Vec::with_capacity(program.len());
                    while let Some((seq, range)) = take() {
                        let mut block = &bytes[range.clone()];
                        if block.last() == Some(&b'\n') {
                            block = &block[..block.len() - 1];
                        }
                        count_block(program, targets, seq, block, &mut part, &mut matched);
                        mapped.release(range.clone());
                        // How far the file is counted (the first block read to sniff
                        // for gzip is not counted twice).
                        progress.read.fetch_max(range.end as u64, Ordering::Relaxed);
                    }
                    part
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    });
    merge(parts, targets.len())
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
    let (full_tx, full_rx) = mpsc::sync_channel::<(usize, Vec<u8>, usize)>(workers * 2);
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
                        let Ok((seq, block, len)) = next else {
                            return part;
                        };
                        count_block(
                            program,
                            targets,
                            seq,
                            &block[..len],
                            &mut part,
                            &mut matched,
                        );
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
    matched: &mut Vec<u64>,
) {
    // Records are read into a batch, evaluated together when it is full.
    let mut batch: Vec<_> = (0..BATCH).map(|_| program.record()).collect();
    let mut held = 0;
    let mut count = |batch: &[_], part: &mut Part| {
        program.run_batch(batch, matched);
        for (count, node) in part.counts.iter_mut().zip(targets) {
            *count += u64::from(matched[*node].count_ones());
        }
    };
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
        if program.read_bytes(line, &mut batch[held]).is_err() {
            reject(part, seq, index);
            continue;
        }
        part.read += 1;
        held += 1;
        if held == BATCH {
            count(&batch, part);
            held = 0;
        }
    }
    if held > 0 {
        count(&batch[..held], part);
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
/// the workers hand back. A block is sent with the length of its data; its buffer keeps its
/// initialized length, so a recycled block is read into without being zeroed again. A line
/// that grows past [`MAX_RECORD_BYTES`] without ending is dropped as it is read (memory
/// stays bounded whatever the line) and stands in the block as one [`OVERLONG`] byte.
fn read_blocks(
    mut input: impl Read,
    tx: &mpsc::SyncSender<(usize, Vec<u8>, usize)>,
    recycled: &mpsc::Receiver<Vec<u8>>,
) -> std::io::Result<()> {
    let mut seq = 0;
    let mut carry: Vec<u8> = Vec::new();
    // Inside a line over the cap: its bytes are dropped until it ends.
    let mut skipping = false;
    let mut send = |block: Vec<u8>, len: usize| {
        let ok = tx.send((seq, block, len)).is_ok();
        seq += 1;
        ok
    };
    // A block kept back (its data copied out or dropped), used before a recycled one.
    let mut spare: Option<Vec<u8>> = None;
    loop {
        let mut block = spare
            .take()
            .or_else(|| recycled.try_recv().ok())
            .unwrap_or_default();
        let start = carry.len();
        // A line longer than a block makes the block grow: read on until a line ends.
        let want = start + BLOCK_BYTES.max(start);
        if block.len() < want {
            block.resize(want, 0);
        }
        block[..start].copy_from_slice(&carry);
        carry.clear();
        let n = loop {
            match input.read(&mut block[start..want]) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        };
        let mut len = start + n;
        if n == 0 {
            if skipping {
                block[len] = OVERLONG;
                len += 1;
            }
            if len > 0 {
                send(block, len);
            }
            return Ok(());
        }
        if skipping {
            // `carry` is empty while skipping: the block holds only what was just read.
            match memchr::memchr(b'\n', &block[..len]) {
                None => {
                    spare = Some(block);
                    continue;
                }
                Some(end) => {
                    // The line's last bytes give way to the stand-in; its end stays.
                    if end == 0 {
                        if len == block.len() {
                            block.push(0);
                        }
                        block.copy_within(0..len, 1);
                        len += 1;
                    } else {
                        block.copy_within(end - 1..len, 0);
                        len -= end - 1;
                    }
                    block[0] = OVERLONG;
                    skipping = false;
                }
            }
        }
        match memchr::memrchr(b'\n', &block[..len]) {
            Some(end) => {
                carry.extend_from_slice(&block[end + 1..len]);
                if !send(block, end) {
                    return Ok(());
                }
            }
            None if len > MAX_RECORD_BYTES => {
                skipping = true;
                spare = Some(block);
            }
            None => {
                carry.extend_from_slice(&block[..len]);
                spare = Some(block);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audience::evaluate::Catalog;
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

    /// A plain file is counted in place (mapped): the same tally as reading it in blocks,
    /// with blank lines, lines that are not records, an overlong line and no final newline.
    #[test]
    fn a_mapped_file_counts_as_a_read_one() {
        let (program, node) = sms_program();
        let mut text = String::new();
        for i in 0..120_000u64 {
            match i {
                5 | 99_999 => text.push_str("not a record\n"),
                11 => text.push_str("\n\n"),
                70_000 => {
                    text.push_str("{\"Address\":\"");
                    text.push_str(&"x".repeat(MAX_RECORD_BYTES + 10));
                    text.push_str("\"}\n");
                }
                _ if i % 4 == 0 => text.push_str("{\"ChannelType\":\"SMS\"}\n"),
                _ => text.push_str("{\"ChannelType\":\"EMAIL\",\"Id\":\"e\"}\n"),
            }
        }
        text.push_str("{\"ChannelType\":\"SMS\"}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.jsonl");
        std::fs::write(&path, &text).unwrap();
        let input = open(&path).unwrap();
        assert!(input.mapped.is_some(), "a plain file is mapped");
        let progress = input.progress.clone();
        let mapped = tally_input(input, &program, &[node]).unwrap();
        let read = tally(text.as_bytes(), &program, &[node]).unwrap();
        assert_eq!(mapped, read);
        assert_eq!(mapped.rejected, 3);
        assert_eq!(mapped.rejected_lines, [6, 70_002, 100_001]);
        assert_eq!(
            progress.read(),
            text.len() as u64,
            "progress reaches the end"
        );
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

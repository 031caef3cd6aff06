//! Reading endpoint records and counting audiences: newline-delimited JSON, plain or gzip,
//! streamed in chunks to a worker per core. Memory stays bounded by the chunks in flight,
//! whatever the file's size. A line that is not an endpoint record is counted and reported,
//! never fatal.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::sync::mpsc;

use crate::evaluate::{Endpoint, Evaluator};

/// The size of the blocks handed to workers (cut at a line end).
const BLOCK_BYTES: usize = 1 << 20;
/// How many rejected line numbers are kept for the report.
pub const REJECTED_SHOWN: usize = 5;

/// One segment to count: which evaluator (application) and which segment in it.
#[derive(Debug, Clone)]
pub struct Target {
    pub evaluator: usize,
    pub segment: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    pub read: u64,
    pub rejected: u64,
    /// The first rejected line numbers (1-based), at most [`REJECTED_SHOWN`].
    pub rejected_lines: Vec<u64>,
    /// Per target, the endpoints that belong to it.
    pub counts: Vec<u64>,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.read += other.read;
        self.rejected += other.rejected;
        self.rejected_lines.extend(other.rejected_lines);
        self.rejected_lines.sort_unstable();
        self.rejected_lines.truncate(REJECTED_SHOWN);
        if self.counts.len() < other.counts.len() {
            self.counts.resize(other.counts.len(), 0);
        }
        for (a, b) in self.counts.iter_mut().zip(other.counts) {
            *a += b;
        }
    }
}

/// Opens a file of endpoint records, decompressing it when it is gzip.
pub fn open(path: &Path) -> std::io::Result<Box<dyn BufRead + Send>> {
    let mut file = BufReader::new(std::fs::File::open(path)?);
    let gzip = file.fill_buf()?.starts_with(&[0x1f, 0x8b]);
    Ok(if gzip {
        Box::new(BufReader::new(flate2::read::MultiGzDecoder::new(file)))
    } else {
        Box::new(file)
    })
}

/// Counts, for every target, the records of `input` that belong to it.
///
/// Errors: only when `input` cannot be read (bad records are counted, not errors).
pub fn tally(
    input: impl Read,
    evaluators: &[Evaluator<'_>],
    targets: &[Target],
) -> std::io::Result<Tally> {
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .max(1);
    // Blocks of whole lines, with the number of their first line; at most 2 per worker wait.
    let (tx, rx) = mpsc::sync_channel::<(u64, Vec<u8>)>(workers * 2);
    let rx = std::sync::Mutex::new(rx);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                let rx = &rx;
                scope.spawn(move || {
                    let mut t = Tally {
                        counts: vec![0; targets.len()],
                        ..Default::default()
                    };
                    loop {
                        let next = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                        let Ok((first, block)) = next else { return t };
                        for (i, line) in block.split(|b| *b == b'\n').enumerate() {
                            if line.iter().all(u8::is_ascii_whitespace) {
                                continue;
                            }
                            match serde_json::from_slice::<Endpoint<'_>>(line) {
                                Ok(e) => {
                                    t.read += 1;
                                    for (k, target) in targets.iter().enumerate() {
                                        if evaluators[target.evaluator].matches(&target.segment, &e)
                                        {
                                            t.counts[k] += 1;
                                        }
                                    }
                                }
                                Err(_) => {
                                    t.rejected += 1;
                                    if t.rejected_lines.len() < REJECTED_SHOWN {
                                        t.rejected_lines.push(first + i as u64);
                                    }
                                }
                            }
                        }
                    }
                })
            })
            .collect();
        let result = read_blocks(input, &tx);
        drop(tx);
        let mut total = Tally {
            counts: vec![0; targets.len()],
            ..Default::default()
        };
        for h in handles {
            total.merge(h.join().unwrap_or_default());
        }
        result.map(|()| total)
    })
}

/// Reads `input` in blocks cut after a line end and sends them with their first line number.
fn read_blocks(mut input: impl Read, tx: &mpsc::SyncSender<(u64, Vec<u8>)>) -> std::io::Result<()> {
    let mut line = 1u64;
    let mut carry: Vec<u8> = Vec::new();
    loop {
        let mut block = std::mem::take(&mut carry);
        let start = block.len();
        block.resize(start + BLOCK_BYTES, 0);
        let n = loop {
            match input.read(&mut block[start..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        };
        block.truncate(start + n);
        if n == 0 {
            if !block.is_empty() {
                let _ = tx.send((line, block));
            }
            return Ok(());
        }
        // Keep the partial last line for the next block.
        if let Some(end) = block.iter().rposition(|b| *b == b'\n') {
            carry = block.split_off(end + 1);
            block.pop(); // the final newline: the worker's split would yield an empty line
            let lines = block.iter().filter(|b| **b == b'\n').count() as u64 + 1;
            if tx.send((line, block)).is_err() {
                return Ok(());
            }
            line += lines;
        } else {
            carry = block; // one line longer than a block: read on
        }
    }
}

//! Where a line's strings end, found for the whole line before it is parsed.
//!
//! One pass over the line, 64 bytes at a time, sets a bit for every byte at which a string
//! would stop: a `"` or a control character (below 0x20, an error inside a string). The
//! parser then finds the end of each string with one bit scan instead of a byte loop whose
//! exit branch the processor mispredicts at every string. The same pass tells whether the
//! line holds a backslash (then strings may hold escaped quotes, and the parser scans them
//! byte by byte instead) and whether it is pure ASCII (then it is valid UTF-8 without a
//! second pass).

/// What the pass found besides the stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Scan {
    pub backslash: bool,
    pub ascii: bool,
}

/// Fills `stops` with one word per 64 bytes of `line` (bit `k` of word `w`: byte `64w + k`
/// is a `"` or below 0x20; no bit past the end of the line).
pub(super) fn index(line: &[u8], stops: &mut Vec<u64>) -> Scan {
    stops.clear();
    let mut marks = Marks::default();
    let mut chunks = line.chunks_exact(64);
    for chunk in &mut chunks {
        stops.push(marks.chunk(chunk.try_into().unwrap()));
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        // Padded with spaces: not a stop, not a backslash, ASCII.
        let mut last = [b' '; 64];
        last[..rest.len()].copy_from_slice(rest);
        stops.push(marks.chunk(&last));
    }
    Scan {
        backslash: marks.backslash != 0,
        ascii: marks.high == 0,
    }
}

/// The next stop at or after `from`, if any.
#[inline]
pub(super) fn next_stop(stops: &[u64], from: usize) -> Option<usize> {
    let mut w = from / 64;
    let mut bits = *stops.get(w)? & (!0u64 << (from % 64));
    while bits == 0 {
        w += 1;
        bits = *stops.get(w)?;
    }
    Some(w * 64 + bits.trailing_zeros() as usize)
}

/// Backslashes and high bytes seen so far (non-zero: some).
#[derive(Default)]
struct Marks {
    backslash: u64,
    high: u64,
}

impl Marks {
    /// The stops of 64 bytes.
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    #[inline]
    fn chunk(&mut self, c: &[u8; 64]) -> u64 {
        use std::arch::x86_64::{
            __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_min_epu8, _mm_movemask_epi8,
            _mm_or_si128, _mm_set1_epi8,
        };
        let mut stops = 0u64;
        // SAFETY: SSE2 is enabled (the cfg above; it is part of x86_64), and each load
        // reads bytes 16k..16k+16 of the 64 in `c`, unaligned.
        unsafe {
            let quote = _mm_set1_epi8(b'"' as i8);
            let slash = _mm_set1_epi8(b'\\' as i8);
            let below = _mm_set1_epi8(0x1f);
            for k in 0..4 {
                let v = _mm_loadu_si128(c.as_ptr().add(16 * k).cast::<__m128i>());
                // A byte is below 0x20 when the smaller of it and 0x1f is itself.
                let control = _mm_cmpeq_epi8(_mm_min_epu8(v, below), v);
                let stop = _mm_or_si128(_mm_cmpeq_epi8(v, quote), control);
                stops |= u64::from(_mm_movemask_epi8(stop) as u16) << (16 * k);
                self.backslash |= _mm_movemask_epi8(_mm_cmpeq_epi8(v, slash)) as u64;
                self.high |= _mm_movemask_epi8(v) as u64;
            }
        }
        stops
    }

    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    #[inline]
    fn chunk(&mut self, c: &[u8; 64]) -> u64 {
        self.swar(c)
    }

    /// The same, eight bytes at a time in a `u64` (other architectures; checked against
    /// the SSE2 pass on x86_64).
    #[cfg_attr(all(target_arch = "x86_64", target_feature = "sse2"), allow(dead_code))]
    fn swar(&mut self, c: &[u8; 64]) -> u64 {
        const ONES: u64 = 0x0101_0101_0101_0101;
        const LOW7: u64 = ONES * 0x7f;
        const HIGH: u64 = ONES * 0x80;
        // The high bit of each zero byte of `y`, exactly (no borrow between bytes).
        let zero = |y: u64| !(((y & LOW7) + LOW7) | y | LOW7);
        let mut stops = 0u64;
        for (k, word) in c.chunks_exact(8).enumerate() {
            let x = u64::from_le_bytes(word.try_into().unwrap());
            // Below 0x20: the high bit clear, and the low seven bits plus 0x60 below 0x80.
            let control = !(((x & LOW7) + ONES * 0x60) | x) & HIGH;
            let stop = zero(x ^ (ONES * u64::from(b'"'))) | control;
            self.backslash |= zero(x ^ (ONES * u64::from(b'\\')));
            self.high |= x & HIGH;
            // Gather the high bit of byte j into bit j.
            let bits = ((stop >> 7).wrapping_mul(0x0102_0408_1020_4080)) >> 56;
            stops |= bits << (8 * k);
        }
        stops
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stops and marks of a line, byte by byte.
    fn slow(line: &[u8]) -> (Vec<u64>, Scan) {
        let mut stops = vec![0u64; line.len().div_ceil(64)];
        for (i, b) in line.iter().enumerate() {
            if *b == b'"' || *b < 0x20 {
                stops[i / 64] |= 1 << (i % 64);
            }
        }
        let scan = Scan {
            backslash: line.contains(&b'\\'),
            ascii: line.is_ascii(),
        };
        (stops, scan)
    }

    #[test]
    fn every_byte_value_at_every_position_is_marked_as_byte_by_byte() {
        let mut rng = fastrand::Rng::with_seed(11);
        let mut stops = Vec::new();
        for len in 0..200 {
            for _ in 0..40 {
                // Mostly plain text, with every byte value showing up somewhere.
                let line: Vec<u8> = (0..len)
                    .map(|_| {
                        if rng.u8(..4) == 0 {
                            rng.u8(..)
                        } else {
                            rng.u8(b'a'..=b'z')
                        }
                    })
                    .collect();
                let scan = index(&line, &mut stops);
                assert_eq!((stops.clone(), scan), slow(&line), "{line:?}");
                let mut padded = [b' '; 64];
                for (i, chunk) in line.chunks(64).enumerate() {
                    padded.fill(b' ');
                    padded[..chunk.len()].copy_from_slice(chunk);
                    let mut marks = Marks::default();
                    assert_eq!(marks.swar(&padded), stops[i], "{chunk:?}");
                }
            }
        }
        for b in 0..=255u8 {
            let line = [b; 64];
            let mut marks = Marks::default();
            let want = if b == b'"' || b < 0x20 { !0 } else { 0 };
            assert_eq!(marks.swar(&line), want, "{b}");
            assert_eq!(marks.chunk(&line), want, "{b}");
            assert_eq!(marks.backslash != 0, b == b'\\', "{b}");
            assert_eq!(marks.high != 0, b >= 0x80, "{b}");
        }
    }

    #[test]
    fn the_next_stop_is_found_across_words_and_not_past_the_end() {
        let mut line = vec![b'a'; 200];
        line[3] = b'"';
        line[130] = b'"';
        let mut stops = Vec::new();
        index(&line, &mut stops);
        assert_eq!(next_stop(&stops, 0), Some(3));
        assert_eq!(next_stop(&stops, 3), Some(3));
        assert_eq!(next_stop(&stops, 4), Some(130));
        assert_eq!(next_stop(&stops, 131), None);
        assert_eq!(next_stop(&stops, 200), None);
        assert_eq!(next_stop(&stops, 256), None);
        index(&line[..128], &mut stops);
        assert_eq!(next_stop(&stops, 4), None);
        assert_eq!(next_stop(&stops, 128), None);
    }
}

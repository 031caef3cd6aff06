//! Instants in endpoint records: the one grammar the evaluator reads, written so that the
//! SQL compiler ([`super::sql`]) can say exactly the same thing in every engine.
//!
//! `YYYY-MM-DD`, then `T`, `t` or a space, `HH:MM:SS`, an optional fraction (`.` and one or
//! more digits; digits past the ninth are dropped), and `Z`, `z` or an offset `±HH:MM`
//! (hours up to 23, minutes up to 59). The date must exist; hours 00–23, minutes and seconds
//! 00–59 (no leap second). Anything else is not an instant: the value counts as missing for
//! date criteria. The result is nanoseconds since 1970-01-01T00:00:00Z.

/// Nanoseconds since the epoch of an instant written as above, or `None`.
pub fn instant_nanos(text: &str) -> Option<i128> {
    let b = text.as_bytes();
    let head = b.first_chunk::<19>()?;
    if b.len() < 20
        || head[4] != b'-'
        || head[7] != b'-'
        || !matches!(head[10], b'T' | b't' | b' ')
        || head[13] != b':'
        || head[16] != b':'
    {
        return None;
    }
    // The fourteen digits, each checked, at their fixed places.
    let d = |i: usize| i64::from(head[i].wrapping_sub(b'0'));
    const DIGITS: [usize; 14] = [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18];
    if DIGITS.iter().fold(false, |bad, &i| bad | (d(i) > 9)) {
        return None;
    }
    let two = |i: usize| d(i) * 10 + d(i + 1);
    let year = two(0) * 100 + two(2);
    let (month, day) = (two(5), two(8));
    let (hour, minute, second) = (two(11), two(14), two(17));
    let mut i = 19;
    let mut nanos: i64 = 0;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 9 {
                nanos = nanos * 10 + i64::from(b[i] - b'0');
            }
            i += 1;
        }
        if i == start {
            return None;
        }
        for _ in (i - start).min(9)..9 {
            nanos *= 10;
        }
    }
    let offset = match &b[i..] {
        [b'Z' | b'z'] => 0,
        &[sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let [h1, h2, m1, m2] = [h1, h2, m1, m2].map(|c| i64::from(c.wrapping_sub(b'0')));
            if h1 > 9 || h2 > 9 || m1 > 9 || m2 > 9 {
                return None;
            }
            let (h, m) = (h1 * 10 + h2, m1 * 10 + m2);
            if h > 23 || m > 59 {
                return None;
            }
            let s = h * 3600 + m * 60;
            if sign == b'-' {
                -s
            } else {
                s
            }
        }
        _ => return None,
    };
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let secs =
        days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - offset;
    Some(i128::from(secs) * 1_000_000_000 + i128::from(nanos))
}

pub(crate) fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

pub(crate) fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 => 28 + i64::from(is_leap(year)),
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to a date of years 0000–9999 (H. Hinnant's `days_from_civil`, with
/// the year shifted by 400 so that every division is of non-negative numbers: the SQL
/// dialects then agree on it).
pub(crate) fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = year - i64::from(month <= 2) + 400;
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468 - 146_097
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::OffsetDateTime;

    fn rfc3339(s: &str) -> i128 {
        OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
            .unwrap()
            .unix_timestamp_nanos()
    }

    /// The first, plainer reading of the grammar: the fast one must agree with it.
    fn plain(text: &str) -> Option<i128> {
        let b = text.as_bytes();
        if b.len() < 20 {
            return None;
        }
        let num = |from: usize, len: usize| -> Option<i64> {
            b[from..from + len].iter().try_fold(0i64, |n, d| {
                d.is_ascii_digit().then(|| n * 10 + i64::from(d - b'0'))
            })
        };
        if b[4] != b'-'
            || b[7] != b'-'
            || !matches!(b[10], b'T' | b't' | b' ')
            || b[13] != b':'
            || b[16] != b':'
        {
            return None;
        }
        let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
        let (hour, minute, second) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
        let mut i = 19;
        let mut nanos: i64 = 0;
        if b[i] == b'.' {
            i += 1;
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                if i - start < 9 {
                    nanos = nanos * 10 + i64::from(b[i] - b'0');
                }
                i += 1;
            }
            if i == start {
                return None;
            }
            for _ in (i - start).min(9)..9 {
                nanos *= 10;
            }
        }
        let offset = match &b[i..] {
            [b'Z' | b'z'] => 0,
            [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
                let (h, m) = (num(i + 1, 2)?, num(i + 4, 2)?);
                if h > 23 || m > 59 {
                    return None;
                }
                let s = h * 3600 + m * 60;
                if *sign == b'-' {
                    -s
                } else {
                    s
                }
            }
            _ => return None,
        };
        if !(1..=12).contains(&month)
            || day < 1
            || day > days_in_month(year, month)
            || hour > 23
            || minute > 59
            || second > 59
        {
            return None;
        }
        let secs = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second
            - offset;
        Some(i128::from(secs) * 1_000_000_000 + i128::from(nanos))
    }

    #[test]
    fn agrees_with_the_plain_reading_on_mutated_instants() {
        let mut rng = fastrand::Rng::with_seed(17);
        let alphabet = b"0123456789-:+.TtZz x";
        let seeds = [
            "2026-03-01T12:00:00Z",
            "2024-02-29T23:59:59.999999999+05:30",
            "1999-12-31 00:00:00.1-00:30",
        ];
        let mut read = 0;
        for seed in seeds {
            for _ in 0..50_000 {
                let mut s = seed.as_bytes().to_vec();
                for _ in 0..rng.usize(1..3) {
                    let at = rng.usize(..s.len());
                    match rng.u8(..3) {
                        0 => s[at] = alphabet[rng.usize(..alphabet.len())],
                        1 => {
                            s.remove(at);
                        }
                        _ => s.insert(at, alphabet[rng.usize(..alphabet.len())]),
                    }
                }
                let s = String::from_utf8(s).unwrap();
                assert_eq!(instant_nanos(&s), plain(&s), "{s:?}");
                read += usize::from(plain(&s).is_some());
            }
        }
        assert!(read > 10_000, "{read}");
    }

    #[test]
    fn agrees_with_rfc3339_where_both_read() {
        for s in [
            "1970-01-01T00:00:00Z",
            "2026-03-01T12:00:00Z",
            "2024-02-29T23:59:59.999999999Z",
            "2026-11-28T02:00:00+02:00",
            "1969-12-31T23:59:59-00:30",
            "0001-01-01T00:00:00Z",
            "0000-03-01T00:00:00Z",
            "9999-12-31T23:59:59.5Z",
            "2026-06-30T23:59:59.123z",
            "2000-02-29t10:00:00+23:59",
        ] {
            assert_eq!(instant_nanos(s), Some(rfc3339(s)), "{s}");
        }
    }

    #[test]
    fn reads_a_space_and_drops_digits_past_nanoseconds() {
        assert_eq!(
            instant_nanos("2026-03-01 12:00:00Z"),
            instant_nanos("2026-03-01T12:00:00Z")
        );
        assert_eq!(
            instant_nanos("2026-03-01T12:00:00.1234567891234Z"),
            Some(rfc3339("2026-03-01T12:00:00.123456789Z"))
        );
    }

    #[test]
    fn refuses_what_is_not_an_instant() {
        for s in [
            "",
            "2026-03-01",
            "2026-03-01T12:00Z",
            "2026-03-01T12:00:00",
            "2026-02-29T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-00-01T00:00:00Z",
            "2026-04-31T00:00:00Z",
            "2026-03-01T24:00:00Z",
            "2026-03-01T23:60:00Z",
            "2026-03-01T23:59:60Z",
            "2026-03-01X12:00:00Z",
            "2026-03-01T12:00:00.Z",
            "2026-03-01T12:00:00+24:00",
            "2026-03-01T12:00:00+02:60",
            "2026-03-01T12:00:00+0200",
            "2026-03-01T12:00:00ZZ",
            "+2026-03-01T12:00:00Z",
            "2026-03-01T12:00:00Z\n",
            "２026-03-01T12:00:00Z",
        ] {
            assert_eq!(instant_nanos(s), None, "{s:?}");
        }
    }
}

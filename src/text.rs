//! The small formatting helpers every report shares: plurals, digit groups, numbers, instants,
//! colours, and escaping text that came from users for the terminal and text logs.

use std::borrow::Cow;

use time::macros::format_description;
use time::OffsetDateTime;

/// "1 segment", "2 segments".
pub fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("{n} {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// `1234567` → `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A number as people write it: `10`, not `10.0`; `2.5` stays `2.5`.
pub fn number(v: f64) -> String {
    if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// An ISO-8601 UTC timestamp with milliseconds, as Pinpoint writes them.
pub fn iso(t: OffsetDateTime) -> String {
    t.format(format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    ))
    .unwrap_or_default()
}

/// Now, as [`iso`].
pub fn now_iso() -> String {
    iso(OffsetDateTime::now_utc())
}

/// Colours only on a terminal, and never when `NO_COLOR` is set (https://no-color.org).
pub fn use_colour(stream: &impl std::io::IsTerminal) -> bool {
    stream.is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Text from outside (a segment's name, a tag, a campaign's name) made safe for a terminal
/// or a text log line: control characters (newlines, escape sequences, bidirectional
/// overrides) are shown as `\n`, `\x1b`, `\u{202e}`, so nothing can hide text from a
/// reviewer or forge a line.
pub fn safe(s: &str) -> Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x80 && needs_escape(c) => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if needs_escape(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

fn needs_escape(c: char) -> bool {
    c.is_control()
        // Bidirectional controls reorder what a terminal shows (CVE-2021-42574).
        || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn whole_numbers_have_no_fraction() {
        assert_eq!(number(10.0), "10");
        assert_eq!(number(-3.0), "-3");
        assert_eq!(number(2.5), "2.5");
        assert_eq!(number(0.1), "0.1");
    }

    #[test]
    fn control_characters_are_shown_not_obeyed() {
        assert_eq!(safe("plain name"), "plain name");
        assert_eq!(safe("a\nb"), "a\\nb");
        assert_eq!(safe("\u{1b}[8mhidden"), "\\x1b[8mhidden");
        assert_eq!(safe("abc\u{202e}fed"), "abc\\u{202e}fed");
        assert_eq!(safe("é ✓"), "é ✓");
    }
}

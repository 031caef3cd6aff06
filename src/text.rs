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

static STDOUT_CLOSED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Writes to standard output. When the reader has gone (`segmentctl plan | head`), the rest
/// is dropped quietly: the work goes on and the exit code is the work's, never a panic.
pub fn out(s: &str) {
    use std::io::Write;
    use std::sync::atomic::Ordering;
    if STDOUT_CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut o = std::io::stdout().lock();
    if o.write_all(s.as_bytes()).and_then(|()| o.flush()).is_err() {
        STDOUT_CLOSED.store(true, Ordering::Relaxed);
    }
}

/// Writes to standard error, quietly dropping what a closed stream cannot take.
pub fn err(s: &str) {
    use std::io::Write;
    let mut e = std::io::stderr().lock();
    let _ = e.write_all(s.as_bytes()).and_then(|()| e.flush());
}

/// Colours only on a terminal, and never when `NO_COLOR` is set (https://no-color.org).
pub fn use_colour(stream: &impl std::io::IsTerminal) -> bool {
    stream.is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// A message about a row of a file with nothing of the row in it, for whoever reads a job's
/// failures (who may not be allowed to read the file): each quoted value (`"…"`, `` `…` ``)
/// becomes `"…"`, and a field the file names (`Attributes.NAME`, `Metrics.NAME`,
/// `User.UserAttributes.NAME`) becomes its family (`Attributes.*`).
pub fn without_content(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut chars = msg.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' | '`' => {
                let mut escaped = false;
                for d in chars.by_ref() {
                    if escaped {
                        escaped = false;
                    } else if d == '\\' {
                        escaped = true;
                    } else if d == c {
                        break;
                    }
                }
                out.push(c);
                out.push('…');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    for family in ["User.UserAttributes.", "Attributes.", "Metrics."] {
        let mut at = 0;
        while let Some(i) = out[at..].find(family) {
            let start = at + i + family.len();
            let end = out[start..]
                .find([':', ' ', ',', ';', ')'])
                .map_or(out.len(), |j| start + j);
            if out[start..end] != *"*" {
                out.replace_range(start..end, "*");
            }
            at = start + 1;
        }
    }
    out
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

/// A user string in double quotes, for a terminal or a text log: quotes and backslashes
/// escaped, control characters shown.
pub fn quoted(s: &str) -> String {
    format!(
        "\"{}\"",
        safe(&s.replace('\\', "\\\\").replace('"', "\\\""))
    )
}

fn needs_escape(c: char) -> bool {
    c.is_control()
        // Bidirectional controls reorder what a terminal shows (CVE-2021-42574).
        || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}')
}

/// A URL with any user name and password in it removed, for logs and reports: everything
/// from `://` to the last `@`, wherever it is (a password may hold `/`, `?` or `#`, which
/// would end a parser's authority early).
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    match rest.rfind('@') {
        Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
        None => url.to_string(),
    }
}

/// An error and its causes on one line, `a: b: c`, as ripgrep prints them; a cause whose
/// text the line already holds is not repeated.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = s.source();
    }
    parts.join(": ")
}

/// `1 endpoint`, `1,204 endpoints`.
pub fn endpoints_text(n: u64) -> String {
    let noun = if n == 1 { "endpoint" } else { "endpoints" };
    format!("{} {noun}", thousands(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_message_keeps_nothing_of_the_row() {
        assert_eq!(
            without_content(r#"ChannelType: unknown value "AWS_SECRET=x\"y"; expected APNS"#),
            r#"ChannelType: unknown value "…"; expected APNS"#
        );
        assert_eq!(
            without_content(
                "Attributes.GITHUB_TOKEN=ghp: at most 50 values; unknown field `PATH=/bin`"
            ),
            "Attributes.*: at most 50 values; unknown field `…`"
        );
        assert_eq!(
            without_content("User.UserAttributes.s3cr3t: too long, Metrics.k: not a number"),
            "User.UserAttributes.*: too long, Metrics.*: not a number"
        );
    }

    #[test]
    fn credentials_in_a_url_are_never_shown() {
        assert_eq!(
            redact_url("http://user:pass@host:4566/x"),
            "http://host:4566/x"
        );
        // A password may hold `/`, `?` or `#`: everything up to the last `@` goes (an
        // endpoint URL with an `@` anywhere is refused, so none is shown cut short in use).
        assert_eq!(redact_url("http://bob:p/ss@h:1/x"), "http://h:1/x");
        assert_eq!(redact_url("http://bob:p#ss@h:1"), "http://h:1");
        assert_eq!(redact_url("http://host:1"), "http://host:1");
        assert_eq!(redact_url("not a url"), "not a url");
    }

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

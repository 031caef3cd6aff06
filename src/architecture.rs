//! The layers, held: which layer may use which, and which files do no I/O, in one table. A
//! new arrow against the layers (a cycle, the audience side using the server, a pure module
//! reading files or the environment, a command reaching for clap's arguments) fails here.
//!
//! Every production file under `src/` is read as text: comments, strings and the items under
//! `#[cfg(test)]` are blanked (lines keep their numbers), then every path rooted at `crate::`
//! or at a `super::` chain that reaches the crate is resolved, grouped imports included.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each layer, in dependency order, with the layers it may use. The helpers (`HELPERS`) use
/// no layer, and every layer may use them.
const LAYERS: &[(&str, &[&str])] = &[
    ("model", &[]),
    ("manifests", &["model"]),
    ("plan", &["model", "manifests"]),
    ("report", &["model", "manifests", "plan"]),
    // Evaluation over records; `impact` counts a plan's audiences.
    ("audience", &["model", "manifests", "plan"]),
    // The server reads imports with the audience side's one reader.
    ("server", &["model", "audience"]),
    // The target seam reads the settings; the embedded default starts the server in-process.
    ("targets", &["model", "manifests", "plan", "server"]),
    (
        "reconcile",
        &[
            "model",
            "manifests",
            "plan",
            "report",
            "audience",
            "targets",
        ],
    ),
    // The admin address is served by the server's bounded listener.
    (
        "daemon",
        &[
            "model",
            "manifests",
            "plan",
            "report",
            "targets",
            "reconcile",
            "server",
        ],
    ),
    (
        "cli",
        &[
            "model",
            "manifests",
            "plan",
            "report",
            "audience",
            "server",
            "targets",
            "reconcile",
            "daemon",
        ],
    ),
];
const HELPERS: &[&str] = &["text", "par", "retry"];

/// Data in, data out: the files that may not read files, the network, the environment or a
/// terminal, nor use a module that does.
const PURE: &[&str] = &[
    "src/model/",
    "src/plan/",
    "src/report/",
    "src/manifests/manifest/",
    "src/manifests/desired.rs",
    "src/manifests/definitions.rs",
    "src/manifests/convert.rs",
];
/// I/O by name: standard library modules (`std::fs`, or `fs` in `use std::{fs, …}`).
const IO_STD: &[&str] = &["fs", "env", "net", "process", "io::stdin", "io::stdout"];
/// I/O by a call or a crate.
const IO_TEXT: &[&str] = &[
    "tokio::",
    "aws_sdk",
    "aws_config",
    "rusqlite",
    "postgres::",
    "File::open",
    "canonicalize",
    "read_dir",
    ".is_file()",
    ".is_dir()",
    ".exists()",
    ".metadata()",
    "SystemTime::now",
    "std::path::absolute",
];
/// Modules of other layers and helpers that do I/O, which pure files may not use.
const IO_MODULES: &[&[&str]] = &[
    &["manifests", "config"],
    &["manifests", "folder"],
    &["manifests", "workspace"],
    &["text", "out"],
    &["text", "err"],
    &["text", "use_colour"],
];

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
}

/// One production file: its path from the crate root, its module path, and its code.
struct Source {
    path: String,
    module: Vec<String>,
    code: String,
}

impl Source {
    fn line(&self, offset: usize) -> usize {
        self.code[..offset].matches('\n').count() + 1
    }
}

/// `src/plan/diff.rs` → `plan::diff`; `src/plan/mod.rs` → `plan`; `src/lib.rs` → the root.
fn module_of(path: &str) -> Vec<String> {
    let rest = path.strip_prefix("src/").unwrap_or(path);
    let rest = rest.strip_suffix(".rs").unwrap_or(rest);
    let mut parts: Vec<String> = rest.split('/').map(str::to_string).collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// Comments, string and character literals blanked to spaces, newlines kept.
fn blank_comments_and_strings(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = b.to_vec();
    let mut i = 0;
    let blank = |out: &mut Vec<u8>, from: usize, to: usize| {
        for c in &mut out[from..to] {
            if *c != b'\n' {
                *c = b' ';
            }
        }
    };
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            let end = b[i..]
                .iter()
                .position(|&c| c == b'\n')
                .map_or(b.len(), |e| i + e);
            blank(&mut out, i, end);
            i = end;
        } else if b[i..].starts_with(b"/*") {
            let (mut depth, mut j) = (1, i + 2);
            while j < b.len() && depth > 0 {
                if b[j..].starts_with(b"/*") {
                    depth += 1;
                    j += 2;
                } else if b[j..].starts_with(b"*/") {
                    depth -= 1;
                    j += 2;
                } else {
                    j += 1;
                }
            }
            blank(&mut out, i, j);
            i = j;
        } else if b[i] == b'r'
            && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_'))
            && matches!(b.get(i + 1), Some(b'"' | b'#'))
        {
            // A raw string: r"…", r#"…"#.
            let hashes = b[i + 1..].iter().take_while(|&&c| c == b'#').count();
            if b.get(i + 1 + hashes) != Some(&b'"') {
                i += 1;
                continue;
            }
            let close: Vec<u8> = std::iter::once(b'"')
                .chain(std::iter::repeat_n(b'#', hashes))
                .collect();
            let start = i + 2 + hashes;
            let end = b[start..]
                .windows(close.len())
                .position(|w| w == close.as_slice())
                .map_or(b.len(), |e| start + e + close.len());
            blank(&mut out, start, end.saturating_sub(close.len()).max(start));
            i = end;
        } else if b[i] == b'"' {
            let mut j = i + 1;
            while j < b.len() && b[j] != b'"' {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            blank(&mut out, i + 1, j.min(b.len()));
            i = j + 1;
        } else if b[i] == b'\'' {
            // A character literal ('x', '\n', '\u{1F600}'), not a lifetime ('a).
            let end = if b.get(i + 1) == Some(&b'\\') {
                // The escaped character may itself be a quote: look past it.
                let from = (i + 3).min(b.len());
                b[from..].iter().position(|&c| c == b'\'').map(|e| from + e)
            } else {
                let ch = text[i + 1..].chars().next().map_or(1, char::len_utf8);
                (b.get(i + 1 + ch) == Some(&b'\'')).then_some(i + 1 + ch)
            };
            match end {
                Some(e) => {
                    blank(&mut out, i + 1, e);
                    i = e + 1;
                }
                None => i += 1,
            }
        } else {
            i += 1;
        }
    }
    String::from_utf8(out).unwrap_or_default()
}

/// The code with every item under `#[cfg(test)]` blanked; the modules so declared in their
/// own files (`#[cfg(test)] mod proptests;`) are named in `test_files`.
fn without_tests(code: &str, dir: &Path, test_files: &mut BTreeSet<PathBuf>) -> String {
    let mut out = code.as_bytes().to_vec();
    let mut from = 0;
    while let Some(at) = code[from..].find("#[cfg(test)]").map(|a| from + a) {
        let rest = &code[at..];
        let brace = rest.find('{');
        let semi = rest.find(';');
        let end = match (brace, semi) {
            (Some(b), s) if s.is_none_or(|s| b < s) => {
                let mut depth = 0;
                let mut end = code.len();
                for (k, c) in code[at + b..].char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                end = at + b + k + 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                end
            }
            (_, Some(s)) => {
                let item = &rest[..s];
                if let Some(name) = item.split_whitespace().skip_while(|w| *w != "mod").nth(1) {
                    test_files.insert(dir.join(format!("{name}.rs")));
                    test_files.insert(dir.join(name).join("mod.rs"));
                }
                at + s + 1
            }
            _ => code.len(),
        };
        for c in &mut out[at..end] {
            if *c != b'\n' {
                *c = b' ';
            }
        }
        from = end;
    }
    String::from_utf8(out).unwrap_or_default()
}

fn sources() -> Vec<Source> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut paths = Vec::new();
    files(&root.join("src"), &mut paths);
    paths.sort();
    let mut test_files = BTreeSet::new();
    let mut read = Vec::new();
    for p in paths {
        let text = std::fs::read_to_string(&p).unwrap();
        // A file's child modules live in its folder (`plan/mod.rs` → `plan/`, `a.rs` → `a/`).
        let dir = match p.file_name().and_then(|n| n.to_str()) {
            Some("mod.rs" | "lib.rs" | "main.rs") => p.parent().unwrap().to_path_buf(),
            _ => p.with_extension(""),
        };
        let code = without_tests(&blank_comments_and_strings(&text), &dir, &mut test_files);
        read.push((p, code));
    }
    read.into_iter()
        .filter(|(p, _)| !test_files.contains(p) && !p.ends_with("architecture.rs"))
        .map(|(p, code)| {
            let path = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let module = module_of(&path);
            Source { path, module, code }
        })
        .collect()
}

fn ident_at(s: &str, i: usize) -> &str {
    let rest = &s[i..];
    let end = rest
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(rest.len());
    &rest[..end]
}

fn skip_ws(s: &str, i: &mut usize) {
    while s[*i..].starts_with(char::is_whitespace) {
        *i += s[*i..].chars().next().map_or(1, char::len_utf8);
    }
}

/// The paths of a use tree at `i` (after `prefix::`): `a::b`, `a::{b, c::d}`, `*`.
fn tree(s: &str, i: &mut usize, prefix: &[String], out: &mut Vec<Vec<String>>) {
    skip_ws(s, i);
    if s[*i..].starts_with('{') {
        *i += 1;
        loop {
            skip_ws(s, i);
            if *i >= s.len() || s[*i..].starts_with('}') {
                *i += 1;
                return;
            }
            let before = *i;
            tree(s, i, prefix, out);
            skip_ws(s, i);
            if s[*i..].starts_with(',') {
                *i += 1;
            } else if *i == before {
                *i += 1; // not a use tree: do not loop forever
            }
        }
    }
    let name = ident_at(s, *i);
    if name.is_empty() || name == "self" {
        *i += name.len();
        out.push(prefix.to_vec());
        return;
    }
    *i += name.len();
    let mut path = prefix.to_vec();
    path.push(name.to_string());
    skip_ws(s, i);
    if s[*i..].starts_with("::") {
        *i += 2;
        tree(s, i, &path, out);
    } else {
        out.push(path);
    }
}

/// Every path from the crate root the code names, with its offset: `crate::a::b`,
/// `super::…` resolved against the file's module, grouped imports expanded.
fn crate_paths(src: &Source) -> Vec<(usize, Vec<String>)> {
    let s = &src.code;
    let mut found = Vec::new();
    let at_word = |i: usize| {
        i == 0 || !s[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == ':')
    };
    let mut i = 0;
    while i < s.len() {
        let rest = &s[i..];
        let base = if rest.starts_with("crate::") && at_word(i) {
            i += "crate::".len();
            Some(Vec::new())
        } else if rest.starts_with("super::") && at_word(i) {
            let mut ups = 0;
            while s[i..].starts_with("super::") {
                ups += 1;
                i += "super::".len();
            }
            // In `a/b.rs` (module a::b), `super` is `a`; in `a/mod.rs` (module a), the root.
            let depth = src.module.len();
            Some(src.module[..depth.saturating_sub(ups)].to_vec())
        } else {
            i += rest.chars().next().map_or(1, char::len_utf8);
            None
        };
        if let Some(base) = base {
            let at = i;
            let mut paths = Vec::new();
            tree(s, &mut i, &base, &mut paths);
            found.extend(paths.into_iter().map(|p| (at, p)));
        }
    }
    found
}

/// Every path from `std::` the code names, grouped imports expanded.
fn std_paths(src: &Source) -> Vec<(usize, Vec<String>)> {
    let s = &src.code;
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(at) = s[from..].find("std::").map(|a| from + a) {
        let mut i = at + "std::".len();
        if at == 0 || !s[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_') {
            let mut paths = Vec::new();
            tree(s, &mut i, &[], &mut paths);
            found.extend(paths.into_iter().map(|p| (at, p)));
        }
        from = i.max(at + 1);
    }
    found
}

fn layer_of(module: &[String]) -> Option<&str> {
    module.first().map(String::as_str)
}

#[test]
fn the_layers_form_no_cycle() {
    for (k, (layer, allowed)) in LAYERS.iter().enumerate() {
        for a in *allowed {
            let before = LAYERS[..k].iter().any(|(l, _)| l == a);
            assert!(before, "{layer} may use {a}, which comes after it: a cycle");
        }
    }
}

#[test]
fn every_layer_uses_only_the_layers_below_it() {
    let allowed: BTreeMap<&str, &[&str]> = LAYERS.iter().copied().collect();
    let modules: BTreeSet<&str> = LAYERS
        .iter()
        .map(|(l, _)| *l)
        .chain(HELPERS.iter().copied())
        .collect();
    let mut wrong = Vec::new();
    let sources = sources();
    assert!(sources.len() > 50, "the sources were not found");
    for src in &sources {
        let Some(layer) = layer_of(&src.module) else {
            continue;
        };
        let helper = HELPERS.contains(&layer);
        assert!(
            helper || allowed.contains_key(layer),
            "{}: the layer {layer} is not in the table",
            src.path
        );
        for (at, path) in crate_paths(src) {
            let Some(used) = path.first().map(String::as_str) else {
                continue;
            };
            if !modules.contains(used) || used == layer {
                continue;
            }
            let ok = (!helper && HELPERS.contains(&used))
                || allowed.get(layer).is_some_and(|a| a.contains(&used));
            if !ok {
                wrong.push(format!(
                    "{}:{}: {layer} uses {used}",
                    src.path,
                    src.line(at)
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "arrows against the layers:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn pure_modules_do_no_io() {
    let mut wrong = Vec::new();
    for src in sources() {
        if !PURE.iter().any(|p| src.path.starts_with(p)) {
            continue;
        }
        for (at, path) in std_paths(&src) {
            let named = path.join("::");
            if IO_STD
                .iter()
                .any(|io| named == *io || named.starts_with(&format!("{io}::")))
            {
                wrong.push(format!("{}:{}: std::{named}", src.path, src.line(at)));
            }
        }
        for io in IO_TEXT {
            for (at, _) in src.code.match_indices(io) {
                wrong.push(format!("{}:{}: {io}", src.path, src.line(at)));
            }
        }
        for (at, path) in crate_paths(&src) {
            if IO_MODULES
                .iter()
                .any(|m| path.len() >= m.len() && path.iter().zip(m.iter()).all(|(p, m)| p == m))
            {
                let named = path.join("::");
                wrong.push(format!("{}:{}: crate::{named}", src.path, src.line(at)));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "I/O in a pure module:\n{}",
        wrong.join("\n")
    );
}

/// The command line: arguments (`cli::args`) and commands (`cli::commands`) do not know
/// each other; `cli::run` maps one to the other.
#[test]
fn commands_take_plain_options_not_arguments() {
    let mut wrong = Vec::new();
    for src in sources() {
        let commands = src.module.starts_with(&["cli".into(), "commands".into()]);
        let args = src.module == ["cli", "args"];
        for (at, path) in crate_paths(&src) {
            let to = |m: &str| path.len() >= 2 && path[0] == "cli" && path[1] == m;
            let leaves_commands =
                path.first().is_some_and(|p| p == "cli") && !to("commands") && path.len() >= 2;
            if (commands && leaves_commands) || (args && to("commands")) {
                let named = path.join("::");
                wrong.push(format!("{}:{}: {named}", src.path, src.line(at)));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "cli::args ↔ cli::commands:\n{}",
        wrong.join("\n")
    );
}

/// The checks above find what they look for: each kind of arrow, written as code writes
/// it, is seen.
#[test]
fn the_checks_see_grouped_imports_super_chains_and_skip_tests() {
    let src = |path: &str, text: &str| Source {
        path: path.into(),
        module: module_of(path),
        code: without_tests(
            &blank_comments_and_strings(text),
            Path::new("x"),
            &mut BTreeSet::new(),
        ),
    };
    let a = src(
        "src/audience/rows.rs",
        "use crate::{model::strict, server::jobs::{A, B}};\n// crate::daemon\nlet s = \"crate::cli\";\nuse super::super::targets::x;\n#[cfg(test)]\nmod tests { use crate::reconcile; }\nfn f() { crate::report::text(); }\n",
    );
    let paths: Vec<String> = crate_paths(&a)
        .into_iter()
        .map(|(_, p)| p.join("::"))
        .collect();
    assert_eq!(
        paths,
        [
            "model::strict",
            "server::jobs::A",
            "server::jobs::B",
            "targets::x",
            "report::text"
        ]
    );
    assert_eq!(a.line(crate_paths(&a)[4].0), 7);
    let b = src(
        "src/plan/live.rs",
        "use std::{env, fmt};\nlet r = std::env::var(\"X\");\n",
    );
    let std: Vec<String> = std_paths(&b)
        .into_iter()
        .map(|(_, p)| p.join("::"))
        .collect();
    assert_eq!(std, ["env", "fmt", "env::var"]);
}

//! `segmentctl status`: a running controller's state, read from its admin address (`/`), as
//! `flux get` or `argocd app get` show theirs: where it acts, per application the last round
//! and its result, drift, blocked steps and errors, and the recent events.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{bail, Context as _};
use serde_json::Value;

use crate::text::safe;

/// The admin address's status document.
///
/// Errors: the address is not `http://HOST:PORT`, nothing answers, or the answer is not a
/// controller's status.
pub fn fetch(admin: &str) -> anyhow::Result<Value> {
    let hostport = admin
        .strip_prefix("http://")
        .unwrap_or(admin)
        .trim_end_matches('/');
    if hostport.contains('/') || admin.starts_with("https://") {
        bail!("--admin {admin:?}: expected http://HOST:PORT, the controller's --admin-listen");
    }
    let mut s = TcpStream::connect(hostport)
        .with_context(|| format!("cannot reach a controller at http://{hostport}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET / HTTP/1.1\r\nhost: {hostport}\r\naccept: application/json\r\nconnection: close\r\n\r\n"
    )?;
    let mut answer = Vec::new();
    s.take(64 << 20).read_to_end(&mut answer)?;
    let text = String::from_utf8_lossy(&answer);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .with_context(|| format!("http://{hostport} did not answer HTTP"))?;
    if !head.starts_with("HTTP/1.1 200") {
        bail!(
            "http://{hostport} answered {}",
            safe(head.lines().next().unwrap_or(""))
        );
    }
    let v: Value = serde_json::from_str(body)
        .with_context(|| format!("http://{hostport} is not a segmentctl controller"))?;
    if !v.get("applications").is_some_and(Value::is_object) {
        bail!("http://{hostport} is not a segmentctl controller");
    }
    Ok(v)
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// The status for people.
pub fn render(v: &Value, admin: &str) -> String {
    let mut out = String::new();
    let ready = if v["ready"].as_bool() == Some(true) {
        "ready"
    } else {
        "not ready"
    };
    let mode = str_of(v, "mode");
    out.push_str(&format!(
        "Controller at {}: {ready}, mode {}{}, {}",
        safe(admin),
        safe(mode),
        if v["suspended"].as_bool() == Some(true) {
            ", suspended"
        } else {
            ""
        },
        crate::text::plural(v["rounds"].as_u64().unwrap_or(0) as usize, "round")
    ));
    if let Some(r) = v["revision"].as_str() {
        out.push_str(&format!(", revision {}", safe(r)));
    }
    out.push_str(".\n");
    if let Some(t) = v.get("target").filter(|t| t.is_object()) {
        let place = match str_of(t, "kind") {
            "local" => format!(
                "the embedded local server over {}",
                safe(str_of(t, "address"))
            ),
            "aws" => format!("Amazon Pinpoint ({})", safe(str_of(t, "address"))),
            _ => format!("the endpoint {}", safe(str_of(t, "address"))),
        };
        out.push_str(&format!(
            "Target: {place} as owner {}.\n",
            safe(str_of(t, "owner"))
        ));
    }
    if let Some(errors) = v["manifest_errors"].as_array().filter(|e| !e.is_empty()) {
        out.push_str(&format!(
            "\nThe manifests do not load; the last good state stays in force ({}):\n",
            crate::text::plural(errors.len(), "error")
        ));
        for e in errors {
            out.push_str(&format!("  {}\n", safe(e.as_str().unwrap_or(""))));
        }
    }
    let apps = v["applications"].as_object().cloned().unwrap_or_default();
    if apps.is_empty() {
        out.push_str("\nNo application reconciled yet.\n");
    } else {
        let shown_of = |key: &str, a: &Value| {
            let name = str_of(a, "name");
            if name.is_empty() {
                safe(key).into_owned()
            } else {
                format!("{} ({})", safe(name), safe(key))
            }
        };
        // Columns as wide as their longest entry, so long names keep the table aligned.
        let width = apps
            .iter()
            .map(|(k, a)| shown_of(k, a).chars().count())
            .chain([11])
            .max()
            .unwrap_or(11);
        let result_width = apps
            .values()
            .map(|a| str_of(a, "result").chars().count())
            .chain([6])
            .max()
            .unwrap_or(6);
        out.push_str(&format!(
            "\n{:<width$} {:<result_width$} {:<24} {:>7} {:>7} {:>7}  {}\n",
            "APPLICATION", "RESULT", "LAST RUN", "MANAGED", "DRIFTED", "BLOCKED", "REVISION"
        ));
        for (key, a) in &apps {
            let shown = shown_of(key, a);
            let count = |k: &str| a[k].as_array().map(Vec::len).unwrap_or(0);
            let pad = width - shown.chars().count().min(width);
            out.push_str(&format!(
                "{shown}{:pad$} {:<result_width$} {:<24} {:>7} {:>7} {:>7}  {}\n",
                "",
                safe(str_of(a, "result")),
                safe(str_of(a, "last_run")),
                a["managed_segments"].as_u64().unwrap_or(0),
                count("drifted"),
                count("blocked"),
                safe(str_of(a, "revision"))
            ));
            for d in a["drifted"].as_array().into_iter().flatten() {
                out.push_str(&format!("    drift: {}\n", safe(d.as_str().unwrap_or(""))));
            }
            for b in a["blocked"].as_array().into_iter().flatten() {
                out.push_str(&format!(
                    "    blocked: {}\n",
                    safe(b.as_str().unwrap_or(""))
                ));
            }
            if let Some(e) = a["last_error"].as_str() {
                out.push_str(&format!("    error: {}\n", safe(e)));
            }
            if let Some(r) = a["retry_in_seconds"].as_f64() {
                out.push_str(&format!("    retry in {:.0} s\n", r.ceil()));
            }
        }
    }
    let history = v["history"].as_array().cloned().unwrap_or_default();
    if !history.is_empty() {
        out.push_str("\nRecent rounds (oldest first):\n");
        for r in &history {
            out.push_str(&format!(
                "  round {} at {}{}\n",
                r["round"].as_u64().unwrap_or(0),
                safe(str_of(r, "finished_at")),
                r["revision"]
                    .as_str()
                    .map(|x| format!(", revision {}", safe(x)))
                    .unwrap_or_default()
            ));
            for s in r["steps"].as_array().into_iter().flatten() {
                out.push_str(&format!("    {}\n", safe(str_of(s, "message"))));
            }
            if let Some(n) = r["steps_not_shown"].as_u64().filter(|n| *n > 0) {
                out.push_str(&format!(
                    "    … {} more\n",
                    crate::text::plural(n as usize, "step")
                ));
            }
            for e in r["errors"].as_array().into_iter().flatten() {
                out.push_str(&format!("    ✗ {}\n", safe(e.as_str().unwrap_or(""))));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_controller_status_reads_like_flux_get() {
        let v = serde_json::json!({
            "ready": true, "mode": "apply", "suspended": false, "rounds": 12,
            "revision": "rev-0a1b2c3",
            "target": {"kind": "endpoint", "address": "http://pinpoint.internal:4566", "owner": "team-a"},
            "manifest_errors": [],
            "applications": {
                "0123456789abcdef0123456789abcdef": {
                    "application": "0123456789abcdef0123456789abcdef", "name": "Shop",
                    "last_run": "2026-12-01T10:00:00.000Z", "result": "blocked",
                    "managed_segments": 6, "drifted": ["vip"],
                    "blocked": ["delete black-friday: campaign \"BF\" (SCHEDULED) uses this segment"],
                    "last_error": null, "revision": "rev-0a1b2c3", "retry_in_seconds": null
                }
            },
            "history": [{
                "round": 12, "finished_at": "2026-12-01T10:00:00.100Z", "revision": "rev-0a1b2c3",
                "steps": [{"message": "✓ Shop/north-america updated (id 1c01156280444c48953fe2380d125160, v3 → v4)"}],
                "steps_not_shown": 0, "errors": []
            }]
        });
        insta::assert_snapshot!(render(&v, "http://127.0.0.1:9090"));
    }

    #[test]
    fn one_round_is_one_round_and_long_names_keep_the_columns_aligned() {
        let app = |name: &str| {
            serde_json::json!({
                "name": name, "last_run": "2026-12-01T10:00:00.000Z", "result": "success",
                "managed_segments": 6, "drifted": [], "blocked": [], "revision": "r1"
            })
        };
        let v = serde_json::json!({
            "ready": true, "mode": "apply", "rounds": 1,
            "applications": {
                "0123456789abcdef0123456789abcdef": app("A store with a rather long name indeed"),
                "fedcba9876543210fedcba9876543210": app("Shop"),
            },
        });
        let text = render(&v, "http://127.0.0.1:9090");
        assert!(text.contains(", 1 round."), "{text}");
        let rows: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("APPLICATION") || l.contains("(0123") || l.contains("(fedc"))
            .collect();
        assert_eq!(rows.len(), 3, "{text}");
        let at = |l: &str| l.find("success").or_else(|| l.find("RESULT")).unwrap();
        assert!(rows.iter().all(|l| at(l) == at(rows[0])), "{text}");
    }
}

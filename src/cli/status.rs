//! `segmentctl status`: a running controller's state, read from its admin address (`/`), as
//! `flux get` or `argocd app get` show theirs: where it acts, per application the last round
//! and its result, drift, blocked steps and errors, and the recent events.

use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty, Limited};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use crate::text::safe;

/// How long connecting, and then the answer, may take.
const TIMEOUT: Duration = Duration::from_secs(10);
/// The largest status document read.
const MAX_ANSWER_BYTES: usize = 64 << 20;

/// The admin address's status document.
///
/// Errors: the address is not `http://HOST:PORT`, nothing answers, or the answer is not a
/// controller's status.
pub async fn fetch(admin: &str) -> anyhow::Result<Value> {
    let hostport = admin
        .strip_prefix("http://")
        .unwrap_or(admin)
        .trim_end_matches('/');
    let expected =
        || anyhow!("--admin {admin:?}: expected http://HOST:PORT, the controller's --admin-listen");
    if hostport.contains('/') || admin.starts_with("https://") {
        return Err(expected());
    }
    let uri: hyper::Uri = format!("http://{hostport}/")
        .parse()
        .with_context(|| format!("cannot reach a controller at http://{hostport}"))?;
    if uri.port().is_none() {
        return Err(expected());
    }
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(TIMEOUT));
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
    let request = hyper::Request::get(uri)
        .header(hyper::header::ACCEPT, "application/json")
        .body(Empty::new())?;
    let answer = async {
        let response = client.request(request).await.map_err(|e| {
            let what = if e.is_connect() {
                format!("cannot reach a controller at http://{hostport}")
            } else {
                format!("http://{hostport} did not answer HTTP")
            };
            anyhow!(root_cause(&e)).context(what)
        })?;
        if response.status() != hyper::StatusCode::OK {
            bail!(
                "http://{hostport} answered {}",
                safe(&format!("{:?} {}", response.version(), response.status()))
            );
        }
        let body = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|e| anyhow!(e).context(format!("http://{hostport} broke off its answer")))?;
        Ok(body.to_bytes())
    };
    let body = tokio::time::timeout(TIMEOUT, answer).await.map_err(|_| {
        anyhow!(
            "http://{hostport} did not answer within {} s",
            TIMEOUT.as_secs()
        )
    })??;
    let v: Value = serde_json::from_str(&String::from_utf8_lossy(&body))
        .with_context(|| format!("http://{hostport} is not a segmentctl controller"))?;
    if !v.get("applications").is_some_and(Value::is_object) {
        bail!("http://{hostport} is not a segmentctl controller");
    }
    Ok(v)
}

/// The innermost cause, what a person acts on ("Connection refused (os error 111)"):
/// the client's outer layers say only that it was connecting or sending.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut e = e;
    while let Some(source) = e.source() {
        e = source;
    }
    e.to_string()
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// The status for people.
pub fn render(v: &Value, admin: &str) -> String {
    let mut out = String::new();
    controller(&mut out, v, admin);
    manifest_errors(&mut out, v);
    applications(&mut out, v);
    history(&mut out, v);
    out
}

/// The controller's line: readiness, mode, rounds and revision; then where it acts.
fn controller(out: &mut String, v: &Value, admin: &str) {
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
}

fn manifest_errors(out: &mut String, v: &Value) {
    if let Some(errors) = v["manifest_errors"].as_array().filter(|e| !e.is_empty()) {
        out.push_str(&format!(
            "\nThe manifests do not load; the last good state stays in force ({}):\n",
            crate::text::plural(errors.len(), "error")
        ));
        for e in errors {
            out.push_str(&format!("  {}\n", safe(e.as_str().unwrap_or(""))));
        }
    }
}

/// The table of applications, each row followed by its drift, blocked steps and error.
fn applications(out: &mut String, v: &Value) {
    let apps = v["applications"].as_object().cloned().unwrap_or_default();
    if apps.is_empty() {
        out.push_str("\nNo application reconciled yet.\n");
        return;
    }
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
        application_notes(out, a);
    }
}

/// Under an application's row: what drifted, what is blocked, its error and its retry.
fn application_notes(out: &mut String, a: &Value) {
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

/// The recent rounds, oldest first, with their steps and errors.
fn history(out: &mut String, v: &Value) {
    let history = v["history"].as_array().cloned().unwrap_or_default();
    if history.is_empty() {
        return;
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A body of several pieces and no length: hyper sends it chunked.
    struct Pieces(std::collections::VecDeque<Bytes>);

    impl hyper::body::Body for Pieces {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
            std::task::Poll::Ready(self.0.pop_front().map(|b| Ok(hyper::body::Frame::data(b))))
        }
    }

    /// Any HTTP/1.1 server may send a body of unknown length in chunks (a proxy in front of
    /// the controller, a later axum): `status` reads the document all the same.
    #[tokio::test]
    async fn status_reads_a_status_document_sent_in_chunks() {
        let doc = serde_json::json!({
            "ready": true, "mode": "apply", "rounds": 3,
            "applications": {"0123456789abcdef0123456789abcdef": {"name": "Shop", "result": "success"}},
        })
        .to_string();
        let router = axum::Router::new().route(
            "/",
            axum::routing::get(move || {
                let doc = doc.clone();
                async move {
                    let (a, b) = doc.split_at(doc.len() / 2);
                    let pieces = [a, b].map(|p| Bytes::from(p.to_string()));
                    axum::body::Body::new(Pieces(pieces.into_iter().collect()))
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        // The answer is chunked on the wire.
        let mut raw = tokio::net::TcpStream::connect(addr).await.unwrap();
        tokio::io::AsyncWriteExt::write_all(
            &mut raw,
            b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        )
        .await
        .unwrap();
        let mut wire = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut raw, &mut wire)
            .await
            .unwrap();
        let wire = String::from_utf8_lossy(&wire).to_lowercase();
        assert!(wire.contains("transfer-encoding: chunked"), "{wire}");

        let v = fetch(&format!("http://{addr}")).await.unwrap();
        assert_eq!(v["rounds"], 3, "{v}");
        assert_eq!(
            v["applications"]["0123456789abcdef0123456789abcdef"]["name"], "Shop",
            "{v}"
        );
    }

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

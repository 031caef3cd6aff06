//! The daemon's metrics, rendered in the Prometheus text exposition format.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Upper bounds of the reconcile duration histogram, in seconds.
pub const BUCKETS: &[f64] = &[0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0];

/// How a reconcile of one application ended: the `result` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Everything planned was applied (or, in observe mode, observed).
    Success,
    /// Some steps are blocked by the safety rules; the rest were applied.
    Blocked,
    /// The application could not be read, or a step failed.
    Error,
    /// The manifests do not validate; the last good state is kept.
    Invalid,
    /// Another applier holds the application's lease; tried again shortly.
    Busy,
}

impl Outcome {
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Blocked => "blocked",
            Outcome::Error => "error",
            Outcome::Invalid => "invalid",
            Outcome::Busy => "busy",
        }
    }
}

#[derive(Debug, Default, Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    pub fn observe(&mut self, seconds: f64) {
        if self.counts.is_empty() {
            self.counts = vec![0; BUCKETS.len()];
        }
        for (i, b) in BUCKETS.iter().enumerate() {
            if seconds <= *b {
                self.counts[i] += 1;
            }
        }
        self.sum += seconds;
        self.count += 1;
    }
}

/// Everything `/metrics` shows, per application where it applies: keyed by application id
/// (names are not unique), with the name as a second label for people.
#[derive(Debug, Default, Clone)]
pub struct Metrics {
    /// Application key → display name.
    pub names: BTreeMap<String, String>,
    pub reconcile_total: BTreeMap<(String, Outcome), u64>,
    pub reconcile_duration: Histogram,
    pub managed_segments: BTreeMap<String, usize>,
    pub drifted_segments: BTreeMap<String, usize>,
    pub blocked_steps: BTreeMap<String, usize>,
    pub last_success: BTreeMap<String, f64>,
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// `application="<key>",name="<display name>"`, or the key alone for pseudo-applications.
fn app_labels(m: &Metrics, key: &str) -> String {
    match m.names.get(key) {
        Some(n) => format!("application=\"{}\",name=\"{}\"", escape(key), escape(n)),
        None => format!("application=\"{}\"", escape(key)),
    }
}

fn gauge(
    out: &mut String,
    m: &Metrics,
    name: &str,
    help: &str,
    values: &BTreeMap<String, impl std::fmt::Display>,
) {
    family(out, name, "gauge", help);
    for (app, v) in values {
        let _ = writeln!(out, "{name}{{{}}} {v}", app_labels(m, app));
    }
}

/// Renders the metrics, with the API request counts (`(operation, code) → n`).
pub fn render(m: &Metrics, api: &BTreeMap<(&'static str, String), u64>) -> String {
    let mut out = String::new();
    family(
        &mut out,
        "segmentctl_reconcile_total",
        "counter",
        "Reconciles of an application, by result.",
    );
    for ((app, outcome), n) in &m.reconcile_total {
        let _ = writeln!(
            out,
            "segmentctl_reconcile_total{{{},result=\"{}\"}} {n}",
            app_labels(m, app),
            outcome.label()
        );
    }
    family(
        &mut out,
        "segmentctl_reconcile_duration_seconds",
        "histogram",
        "Time to reconcile the folder once.",
    );
    let h = &m.reconcile_duration;
    for (i, b) in BUCKETS.iter().enumerate() {
        let _ = writeln!(
            out,
            "segmentctl_reconcile_duration_seconds_bucket{{le=\"{b}\"}} {}",
            h.counts.get(i).copied().unwrap_or(0)
        );
    }
    let _ = writeln!(
        out,
        "segmentctl_reconcile_duration_seconds_bucket{{le=\"+Inf\"}} {}",
        h.count
    );
    let _ = writeln!(out, "segmentctl_reconcile_duration_seconds_sum {}", h.sum);
    let _ = writeln!(
        out,
        "segmentctl_reconcile_duration_seconds_count {}",
        h.count
    );
    gauge(
        &mut out,
        m,
        "segmentctl_managed_segments",
        "Segments the manifests declare for an application.",
        &m.managed_segments,
    );
    gauge(
        &mut out,
        m,
        "segmentctl_drifted_segments",
        "Managed segments changed outside segmentctl, at the last reconcile.",
        &m.drifted_segments,
    );
    gauge(
        &mut out,
        m,
        "segmentctl_blocked_steps",
        "Plan steps the safety rules blocked, at the last reconcile.",
        &m.blocked_steps,
    );
    gauge(
        &mut out,
        m,
        "segmentctl_last_success_timestamp_seconds",
        "When an application last reconciled successfully (Unix time).",
        &m.last_success,
    );
    family(
        &mut out,
        "segmentctl_api_requests_total",
        "counter",
        "Requests to the Pinpoint API, by operation and result code.",
    );
    for ((op, code), n) in api {
        let _ = writeln!(
            out,
            "segmentctl_api_requests_total{{operation=\"{op}\",code=\"{}\"}} {n}",
            escape(code)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_has_every_family_and_escapes_labels() {
        let mut m = Metrics::default();
        m.reconcile_total
            .insert(("0a1b".into(), Outcome::Success), 2);
        m.names.insert("0a1b".into(), "shop \"eu\"".into());
        m.reconcile_duration.observe(0.2);
        m.managed_segments.insert("shop".into(), 6);
        let api = BTreeMap::from([(("GetSegments", "ok".to_string()), 3)]);
        let text = render(&m, &api);
        assert!(text.contains(
            "segmentctl_reconcile_total{application=\"0a1b\",name=\"shop \\\"eu\\\"\",result=\"success\"} 2"
        ));
        assert!(text.contains("segmentctl_reconcile_duration_seconds_bucket{le=\"0.25\"} 1"));
        assert!(text.contains("segmentctl_reconcile_duration_seconds_bucket{le=\"0.1\"} 0"));
        assert!(text.contains("segmentctl_managed_segments{application=\"shop\"} 6"));
        assert!(
            text.contains("segmentctl_api_requests_total{operation=\"GetSegments\",code=\"ok\"} 3")
        );
        for f in [
            "drifted_segments",
            "blocked_steps",
            "last_success_timestamp_seconds",
        ] {
            assert!(
                text.contains(&format!("# TYPE segmentctl_{f} gauge")),
                "{f}"
            );
        }
    }
}

//! The daemon's metrics, rendered in the Prometheus text exposition format (0.0.4) by
//! `prometheus-client`, the Prometheus project's Rust crate.

use std::collections::BTreeMap;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeGaugeValue, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

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

/// The reconcile duration histogram, over [`BUCKETS`]. Clones share their counts.
#[derive(Debug, Clone)]
pub struct Histogram(prometheus_client::metrics::histogram::Histogram);

impl Default for Histogram {
    fn default() -> Self {
        Self(prometheus_client::metrics::histogram::Histogram::new(
            BUCKETS.iter().copied(),
        ))
    }
}

impl Histogram {
    pub fn observe(&mut self, seconds: f64) {
        self.0.observe(seconds);
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

/// `application="<key>",name="<display name>"`, or the key alone for pseudo-applications.
fn app_labels<'a>(m: &'a Metrics, key: &'a str) -> Vec<(&'static str, &'a str)> {
    match m.names.get(key) {
        Some(n) => vec![("application", key), ("name", n)],
        None => vec![("application", key)],
    }
}

/// One scrape: the metrics and the API request counts as they were when it began, encoded
/// series by series in key order (the crate's `Family` would order them by hash).
#[derive(Debug)]
struct Scrape {
    metrics: Metrics,
    /// `(operation, code) → n`.
    api: BTreeMap<(&'static str, String), u64>,
}

impl Scrape {
    fn gauge<V: EncodeGaugeValue + Copy>(
        &self,
        e: &mut DescriptorEncoder,
        name: &str,
        help: &str,
        values: &BTreeMap<String, V>,
    ) -> std::fmt::Result {
        let mut family = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
        for (app, v) in values {
            let labels = app_labels(&self.metrics, app);
            ConstGauge::new(*v).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

impl Collector for Scrape {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        let m = &self.metrics;
        // A counter's name is given without `_total`: the encoder adds it.
        let mut family = e.encode_descriptor(
            "segmentctl_reconcile",
            "Reconciles of an application, by result.",
            None,
            MetricType::Counter,
        )?;
        for ((app, outcome), n) in &m.reconcile_total {
            let labels = (app_labels(m, app), [("result", outcome.label())]);
            ConstCounter::new(*n).encode(family.encode_family(&labels)?)?;
        }
        m.reconcile_duration.0.encode(e.encode_descriptor(
            "segmentctl_reconcile_duration_seconds",
            "Time to reconcile the folder once.",
            None,
            MetricType::Histogram,
        )?)?;
        self.gauge(
            &mut e,
            "segmentctl_managed_segments",
            "Segments the manifests declare for an application.",
            &m.managed_segments,
        )?;
        self.gauge(
            &mut e,
            "segmentctl_drifted_segments",
            "Managed segments changed outside segmentctl, at the last reconcile.",
            &m.drifted_segments,
        )?;
        self.gauge(
            &mut e,
            "segmentctl_blocked_steps",
            "Plan steps the safety rules blocked, at the last reconcile.",
            &m.blocked_steps,
        )?;
        self.gauge(
            &mut e,
            "segmentctl_last_success_timestamp_seconds",
            "When an application last reconciled successfully (Unix time).",
            &m.last_success,
        )?;
        let mut family = e.encode_descriptor(
            "segmentctl_api_requests",
            "Requests to the target's API (Pinpoint, or Customer Profiles and Connect campaigns), by operation and result code.",
            None,
            MetricType::Counter,
        )?;
        for ((op, code), n) in &self.api {
            let labels = [("operation", *op), ("code", code.as_str())];
            ConstCounter::new(*n).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

/// Renders the metrics, with the API request counts (`(operation, code) → n`).
pub fn render(m: &Metrics, api: &BTreeMap<(&'static str, String), u64>) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Scrape {
        metrics: m.clone(),
        api: api.clone(),
    }));
    let mut out = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)
        .expect("writing to a String does not fail");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What Prometheus scrapes, whole: the 0.0.4 text format (a counter's `# TYPE` line
    /// names it with `_total`, no `# EOF`), each family once, series in key order.
    #[test]
    fn the_exposition_is_the_prometheus_text_format_in_key_order() {
        let mut m = Metrics::default();
        m.names.insert("0a1b".into(), "shop \"eu\"\nwest\\1".into());
        m.names.insert("ffff".into(), "Shop".into());
        for (app, outcome, n) in [
            ("ffff", Outcome::Success, 1),
            ("0a1b", Outcome::Error, 1),
            ("0a1b", Outcome::Success, 2),
            ("(manifests)", Outcome::Invalid, 4),
        ] {
            m.reconcile_total.insert((app.into(), outcome), n);
        }
        for s in [0.2, 1.0, 500.0] {
            m.reconcile_duration.observe(s);
        }
        for app in ["ffff", "0a1b"] {
            m.managed_segments.insert(app.into(), 6);
            m.drifted_segments.insert(app.into(), 0);
            m.blocked_steps.insert(app.into(), 1);
            m.last_success.insert(app.into(), 1_733_480_000.125);
        }
        let api = BTreeMap::from([
            (("GetSegments", "ok".to_string()), 3),
            (("CreateSegment", "TooManyRequests".to_string()), 1),
        ]);
        insta::assert_snapshot!(render(&m, &api));
    }

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

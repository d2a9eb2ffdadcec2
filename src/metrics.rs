//! Operational figures in the Prometheus text format, served at `/metrics`.
//!
//! The data path only bumps atomics (per-rule request counts live in the
//! rule set itself, connection gauges and error counts here): no lock and no
//! allocation per request. Hold outcomes and decision times are recorded off
//! the data path, from the store's events. This module never changes what
//! airlock does; it only counts.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use crate::holds::{Store, store::HoldEvent};
use crate::rules::RuleSet;

/// Upper bounds of the decision-time histogram, seconds: from a glance to a
/// business day.
const BUCKETS: [f64; 12] = [
    5.0, 15.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0, 86400.0,
];

/// Upstream error kinds, as [`crate::upstream::UpstreamError::kind`] names them.
pub const ERROR_KINDS: [&str; 5] = ["resolve", "connect", "timeout", "tls", "upstream"];

#[derive(Debug, Default)]
struct Histogram {
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Debug, Default)]
pub struct Metrics {
    /// CONNECT decisions: tunnelled, refused, intercepted.
    pub connect: [AtomicU64; 3],
    pub tunnels_active: AtomicI64,
    pub intercepted_active: AtomicI64,
    pub upstream_errors: [AtomicU64; ERROR_KINDS.len()],
    /// (rule, outcome) → time from hold to decision.
    decisions: Mutex<BTreeMap<(String, &'static str), Histogram>>,
    /// Final hold outcomes since start, by state.
    outcomes: Mutex<BTreeMap<&'static str, u64>>,
    /// Webhook deliveries by sink name.
    notify: Mutex<BTreeMap<String, SinkFigures>>,
}

#[derive(Debug, Default)]
struct SinkFigures {
    delivered: u64,
    failed: u64,
    dropped: u64,
    /// The last attempt failed: a sink that is down shows as 1 until a
    /// delivery to it succeeds again.
    failing: bool,
}

/// Counts one while alive: a gauge of things in progress.
pub struct Active<'a>(&'a AtomicI64);

impl<'a> Active<'a> {
    pub fn new(gauge: &'a AtomicI64) -> Active<'a> {
        gauge.fetch_add(1, Ordering::Relaxed);
        Active(gauge)
    }
}

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Metrics {
    pub fn upstream_error(&self, kind: &str) {
        if let Some(i) = ERROR_KINDS.iter().position(|k| *k == kind) {
            self.upstream_errors[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// One delivery attempt to a webhook sink: delivered, or failed (and
    /// `dropped` when no retry follows).
    pub fn notify_attempt(&self, sink: &str, delivered: bool, dropped: bool) {
        if let Ok(mut n) = self.notify.lock() {
            let f = n.entry(sink.to_owned()).or_default();
            if delivered {
                f.delivered += 1;
            } else {
                f.failed += 1;
                f.dropped += u64::from(dropped);
            }
            f.failing = !delivered;
        }
    }

    /// Records what a hold event says about outcomes and decision times.
    pub async fn observe(&self, event: &HoldEvent, store: &Store) {
        if event.state.is_final()
            && let Ok(mut o) = self.outcomes.lock()
        {
            *o.entry(event.state.as_str()).or_default() += 1;
        }
        let outcome = match event.event {
            "approved" => "approved",
            "dismissed" => "dismissed",
            "expired" => "expired",
            _ => return,
        };
        let Ok(Some(hold)) = store.get(&event.id).await else {
            return;
        };
        let Some(at) = hold.decided_at else { return };
        let secs = at.duration_since(hold.created_at).as_secs_f64().max(0.0);
        if let Ok(mut d) = self.decisions.lock() {
            let h = d.entry((hold.rule.clone(), outcome)).or_default();
            for (i, bound) in BUCKETS.iter().enumerate() {
                if secs <= *bound {
                    h.buckets[i] += 1;
                }
            }
            h.count += 1;
            h.sum += secs;
        }
    }

    /// The exposition text.
    pub fn render(
        &self,
        rules: &RuleSet,
        pending: u64,
        leaf_cache: (u64, u64),
        outbox: u64,
    ) -> String {
        let mut out = String::with_capacity(4096);
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "# HELP airlock_requests_total Requests decided, by rule and verdict (since the rules in force were loaded)."
        );
        let _ = writeln!(out, "# TYPE airlock_requests_total counter");
        for (rule, action, n) in rules.counts() {
            let _ = writeln!(
                out,
                "airlock_requests_total{{rule=\"{}\",verdict=\"{}\"}} {n}",
                escape(rule),
                action
            );
        }
        let _ = writeln!(
            out,
            "# HELP airlock_connects_total CONNECT requests by decision."
        );
        let _ = writeln!(out, "# TYPE airlock_connects_total counter");
        for (i, what) in ["tunnel", "refuse", "intercept"].iter().enumerate() {
            let _ = writeln!(
                out,
                "airlock_connects_total{{decision=\"{what}\"}} {}",
                load(&self.connect[i])
            );
        }
        let _ = writeln!(out, "# HELP airlock_holds Holds waiting for a decision.");
        let _ = writeln!(out, "# TYPE airlock_holds gauge");
        let _ = writeln!(out, "airlock_holds{{state=\"pending\"}} {pending}");
        let _ = writeln!(
            out,
            "# HELP airlock_hold_outcomes_total Holds that reached a final state since start."
        );
        let _ = writeln!(out, "# TYPE airlock_hold_outcomes_total counter");
        if let Ok(o) = self.outcomes.lock() {
            for state in ["released", "failed", "interrupted", "dismissed", "expired"] {
                let _ = writeln!(
                    out,
                    "airlock_hold_outcomes_total{{state=\"{state}\"}} {}",
                    o.get(state).copied().unwrap_or(0)
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP airlock_hold_decision_seconds Time from hold to decision (or expiry), by rule and outcome."
        );
        let _ = writeln!(out, "# TYPE airlock_hold_decision_seconds histogram");
        if let Ok(d) = self.decisions.lock() {
            for ((rule, outcome), h) in d.iter() {
                let labels = format!("rule=\"{}\",outcome=\"{outcome}\"", escape(rule));
                for (i, bound) in BUCKETS.iter().enumerate() {
                    let _ = writeln!(
                        out,
                        "airlock_hold_decision_seconds_bucket{{{labels},le=\"{bound}\"}} {}",
                        h.buckets[i]
                    );
                }
                let _ = writeln!(
                    out,
                    "airlock_hold_decision_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                    h.count
                );
                let _ = writeln!(
                    out,
                    "airlock_hold_decision_seconds_sum{{{labels}}} {}",
                    h.sum
                );
                let _ = writeln!(
                    out,
                    "airlock_hold_decision_seconds_count{{{labels}}} {}",
                    h.count
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP airlock_upstream_errors_total Upstream failures by kind."
        );
        let _ = writeln!(out, "# TYPE airlock_upstream_errors_total counter");
        for (i, kind) in ERROR_KINDS.iter().enumerate() {
            let _ = writeln!(
                out,
                "airlock_upstream_errors_total{{kind=\"{kind}\"}} {}",
                load(&self.upstream_errors[i])
            );
        }
        let _ = writeln!(out, "# HELP airlock_tunnels_active Blind tunnels open now.");
        let _ = writeln!(out, "# TYPE airlock_tunnels_active gauge");
        let _ = writeln!(
            out,
            "airlock_tunnels_active {}",
            self.tunnels_active.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP airlock_intercepted_connections_active Intercepted (TLS-terminated) connections open now."
        );
        let _ = writeln!(out, "# TYPE airlock_intercepted_connections_active gauge");
        let _ = writeln!(
            out,
            "airlock_intercepted_connections_active {}",
            self.intercepted_active.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP airlock_leaf_cache_total Leaf certificate cache lookups."
        );
        let _ = writeln!(out, "# TYPE airlock_leaf_cache_total counter");
        let _ = writeln!(
            out,
            "airlock_leaf_cache_total{{result=\"hit\"}} {}",
            leaf_cache.0
        );
        let _ = writeln!(
            out,
            "airlock_leaf_cache_total{{result=\"miss\"}} {}",
            leaf_cache.1
        );
        let _ = writeln!(
            out,
            "# HELP airlock_notify_outbox Webhook deliveries waiting to be sent or retried."
        );
        let _ = writeln!(out, "# TYPE airlock_notify_outbox gauge");
        let _ = writeln!(out, "airlock_notify_outbox {outbox}");
        if let Ok(n) = self.notify.lock() {
            let _ = writeln!(
                out,
                "# HELP airlock_notify_deliveries_total Webhook delivery attempts by sink and result (dropped: failed with no retry left)."
            );
            let _ = writeln!(out, "# TYPE airlock_notify_deliveries_total counter");
            for (sink, f) in n.iter() {
                let sink = escape(sink);
                for (result, count) in [
                    ("delivered", f.delivered),
                    ("failed", f.failed),
                    ("dropped", f.dropped),
                ] {
                    let _ = writeln!(
                        out,
                        "airlock_notify_deliveries_total{{sink=\"{sink}\",result=\"{result}\"}} {count}"
                    );
                }
            }
            let _ = writeln!(
                out,
                "# HELP airlock_notify_failing Whether the last delivery to a sink failed (1) or succeeded (0)."
            );
            let _ = writeln!(out, "# TYPE airlock_notify_failing gauge");
            for (sink, f) in n.iter() {
                let _ = writeln!(
                    out,
                    "airlock_notify_failing{{sink=\"{}\"}} {}",
                    escape(sink),
                    u8::from(f.failing)
                );
            }
        }
        out
    }
}

/// Label values escape `\`, `"` and newlines.
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

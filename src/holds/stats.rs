//! Queue figures over a period: per rule, how many holds and how they ended,
//! the approval rate, the time people took to decide (median and p90), and
//! expiries; plus the queue's depth and its oldest pending hold. The page's
//! queue-health view and the monthly review read these.
//!
//! Read-only: this module never changes a hold.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{State, Store, StoreError};

#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq)]
pub struct RuleFigures {
    pub rule: String,
    pub holds: u64,
    pub pending: u64,
    pub approved: u64,
    pub dismissed: u64,
    pub expired: u64,
    pub released: u64,
    pub failed: u64,
    pub interrupted: u64,
    /// Approved (including released, failed, interrupted) over decided by a
    /// person (approved + dismissed); `None` before anyone decided.
    pub approval_rate: Option<f64>,
    pub median_decision_secs: Option<f64>,
    pub p90_decision_secs: Option<f64>,
    /// Holds that were still pending at their escalation time.
    pub escalated: u64,
}

/// Requests no rule matched, grouped by what a rule would match them on.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UnmatchedTraffic {
    pub method: String,
    pub host: String,
    pub path: String,
    pub holds: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Figures {
    pub since: jiff::Timestamp,
    pub rules: Vec<RuleFigures>,
    /// Pending holds now, whenever they were made.
    pub queue_depth: u64,
    pub oldest_pending: Option<jiff::Timestamp>,
    /// Unmatched requests by method, host and path, most frequent first.
    pub unmatched: Vec<UnmatchedTraffic>,
}

/// The value at fraction `p` of a sorted list (nearest rank).
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted.get(rank.min(sorted.len()) - 1).copied()
}

/// Figures for holds created at or after `since`.
pub async fn figures(store: &Store, since: jiff::Timestamp) -> Result<Figures, StoreError> {
    let mut by_rule: BTreeMap<String, (RuleFigures, Vec<f64>)> = BTreeMap::new();
    let mut unmatched: BTreeMap<(String, String, String), u64> = BTreeMap::new();
    for hold in store.since(since).await? {
        let (f, times) = by_rule.entry(hold.rule.clone()).or_insert_with(|| {
            (
                RuleFigures {
                    rule: hold.rule.clone(),
                    ..RuleFigures::default()
                },
                Vec::new(),
            )
        });
        f.holds += 1;
        f.escalated += u64::from(hold.escalated_at.is_some());
        if hold.rule == super::UNMATCHED_RULE {
            let (host, path) = host_and_path(&hold.url);
            *unmatched
                .entry((hold.method.clone(), host, path))
                .or_default() += 1;
        }
        match hold.state {
            State::Pending => f.pending += 1,
            State::Approved => f.approved += 1,
            State::Released => {
                f.approved += 1;
                f.released += 1;
            }
            State::Failed => {
                f.approved += 1;
                f.failed += 1;
            }
            State::Interrupted => {
                f.approved += 1;
                f.interrupted += 1;
            }
            State::Dismissed => f.dismissed += 1,
            State::Expired => f.expired += 1,
        }
        if hold.decided_by.is_some()
            && let Some(at) = hold.decided_at
        {
            let secs = at.duration_since(hold.created_at).as_secs_f64();
            times.push(secs.max(0.0));
        }
    }
    let rules = by_rule
        .into_values()
        .map(|(mut f, mut times)| {
            let decided = f.approved + f.dismissed;
            f.approval_rate = (decided > 0).then(|| f.approved as f64 / decided as f64);
            times.sort_by(f64::total_cmp);
            f.median_decision_secs = percentile(&times, 0.5);
            f.p90_decision_secs = percentile(&times, 0.9);
            f
        })
        .collect();
    let (queue_depth, oldest_pending) = store.pending_overview().await?;
    let mut unmatched: Vec<UnmatchedTraffic> = unmatched
        .into_iter()
        .map(|((method, host, path), holds)| UnmatchedTraffic {
            method,
            host,
            path,
            holds,
        })
        .collect();
    // Most frequent first; ties in a stable, readable order.
    unmatched.sort_by(|a, b| b.holds.cmp(&a.holds).then_with(|| a.host.cmp(&b.host)));
    Ok(Figures {
        since,
        rules,
        queue_depth,
        oldest_pending,
        unmatched,
    })
}

/// The host and path of a hold's URL, as a rule would match them.
pub fn host_and_path(url: &str) -> (String, String) {
    match url.parse::<http::Uri>() {
        Ok(u) => (
            u.host().unwrap_or("").to_ascii_lowercase(),
            u.path().to_owned(),
        ),
        Err(_) => (String::new(), "/".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let v: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), Some(5.0));
        assert_eq!(percentile(&v, 0.9), Some(9.0));
        assert_eq!(percentile(&[7.0], 0.9), Some(7.0));
        assert_eq!(percentile(&[], 0.5), None);
    }
}

//! The monthly queue review: the queue's figures over a period and the
//! findings they support, each with the numbers behind it, as JSON (for
//! `/api/stats`), text (for people) and CSV (for spreadsheets).
//!
//! A finding proposes; it never changes a rule. Read-only: nothing here
//! writes to the store or to `rules/`.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::holds::UNMATCHED_RULE;
use crate::holds::stats::{self, Figures, RuleFigures};
use crate::holds::{Store, StoreError};
use crate::rules::{Action, RuleSet};

/// A reviewed rule this reliably approved, this fast, is rubber-stamped:
/// its queue buries the reviews that matter.
pub const CANDIDATE_MIN_DECIDED: u64 = 20;
pub const CANDIDATE_MIN_APPROVAL: f64 = 0.98;
pub const CANDIDATE_MAX_MEDIAN_SECS: f64 = 10.0;
/// More of a rule's finished holds than this expiring means its window is
/// too short or its owner overloaded.
pub const MAX_EXPIRED_SHARE: f64 = 0.20;
/// How many unmatched destinations are reported.
pub const UNMATCHED_SHOWN: usize = 10;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Finding {
    /// `candidate_for_automatic`, `expiring`, `no_named_owner` or
    /// `unmatched_traffic`.
    pub kind: String,
    pub rule: Option<String>,
    pub message: String,
    /// The numbers the finding rests on.
    pub evidence: serde_json::Value,
    /// For unmatched traffic: a ready rule to classify it.
    pub snippet: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Report {
    /// When the report was made; the period is `since` up to this.
    pub generated_at: jiff::Timestamp,
    #[serde(flatten)]
    pub figures: Figures,
    pub findings: Vec<Finding>,
}

impl Report {
    /// Figures for holds made since `since`, and what they suggest about
    /// the rules now in force.
    pub async fn build(
        store: &Store,
        rules: &RuleSet,
        since: jiff::Timestamp,
    ) -> Result<Report, StoreError> {
        let figures = stats::figures(store, since).await?;
        Ok(Report::of(figures, rules, store.now()))
    }

    /// The report of a store that does not exist yet: no holds in the
    /// period, while what the rules alone show still stands.
    pub fn empty(rules: &RuleSet, since: jiff::Timestamp, now: jiff::Timestamp) -> Report {
        let figures = Figures {
            since,
            rules: Vec::new(),
            queue_depth: 0,
            oldest_pending: None,
            unmatched: Vec::new(),
        };
        Report::of(figures, rules, now)
    }

    fn of(figures: Figures, rules: &RuleSet, now: jiff::Timestamp) -> Report {
        Report {
            generated_at: now,
            findings: findings(&figures, rules),
            figures,
        }
    }

    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let days = self
            .generated_at
            .duration_since(self.figures.since)
            .as_secs_f64()
            / 86_400.0;
        let _ = writeln!(
            out,
            "Queue review: holds made since {} ({days:.0} days)\n",
            short_time(self.figures.since)
        );
        let headers = [
            "rule",
            "holds",
            "approved",
            "dismissed",
            "expired",
            "pending",
            "approval",
            "median",
            "p90",
            "escalated",
        ];
        let mut rows: Vec<[String; 10]> = vec![headers.map(str::to_owned)];
        for r in &self.figures.rules {
            rows.push([
                r.rule.clone(),
                r.holds.to_string(),
                r.approved.to_string(),
                r.dismissed.to_string(),
                r.expired.to_string(),
                r.pending.to_string(),
                r.approval_rate.map_or_else(|| "-".into(), percent),
                r.median_decision_secs.map_or_else(|| "-".into(), seconds),
                r.p90_decision_secs.map_or_else(|| "-".into(), seconds),
                r.escalated.to_string(),
            ]);
        }
        if self.figures.rules.is_empty() {
            let _ = writeln!(out, "No holds in this period.");
        } else {
            let widths: Vec<usize> = (0..headers.len())
                .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
                .collect();
            for row in &rows {
                let mut line = String::new();
                for (i, cell) in row.iter().enumerate() {
                    if i == 0 {
                        let _ = write!(line, "{cell:<w$}", w = widths[i]);
                    } else {
                        let _ = write!(line, "  {cell:>w$}", w = widths[i]);
                    }
                }
                let _ = writeln!(out, "{}", line.trim_end());
            }
        }
        let _ = write!(out, "\nQueue now: {} pending", self.figures.queue_depth);
        match self.figures.oldest_pending {
            Some(at) => {
                let _ = writeln!(out, ", the oldest waiting since {}", short_time(at));
            }
            None => out.push('\n'),
        }
        if self.findings.is_empty() {
            let _ = writeln!(out, "\nNo findings: the queue holds what it should.");
        } else {
            let _ = writeln!(out, "\nFindings");
            for f in &self.findings {
                let _ = writeln!(out, "- {}", f.message);
                if let Some(snippet) = &f.snippet {
                    for line in snippet.lines() {
                        let _ = writeln!(out, "    {line}");
                    }
                }
            }
        }
        out
    }

    /// One row per rule; the `findings` column names the kinds that concern it.
    pub fn to_csv(&self) -> String {
        let mut rows = vec![
            [
                "rule",
                "holds",
                "pending",
                "approved",
                "dismissed",
                "expired",
                "released",
                "failed",
                "interrupted",
                "approval_rate",
                "median_decision_secs",
                "p90_decision_secs",
                "escalated",
                "findings",
            ]
            .map(String::from),
        ];
        let opt = |v: Option<f64>| v.map_or_else(String::new, |v| format!("{v:.3}"));
        for r in &self.figures.rules {
            let kinds: Vec<&str> = self
                .findings
                .iter()
                .filter(|f| f.rule.as_deref() == Some(&r.rule))
                .map(|f| f.kind.as_str())
                .collect();
            rows.push([
                r.rule.clone(),
                r.holds.to_string(),
                r.pending.to_string(),
                r.approved.to_string(),
                r.dismissed.to_string(),
                r.expired.to_string(),
                r.released.to_string(),
                r.failed.to_string(),
                r.interrupted.to_string(),
                opt(r.approval_rate),
                opt(r.median_decision_secs),
                opt(r.p90_decision_secs),
                r.escalated.to_string(),
                kinds.join(";"),
            ]);
        }
        // Rules a finding names that made no holds in the period (an
        // unowned queue, say) still get their row.
        let mut extra: Vec<(&str, Vec<&str>)> = Vec::new();
        for f in &self.findings {
            let Some(rule) = f.rule.as_deref() else {
                continue;
            };
            if self.figures.rules.iter().any(|r| r.rule == rule) {
                continue;
            }
            match extra.iter_mut().find(|(r, _)| *r == rule) {
                Some((_, kinds)) => kinds.push(&f.kind),
                None => extra.push((rule, vec![&f.kind])),
            }
        }
        for (rule, kinds) in extra {
            let zero = || "0".to_owned();
            rows.push([
                rule.to_owned(),
                zero(),
                zero(),
                zero(),
                zero(),
                zero(),
                zero(),
                zero(),
                zero(),
                String::new(),
                String::new(),
                String::new(),
                zero(),
                kinds.join(";"),
            ]);
        }
        csv_text(&rows)
    }
}

/// Each finding the figures support, in a fixed order: rubber-stamped
/// queues, expiring queues, unowned queues, unclassified traffic.
pub fn findings(figures: &Figures, rules: &RuleSet) -> Vec<Finding> {
    let mut out = Vec::new();
    for r in figures.rules.iter().filter(|r| r.rule != UNMATCHED_RULE) {
        if let Some(f) = candidate_for_automatic(r) {
            out.push(f);
        }
    }
    for r in &figures.rules {
        let finished = r.holds.saturating_sub(r.pending);
        if finished > 0 && r.expired as f64 / finished as f64 > MAX_EXPIRED_SHARE {
            let share = r.expired as f64 / finished as f64;
            out.push(Finding {
                kind: "expiring".into(),
                rule: Some(r.rule.clone()),
                message: format!(
                    "window too short or owner overloaded: {} — {} of {finished} finished holds expired ({}), over the {} limit",
                    r.rule,
                    r.expired,
                    percent(share),
                    percent(MAX_EXPIRED_SHARE)
                ),
                evidence: json!({ "expired": r.expired, "finished": finished, "expired_share": share }),
                snippet: None,
            });
        }
    }
    for rule in rules.rules() {
        if rule.action == Action::Review && rule.reviewers.is_empty() {
            out.push(Finding {
                kind: "no_named_owner".into(),
                rule: Some(rule.name.clone()),
                message: format!(
                    "no named owner: {} ({}) is reviewed but lists no reviewers; a queue nobody owns fills silently",
                    rule.name, rule.location
                ),
                evidence: json!({ "location": rule.location.to_string() }),
                snippet: None,
            });
        }
    }
    for u in figures.unmatched.iter().take(UNMATCHED_SHOWN) {
        out.push(Finding {
            kind: "unmatched_traffic".into(),
            rule: Some(UNMATCHED_RULE.into()),
            message: format!(
                "unmatched traffic: {} held {} {}{} — no rule classifies it; a rule to do so:",
                plural(u.holds, "request"),
                u.method,
                u.host,
                u.path
            ),
            evidence: json!({ "method": u.method, "host": u.host, "path": u.path, "holds": u.holds }),
            snippet: Some(rule_snippet(&u.method, &u.host, &u.path)),
        });
    }
    out
}

fn candidate_for_automatic(r: &RuleFigures) -> Option<Finding> {
    let decided = r.approved + r.dismissed;
    let rate = r.approval_rate?;
    let median = r.median_decision_secs?;
    if decided < CANDIDATE_MIN_DECIDED
        || rate < CANDIDATE_MIN_APPROVAL
        || median >= CANDIDATE_MAX_MEDIAN_SECS
    {
        return None;
    }
    Some(Finding {
        kind: "candidate_for_automatic".into(),
        rule: Some(r.rule.clone()),
        message: format!(
            "candidate for automatic: {} — approved {} of {decided} decided holds ({}) with a median decision of {}: reviewers are not reading these",
            r.rule,
            r.approved,
            percent(rate),
            seconds(median)
        ),
        evidence: json!({ "approved": r.approved, "decided": decided, "approval_rate": rate, "median_decision_secs": median }),
        snippet: None,
    })
}

/// The start of a review period: `period` (`30d`, `12h`, …) before `now`.
pub fn since(now: jiff::Timestamp, period: &str) -> Result<jiff::Timestamp, String> {
    let d = crate::window::parse_duration(period)?;
    jiff::SignedDuration::try_from(d)
        .ok()
        .and_then(|d| now.checked_sub(d).ok())
        .ok_or_else(|| format!("{period:?} reaches further back than time does"))
}

/// A ready `[[rule]]` that would classify requests like an unmatched one:
/// what a reviewer pastes into `rules/` once its risk is understood.
pub fn rule_snippet(method: &str, host: &str, path: &str) -> String {
    let slug: String = format!("{host}-{}-{path}", method.to_ascii_lowercase())
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect::<String>()
        .split('-')
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("-");
    let q = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into());
    format!(
        "[[rule]]\nname = {}\naction = \"review\"            # automatic | review | deny\nlabel = {}\nhost = [{}]\nmethod = [{}]\npath = [{}]\nwindow = \"4h\"\nreviewers = []                # who owns this queue\n",
        q(&slug),
        q(&format!("{method} {host}")),
        q(host),
        q(method),
        q(path),
    )
}

fn percent(share: f64) -> String {
    let p = share * 100.0;
    if (p - p.round()).abs() < 0.05 {
        format!("{p:.0}%")
    } else {
        format!("{p:.1}%")
    }
}

fn seconds(secs: f64) -> String {
    if secs < 90.0 {
        format!("{secs:.0}s")
    } else if secs < 5400.0 {
        format!("{:.0}m", secs / 60.0)
    } else {
        format!("{:.1}h", secs / 3600.0)
    }
}

fn plural(n: u64, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

fn short_time(at: jiff::Timestamp) -> String {
    at.strftime("%Y-%m-%d %H:%M UTC").to_string()
}

/// Rows as RFC 4180 CSV: a field holding a comma, quote or line break is
/// quoted by the `csv` crate.
#[expect(
    clippy::expect_used,
    reason = "writing to a Vec cannot fail, and UTF-8 fields make UTF-8 CSV"
)]
fn csv_text<const N: usize>(rows: &[[String; N]]) -> String {
    let mut out = csv::Writer::from_writer(Vec::new());
    for row in rows {
        out.write_record(row)
            .expect("a CSV row of fixed width writes to memory");
    }
    let bytes = out.into_inner().expect("CSV in memory flushes");
    String::from_utf8(bytes).expect("CSV of UTF-8 fields is UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(
        rule: &str,
        approved: u64,
        dismissed: u64,
        expired: u64,
        median: f64,
    ) -> RuleFigures {
        let decided = approved + dismissed;
        RuleFigures {
            rule: rule.into(),
            holds: decided + expired,
            approved,
            dismissed,
            expired,
            approval_rate: (decided > 0).then(|| approved as f64 / decided as f64),
            median_decision_secs: Some(median),
            ..RuleFigures::default()
        }
    }

    #[test]
    fn a_rubber_stamped_queue_is_a_candidate_at_the_thresholds_only() {
        assert!(candidate_for_automatic(&figures("r", 49, 1, 0, 9.9)).is_some());
        // 97.9% approved.
        assert!(candidate_for_automatic(&figures("r", 46, 1, 0, 2.0)).is_none());
        // Too few decisions to say.
        assert!(candidate_for_automatic(&figures("r", 19, 0, 0, 2.0)).is_none());
        // Read, not stamped.
        assert!(candidate_for_automatic(&figures("r", 50, 0, 0, 10.0)).is_none());
    }

    #[test]
    fn a_period_is_a_duration_back_from_now() {
        let now: jiff::Timestamp = "2026-11-24T12:00:00Z".parse().unwrap();
        assert_eq!(
            since(now, "30d").unwrap(),
            "2026-10-25T12:00:00Z".parse::<jiff::Timestamp>().unwrap()
        );
        assert!(since(now, "soon").unwrap_err().contains("invalid duration"));
        assert!(
            since(now, "1bd").is_err(),
            "business days are a window, not a period"
        );
        assert!(since(now, "99999999999d").is_err());
    }

    #[test]
    fn csv_quotes_what_needs_quoting() {
        let row = |field: &str| csv_text(&[[field.to_owned(), "1".to_owned()]]);
        assert_eq!(row("plain"), "plain,1\n");
        assert_eq!(row("a,b"), "\"a,b\",1\n");
        assert_eq!(row("say \"hi\""), "\"say \"\"hi\"\"\",1\n");
        assert_eq!(row("two\nlines"), "\"two\nlines\",1\n");
        assert_eq!(row(""), ",1\n");
    }

    #[test]
    fn figures_read_as_people_say_them() {
        assert_eq!(percent(0.98), "98%");
        assert_eq!(percent(0.975), "97.5%");
        assert_eq!(seconds(4.2), "4s");
        assert_eq!(seconds(600.0), "10m");
        assert_eq!(seconds(7200.0), "2.0h");
    }
}

//! The monthly queue review on a store seeded with a month of synthetic
//! decisions: `airlock report` (text, JSON, CSV) and `/api/stats` through
//! `airlock report --from` must state each finding with the numbers a
//! separate computation in this test arrives at.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(unreachable_pub)]

mod common;

#[path = "../benches/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use airlock::holds::Store;
use common::{Binary, Pki, ROOT, reviewers_toml, write_config};
use jiff::{SignedDuration, Timestamp};
use serde_json::Value;

const RULES: &str = r#"
[[rule]]
name = "quote-lookup"
action = "review"
label = "Quote lookup"
host = ["quotes.example"]
reviewers = ["alice"]

[[rule]]
name = "deal-stage"
action = "review"
label = "Deal stage change"
host = ["crm.example"]
reviewers = ["alice"]

[[rule]]
name = "mail-send"
action = "review"
label = "Outbound client message"
host = ["mail.example"]
reviewers = ["alice"]

[[rule]]
name = "crm-notes"
action = "review"
label = "CRM note"
host = ["notes.example"]
"#;

/// What the test decided for one hold, to compute the figures itself.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fate {
    Approved(i64),
    Dismissed(i64),
    Expired,
    Pending,
}

/// A small deterministic generator: the same month every run.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % below
    }
}

fn nearest_rank(mut v: Vec<f64>, p: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let k = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len());
    Some(v[k - 1])
}

struct Seeded {
    fates: BTreeMap<String, Vec<Fate>>,
    unmatched: BTreeMap<(String, String, String), u64>,
}

/// Fills a store with a month of holds decided at chosen times, plus some
/// older ones the report must leave out.
async fn seed(path: &std::path::Path) -> Seeded {
    // Whole seconds, as the test clock keeps milliseconds.
    let now = Timestamp::from_second(Timestamp::now().as_second()).unwrap();
    let at = Arc::new(AtomicI64::new(now.as_millisecond()));
    let clock_at = at.clone();
    let store = Store::open(
        path,
        Arc::new(move || Timestamp::from_millisecond(clock_at.load(Ordering::SeqCst)).unwrap()),
    )
    .unwrap();
    let set = |t: Timestamp| at.store(t.as_millisecond(), Ordering::SeqCst);
    let mut rng = Lcg(7);
    let mut fates: BTreeMap<String, Vec<Fate>> = BTreeMap::new();
    let mut unmatched = BTreeMap::new();
    let mut plan: Vec<(&str, &str, &str, &str, Fate)> = Vec::new();
    // Rubber-stamped: 30 approvals in 2–8 s.
    for _ in 0..30 {
        let secs = 2 + rng.next(7) as i64;
        plan.push((
            "quote-lookup",
            "GET",
            "quotes.example",
            "/q",
            Fate::Approved(secs),
        ));
    }
    // Overloaded: 12 approved, 2 dismissed, 6 expired of 20.
    for i in 0..20 {
        let secs = 60 + rng.next(3000) as i64;
        let fate = match i % 10 {
            0..=5 => Fate::Approved(secs),
            6 => Fate::Dismissed(secs),
            _ => Fate::Expired,
        };
        plan.push(("deal-stage", "PATCH", "crm.example", "/deals/1", fate));
    }
    // Healthy: read and decided, some dismissed; two still pending.
    for i in 0..27 {
        let secs = 30 + rng.next(600) as i64;
        let fate = match i {
            0..=19 => Fate::Approved(secs),
            20..=24 => Fate::Dismissed(secs),
            _ => Fate::Pending,
        };
        plan.push(("mail-send", "POST", "mail.example", "/send", fate));
    }
    // Unclassified traffic.
    for i in 0..10 {
        let (m, h, p) = if i < 7 {
            ("POST", "api.unknown.example", "/v1/things")
        } else {
            ("DELETE", "files.example", "/f/9")
        };
        plan.push(("unmatched", m, h, p, Fate::Dismissed(40)));
    }
    let month = 30 * 86_400 - 4 * 3600;
    let n = plan.len() as i64;
    for (i, (rule, method, host, path, fate)) in plan.into_iter().enumerate() {
        // Spread over the month, oldest first; pending ones are recent.
        let offset = if fate == Fate::Pending {
            -600 - i as i64
        } else {
            -month + (i as i64) * (month - 7200) / n
        };
        let created = now + SignedDuration::from_secs(offset);
        make(
            &store, &set, i as u64, rule, method, host, path, created, fate,
        )
        .await;
        fates.entry(rule.to_owned()).or_default().push(fate);
        if rule == "unmatched" {
            *unmatched
                .entry((method.to_owned(), host.to_owned(), path.to_owned()))
                .or_default() += 1;
        }
    }
    // Older than the period: must not count.
    for i in 0..5 {
        let created = now - SignedDuration::from_hours(24 * 40 + i);
        make(
            &store,
            &set,
            1000 + i as u64,
            "quote-lookup",
            "GET",
            "quotes.example",
            "/q",
            created,
            Fate::Dismissed(5),
        )
        .await;
    }
    set(now);
    store.expire_due().await.unwrap();
    store.flush().await.unwrap();
    Seeded { fates, unmatched }
}

#[allow(clippy::too_many_arguments)]
async fn make(
    store: &Store,
    set: &impl Fn(Timestamp),
    i: u64,
    rule: &str,
    method: &str,
    host: &str,
    path: &str,
    created: Timestamp,
    fate: Fate,
) {
    let mut hold = support::pending_hold(i);
    let ms = created.as_millisecond() as u64;
    hold.id = uuid::Uuid::new_v7(uuid::Timestamp::from_unix(
        uuid::NoContext,
        ms / 1000,
        (ms % 1000) as u32 * 1_000_000,
    ))
    .to_string();
    hold.rule = rule.into();
    hold.method = method.into();
    hold.url = format!("https://{host}{path}");
    hold.created_at = created;
    hold.expires_at = created + SignedDuration::from_hours(2);
    set(created);
    store
        .create(hold.clone(), support::mail_body(i), u64::MAX)
        .await
        .unwrap();
    match fate {
        Fate::Approved(secs) => {
            set(created + SignedDuration::from_secs(secs));
            store.approve(&hold.id, "alice", None, None).await.unwrap();
            // Sent at once, as airlock does after an approval.
            store.claim(&hold.id).await.unwrap().unwrap();
            let sent = airlock::holds::StoredResponse {
                status: 202,
                headers: Vec::new(),
                body: Vec::new(),
                truncated: false,
            };
            store
                .finish(&hold.id, airlock::holds::store::Outcome::Released(sent))
                .await
                .unwrap();
        }
        Fate::Dismissed(secs) => {
            set(created + SignedDuration::from_secs(secs));
            store.dismiss(&hold.id, "alice", None).await.unwrap();
        }
        Fate::Expired | Fate::Pending => {}
    }
}

/// The per-rule figures, computed here from what the test decided.
fn expected(fates: &[Fate]) -> Value {
    let count = |f: fn(&Fate) -> bool| fates.iter().filter(|x| f(x)).count() as u64;
    let approved = count(|f| matches!(f, Fate::Approved(_)));
    let dismissed = count(|f| matches!(f, Fate::Dismissed(_)));
    let times: Vec<f64> = fates
        .iter()
        .filter_map(|f| match f {
            Fate::Approved(s) | Fate::Dismissed(s) => Some(*s as f64),
            _ => None,
        })
        .collect();
    serde_json::json!({
        "holds": fates.len(),
        "approved": approved,
        "dismissed": dismissed,
        "expired": count(|f| matches!(f, Fate::Expired)),
        "pending": count(|f| matches!(f, Fate::Pending)),
        "approval_rate": approved as f64 / (approved + dismissed) as f64,
        "median_decision_secs": nearest_rank(times.clone(), 0.5),
        "p90_decision_secs": nearest_rank(times, 0.9),
    })
}

fn report(dir: &std::path::Path, format: &str, from: Option<&str>) -> String {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_airlock"));
    cmd.args(["report", "--since", "30d", "--format", format, "--config"])
        .arg(dir.join("airlock.toml"))
        .env_remove("AIRLOCK_CONFIG");
    if let Some(url) = from {
        cmd.args(["--from", url]).env("AIRLOCK_TOKEN", ROOT.1);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "airlock report failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn a_month_of_decisions_yields_each_finding_with_its_numbers() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &pki, RULES, "", &reviewers_toml());
    let seeded = seed(&dir.path().join("data")).await;

    let json: Value = serde_json::from_str(&report(dir.path(), "json", None)).unwrap();
    let rules: BTreeMap<String, &Value> = json["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["rule"].as_str().unwrap().to_owned(), r))
        .collect();
    assert_eq!(
        rules.keys().collect::<Vec<_>>(),
        seeded.fates.keys().collect::<Vec<_>>(),
        "holds older than 30 days are left out, so are rules without holds"
    );
    for (rule, fates) in &seeded.fates {
        let want = expected(fates);
        let got = rules[rule];
        for key in [
            "holds",
            "approved",
            "dismissed",
            "expired",
            "pending",
            "median_decision_secs",
            "p90_decision_secs",
        ] {
            assert_eq!(got[key].as_f64(), want[key].as_f64(), "{rule} {key}");
        }
        let rate = got["approval_rate"].as_f64().unwrap();
        assert!((rate - want["approval_rate"].as_f64().unwrap()).abs() < 1e-9);
    }
    assert_eq!(json["queue_depth"], 2);

    let findings: Vec<(&str, &str)> = json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["kind"].as_str().unwrap(), f["rule"].as_str().unwrap()))
        .collect();
    let mut want: Vec<(&str, &str)> = Vec::new();
    for (rule, fates) in &seeded.fates {
        let e = expected(fates);
        let decided = e["approved"].as_u64().unwrap() + e["dismissed"].as_u64().unwrap();
        if rule != "unmatched"
            && decided >= 20
            && e["approval_rate"].as_f64().unwrap() >= 0.98
            && e["median_decision_secs"].as_f64().unwrap() < 10.0
        {
            want.push(("candidate_for_automatic", rule.as_str()));
        }
    }
    for (rule, fates) in &seeded.fates {
        let e = expected(fates);
        let finished = e["holds"].as_u64().unwrap() - e["pending"].as_u64().unwrap();
        if e["expired"].as_u64().unwrap() as f64 / finished as f64 > 0.2 {
            want.push(("expiring", rule.as_str()));
        }
    }
    want.push(("no_named_owner", "crm-notes"));
    for _ in &seeded.unmatched {
        want.push(("unmatched_traffic", "unmatched"));
    }
    assert_eq!(findings, want, "{:#}", json["findings"]);

    let deal = expected(&seeded.fates["deal-stage"]);
    let quotes = expected(&seeded.fates["quote-lookup"]);
    let text = report(dir.path(), "text", None);
    for line in [
        format!(
            "candidate for automatic: quote-lookup — approved {} of {} decided holds (100%) with a median decision of {}s",
            quotes["approved"],
            quotes["approved"],
            quotes["median_decision_secs"].as_f64().unwrap()
        ),
        format!(
            "window too short or owner overloaded: deal-stage — {} of {} finished holds expired (30%)",
            deal["expired"], deal["holds"]
        ),
        "no named owner: crm-notes (".to_owned(),
        "unmatched traffic: 7 requests held POST api.unknown.example/v1/things".to_owned(),
        "unmatched traffic: 3 requests held DELETE files.example/f/9".to_owned(),
        "host = [\"api.unknown.example\"]".to_owned(),
        "Queue now: 2 pending".to_owned(),
    ] {
        assert!(text.contains(&line), "missing {line:?} in:\n{text}");
    }

    let csv = report(dir.path(), "csv", None);
    let mut lines = csv.lines();
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with("rule,holds,pending,approved")
    );
    let deal_row = lines.find(|l| l.starts_with("deal-stage,")).unwrap();
    assert!(
        deal_row.starts_with("deal-stage,20,0,12,2,6,") && deal_row.ends_with(",expiring"),
        "{deal_row}"
    );
    // The unowned rule made no holds, yet its finding has a row.
    assert!(
        csv.lines()
            .any(|l| l == "crm-notes,0,0,0,0,0,0,0,0,,,,0,no_named_owner"),
        "{csv}"
    );

    // The same report from a running airlock, through /api/stats.
    let bin = Binary::start(dir.path());
    let live: Value = serde_json::from_str(&report(
        dir.path(),
        "json",
        Some(&format!("http://{}", bin.review_addr)),
    ))
    .unwrap();
    assert_eq!(live["rules"], json["rules"]);
    assert_eq!(live["findings"], json["findings"]);
    drop(bin);
}

//! Every rule pack shipped in `rules/` must load, and the shipped rules must
//! classify the requests their comments promise (`tests/rules_packs.rs`
//! checks each pack against provider fixtures). A shipped rule that fails
//! to load would stop airlock from starting for everyone who copied it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(unreachable_pub)]

use std::path::{Path, PathBuf};

use airlock::rules::{
    Action, BodyView, ConnectDecision, Decision, RequestView, RuleSet, load_dir, parse_file,
};
use airlock::window::Window;
use http::HeaderMap;

fn rules_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("rules")
}

fn shipped() -> RuleSet {
    let rules = load_dir(&rules_dir()).unwrap_or_else(|errors| panic!("{errors:#?}"));
    RuleSet::new(rules, Action::Review).unwrap_or_else(|errors| panic!("{errors:#?}"))
}

fn view<'a>(
    method: &'a str,
    host: &'a str,
    path: &'a str,
    headers: &'a HeaderMap,
) -> RequestView<'a> {
    RequestView {
        method,
        host,
        path,
        query: None,
        headers,
    }
}

#[test]
fn every_shipped_rules_file_loads() {
    let mut files = 0;
    let entries = std::fs::read_dir(rules_dir()).unwrap_or_else(|e| panic!("rules/: {e}"));
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|ext| ext == "toml") {
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let rules = parse_file(&path.display().to_string(), &text)
                .unwrap_or_else(|errors| panic!("{errors:#?}"));
            assert!(!rules.is_empty(), "{} ships no rules", path.display());
            files += 1;
        }
    }
    assert!(files >= 1, "no rule packs shipped");
    let set = shipped();
    assert!(!set.classification_table().is_empty());
}

#[test]
fn shipped_reviewed_rules_can_be_decided_quickly() {
    // A reviewed action needs a trigger and a readable draft: a label of its
    // own and a summary, or the reviewer is left to read raw bytes.
    for rule in shipped().rules() {
        if rule.action == Action::Review {
            assert_ne!(
                rule.label, rule.name,
                "{}: give the reviewer a label",
                rule.name
            );
            assert!(
                rule.summary.is_some(),
                "{}: give the reviewer a summary",
                rule.name
            );
            assert!(
                rule.window.is_some(),
                "{}: say how long it may wait",
                rule.name
            );
        }
    }
}

#[test]
fn model_providers_are_tunnelled_blind() {
    let set = shipped();
    for (host, rule) in [
        ("api.openai.com", "openai"),
        ("API.Anthropic.com", "anthropic"),
    ] {
        match set.decide_connect(host) {
            ConnectDecision::Tunnel(Some(r)) => assert_eq!(r.name, rule),
            other => panic!("{host}: {other:?}"),
        }
    }
}

#[test]
fn paste_sites_are_refused_at_connect() {
    let set = shipped();
    for host in ["pastebin.com", "www.pastebin.com"] {
        match set.decide_connect(host) {
            ConnectDecision::Refuse(Some(r)) => assert_eq!(r.name, "paste-sites"),
            other => panic!("{host}: {other:?}"),
        }
    }
}

#[test]
fn sendgrid_mail_send_is_held_for_two_hours_with_a_readable_summary() {
    let set = shipped();
    assert_eq!(
        set.decide_connect("api.sendgrid.com"),
        ConnectDecision::Intercept
    );
    let headers = HeaderMap::new();
    let req = view("POST", "api.sendgrid.com", "/v3/mail/send", &headers);
    let Decision::Matched(rule) = set.decide(&req, BodyView::Unread) else {
        panic!("mail send must match without needing the body");
    };
    assert_eq!(rule.name, "sendgrid-mail-send");
    assert_eq!(rule.action, Action::Review);
    assert_eq!(rule.label, "Outbound client message");
    assert_eq!(rule.window, Window::parse("2h").ok());
    let body = serde_json::json!({
        "personalizations": [{"to": [{"email": "client@example.com"}]}],
        "subject": "Your March invoice",
    });
    let summary = rule.summary.as_ref().map(|s| s.render(&req, Some(&body)));
    assert_eq!(
        summary.as_deref(),
        Some("Email to client@example.com: Your March invoice")
    );
}

#[test]
fn unclassified_requests_fall_to_unmatched() {
    let set = shipped();
    let headers = HeaderMap::new();
    let other = view("GET", "api.sendgrid.com", "/v3/templates", &headers);
    assert_eq!(set.decide(&other, BodyView::Unread), Decision::Unmatched);
    assert_eq!(
        set.decide_connect("crm.example.com"),
        ConnectDecision::Intercept
    );
    let explained = set.explain(&other, BodyView::Unread);
    assert_eq!(explained.rule(), None);
    assert_eq!(explained.action(), Action::Review);
}

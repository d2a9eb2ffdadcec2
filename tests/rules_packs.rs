//! The rule packs shipped in `rules/` classify real provider requests as
//! their comments promise. Each fixture in `tests/fixtures/packs/` is one
//! request written from a provider's public API reference, with the rule,
//! action, window, label, CONNECT decision and rendered summary a reviewer
//! should get; the engine decides, these tests compare.
//!
//! Fixture shape (JSON):
//!
//! ```json
//! {
//!   "about": "what the request is, and where its shape comes from",
//!   "method": "POST",
//!   "url": "https://api.sendgrid.com/v3/mail/send",
//!   "headers": { "content-type": "application/json" },
//!   "body": { "...": "a JSON body, sent as JSON text" },
//!   "body_text": "or a body sent as this exact text (forms, MIME)",
//!   "expect": {
//!     "rule": "sendgrid-mail-send",   // null: no rule matches (unmatched)
//!     "action": "review",
//!     "window": "2h",                 // reviewed rules only
//!     "label": "Outbound client message",
//!     "summary": "Email to …",        // reviewed rules only
//!     "connect": "intercept"          // optional: tunnel | refuse | intercept
//!   }
//! }
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(unreachable_pub)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use airlock::rules::{
    Action, BodyView, ConnectDecision, Decision, RequestView, Rule, RuleSet, load_dir,
};
use airlock::window::Window;
use http::{HeaderMap, HeaderName, HeaderValue, Uri};
use serde_json::Value;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn shipped() -> RuleSet {
    let rules = load_dir(&repo().join("rules")).unwrap_or_else(|errors| panic!("{errors:#?}"));
    RuleSet::new(rules, Action::Review).unwrap_or_else(|errors| panic!("{errors:#?}"))
}

/// One fixture file, parsed.
struct Fixture {
    file: String,
    method: String,
    host: String,
    path: String,
    query: Option<String>,
    headers: HeaderMap,
    body: Option<Vec<u8>>,
    expect: Value,
}

impl Fixture {
    fn load(path: &Path) -> Fixture {
        let file = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{file}: {e}"));
        let doc: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
        let str_field = |key: &str| -> String {
            doc[key]
                .as_str()
                .unwrap_or_else(|| panic!("{file}: `{key}` must be a string"))
                .to_owned()
        };
        let method = str_field("method");
        let url: Uri = str_field("url")
            .parse()
            .unwrap_or_else(|e| panic!("{file}: bad url: {e}"));
        let host = url
            .host()
            .unwrap_or_else(|| panic!("{file}: the url has no host"))
            .to_owned();
        let path = url.path().to_owned();
        let query = url.query().map(str::to_owned);
        let mut headers = HeaderMap::new();
        if let Some(map) = doc["headers"].as_object() {
            for (name, value) in map {
                let value = value
                    .as_str()
                    .unwrap_or_else(|| panic!("{file}: header {name} must be a string"));
                headers.append(
                    HeaderName::from_bytes(name.as_bytes())
                        .unwrap_or_else(|e| panic!("{file}: header {name}: {e}")),
                    HeaderValue::from_str(value)
                        .unwrap_or_else(|e| panic!("{file}: header {name}: {e}")),
                );
            }
        }
        let body = match (&doc["body"], &doc["body_text"]) {
            (Value::Null, Value::Null) => None,
            (Value::Null, Value::String(text)) => Some(text.clone().into_bytes()),
            (json, Value::Null) => Some(json.to_string().into_bytes()),
            _ => panic!("{file}: give `body` or `body_text`, not both"),
        };
        let expect = doc["expect"].clone();
        assert!(expect.is_object(), "{file}: no `expect` object");
        Fixture {
            file,
            method,
            host,
            path,
            query,
            headers,
            body,
            expect,
        }
    }

    fn view(&self) -> RequestView<'_> {
        RequestView {
            method: &self.method,
            host: &self.host,
            path: &self.path,
            query: self.query.as_deref(),
            headers: &self.headers,
        }
    }

    fn expected(&self, key: &str) -> Option<&str> {
        self.expect[key].as_str()
    }
}

fn fixtures() -> Vec<Fixture> {
    let dir = repo().join("tests/fixtures/packs");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    paths.sort();
    assert!(
        paths.len() >= 20,
        "expected the pack fixtures in {}",
        dir.display()
    );
    paths.iter().map(|path| Fixture::load(path)).collect()
}

/// Decides as the proxy does: without the body first, and with it only when
/// a candidate rule asks for it.
fn decide<'a>(set: &'a RuleSet, fixture: &Fixture) -> (Option<&'a Rule>, bool) {
    let view = fixture.view();
    match set.decide(&view, BodyView::Unread) {
        Decision::Matched(rule) => (Some(rule), false),
        Decision::Unmatched => (None, false),
        Decision::NeedBody => {
            let body = fixture.body.as_deref().unwrap_or_default();
            match set.decide(&view, BodyView::Read(body)) {
                Decision::Matched(rule) => (Some(rule), true),
                Decision::Unmatched => (None, true),
                Decision::NeedBody => panic!("{}: NeedBody with the body read", fixture.file),
            }
        }
    }
}

fn connect_name(decision: ConnectDecision<'_>) -> &'static str {
    match decision {
        ConnectDecision::Tunnel(_) => "tunnel",
        ConnectDecision::Refuse(_) => "refuse",
        ConnectDecision::Intercept => "intercept",
    }
}

/// Everything wrong with one fixture's outcome, so one run lists all of them.
fn check(set: &RuleSet, fixture: &Fixture) -> Vec<String> {
    let mut wrong = Vec::new();
    let view = fixture.view();
    let (rule, read_body) = decide(set, fixture);
    let name = rule.map(|r| r.name.as_str());
    let expected_rule = fixture.expected("rule");
    if name != expected_rule {
        wrong.push(format!("rule {name:?}, expected {expected_rule:?}"));
    }
    let action = rule.map_or(set.unmatched(), |r| r.action);
    if Some(action.as_str()) != fixture.expected("action") {
        wrong.push(format!(
            "action {action}, expected {:?}",
            fixture.expected("action")
        ));
    }

    // `airlock explain` must tell the same story as the decision.
    let body = match (&fixture.body, read_body) {
        (Some(bytes), true) => BodyView::Read(bytes),
        _ => BodyView::Unread,
    };
    let explained = set.explain(&view, body);
    if explained.rule() != name || explained.action() != action {
        wrong.push(format!(
            "explain says {:?} / {}, decide says {name:?} / {action}",
            explained.rule(),
            explained.action()
        ));
    }

    if let Some(expected) = fixture.expected("connect") {
        let got = connect_name(set.decide_connect(&fixture.host));
        if got != expected {
            wrong.push(format!("CONNECT {got}, expected {expected}"));
        }
    }

    let Some(rule) = rule else {
        return wrong;
    };
    if let Some(label) = fixture.expected("label")
        && rule.label != label
    {
        wrong.push(format!("label {:?}, expected {label:?}", rule.label));
    }
    match fixture.expected("window") {
        Some(window) => {
            let expected = Window::parse(window)
                .unwrap_or_else(|e| panic!("{}: expected window: {e}", fixture.file));
            if rule.window != Some(expected) {
                wrong.push(format!("window {:?}, expected {window}", rule.window));
            }
        }
        None if rule.action == Action::Review => {
            wrong.push("a reviewed fixture must say its `window`".to_owned());
        }
        None => {}
    }
    let json: Option<Value> = fixture
        .body
        .as_deref()
        .and_then(|bytes| serde_json::from_slice(bytes).ok());
    let rendered = rule
        .summary
        .as_ref()
        .map(|summary| summary.render(&view, json.as_ref().map(|doc| rule.summary_value(doc))));
    let expected_summary = fixture.expected("summary");
    if rendered.as_deref() != expected_summary {
        wrong.push(format!(
            "summary {rendered:?}\n      expected {expected_summary:?}"
        ));
    }
    wrong
}

#[test]
fn every_fixture_is_classified_and_summarised_as_expected() {
    let set = shipped();
    let mut failures = Vec::new();
    let all = fixtures();
    for fixture in &all {
        let wrong = check(&set, fixture);
        if !wrong.is_empty() {
            failures.push(format!(
                "{} ({} {}{}):\n    {}",
                fixture.file,
                fixture.method,
                fixture.host,
                fixture.path,
                wrong.join("\n    ")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} fixtures are off:\n{}",
        failures.len(),
        all.len(),
        failures.join("\n")
    );
}

#[test]
fn every_shipped_rule_is_exercised_by_a_fixture() {
    // A rule no fixture reaches is a rule nobody has seen classify a real
    // request: it may be shadowed by an earlier one, or mistyped.
    let set = shipped();
    let reached: BTreeSet<String> = fixtures()
        .iter()
        .filter_map(|f| decide(&set, f).0.map(|rule| rule.name.clone()))
        .collect();
    let missing: Vec<&str> = set
        .rules()
        .iter()
        .map(|rule| rule.name.as_str())
        .filter(|name| !reached.contains(*name))
        .collect();
    assert!(missing.is_empty(), "no fixture reaches: {missing:?}");
}

#[test]
fn no_blind_host_shares_a_front_end_with_a_guarded_one() {
    let risks = shipped().fronting_risks();
    assert!(risks.is_empty(), "{risks:#?}");
}

/// Model providers are tunnelled blind, except where one front end also
/// serves reviewed hosts (Gemini on googleapis.com, beside Gmail): there
/// the host is intercepted so `Host` is bound to it.
#[test]
fn model_providers_are_tunnelled_blind() {
    let set = shipped();
    let models: Vec<&Rule> = set
        .rules()
        .iter()
        .filter(|rule| rule.location.file.ends_with("10-models.toml"))
        .collect();
    let names: BTreeSet<&str> = models.iter().map(|rule| rule.name.as_str()).collect();
    for provider in ["openai", "anthropic", "gemini", "mistral"] {
        assert!(names.contains(provider), "10-models.toml lacks {provider}");
    }
    for rule in models {
        assert_eq!(rule.action, Action::Automatic, "{}", rule.name);
        if rule.name == "gemini" {
            for host in &rule.hosts {
                assert_eq!(
                    set.decide_connect(host),
                    ConnectDecision::Intercept,
                    "{host}"
                );
            }
            continue;
        }
        assert!(rule.host_only(), "{} must be host-only", rule.name);
        for host in &rule.hosts {
            match set.decide_connect(host) {
                ConnectDecision::Tunnel(Some(r)) => assert_eq!(r.name, rule.name, "{host}"),
                other => panic!("{host} ({}): {other:?}", rule.name),
            }
            // Case and a trailing dot must not step around the rule.
            let shouted = format!("{}.", host.to_ascii_uppercase());
            assert!(
                matches!(set.decide_connect(&shouted), ConnectDecision::Tunnel(Some(r)) if r.name == rule.name),
                "{shouted}"
            );
        }
    }
}

/// A concrete host a host glob matches (`*` filled in), or `None` for globs
/// with other wildcards.
fn sample_host(pattern: &str) -> Option<String> {
    if pattern.contains(['?', '[', '{']) {
        return None;
    }
    Some(pattern.replace('*', "sample"))
}

#[test]
fn no_request_level_rule_is_hidden_behind_a_blind_tunnel() {
    // A host whose first rule is host-only is decided at CONNECT: a later
    // request-level rule for it would never see a request.
    let set = shipped();
    for rule in set.rules() {
        for host in rule.hosts.iter().filter_map(|h| sample_host(h)) {
            let decision = set.decide_connect(&host);
            if rule.host_only() {
                let expected = match rule.action {
                    Action::Automatic => "tunnel",
                    Action::Deny => "refuse",
                    Action::Review => "intercept",
                };
                // Only the first rule of a host decides it; a later host-only
                // rule of an intercepted host still matches requests.
                if let ConnectDecision::Tunnel(Some(first)) | ConnectDecision::Refuse(Some(first)) =
                    decision
                {
                    assert_eq!(
                        (first.name.as_str(), connect_name(decision)),
                        (rule.name.as_str(), expected),
                        "{host}"
                    );
                }
            } else {
                assert_eq!(
                    decision,
                    ConnectDecision::Intercept,
                    "{} ({host}) is unreachable: an earlier host-only rule decides the host",
                    rule.name
                );
            }
        }
    }
}

#[test]
fn every_reviewed_rule_names_its_reviewers_and_a_response_window() {
    for rule in shipped().rules() {
        if rule.action != Action::Review {
            continue;
        }
        assert!(!rule.reviewers.is_empty(), "{}: no reviewers", rule.name);
        assert!(!rule.backup.is_empty(), "{}: no backup", rule.name);
        // The three response windows of the specification, nothing else.
        let windows = ["2h", "4h", "1bd"].map(|w| Window::parse(w).ok());
        assert!(
            windows.contains(&rule.window),
            "{}: window {:?} is none of 2h, 4h, 1bd",
            rule.name,
            rule.window
        );
        let summary = rule.summary.as_ref().map(|s| s.source()).unwrap_or("");
        assert!(!summary.is_empty(), "{}: no summary", rule.name);
    }
}

#[test]
fn reads_on_crm_and_payment_hosts_stay_automatic() {
    // Reads pass, whatever the path; the same hosts are intercepted so that
    // their writes can be held.
    let set = shipped();
    let headers = HeaderMap::new();
    for (host, path) in [
        ("api.hubapi.com", "/crm/v3/objects/deals/123"),
        ("api.hubapi.com", "/crm/v3/pipelines/deals"),
        (
            "acme.my.salesforce.com",
            "/services/data/v62.0/sobjects/Account/001",
        ),
        ("api.pipedrive.com", "/v1/deals/42"),
        ("acme.pipedrive.com", "/api/v2/persons"),
        ("api.stripe.com", "/v1/payment_intents/pi_1"),
        ("demo.docusign.net", "/restapi/v2.1/accounts/1/envelopes"),
    ] {
        for method in ["GET", "HEAD"] {
            let view = RequestView {
                method,
                host,
                path,
                query: None,
                headers: &headers,
            };
            match set.decide(&view, BodyView::Unread) {
                Decision::Matched(rule) => {
                    assert_eq!(rule.action, Action::Automatic, "{method} {host}{path}")
                }
                other => panic!("{method} {host}{path}: {other:?}"),
            }
        }
        assert_eq!(
            set.decide_connect(host),
            ConnectDecision::Intercept,
            "{host}"
        );
    }
}

/// An automatic rule that looks inside JSON is where a body with two
/// readings could slip through: each such shipped rule has a fixture with a
/// duplicate key and one with keys differing only in case, and both must
/// be held.
#[test]
fn every_automatic_json_rule_holds_its_ambiguous_bodies() {
    let set = shipped();
    let all = fixtures();
    let mut missing = Vec::new();
    for rule in set.rules() {
        if rule.action != Action::Automatic || rule.json.is_empty() {
            continue;
        }
        for variant in ["duplicate-key", "case-variant"] {
            let file = format!("{}-{variant}.json", rule.name);
            match all.iter().find(|f| f.file == file) {
                None => missing.push(format!("{file}: missing")),
                Some(fixture) => {
                    let (decided, _) = decide(&set, fixture);
                    let action = decided.map_or(set.unmatched(), |r| r.action);
                    if action != Action::Review {
                        missing.push(format!("{file}: {action}, must be held"));
                    }
                }
            }
        }
    }
    assert!(missing.is_empty(), "{missing:#?}");
}

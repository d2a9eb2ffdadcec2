//! Decision speed with 1,000 realistic rules. The requirement is under 2 µs
//! per `decide`, for a request matching near the end of the list and for one
//! matching nothing; CONNECT decisions and the worst case of many rules on one
//! host are measured alongside, and, on the shipped packs, a decision that
//! reads a JSON body: an MCP tool call beside a plain `json` rule.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(unreachable_pub)]
#![allow(clippy::print_stdout)]

use std::fmt::Write as _;
use std::hint::black_box;

use airlock::rules::{Action, BodyView, Decision, RequestView, RuleSet, parse_file};
use criterion::{Criterion, criterion_group, criterion_main};
use http::HeaderMap;

const RULES: usize = 1_000;

/// Mostly distinct literal hosts, some wildcard hosts, paths with `*` and
/// `**`, methods: the shape of a large organisation's rule packs.
fn realistic_rules() -> String {
    let mut text = String::new();
    for i in 0..RULES {
        let v = i % 3 + 1;
        let rule = match i % 10 {
            0 => format!(
                "name = \"wild-{i}\"\naction = \"review\"\nhost = [\"*.example-{i}.com\"]\npath = [\"/v1/**\"]\n"
            ),
            1 | 2 => format!(
                "name = \"host-{i}\"\naction = \"automatic\"\nhost = [\"api-{i}.example.com\"]\n"
            ),
            3..=6 => format!(
                "name = \"write-{i}\"\naction = \"review\"\nhost = [\"api-{i}.example.com\"]\n\
                 method = [\"POST\", \"PUT\"]\n\
                 path = [\"/v{v}/resources-{i}/*\", \"/v{v}/resources-{i}/*/items/**\"]\nwindow = \"4h\"\n"
            ),
            7 => format!(
                "name = \"read-{i}\"\naction = \"automatic\"\nhost = [\"svc-{i}.example.net\"]\n\
                 method = [\"GET\"]\npath = [\"/items/*/detail\"]\n"
            ),
            8 => format!(
                "name = \"exact-{i}\"\naction = \"deny\"\nhost = [\"svc-{i}.example.net\"]\npath = [\"/exact/path-{i}\"]\n"
            ),
            _ => format!(
                "name = \"delete-{i}\"\naction = \"review\"\nhost = [\"svc-{i}.example.org\", \"alt-{i}.example.org\"]\n\
                 method = [\"DELETE\"]\npath = [\"/api/**\"]\n"
            ),
        };
        let _ = write!(text, "[[rule]]\n{rule}\n");
    }
    text
}

/// The worst case for the host index: every rule on one host, told apart by
/// method and path only.
fn one_host_rules() -> String {
    let mut text = String::new();
    for i in 0..RULES {
        let _ = write!(
            text,
            "[[rule]]\nname = \"r{i}\"\naction = \"review\"\nhost = [\"api.shared.com\"]\n\
             method = [\"POST\"]\npath = [\"/v1/things-{i}/*\", \"/v2/things-{i}/**\"]\n\n"
        );
    }
    text
}

/// Worse still: one host, and every path glob starting with the same
/// literal prefix, so only the paths' full globs tell the rules apart.
fn one_prefix_rules() -> String {
    let mut text = String::new();
    for i in 0..RULES {
        let _ = write!(
            text,
            "[[rule]]\nname = \"r{i}\"\naction = \"review\"\nhost = [\"api.shared.com\"]\n\
             path = [\"/api/*/thing-{i}\"]\n\n"
        );
    }
    text
}

fn build(text: &str) -> RuleSet {
    let rules = match parse_file("bench.toml", text) {
        Ok(rules) => rules,
        Err(errors) => panic!("{errors:#?}"),
    };
    match RuleSet::new(rules, Action::Review) {
        Ok(set) => set,
        Err(errors) => panic!("{errors:#?}"),
    }
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
        query: Some("page=2&limit=50"),
        headers,
    }
}

fn expect(set: &RuleSet, req: &RequestView<'_>, want: Option<&str>) {
    let got = match set.decide(req, BodyView::Unread) {
        Decision::Matched(rule) => Some(rule.name.as_str()),
        Decision::Unmatched => None,
        Decision::NeedBody => Some("<need body>"),
    };
    assert_eq!(got, want, "{req:?}");
}

fn decide(c: &mut Criterion) {
    let set = build(&realistic_rules());
    let one_host = build(&one_host_rules());
    let one_prefix = build(&one_prefix_rules());
    let headers = HeaderMap::new();

    // Rule 996 is a write rule near the end: `/v1/resources-996/*/items/**`.
    let near_end = view(
        "POST",
        "API-996.example.com",
        "/v1/resources-996/abc/items/x/y",
        &headers,
    );
    let wildcard = view("GET", "eu.example-990.com", "/v1/reports/2024/q3", &headers);
    let nothing = view("GET", "unknown.internal", "/healthz", &headers);
    let host_no_path = view("POST", "api-993.example.com", "/v1/other/thing", &headers);
    let shared_last = view("POST", "api.shared.com", "/v2/things-999/a/b", &headers);
    expect(&set, &near_end, Some("write-996"));
    expect(&set, &wildcard, Some("wild-990"));
    expect(&set, &nothing, None);
    expect(&set, &host_no_path, None);
    expect(&one_host, &shared_last, Some("r999"));
    let prefix_last = view("GET", "api.shared.com", "/api/v1/thing-999", &headers);
    expect(&one_prefix, &prefix_last, Some("r999"));

    let mut group = c.benchmark_group("decide_1000_rules");
    for (name, set, req) in [
        ("match_near_end", &set, &near_end),
        ("match_wildcard_host", &set, &wildcard),
        ("match_nothing", &set, &nothing),
        ("host_matches_path_does_not", &set, &host_no_path),
        ("one_host_match_last", &one_host, &shared_last),
        ("one_host_one_prefix_match_last", &one_prefix, &prefix_last),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| black_box(set.decide(black_box(req), BodyView::Unread)));
        });
    }
    group.finish();

    let mut group = c.benchmark_group("decide_connect_1000_rules");
    for host in [
        "api-991.example.com",
        "eu.example-990.com",
        "unknown.internal",
    ] {
        group.bench_function(host, |b| {
            b.iter(|| black_box(set.decide_connect(black_box(host))));
        });
    }
    group.finish();

    // The shipped packs, deciding on a body already read: an MCP tools/call
    // (held as a merge, or passed as a read) against HubSpot's deal-stage
    // json rule, which parses a body of about the same size.
    let shipped = RuleSet::new(
        airlock::rules::load_dir(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rules"))
            .unwrap(),
        Action::Review,
    )
    .unwrap();
    let mut json_headers = HeaderMap::new();
    json_headers.insert("content-type", "application/json".parse().unwrap());
    let github = view("POST", "api.githubcopilot.com", "/mcp/", &json_headers);
    let hubspot = view(
        "PATCH",
        "api.hubapi.com",
        "/crm/v3/objects/deals/14975381210",
        &json_headers,
    );
    let merge = br#"{"jsonrpc":"2.0","id":12,"method":"tools/call","params":{"name":"merge_pull_request","arguments":{"owner":"octo-org","repo":"website","pullNumber":42,"merge_method":"squash"}}}"#;
    let read = br#"{"jsonrpc":"2.0","id":13,"method":"tools/call","params":{"name":"get_file_contents","arguments":{"owner":"octo-org","repo":"website","path":"README.md","ref":"main"}}}"#;
    let deal = br#"{"properties":{"dealstage":"closedwon","amount":"1200.00","closedate":"2026-11-29T12:00:00Z","dealname":"Website redesign for octo-org","pipeline":"default"}}"#;
    let decided =
        |req: &RequestView<'_>, body: &[u8]| match shipped.decide(req, BodyView::Read(body)) {
            Decision::Matched(rule) => rule.name.clone(),
            other => format!("{other:?}"),
        };
    assert_eq!(decided(&github, merge), "mcp-github-merge");
    assert_eq!(decided(&github, read), "mcp-github-reads");
    assert_eq!(decided(&hubspot, deal), "hubspot-deal-stage");
    let mut group = c.benchmark_group("decide_shipped_with_body");
    for (name, req, body) in [
        ("mcp_tool_call_held", &github, &merge[..]),
        ("mcp_tool_call_read_passed", &github, &read[..]),
        ("json_rule_hubspot_baseline", &hubspot, &deal[..]),
        (
            "mcp_plumbing_tools_list_passed",
            &github,
            &br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#[..],
        ),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| black_box(shipped.decide(black_box(req), BodyView::Read(black_box(body)))));
        });
    }
    group.finish();

    c.bench_function("build_1000_rules", |b| {
        let text = realistic_rules();
        b.iter(|| black_box(build(&text)));
    });
}

criterion_group!(benches, decide);
criterion_main!(benches);

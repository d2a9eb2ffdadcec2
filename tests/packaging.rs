//! Packaging checked with real validators: the Dockerfile with hadolint, the
//! Kubernetes examples against the Kubernetes schemas (kubernetes-validate,
//! strict), and the airlock configuration and rules they carry with
//! airlock's own loaders.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(unreachable_pub)]

mod common;

use std::path::Path;
use std::process::Command;

use common::require_tool;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn run(tool: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(require_tool(tool))
        .args(args)
        .current_dir(repo())
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn the_dockerfiles_pass_hadolint() {
    for file in ["Dockerfile", "examples/kubernetes/transparent/Dockerfile"] {
        let (ok, out) = run("hadolint", &[file]);
        assert!(ok, "{file}: {out}");
    }
}

/// The manifests (`*.yaml`) directly in `dir`, a directory of the repository.
fn manifests(dir: &str) -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(repo().join(dir))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .map(|p| p.display().to_string())
        .collect();
    files.sort();
    files
}

/// `kubernetes-validate`, strict, against Kubernetes 1.30.
fn validate(files: &[&str]) -> (bool, String) {
    let mut args = vec!["-k", "1.30.0", "--strict"];
    args.extend_from_slice(files);
    run("kubernetes-validate", &args)
}

/// The validator does catch mistakes: `example` with `field` misspelt fails.
fn assert_a_misspelt_field_fails(example: &str, field: &str) {
    let text = std::fs::read_to_string(repo().join(example)).unwrap();
    assert!(text.contains(field), "{example} has no {field:?}");
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.yaml");
    let misspelt = field.replacen(':', "y:", 1);
    std::fs::write(&broken, text.replace(field, &misspelt)).unwrap();
    let (ok, _) = validate(&[broken.to_str().unwrap()]);
    assert!(!ok, "a misspelt field ({misspelt:?}) must fail validation");
}

#[test]
fn the_kubernetes_examples_match_the_kubernetes_schemas() {
    let files = manifests("examples/kubernetes");
    assert!(files.len() >= 3, "{files:?}");
    let files: Vec<&str> = files.iter().map(String::as_str).collect();
    let (ok, out) = validate(&files);
    assert!(ok, "{out}");
    assert_a_misspelt_field_fails(
        "examples/kubernetes/deployment-native-sidecar.yaml",
        "restartPolicy: Always",
    );
}

#[test]
fn the_kubernetes_fleet_example_matches_the_kubernetes_schemas() {
    let files = manifests("examples/kubernetes/fleet");
    assert_eq!(files.len(), 3, "{files:?}");
    let files: Vec<&str> = files.iter().map(String::as_str).collect();
    let (ok, out) = validate(&files);
    assert!(ok, "{out}");
    assert_a_misspelt_field_fails(
        "examples/kubernetes/fleet/agents.yaml",
        "restartPolicy: Always",
    );
    assert_a_misspelt_field_fails("examples/kubernetes/fleet/review.yaml", "targetPort: http");
}

#[test]
fn the_transparent_example_matches_the_schemas_and_keeps_privileges_to_its_init() {
    let files = manifests("examples/kubernetes/transparent");
    assert_eq!(files.len(), 1, "{files:?}");
    let files: Vec<&str> = files.iter().map(String::as_str).collect();
    let (ok, out) = validate(&files);
    assert!(ok, "{out}");
    assert_a_misspelt_field_fails(
        "examples/kubernetes/transparent/deployment.yaml",
        "restartPolicy: Always",
    );
    let text = std::fs::read_to_string(files[0]).unwrap();
    // NET_ADMIN in the redirect init container only; the agent has no
    // proxy variables and never airlock's uid.
    assert_eq!(text.matches("\"NET_ADMIN\"").count(), 1, "{text}");
    let agent = text.split("- name: agent").nth(1).unwrap();
    assert!(!agent.contains("HTTPS_PROXY"));
    assert!(agent.contains("runAsUser: 10002"));
    assert!(text.contains("AIRLOCK_PROXY_TRANSPARENT_LISTEN"));
    assert!(text.contains("{ name: AIRLOCK_UID, value: \"10001\" }"));
}

#[test]
fn the_sign_in_example_validates_and_its_configuration_trusts_only_loopback() {
    let files = manifests("examples/kubernetes/sso");
    assert_eq!(files.len(), 1, "{files:?}");
    let (ok, out) = validate(&[files[0].as_str()]);
    assert!(ok, "{out}");
    assert_a_misspelt_field_fails(
        "examples/kubernetes/sso/review-oauth2-proxy.yaml",
        "targetPort: http",
    );
    let text = std::fs::read_to_string(&files[0]).unwrap();
    let config = airlock::config::Config::parse(
        "sso airlock.toml",
        &block(&text, "airlock.toml"),
        &airlock::config::Env::from_pairs([("AIRLOCK_STORE_URL", "postgres://a:b@db/airlock")]),
    )
    .unwrap();
    assert_eq!(
        config.review.trusted_header.as_ref().map(|h| h.as_str()),
        Some("x-forwarded-email")
    );
    assert_eq!(config.review.trusted_proxies.len(), 1);
    assert!(config.review.trusted_proxies[0].contains(&std::net::IpAddr::from([127, 0, 0, 1])));
    assert!(config.reviewers.iter().all(|r| r.email.is_some()));
    assert!(text.contains("--upstream=http://127.0.0.1:3129"));
}

/// The `key: |` block scalar under `key` in a manifest, unindented.
fn block(text: &str, key: &str) -> String {
    let mut lines = text.lines().skip_while(|l| l.trim() != format!("{key}: |"));
    let header = lines.next().expect("key present");
    let indent = header.len() - header.trim_start().len() + 2;
    lines
        .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() >= indent)
        .map(|l| l.get(indent..).unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_configuration_and_rules_in_the_kubernetes_examples_load() {
    let text = std::fs::read_to_string(repo().join("examples/kubernetes/config.yaml")).unwrap();
    let config = airlock::config::Config::parse(
        "config.yaml airlock.toml",
        &block(&text, "airlock.toml"),
        &airlock::config::Env::default(),
    )
    .unwrap();
    assert_eq!(config.reviewers.len(), 2);
    let rules =
        airlock::rules::parse_file("config.yaml 10-email.toml", &block(&text, "10-email.toml"))
            .unwrap();
    airlock::rules::RuleSet::new(rules, config.defaults.unmatched).unwrap();
}

#[test]
fn the_fleet_configuration_loads_with_the_store_url_from_the_environment() {
    let text =
        std::fs::read_to_string(repo().join("examples/kubernetes/fleet/config.yaml")).unwrap();
    let toml = block(&text, "airlock.toml");
    // The store's URL is a secret of its own and comes from the environment.
    assert!(!toml.contains("[store]"), "{toml}");
    let config = airlock::config::Config::parse(
        "fleet/config.yaml airlock.toml",
        &toml,
        &airlock::config::Env::from_pairs([(
            "AIRLOCK_STORE_URL",
            "postgres://airlock:pw@db:5432/airlock",
        )]),
    )
    .unwrap();
    assert!(config.store.url.is_some());
    assert_eq!(config.reviewers.len(), 2);
    let rules = airlock::rules::parse_file(
        "fleet/config.yaml 10-email.toml",
        &block(&text, "10-email.toml"),
    )
    .unwrap();
    airlock::rules::RuleSet::new(rules, config.defaults.unmatched).unwrap();
}

/// Each `- name: ...` list item in a manifest with everything nested under
/// it: containers, volumes, env entries.
fn named_items(text: &str) -> Vec<String> {
    fn indent(line: &str) -> usize {
        line.len() - line.trim_start().len()
    }
    let lines: Vec<&str> = text.lines().collect();
    lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.trim_start().starts_with("- name: "))
        .map(|(i, header)| {
            let nested = lines[i + 1..]
                .iter()
                .take_while(|l| l.trim().is_empty() || indent(l) > indent(header));
            std::iter::once(header)
                .chain(nested)
                .copied()
                .collect::<Vec<_>>()
                .join("\n")
        })
        .collect()
}

#[test]
fn every_airlock_in_the_fleet_takes_the_store_url_from_the_secret() {
    for (file, expected) in [("agents.yaml", "run"), ("review.yaml", "review")] {
        let text =
            std::fs::read_to_string(repo().join("examples/kubernetes/fleet").join(file)).unwrap();
        // The containers that run a proxy or a review server; the CA bundle
        // init container opens no store.
        let airlocks: Vec<String> = named_items(&text)
            .into_iter()
            .filter(|item| {
                item.contains("image: ghcr.io/example/airlock:")
                    && (item.contains(r#"args: ["run","#) || item.contains(r#"args: ["review","#))
            })
            .collect();
        assert_eq!(airlocks.len(), 1, "{file}: {airlocks:#?}");
        for airlock in &airlocks {
            assert!(
                airlock.contains(&format!(r#"args: ["{expected}","#)),
                "{file}: {airlock}"
            );
            let after: Vec<&str> = airlock
                .lines()
                .skip_while(|l| l.trim() != "- name: AIRLOCK_STORE_URL")
                .skip(1)
                .take(2)
                .map(str::trim)
                .collect();
            assert_eq!(
                after,
                [
                    "valueFrom:",
                    "secretKeyRef: { name: airlock-store, key: url }"
                ],
                "{file}: {airlock}"
            );
        }
    }
}

#[test]
fn no_kubernetes_manifest_spells_out_a_database_url_but_the_store_secret() {
    let mut secrets = 0;
    for file in manifests("examples/kubernetes")
        .into_iter()
        .chain(manifests("examples/kubernetes/fleet"))
    {
        let text = std::fs::read_to_string(&file).unwrap();
        for document in text.split("\n---\n") {
            if !document.contains("postgres://") && !document.contains("postgresql://") {
                continue;
            }
            let is_store_secret = document.lines().any(|l| l == "kind: Secret")
                && document.lines().any(|l| l == "  name: airlock-store");
            assert!(
                is_store_secret,
                "{file}: a database URL outside the airlock-store Secret:\n{document}"
            );
            secrets += 1;
        }
    }
    assert_eq!(secrets, 1, "the fleet's airlock-store Secret holds the URL");
}

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
fn the_dockerfile_passes_hadolint() {
    let (ok, out) = run("hadolint", &["Dockerfile"]);
    assert!(ok, "{out}");
}

fn manifests() -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(repo().join("examples/kubernetes"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .map(|p| p.display().to_string())
        .collect();
    files.sort();
    files
}

#[test]
fn the_kubernetes_examples_match_the_kubernetes_schemas() {
    let files = manifests();
    assert!(files.len() >= 3, "{files:?}");
    let mut args = vec!["-k", "1.30.0", "--strict"];
    args.extend(files.iter().map(String::as_str));
    let (ok, out) = run("kubernetes-validate", &args);
    assert!(ok, "{out}");
    // The validator does catch mistakes: a misspelt field fails.
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.yaml");
    let text =
        std::fs::read_to_string(repo().join("examples/kubernetes/deployment-native-sidecar.yaml"))
            .unwrap();
    std::fs::write(
        &broken,
        text.replace("restartPolicy: Always", "restartPolicyy: Always"),
    )
    .unwrap();
    let (ok, _) = run(
        "kubernetes-validate",
        &["-k", "1.30.0", "--strict", broken.to_str().unwrap()],
    );
    assert!(!ok, "a misspelt field must fail validation");
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

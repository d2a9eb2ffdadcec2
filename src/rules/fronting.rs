//! Where a blind tunnel could still reach a reviewed host: a host tunnelled
//! blind that shares its parent domain with a host whose requests are
//! reviewed or denied. airlock checks the tunnel's TLS server name, but
//! not what the tunnel carries, and one front end often serves a whole
//! domain (`*.googleapis.com`) and routes by the `Host` header inside TLS.
//! `airlock rules check` warns about each such pair.
//!
//! This module only reads rules; it decides nothing at run time.

use super::{Action, Rule, RuleSet};

/// A blind host and a reviewed or denied host under one parent domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrontingRisk {
    /// The rule that tunnels `blind_host` blind.
    pub blind_rule: String,
    pub blind_host: String,
    /// The rule that reviews or denies requests to `guarded_host`.
    pub guarded_rule: String,
    pub guarded_host: String,
    pub parent: String,
}

impl std::fmt::Display for FrontingRisk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "blind tunnel shares a front end: {} (rule {}) is tunnelled blind and {} (rule {}) is guarded, both under {}; a client could name {} in Host inside the tunnel. Give {} a condition beyond host (e.g. path = [\"/**\"]) so it is intercepted.",
            self.blind_host,
            self.blind_rule,
            self.guarded_host,
            self.guarded_rule,
            self.parent,
            self.guarded_host,
            self.blind_rule
        )
    }
}

/// The domain a host glob sits under: its name less the first label, when
/// at least two labels remain (`gmail.googleapis.com` and
/// `*.googleapis.com` are both under `googleapis.com`; `api.openai.com`
/// is under `openai.com`).
fn parent(glob: &str) -> Option<String> {
    let glob = glob.strip_suffix('.').unwrap_or(glob).to_ascii_lowercase();
    let (_, rest) = glob.split_once('.')?;
    (rest.contains('.') && !rest.contains(['*', '?', '[', '{'])).then(|| rest.to_owned())
}

impl RuleSet {
    /// Every blind host that shares a parent domain with a host some
    /// review or deny rule names.
    pub fn fronting_risks(&self) -> Vec<FrontingRisk> {
        let blind = self.rules().iter().filter(|r| {
            r.action == Action::Automatic
                && r.host_only()
                && r.hosts.iter().any(|h| {
                    matches!(
                        self.decide_connect(h),
                        super::ConnectDecision::Tunnel(Some(t)) if std::ptr::eq(t, *r)
                    )
                })
        });
        let guarded: Vec<&Rule> = self
            .rules()
            .iter()
            .filter(|r| r.action != Action::Automatic)
            .collect();
        let mut risks = Vec::new();
        for b in blind {
            for blind_host in &b.hosts {
                let Some(parent_domain) = parent(blind_host) else {
                    continue;
                };
                for g in &guarded {
                    for guarded_host in &g.hosts {
                        if guarded_host.eq_ignore_ascii_case(blind_host)
                            || parent(guarded_host).as_deref() != Some(&parent_domain)
                        {
                            continue;
                        }
                        risks.push(FrontingRisk {
                            blind_rule: b.name.clone(),
                            blind_host: blind_host.clone(),
                            guarded_rule: g.name.clone(),
                            guarded_host: guarded_host.clone(),
                            parent: parent_domain.clone(),
                        });
                    }
                }
            }
        }
        risks
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::parse_file;

    fn set(text: &str) -> RuleSet {
        RuleSet::new(parse_file("t.toml", text).unwrap(), Action::Review).unwrap()
    }

    #[test]
    fn a_blind_host_beside_a_reviewed_one_is_named() {
        let risky = set(r#"
[[rule]]
name = "gemini"
action = "automatic"
host = ["generativelanguage.googleapis.com"]

[[rule]]
name = "gmail-send"
action = "review"
host = ["gmail.googleapis.com"]
method = ["POST"]

[[rule]]
name = "openai"
action = "automatic"
host = ["api.openai.com"]
"#);
        let risks = risky.fronting_risks();
        assert_eq!(risks.len(), 1, "{risks:?}");
        assert_eq!(risks[0].blind_rule, "gemini");
        assert_eq!(risks[0].guarded_host, "gmail.googleapis.com");
        assert_eq!(risks[0].parent, "googleapis.com");
        assert!(risks[0].to_string().contains("Host"));
    }

    #[test]
    fn an_intercepted_automatic_host_is_no_risk() {
        let safe = set(r#"
[[rule]]
name = "gemini"
action = "automatic"
host = ["generativelanguage.googleapis.com"]
path = ["/**"]

[[rule]]
name = "gmail-send"
action = "review"
host = ["*.googleapis.com"]
"#);
        assert!(safe.fronting_risks().is_empty());
        assert_eq!(
            parent("*.googleapis.com").as_deref(),
            Some("googleapis.com")
        );
        assert_eq!(parent("example.com"), None);
        assert_eq!(parent("a.*.com"), None);
    }
}

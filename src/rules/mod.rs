//! Rules: the written classification of every outbound action as automatic,
//! reviewed or denied. This module owns the rules files (`rules/*.toml`), their
//! validation with file:line:column errors, and the compiled [`RuleSet`] that
//! decides a request or a CONNECT host. It must never know about connections,
//! TLS, configuration files or servers: the proxy hands it plain views of a
//! request and gets a decision back, and data never flows the other way.
//!
//! - [`load`]: TOML text → [`Rule`], every error located precisely.
//! - [`matcher`]: compiled glob sets, first-match decisions, explanations.
//! - [`summary`]: the one-line templates a reviewer reads.
//! - [`fronting`]: blind hosts that share a front end with guarded ones.
//! - [`shipped`]: the packs compiled into the binary, used when there is no
//!   `./rules` directory, and `airlock rules init`.

mod fronting;
mod load;
mod matcher;
pub mod shipped;
mod summary;

use std::fmt;
use std::time::Duration;

use crate::window::Window;

pub use fronting::FrontingRisk;
pub use load::{load_dir, parse_file};
pub use matcher::{Explanation, RuleSet};
pub(crate) use matcher::{Folded, host_glob};
pub use summary::Summary;

/// The cap on `Prefer: wait` (and on `wait`) of a rule without `max_wait`.
pub const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(120);

/// What happens to a request a rule matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Passed through untouched.
    Automatic,
    /// Held until a named reviewer approves, dismisses, or the window ends.
    Review,
    /// Refused with 403 and never sent.
    Deny,
}

impl Action {
    /// The spelling used in rules files and configuration.
    pub fn parse(s: &str) -> Option<Action> {
        match s {
            "automatic" => Some(Action::Automatic),
            "review" => Some(Action::Review),
            "deny" => Some(Action::Deny),
            _ => None,
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Action::Automatic => "automatic",
            Action::Review => "review",
            Action::Deny => "deny",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A place in a rules file, 1-based, as editors count it (columns in
/// characters, not bytes). Line 0 means the whole file or directory, for
/// errors no line can be blamed for (it cannot be read, for instance).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Location {
    pub file: String,
    pub line: usize,
    pub column: usize,
}

impl Location {
    /// The location of a byte offset in `text` (clamped to the text, and
    /// back to a character boundary).
    pub fn at(file: &str, text: &str, offset: usize) -> Location {
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &text[..offset];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Location {
            file: file.to_owned(),
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            return f.write_str(&self.file);
        }
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// One thing wrong with the rules, at the place a person must edit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{location}: {message}")]
pub struct RuleError {
    pub location: Location,
    pub message: String,
}

/// One validated `[[rule]]` table. Plain data: matching is compiled from it by
/// [`RuleSet::new`], so a `Rule` can be cloned, printed and compared freely.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Unique and stable: audit records and queue figures are keyed by it.
    pub name: String,
    pub action: Action,
    /// What the reviewer reads as the trigger; the name when absent.
    pub label: String,
    /// Host globs as written (matched case-insensitively, without port).
    pub hosts: Vec<String>,
    /// Upper-cased HTTP methods.
    pub methods: Vec<String>,
    /// Path globs: `*` stays within a segment, `**` crosses `/`.
    pub paths: Vec<String>,
    /// Query parameter → glob on its decoded value, in file order.
    pub query: Vec<(String, String)>,
    /// Lower-cased header name → case-insensitive glob on its value.
    pub headers: Vec<(String, String)>,
    /// JSON Pointer → glob on the value it resolves to in the body.
    pub json: Vec<(String, String)>,
    pub window: Option<Window>,
    pub reviewers: Vec<String>,
    pub backup: Vec<String>,
    /// When the backup is told; `None` means half the window, which only the
    /// scheduler can compute for business-day windows.
    pub escalate_after: Option<Duration>,
    /// Cap on `Prefer: wait`.
    pub max_wait: Option<Duration>,
    /// How long a held request is kept open for a decision without the
    /// agent asking.
    pub wait: Option<Duration>,
    /// Globs on the tool name of an MCP `tools/call` (`params.name`).
    pub mcp_tools: Vec<String>,
    pub summary: Option<Summary>,
    pub allow_edit: bool,
    /// How many distinct reviewers must approve a hold of this rule.
    pub approvals: u32,
    /// The Slack channel this rule's holds are posted to.
    pub slack_channel: Option<String>,
    /// Headers redacted and purged in addition to the usual credentials.
    pub secret_headers: Vec<http::HeaderName>,
    /// Where the `[[rule]]` table starts.
    pub location: Location,
}

impl Rule {
    /// True when nothing but the host decides: such a rule can be applied at
    /// CONNECT time, before any TLS interception.
    pub fn host_only(&self) -> bool {
        self.methods.is_empty()
            && self.paths.is_empty()
            && self.query.is_empty()
            && self.headers.is_empty()
            && self.json.is_empty()
            && self.mcp_tools.is_empty()
    }

    /// What this rule's summary reads of a JSON body: for an `mcp_tool`
    /// rule and a JSON-RPC batch, the first call in it of one of its tools
    /// (any case), so the card names the call that was held; else the body.
    pub fn summary_value<'d>(&self, doc: &'d serde_json::Value) -> &'d serde_json::Value {
        if self.mcp_tools.is_empty() || !doc.is_array() {
            return doc;
        }
        let mut set = globset::GlobSetBuilder::new();
        for pattern in &self.mcp_tools {
            if let Ok(glob) = matcher::value_glob(pattern, true) {
                set.add(glob);
            }
        }
        let Ok(set) = set.build() else {
            return doc;
        };
        crate::canonical::mcp::lenient_calls(doc)
            .find(|(name, _)| set.is_match(name))
            .map_or(doc, |(_, msg)| msg)
    }

    /// True when deciding whether this rule matches needs the request body.
    pub fn needs_body(&self) -> bool {
        !self.json.is_empty() || !self.mcp_tools.is_empty()
    }
}

/// The parts of a request the rules look at, borrowed from the proxy.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    pub method: &'a str,
    /// Without port, any case.
    pub host: &'a str,
    /// The path as sent, without the query.
    pub path: &'a str,
    /// The raw query string, without `?`.
    pub query: Option<&'a str>,
    pub headers: &'a http::HeaderMap,
}

/// Whether the caller has buffered the body yet: buffering is deferred until a
/// rule actually needs it, so automatic traffic keeps streaming.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyView<'a> {
    Unread,
    /// The body decoded for reading ([`crate::canonical::body::decode`]).
    Read(&'a [u8]),
    /// The body could not be decoded (an unknown or corrupt
    /// `Content-Encoding`): `json` conditions read it as ambiguous.
    Undecodable,
}

/// The outcome of matching one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision<'a> {
    /// The first rule that matches.
    Matched(&'a Rule),
    /// No rule matches: `RuleSet::unmatched` applies.
    Unmatched,
    /// The next candidate rule has JSON conditions: buffer the body and ask
    /// again with [`BodyView::Read`].
    NeedBody,
}

impl<'a> Decision<'a> {
    pub fn rule(&self) -> Option<&'a Rule> {
        match self {
            Decision::Matched(rule) => Some(rule),
            Decision::Unmatched | Decision::NeedBody => None,
        }
    }
}

/// What to do with a CONNECT before answering it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectDecision<'a> {
    /// Copy bytes blind, no interception. `None`: decided by `unmatched`.
    Tunnel(Option<&'a Rule>),
    /// Refuse the tunnel. `None`: decided by `unmatched`.
    Refuse(Option<&'a Rule>),
    /// Terminate TLS with the local CA so each request can be matched.
    Intercept,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_spell_as_in_rules_files() {
        for action in [Action::Automatic, Action::Review, Action::Deny] {
            assert_eq!(Action::parse(&action.to_string()), Some(action));
        }
        assert_eq!(Action::Review.to_string(), "review");
        assert_eq!(Action::parse("Review"), None);
        assert_eq!(Action::parse("allow"), None);
    }

    #[test]
    fn errors_print_file_line_column_then_message() {
        let error = RuleError {
            location: Location {
                file: "rules/10-mail.toml".to_owned(),
                line: 4,
                column: 9,
            },
            message: "invalid window".to_owned(),
        };
        assert_eq!(error.to_string(), "rules/10-mail.toml:4:9: invalid window");
        let whole = Location {
            file: "rules".to_owned(),
            line: 0,
            column: 0,
        };
        assert_eq!(whole.to_string(), "rules");
    }
}

//! Loading rules files: TOML text → validated [`Rule`]s, with every mistake
//! reported at the file, line and column a person must edit. This module owns
//! the rules-file schema and its validation. It must never half-load: a file
//! with any error yields no rules, so airlock never starts on rules it could
//! not fully read.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::Path;

use serde::Deserialize;
use serde::de::IntoDeserializer as _;
use toml::Spanned;
use toml::de::DeTable;

use super::matcher::{host_glob, path_glob, value_glob};
use super::summary::check_json_pointer;
use super::{Action, Location, Rule, RuleError, Summary};
use crate::window::{Window, format_duration, parse_duration};

/// Parses one rules file. `file` is only used to name the file in errors.
/// Every error found is returned, not just the first.
pub fn parse_file(file: &str, text: &str) -> Result<Vec<Rule>, Vec<RuleError>> {
    load_texts([(file, text)])
}

/// Loads every `*.toml` in `dir`, in file-name order (which is rule order).
/// Errors of all files are collected so one run shows everything to fix. A
/// missing directory is an error; an empty one holds zero rules. Names
/// starting with `.` are skipped: they are editors' scratch files.
pub fn load_dir(dir: &Path) -> Result<Vec<Rule>, Vec<RuleError>> {
    let whole = |path: &Path, message: String| RuleError {
        location: Location {
            file: path.display().to_string(),
            line: 0,
            column: 0,
        },
        message,
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            return Err(vec![whole(
                dir,
                format!("cannot read the rules directory: {e}"),
            )]);
        }
    };
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                errors.push(whole(dir, format!("cannot list the rules directory: {e}")));
                continue;
            }
        };
        let path = entry.path();
        let name = entry.file_name();
        let is_rules_file = path.extension().is_some_and(|ext| ext == "toml")
            && !name.as_encoded_bytes().starts_with(b".")
            // Follows symlinks, as mounted ConfigMaps are symlinks.
            && path.is_file();
        if is_rules_file {
            files.push((name, path));
        }
    }
    files.sort();

    let mut texts = Vec::new();
    for (_, path) in &files {
        match std::fs::read_to_string(path) {
            Ok(text) => texts.push((path.display().to_string(), text)),
            Err(e) => errors.push(whole(path, format!("cannot read the rules file: {e}"))),
        }
    }
    match load_texts(
        texts
            .iter()
            .map(|(file, text)| (file.as_str(), text.as_str())),
    ) {
        Ok(rules) if errors.is_empty() => Ok(rules),
        Ok(_) => Err(errors),
        Err(found) => {
            errors.extend(found);
            Err(errors)
        }
    }
}

/// Loads rules files already in memory, `(name, text)` in rule order, as
/// [`load_dir`] loads a directory's: every error of every file, and names
/// unique across all of them.
pub(crate) fn load_texts<'a>(
    files: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<Vec<Rule>, Vec<RuleError>> {
    let mut rules = Vec::new();
    let mut errors = Vec::new();
    for (file, text) in files {
        let (parsed, found) = parse_rules(file, text);
        rules.extend(parsed);
        errors.extend(found);
    }
    errors.extend(duplicate_names(&rules));
    finish(rules, errors)
}

fn finish(rules: Vec<Rule>, errors: Vec<RuleError>) -> Result<Vec<Rule>, Vec<RuleError>> {
    if errors.is_empty() {
        Ok(rules)
    } else {
        Err(errors)
    }
}

/// One error per reused name, at the later rule, naming the first: the first
/// is the one that would win, so the later one is the mistake.
pub(crate) fn duplicate_names(rules: &[Rule]) -> Vec<RuleError> {
    let mut first: HashMap<&str, &Location> = HashMap::new();
    let mut errors = Vec::new();
    for rule in rules {
        if let Some(earlier) = first.get(rule.name.as_str()) {
            errors.push(RuleError {
                location: rule.location.clone(),
                message: format!(
                    "duplicate rule name {:?}: first defined at {earlier}",
                    rule.name
                ),
            });
        } else {
            first.insert(&rule.name, &rule.location);
        }
    }
    errors
}

/// The `[[rule]]` table as written. Every field is optional here so that a
/// missing key is reported by us, at the rule, alongside the other errors,
/// instead of stopping serde at the first one.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: Option<Spanned<String>>,
    action: Option<Spanned<String>>,
    label: Option<Spanned<String>>,
    host: Option<Spanned<Vec<Spanned<String>>>>,
    method: Option<Spanned<Vec<Spanned<String>>>>,
    path: Option<Spanned<Vec<Spanned<String>>>>,
    query: Option<BTreeMap<Spanned<String>, Spanned<String>>>,
    headers: Option<BTreeMap<Spanned<String>, Spanned<String>>>,
    json: Option<BTreeMap<Spanned<String>, Spanned<String>>>,
    window: Option<Spanned<String>>,
    reviewers: Option<Vec<Spanned<String>>>,
    backup: Option<Vec<Spanned<String>>>,
    escalate_after: Option<Spanned<String>>,
    max_wait: Option<Spanned<String>>,
    wait: Option<Spanned<String>>,
    mcp_tool: Option<Spanned<Vec<Spanned<String>>>>,
    summary: Option<Spanned<String>>,
    allow_edit: Option<bool>,
    approvals: Option<Spanned<i64>>,
    slack_channel: Option<String>,
    secret_headers: Option<Vec<Spanned<String>>>,
}

/// The most approvals a rule may ask for.
const MAX_APPROVALS: u32 = 10;

/// Turns byte offsets into the locations people read.
struct Source<'a> {
    file: &'a str,
    text: &'a str,
}

impl Source<'_> {
    fn locate(&self, offset: usize) -> Location {
        Location::at(self.file, self.text, offset)
    }

    fn error(&self, span: Range<usize>, message: impl Into<String>) -> RuleError {
        RuleError {
            location: self.locate(span.start),
            message: message.into(),
        }
    }
}

/// Parses and validates, without the duplicate-name check (which must see
/// every file at once when loading a directory).
fn parse_rules(file: &str, text: &str) -> (Vec<Rule>, Vec<RuleError>) {
    let src = Source { file, text };
    let mut rules = Vec::new();
    let mut errors = Vec::new();

    let (doc, syntax) = DeTable::parse_recoverable(text);
    if !syntax.is_empty() {
        // A recovered document may lack what the errors ate; validating it
        // would report mistakes the author never made.
        let errors = syntax
            .iter()
            .map(|e| src.error(e.span().unwrap_or(0..0), e.message()))
            .collect();
        return (rules, errors);
    }

    for (key, value) in doc.get_ref() {
        if key.get_ref().as_ref() != "rule" {
            errors.push(src.error(
                key.span(),
                format!(
                    "unknown key `{}`: a rules file holds only [[rule]] tables",
                    key.get_ref()
                ),
            ));
            continue;
        }
        let Some(items) = value.get_ref().as_array() else {
            errors.push(src.error(
                value.span(),
                "`rule` must be an array of tables: write each rule under [[rule]]",
            ));
            continue;
        };
        for item in items.iter() {
            if !item.get_ref().is_table() {
                errors.push(src.error(item.span(), "each rule must be a table"));
                continue;
            }
            let location = src.locate(item.span().start);
            match RawRule::deserialize(item.clone().into_deserializer()) {
                Ok(raw) => match validate(&src, raw, location) {
                    Ok(rule) => rules.push(rule),
                    Err(found) => errors.extend(found),
                },
                Err(e) => {
                    errors.push(src.error(e.span().unwrap_or_else(|| item.span()), e.message()))
                }
            }
        }
    }
    errors.sort_by_key(|e| (e.location.line, e.location.column));
    (rules, errors)
}

fn validate(src: &Source<'_>, raw: RawRule, location: Location) -> Result<Rule, Vec<RuleError>> {
    let mut errors = Vec::new();
    let missing = |what: &str| RuleError {
        location: location.clone(),
        message: format!("this rule has no `{what}`"),
    };

    let name = match raw.name {
        Some(name) if name.get_ref().trim().is_empty() => {
            errors.push(src.error(name.span(), "the rule name is empty"));
            String::new()
        }
        Some(name) => name.into_inner(),
        None => {
            errors.push(missing("name"));
            String::new()
        }
    };

    let action = match raw.action {
        Some(action) => match Action::parse(action.get_ref()) {
            Some(a) => Some(a),
            None => {
                errors.push(src.error(
                    action.span(),
                    format!(
                        "unknown action {:?}: expected \"automatic\", \"review\" or \"deny\"",
                        action.get_ref()
                    ),
                ));
                None
            }
        },
        None => {
            errors.push(RuleError {
                message: "this rule has no `action` (\"automatic\", \"review\" or \"deny\")"
                    .to_owned(),
                ..missing("action")
            });
            None
        }
    };

    let label = match raw.label {
        Some(label) if label.get_ref().trim().is_empty() => {
            errors.push(src.error(
                label.span(),
                "the label is empty: omit it to show the rule name",
            ));
            String::new()
        }
        Some(label) => label.into_inner(),
        None => name.clone(),
    };

    let hosts = glob_list(src, raw.host, "host", &mut errors, |pattern| {
        check_host(pattern)?;
        host_glob(pattern)
            .map(drop)
            .map_err(|e| glob_error("host", pattern, &e))
    });
    let methods = glob_list(src, raw.method, "method", &mut errors, check_method)
        .into_iter()
        .map(|m| m.to_ascii_uppercase())
        .collect();
    let paths = glob_list(src, raw.path, "path", &mut errors, |pattern| {
        if !(pattern.starts_with('/') || pattern.starts_with('*')) {
            return Err(format!(
                "path glob {pattern:?} must start with `/` (or `*`): it matches the path only, \
                 without scheme, host or query"
            ));
        }
        path_glob(pattern)
            .map(drop)
            .map_err(|e| glob_error("path", pattern, &e))
    });

    let mcp_tools = glob_list(src, raw.mcp_tool, "mcp_tool", &mut errors, |pattern| {
        if pattern.trim().is_empty() {
            return Err("an empty mcp_tool glob matches no tool name".to_owned());
        }
        value_glob(pattern, false)
            .map(drop)
            .map_err(|e| glob_error("mcp_tool", pattern, &e))
    });

    let query = glob_map(src, raw.query, &mut errors, |param| {
        if param.is_empty() {
            Err("empty query parameter name".to_owned())
        } else {
            Ok(param.to_owned())
        }
    });
    let headers = glob_map(src, raw.headers, &mut errors, |name| {
        http::HeaderName::from_bytes(name.as_bytes())
            .map(|h| h.as_str().to_owned())
            .map_err(|_| format!("invalid header name {name:?}"))
    });
    let json = glob_map(src, raw.json, &mut errors, |pointer| {
        check_json_pointer(pointer).map(|()| pointer.to_owned())
    });

    let window = raw.window.and_then(|w| {
        Window::parse(w.get_ref())
            .map_err(|e| errors.push(src.error(w.span(), e)))
            .ok()
            .map(|window| Spanned::new(w.span(), window))
    });
    let mut duration = |field: Option<Spanned<String>>| {
        field.and_then(|d| {
            parse_duration(d.get_ref())
                .map_err(|e| errors.push(src.error(d.span(), e)))
                .ok()
                .map(|duration| Spanned::new(d.span(), duration))
        })
    };
    let escalate_after = duration(raw.escalate_after);
    let max_wait = duration(raw.max_wait).map(Spanned::into_inner);
    let wait = duration(raw.wait);
    let fixed_window = window.as_ref().and_then(|w| w.get_ref().fixed());
    let too_late = escalate_after
        .as_ref()
        .zip(fixed_window)
        .filter(|(after, length)| *after.get_ref() >= *length);
    if let Some((after, length)) = too_late {
        errors.push(src.error(
            after.span(),
            format!(
                "escalate_after ({}) must be shorter than the window ({}): \
                 the backup would be told only after the hold expired",
                format_duration(*after.get_ref()),
                format_duration(length)
            ),
        ));
    }

    if let Some(w) = &wait {
        let cap = max_wait.unwrap_or(crate::rules::DEFAULT_MAX_WAIT);
        if action != Some(Action::Review) {
            errors.push(src.error(
                w.span(),
                "wait is for reviewed rules (action = \"review\"): nothing else is held",
            ));
        } else if *w.get_ref() > cap {
            errors.push(src.error(
                w.span(),
                format!(
                    "wait ({}) is longer than max_wait ({}): raise max_wait, the most any \
                     request of this rule is kept open",
                    format_duration(*w.get_ref()),
                    format_duration(cap)
                ),
            ));
        }
    }

    let approvals_span = raw.approvals.as_ref().map(Spanned::span);
    let approvals = match raw.approvals {
        None => 1,
        Some(n) => match u32::try_from(*n.get_ref()) {
            Ok(k @ 1..=MAX_APPROVALS) => k,
            _ => {
                errors.push(src.error(
                    n.span(),
                    format!(
                        "approvals must be a whole number from 1 to {MAX_APPROVALS}, got {}",
                        n.get_ref()
                    ),
                ));
                1
            }
        },
    };
    if let Some(span) = approvals_span.filter(|_| approvals > 1 && action != Some(Action::Review)) {
        errors.push(src.error(
            span,
            "approvals is for reviewed rules (action = \"review\")",
        ));
    }
    let reviewers = names(src, raw.reviewers, "reviewer", &mut errors);
    let backup = names(src, raw.backup, "backup reviewer", &mut errors);

    let summary = raw.summary.and_then(|s| {
        Summary::parse(s.get_ref())
            .map_err(|e| errors.push(src.error(s.span(), format!("invalid summary: {e}"))))
            .ok()
    });

    let mut secret_headers = Vec::new();
    for header in raw.secret_headers.unwrap_or_default() {
        match http::HeaderName::from_bytes(header.get_ref().as_bytes()) {
            Ok(name) => secret_headers.push(name),
            Err(_) => errors.push(src.error(
                header.span(),
                format!("invalid header name {:?}", header.get_ref()),
            )),
        }
    }

    match action {
        Some(action) if errors.is_empty() => Ok(Rule {
            name,
            action,
            label,
            hosts,
            methods,
            paths,
            query,
            headers,
            json,
            window: window.map(Spanned::into_inner),
            reviewers,
            backup,
            escalate_after: escalate_after.map(Spanned::into_inner),
            max_wait,
            wait: wait.map(Spanned::into_inner),
            mcp_tools,
            summary,
            allow_edit: raw.allow_edit.unwrap_or(false),
            approvals,
            slack_channel: raw.slack_channel.filter(|c| !c.is_empty()),
            secret_headers,
            location,
        }),
        _ => Err(errors),
    }
}

/// A list condition (host, method, path). An empty list would match nothing,
/// which is never what its author meant, so it is refused.
fn glob_list(
    src: &Source<'_>,
    list: Option<Spanned<Vec<Spanned<String>>>>,
    key: &str,
    errors: &mut Vec<RuleError>,
    check: impl Fn(&str) -> Result<(), String>,
) -> Vec<String> {
    let Some(list) = list else {
        return Vec::new();
    };
    if list.get_ref().is_empty() {
        errors.push(src.error(
            list.span(),
            format!("`{key}` is empty and would match nothing: remove it to match any {key}"),
        ));
        return Vec::new();
    }
    let mut out = Vec::new();
    for item in list.into_inner() {
        match check(item.get_ref()) {
            Ok(()) => out.push(item.into_inner()),
            Err(e) => errors.push(src.error(item.span(), e)),
        }
    }
    out
}

/// A map condition (query, headers, json): the key is checked and normalised
/// by `key`, the value is a glob. Kept in file order so explanations read
/// like the file.
fn glob_map(
    src: &Source<'_>,
    map: Option<BTreeMap<Spanned<String>, Spanned<String>>>,
    errors: &mut Vec<RuleError>,
    key: impl Fn(&str) -> Result<String, String>,
) -> Vec<(String, String)> {
    let mut entries: Vec<_> = map.unwrap_or_default().into_iter().collect();
    entries.sort_by_key(|(k, _)| k.span().start);
    let mut out = Vec::new();
    for (k, v) in entries {
        let normalised = match key(k.get_ref()) {
            Ok(normalised) => normalised,
            Err(e) => {
                errors.push(src.error(k.span(), e));
                continue;
            }
        };
        // Header values are matched case-insensitively; the glob syntax is
        // the same either way.
        match value_glob(v.get_ref(), false) {
            Ok(_) => out.push((normalised, v.into_inner())),
            Err(e) => errors.push(src.error(v.span(), glob_error("value", v.get_ref(), &e))),
        }
    }
    out
}

fn names(
    src: &Source<'_>,
    list: Option<Vec<Spanned<String>>>,
    what: &str,
    errors: &mut Vec<RuleError>,
) -> Vec<String> {
    let mut out = Vec::new();
    for name in list.unwrap_or_default() {
        if name.get_ref().trim().is_empty() {
            errors.push(src.error(name.span(), format!("empty {what} name")));
        } else {
            out.push(name.into_inner());
        }
    }
    out
}

fn check_host(pattern: &str) -> Result<(), String> {
    if pattern.is_empty() {
        return Err("empty host glob".to_owned());
    }
    if pattern.contains('/') {
        return Err(format!(
            "host glob {pattern:?} contains `/`: write the host alone, without scheme or path"
        ));
    }
    if pattern.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("host glob {pattern:?} contains whitespace"));
    }
    // IPv6 literals are bracketed and full of colons; anything else with a
    // colon is a port, which hosts are matched without.
    if pattern.contains(':') && !pattern.starts_with('[') {
        return Err(format!(
            "host glob {pattern:?} has a port: hosts are matched without port"
        ));
    }
    Ok(())
}

/// RFC 9110 `token`: what a method may be made of.
fn check_method(method: &str) -> Result<(), String> {
    let is_tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if !method.is_empty() && method.bytes().all(is_tchar) {
        Ok(())
    } else {
        Err(format!("invalid HTTP method {method:?}"))
    }
}

fn glob_error(what: &str, pattern: &str, e: &globset::Error) -> String {
    format!("invalid {what} glob {pattern:?}: {}", e.kind())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn errors(text: &str) -> Vec<String> {
        match parse_file("r.toml", text) {
            Ok(rules) => panic!("expected errors, got {} rules", rules.len()),
            Err(errors) => errors.iter().map(ToString::to_string).collect(),
        }
    }

    fn one_error(text: &str) -> String {
        let errors = errors(text);
        assert_eq!(errors.len(), 1, "{errors:#?}");
        errors.into_iter().next().unwrap_or_default()
    }

    fn assert_error(text: &str, at: &str, says: &str) {
        let error = one_error(text);
        assert!(
            error.starts_with(&format!("r.toml:{at}: ")) && error.contains(says),
            "expected {at} saying {says:?}, got {error:?}"
        );
    }

    const FULL: &str = r#"
[[rule]]
name = "sendgrid-mail-send"
action = "review"
label = "Outbound client message"
host = ["API.SendGrid.com"]
method = ["post"]
path = ["/v3/mail/send"]
query = { z = "1", a = "*" }
headers = { "X-Mode" = "live*" }
json = { "/personalizations/0/to/0/email" = "*@*" }
window = "2h"
reviewers = ["alice"]
backup = ["bob"]
escalate_after = "1h"
max_wait = "120s"
summary = "Email to {/personalizations/0/to/0/email}: {/subject}"
allow_edit = true
secret_headers = ["X-Api-Key"]
"#;

    #[test]
    fn every_key_of_the_spec_example_loads() {
        let rules = parse_file("r.toml", FULL).unwrap_or_else(|e| panic!("{e:?}"));
        let [rule] = rules.as_slice() else {
            panic!("one rule expected")
        };
        assert_eq!(rule.name, "sendgrid-mail-send");
        assert_eq!(rule.action, Action::Review);
        assert_eq!(rule.label, "Outbound client message");
        assert_eq!(rule.hosts, ["API.SendGrid.com"]);
        assert_eq!(rule.methods, ["POST"]);
        assert_eq!(rule.paths, ["/v3/mail/send"]);
        let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        assert_eq!(
            rule.query,
            pairs(&[("z", "1"), ("a", "*")]),
            "file order kept"
        );
        assert_eq!(rule.headers, pairs(&[("x-mode", "live*")]));
        assert_eq!(
            rule.json,
            pairs(&[("/personalizations/0/to/0/email", "*@*")])
        );
        assert_eq!(rule.window, Some(Window::Fixed(Duration::from_secs(7_200))));
        assert_eq!(rule.reviewers, ["alice"]);
        assert_eq!(rule.backup, ["bob"]);
        assert_eq!(rule.escalate_after, Some(Duration::from_secs(3_600)));
        assert_eq!(rule.max_wait, Some(Duration::from_secs(120)));
        assert_eq!(
            rule.summary.as_ref().map(Summary::source),
            Some("Email to {/personalizations/0/to/0/email}: {/subject}")
        );
        assert!(rule.allow_edit);
        assert_eq!(
            rule.secret_headers,
            [http::HeaderName::from_static("x-api-key")]
        );
        assert_eq!(rule.location.to_string(), "r.toml:2:1");
        assert!(!rule.host_only());
        assert!(rule.needs_body());
    }

    #[test]
    fn label_defaults_to_the_name_and_lists_to_nothing() {
        let rules = parse_file(
            "r.toml",
            "[[rule]]\nname = \"openai\"\naction = \"automatic\"\nhost = [\"api.openai.com\"]\n",
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        let [rule] = rules.as_slice() else {
            panic!("one rule expected")
        };
        assert_eq!(rule.label, "openai");
        assert!(rule.host_only());
        assert!(!rule.needs_body());
        assert!(!rule.allow_edit);
        assert_eq!(rule.window, None);
    }

    #[test]
    fn a_file_without_rules_is_fine() {
        assert_eq!(parse_file("r.toml", "# nothing yet\n"), Ok(Vec::new()));
    }

    #[test]
    fn unknown_key_is_located_at_the_key() {
        assert_error(
            "[[rule]]\nname = \"a\"\naction = \"deny\"\n  hosts = [\"x\"]\n",
            "4:3",
            "unknown field `hosts`",
        );
    }

    #[test]
    fn unknown_top_level_key_is_refused() {
        assert_error("unmatched = \"review\"\n", "1:1", "unknown key `unmatched`");
    }

    #[test]
    fn single_bracket_rule_table_is_refused() {
        assert_error(
            "[rule]\nname = \"a\"\naction = \"deny\"\n",
            "1:1",
            "write each rule under [[rule]]",
        );
    }

    #[test]
    fn wrong_type_is_located_at_the_value() {
        assert_error(
            "[[rule]]\nname = \"a\"\naction = \"deny\"\nhost = \"x.com\"\n",
            "4:8",
            "expected a sequence",
        );
        assert_error(
            "[[rule]]\nname = \"a\"\naction = \"deny\"\nallow_edit = \"yes\"\n",
            "4:14",
            "expected a boolean",
        );
    }

    #[test]
    fn toml_syntax_error_is_located() {
        assert_error("[[rule]]\nname = \"a\n", "2:10", "");
    }

    #[test]
    fn missing_name_and_action_are_blamed_on_the_rule() {
        let errors = errors("# header\n[[rule]]\nhost = [\"x.com\"]\n");
        assert_eq!(
            errors,
            [
                "r.toml:2:1: this rule has no `name`",
                "r.toml:2:1: this rule has no `action` (\"automatic\", \"review\" or \"deny\")",
            ]
        );
    }

    #[test]
    fn empty_name_is_refused() {
        assert_error(
            "[[rule]]\nname = \"  \"\naction = \"deny\"\n",
            "2:8",
            "name is empty",
        );
    }

    #[test]
    fn unknown_action_is_located() {
        assert_error(
            "[[rule]]\nname = \"a\"\naction = \"allow\"\n",
            "3:10",
            "unknown action \"allow\"",
        );
    }

    #[test]
    fn bad_globs_are_located_at_the_pattern() {
        assert_error(
            "[[rule]]\nname = \"a\"\naction = \"deny\"\nhost = [\"ok.com\", \"[bad.com\"]\n",
            "4:19",
            "invalid host glob \"[bad.com\"",
        );
        assert_error(
            "[[rule]]\nname = \"a\"\naction = \"deny\"\npath = [\"/v1/{a,b\"]\n",
            "4:9",
            "invalid path glob",
        );
        assert_error(
            "[[rule]]\nname = \"a\"\naction = \"deny\"\nquery = { to = \"[x\" }\n",
            "4:16",
            "invalid value glob",
        );
    }

    #[test]
    fn path_must_start_with_a_slash() {
        assert_error(
            "[[rule]]\nname = \"a\"\naction = \"deny\"\npath = [\"v3/mail/send\"]\n",
            "4:9",
            "must start with `/`",
        );
        assert!(
            parse_file(
                "r.toml",
                "[[rule]]\nname = \"a\"\naction = \"deny\"\npath = [\"**/send\"]\n"
            )
            .is_ok()
        );
    }

    #[test]
    fn hosts_are_hosts_without_port_or_scheme() {
        let base = "[[rule]]\nname = \"a\"\naction = \"deny\"\nhost = ";
        assert_error(&format!("{base}[\"api.x.com:443\"]\n"), "4:9", "has a port");
        assert_error(
            &format!("{base}[\"https://api.x.com\"]\n"),
            "4:9",
            "without scheme",
        );
        assert_error(&format!("{base}[]\n"), "4:8", "remove it to match any host");
        assert!(parse_file("r.toml", &format!("{base}[\"[::1]\"]\n")).is_ok());
    }

    #[test]
    fn bad_method_is_located() {
        assert_error(
            "[[rule]]\nname = \"a\"\naction = \"deny\"\nmethod = [\"GET\", \"PO ST\"]\n",
            "4:18",
            "invalid HTTP method \"PO ST\"",
        );
    }

    #[test]
    fn bad_header_names_are_located_at_the_key() {
        assert_error(
            "[[rule]]\nname = \"a\"\naction = \"deny\"\nheaders = { \"bad header\" = \"*\" }\n",
            "4:13",
            "invalid header name \"bad header\"",
        );
        assert_error(
            "[[rule]]\nname = \"a\"\naction = \"deny\"\nsecret_headers = [\"x-ok\", \"x(bad)\"]\n",
            "4:27",
            "invalid header name \"x(bad)\"",
        );
    }

    #[test]
    fn bad_json_pointer_is_located_at_the_key() {
        assert_error(
            "[[rule]]\nname = \"a\"\naction = \"deny\"\njson = { \"subject\" = \"*\" }\n",
            "4:10",
            "must start with `/`",
        );
        assert_error(
            "[[rule]]\nname = \"a\"\naction = \"deny\"\njson = { \"/a~2\" = \"*\" }\n",
            "4:10",
            "`~` must be followed by 0 or 1",
        );
    }

    #[test]
    fn mcp_tool_and_wait_are_read_and_checked() {
        let rules = parse_file(
            "t.toml",
            "[[rule]]\nname = \"a\"\naction = \"review\"\nhost = [\"h\"]\nmcp_tool = [\"send_*\"]\nwait = \"30s\"\n",
        )
        .unwrap();
        assert_eq!(rules[0].mcp_tools, ["send_*"]);
        assert_eq!(rules[0].wait, Some(Duration::from_secs(30)));
        assert!(rules[0].needs_body() && !rules[0].host_only());
        let base = "[[rule]]\nname = \"a\"\naction = \"review\"\n";
        assert_error(
            &format!("{base}mcp_tool = []\n"),
            "4:12",
            "`mcp_tool` is empty",
        );
        assert_error(
            &format!("{base}mcp_tool = [\"send_[\"]\n"),
            "4:13",
            "mcp_tool",
        );
        assert_error(
            &format!("{base}wait = \"5m\"\n"),
            "4:8",
            "wait (5m) is longer than max_wait (2m)",
        );
        assert_error(
            "[[rule]]\nname = \"a\"\naction = \"automatic\"\nwait = \"5s\"\n",
            "4:8",
            "wait is for reviewed rules",
        );
    }

    #[test]
    fn bad_window_and_durations_are_located() {
        let base = "[[rule]]\nname = \"a\"\naction = \"review\"\n";
        assert_error(
            &format!("{base}window = \"2 hours\"\n"),
            "4:10",
            "invalid window",
        );
        assert_error(
            &format!("{base}escalate_after = \"1bd\"\n"),
            "4:18",
            "business days",
        );
        assert_error(
            &format!("{base}max_wait = \"0s\"\n"),
            "4:12",
            "invalid duration",
        );
        assert_error(
            &format!("{base}window = \"1h\"\nescalate_after = \"2h\"\n"),
            "5:18",
            "must be shorter than the window",
        );
    }

    #[test]
    fn bad_summary_template_is_located() {
        assert_error(
            "[[rule]]\nname = \"a\"\naction = \"review\"\nsummary = \"To {/to\"\n",
            "4:11",
            "invalid summary: unclosed `{` at character 4",
        );
    }

    #[test]
    fn all_errors_of_a_file_are_reported_together() {
        let text = "[[rule]]\nname = \"a\"\naction = \"maybe\"\nwindow = \"soon\"\n\n\
                    [[rule]]\nname = \"b\"\naction = \"deny\"\nbogus = 1\n\n\
                    [[rule]]\nname = \"a\"\naction = \"deny\"\n";
        let errors = errors(text);
        let at: Vec<_> = errors
            .iter()
            .map(|e| e.split(": ").next().unwrap_or(""))
            .collect();
        assert_eq!(
            at,
            ["r.toml:3:10", "r.toml:4:10", "r.toml:9:1"],
            "{errors:#?}"
        );
    }

    #[test]
    fn duplicate_rule_name_names_both_locations() {
        let text = "[[rule]]\nname = \"a\"\naction = \"deny\"\n\n[[rule]]\nname = \"a\"\naction = \"automatic\"\n";
        assert_eq!(
            errors(text),
            ["r.toml:5:1: duplicate rule name \"a\": first defined at r.toml:1:1"]
        );
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        assert_error(
            "[[rule]]\nname = \"a\"\naction = \"deny\"\njson = { \"/é\" = \"*\", \"bad\" = \"*\" }\n",
            "4:22",
            "must start with `/`",
        );
    }

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("airlock-rules-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        if let Err(e) = std::fs::create_dir_all(&dir) {
            panic!("{}: {e}", dir.display());
        }
        dir
    }

    fn write(dir: &Path, file: &str, text: &str) {
        if let Err(e) = std::fs::write(dir.join(file), text) {
            panic!("{file}: {e}");
        }
    }

    #[test]
    fn directory_loads_in_file_name_order() {
        let dir = temp_dir("order");
        write(
            &dir,
            "20-b.toml",
            "[[rule]]\nname = \"b1\"\naction = \"deny\"\n[[rule]]\nname = \"b2\"\naction = \"deny\"\n",
        );
        write(
            &dir,
            "10-a.toml",
            "[[rule]]\nname = \"a1\"\naction = \"review\"\n",
        );
        write(&dir, "notes.md", "not rules");
        write(&dir, ".10-a.toml.swp.toml", "garbage [[");
        let rules = load_dir(&dir).unwrap_or_else(|e| panic!("{e:?}"));
        let names: Vec<_> = rules.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["a1", "b1", "b2"]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn directory_errors_cover_every_file_and_cross_file_duplicates() {
        let dir = temp_dir("errors");
        write(
            &dir,
            "10-a.toml",
            "[[rule]]\nname = \"same\"\naction = \"review\"\n",
        );
        write(
            &dir,
            "20-b.toml",
            "[[rule]]\nname = \"x\"\naction = \"nope\"\n",
        );
        write(
            &dir,
            "30-c.toml",
            "\n[[rule]]\nname = \"same\"\naction = \"deny\"\n",
        );
        let errors: Vec<String> = match load_dir(&dir) {
            Ok(_) => panic!("expected errors"),
            Err(errors) => errors.iter().map(ToString::to_string).collect(),
        };
        let d = dir.display();
        assert_eq!(
            errors,
            [
                format!(
                    "{d}/20-b.toml:3:10: unknown action \"nope\": expected \"automatic\", \"review\" or \"deny\""
                ),
                format!(
                    "{d}/30-c.toml:2:1: duplicate rule name \"same\": first defined at {d}/10-a.toml:1:1"
                ),
            ]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn missing_directory_is_an_error_and_empty_one_is_not() {
        let dir = temp_dir("empty");
        assert_eq!(load_dir(&dir), Ok(Vec::new()));
        let missing = dir.join("absent");
        let errors = load_dir(&missing).expect_err("missing dir");
        assert!(
            errors[0]
                .to_string()
                .starts_with(&format!("{}: cannot read", missing.display()))
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn approvals_are_for_reviewed_rules_and_between_one_and_ten() {
        let base = "[[rule]]\nname = \"pay\"\nhost = [\"pay.test\"]\n";
        let (rules, errors) = parse_rules(
            "a.toml",
            &format!("{base}action = \"review\"\napprovals = 2\n"),
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(rules[0].approvals, 2);
        let (rules, _) = parse_rules("a.toml", &format!("{base}action = \"review\"\n"));
        assert_eq!(rules[0].approvals, 1);
        for bad in ["0", "11", "-1"] {
            let (_, errors) = parse_rules(
                "a.toml",
                &format!("{base}action = \"review\"\napprovals = {bad}\n"),
            );
            assert!(errors[0].message.contains("from 1 to 10"), "{errors:?}");
            assert_eq!(errors[0].location.line, 5);
        }
        let (_, errors) = parse_rules(
            "a.toml",
            &format!("{base}action = \"automatic\"\napprovals = 2\n"),
        );
        assert!(errors[0].message.contains("reviewed rules"), "{errors:?}");
    }
}

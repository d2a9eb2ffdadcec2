//! Summary templates: the one line a reviewer reads to decide a hold in
//! seconds, e.g. `Email to {/personalizations/0/to/0/email}: {/subject}`.
//! This module owns the template syntax and how body values are shown. It
//! must never fail at render time or let an agent-supplied value break the
//! line: every value is bounded in length and stripped of control characters.

use std::fmt::Write as _;

use serde_json::Value;

use super::RequestView;

/// Longest rendering of one placeholder, in characters, before `…`.
const MAX_VALUE_CHARS: usize = 200;
/// What a placeholder shows when the body has no such value.
const MISSING: &str = "(none)";

/// A parsed summary template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    source: String,
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Pointer(String),
    Method,
    Host,
    Path,
}

impl Summary {
    /// Parses literal text with `{/json/pointer}`, `{method}`, `{host}` and
    /// `{path}` placeholders; `{{` and `}}` are literal braces.
    pub fn parse(template: &str) -> Result<Summary, String> {
        let mut parts = Vec::new();
        let mut text = String::new();
        let mut chars = template.char_indices().peekable();
        // Positions are reported in characters, 1-based, as a person counts.
        let position = |byte: usize| template[..byte].chars().count() + 1;
        while let Some((at, c)) = chars.next() {
            match c {
                '{' if chars.next_if(|&(_, c)| c == '{').is_some() => text.push('{'),
                '}' if chars.next_if(|&(_, c)| c == '}').is_some() => text.push('}'),
                '}' => {
                    return Err(format!(
                        "unmatched `}}` at character {} (write `}}}}` for a literal brace)",
                        position(at)
                    ));
                }
                '{' => {
                    let rest = &template[at + 1..];
                    let Some(end) = rest.find('}') else {
                        return Err(format!(
                            "unclosed `{{` at character {} (write `{{{{` for a literal brace)",
                            position(at)
                        ));
                    };
                    let name = &rest[..end];
                    if name.contains('{') {
                        return Err(format!(
                            "`{{` inside the placeholder starting at character {}",
                            position(at)
                        ));
                    }
                    let part = placeholder(name)
                        .map_err(|why| format!("{why} at character {}", position(at)))?;
                    if !text.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut text)));
                    }
                    parts.push(part);
                    // Skip the name and its closing brace.
                    for _ in 0..=name.chars().count() {
                        chars.next();
                    }
                }
                c => text.push(c),
            }
        }
        if !text.is_empty() {
            parts.push(Part::Text(text));
        }
        Ok(Summary {
            source: template.to_owned(),
            parts,
        })
    }

    /// The template as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// True when a placeholder reads the JSON body, so whoever holds the
    /// request knows to keep it parsed.
    pub fn uses_body(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Pointer(_)))
    }

    /// Fills the template. `body` is the parsed JSON body, if there is one;
    /// absent values show as `(none)` rather than failing, because a reviewer
    /// must still see the hold.
    pub fn render(&self, req: &RequestView<'_>, body: Option<&Value>) -> String {
        let mut out = String::with_capacity(self.source.len() + 32);
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Method => push_bounded(&mut out, req.method),
                Part::Host => push_bounded(&mut out, req.host),
                Part::Path => push_bounded(&mut out, req.path),
                Part::Pointer(pointer) => match body.and_then(|b| b.pointer(pointer)) {
                    Some(value) => push_bounded(&mut out, &show(value)),
                    None => out.push_str(MISSING),
                },
            }
        }
        out
    }
}

fn placeholder(name: &str) -> Result<Part, String> {
    match name {
        "method" => Ok(Part::Method),
        "host" => Ok(Part::Host),
        "path" => Ok(Part::Path),
        "" => Err("empty placeholder `{}`".to_owned()),
        _ if name.starts_with('/') => {
            check_json_pointer(name).map_err(|why| format!("placeholder `{{{name}}}`: {why}"))?;
            Ok(Part::Pointer(name.to_owned()))
        }
        _ => Err(format!(
            "unknown placeholder `{{{name}}}`: expected {{method}}, {{host}}, {{path}} \
             or a JSON Pointer such as {{/subject}}"
        )),
    }
}

/// Checks RFC 6901 syntax. serde_json's lookup is lenient about stray `~`, so
/// a typo would otherwise silently never match.
pub(crate) fn check_json_pointer(pointer: &str) -> Result<(), String> {
    if !pointer.is_empty() && !pointer.starts_with('/') {
        return Err(format!(
            "invalid JSON Pointer {pointer:?}: it must start with `/` (e.g. \"/subject\")"
        ));
    }
    let mut chars = pointer.chars();
    while let Some(c) = chars.next() {
        if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
            return Err(format!(
                "invalid JSON Pointer {pointer:?}: `~` must be followed by 0 or 1 \
                 (`~0` means `~`, `~1` means `/`)"
            ));
        }
    }
    Ok(())
}

/// How a body value reads to a person: strings without quotes, lists as a
/// comma-separated line, anything structured as compact JSON.
fn show(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Array(items) if !items.is_empty() && items.iter().all(is_scalar) => {
            let mut out = String::new();
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                match item {
                    Value::String(s) => out.push_str(s),
                    other => {
                        let _ = write!(out, "{other}");
                    }
                }
            }
            out
        }
        other => other.to_string(),
    }
}

fn is_scalar(value: &Value) -> bool {
    !matches!(value, Value::Array(_) | Value::Object(_))
}

/// Appends a value cut to `MAX_VALUE_CHARS` with control characters turned to
/// spaces, so an agent cannot forge extra lines or bury the rest of the line.
fn push_bounded(out: &mut String, value: &str) {
    for (i, c) in value.chars().enumerate() {
        if i == MAX_VALUE_CHARS {
            out.push('…');
            return;
        }
        out.push(if c.is_control() { ' ' } else { c });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(template: &str, body: Option<&Value>) -> String {
        let headers = http::HeaderMap::new();
        let req = RequestView {
            method: "POST",
            host: "api.sendgrid.com",
            path: "/v3/mail/send",
            query: None,
            headers: &headers,
        };
        match Summary::parse(template) {
            Ok(summary) => summary.render(&req, body),
            Err(e) => panic!("{template}: {e}"),
        }
    }

    #[test]
    fn email_summary_reads_recipient_and_subject() {
        let body = json!({
            "personalizations": [{"to": [{"email": "client@example.com"}]}],
            "subject": "Your invoice",
        });
        assert_eq!(
            render(
                "Email to {/personalizations/0/to/0/email}: {/subject}",
                Some(&body)
            ),
            "Email to client@example.com: Your invoice"
        );
    }

    #[test]
    fn request_placeholders_come_from_the_request() {
        assert_eq!(
            render("{method} {host}{path}", None),
            "POST api.sendgrid.com/v3/mail/send"
        );
    }

    #[test]
    fn missing_values_and_missing_bodies_read_none() {
        let body = json!({"subject": "hi"});
        assert_eq!(render("to {/to}: {/subject}", Some(&body)), "to (none): hi");
        assert_eq!(render("to {/to}: {/subject}", None), "to (none): (none)");
    }

    #[test]
    fn doubled_braces_are_literal() {
        assert_eq!(render("{{literal}} {method}", None), "{literal} POST");
        assert_eq!(render("}}{{", None), "}{");
    }

    #[test]
    fn values_render_for_people() {
        let body = json!({
            "n": 42, "f": 1.5, "yes": true, "nil": null,
            "tags": ["a", 2, false], "empty": [],
            "nested": [{"k": 1}], "obj": {"k": "v"},
        });
        let cases = [
            ("{/n}", "42"),
            ("{/f}", "1.5"),
            ("{/yes}", "true"),
            ("{/nil}", "null"),
            ("{/tags}", "a, 2, false"),
            ("{/empty}", "[]"),
            ("{/nested}", r#"[{"k":1}]"#),
            ("{/obj}", r#"{"k":"v"}"#),
        ];
        for (template, expected) in cases {
            assert_eq!(render(template, Some(&body)), expected, "{template}");
        }
    }

    #[test]
    fn long_values_are_cut_and_control_characters_blanked() {
        let long = "x".repeat(500);
        let body = json!({"long": long, "multi": "line one\nline two\tend"});
        let shown = render("[{/long}]", Some(&body));
        assert_eq!(shown, format!("[{}…]", "x".repeat(200)));
        assert_eq!(render("{/multi}", Some(&body)), "line one line two end");
        let exactly = json!({"s": "y".repeat(200)});
        assert_eq!(render("{/s}", Some(&exactly)), "y".repeat(200));
    }

    #[test]
    fn escaped_pointer_segments_resolve() {
        let body = json!({"a/b": {"m~n": "ok"}});
        assert_eq!(render("{/a~1b/m~0n}", Some(&body)), "ok");
    }

    #[test]
    fn malformed_templates_say_where() {
        let cases = [
            ("Email {/to", "unclosed `{` at character 7"),
            ("Email } to", "unmatched `}` at character 7"),
            ("x {subject}", "unknown placeholder `{subject}`"),
            ("x {}", "empty placeholder `{}` at character 3"),
            (
                "{/a{b}",
                "`{` inside the placeholder starting at character 1",
            ),
            ("{/a~2}", "`~` must be followed by 0 or 1"),
        ];
        for (template, expected) in cases {
            let err = Summary::parse(template).expect_err(template);
            assert!(err.contains(expected), "{template}: {err}");
        }
    }

    #[test]
    fn summary_knows_whether_it_reads_the_body() {
        let uses = |t: &str| Summary::parse(t).map(|s| s.uses_body());
        assert_eq!(uses("{/subject}"), Ok(true));
        assert_eq!(uses("{method} {path}"), Ok(false));
        assert_eq!(
            Summary::parse("a {host}").map(|s| s.source().to_owned()),
            Ok("a {host}".to_owned())
        );
    }
}

//! Explanations of the matcher's decisions for people: why one request
//! gets the decision it gets (`airlock explain`) and the classification
//! table of a whole rule set (`airlock rules check`). This module owns how
//! they read and how the table fits a terminal. It must never decide
//! anything itself: each rule is examined by the matcher's own checks, in
//! the matcher's order, so an explanation cannot disagree with a decision.

use std::fmt::{self, Write as _};

use globset::Candidate;

use super::{
    Facts, Failure, Folded, LazyJson, RequestPath, RuleSet, beyond_host, bounded, examine, has_bit,
};
use crate::rules::{Action, BodyView, ConnectDecision, Location, RequestView, Rule};
use crate::window::Window;

impl RuleSet {
    /// Why a request gets the decision it gets, for `airlock explain`. Walks
    /// every rule in order (no shortcuts) so each passed-over rule for the
    /// request's host (or for any host) says which condition failed; rules
    /// for other hosts are only counted.
    pub fn explain(&self, req: &RequestView<'_>, body: BodyView<'_>) -> Explanation {
        let host_key = Folded::host(req.host);
        let host = String::from_utf8_lossy(host_key.as_bytes()).into_owned();
        let request_path = RequestPath::new(req.path);
        let path = request_path.canonical.clone();
        let mut host_bits = vec![0; self.words];
        let mut path_bits = vec![0; self.words];
        let mut other_bits = vec![0; self.words];
        let mut hits = Vec::new();
        self.hosts.fill(
            &Candidate::from_bytes(host_key.as_bytes()),
            &mut hits,
            &mut host_bits,
        );
        request_path.fill_exact(self, &mut hits, &mut path_bits, &mut other_bits);
        let mut json = LazyJson::new(body);

        let mut request = format!("{} {}{}", req.method, req.host, req.path);
        if let Some(query) = req.query {
            request.push('?');
            request.push_str(query);
        }
        let mut explanation = Explanation {
            request: bounded(&request).into_owned(),
            path_note: (path != req.path).then(|| {
                format!(
                    "path matched as {:?}: review and deny rules match that, in any case; automatic path rules match only a path sent that way",
                    bounded(&path)
                )
            }),
            other_hosts: 0,
            passed_over: Vec::new(),
            matched: None,
            action: self.unmatched,
            unmatched: self.unmatched,
            window: None,
            summary: None,
            body_unread: false,
            connect: String::new(),
            at_connect: "",
        };

        for (i, (rule, compiled)) in self.rules.iter().zip(&self.compiled).enumerate() {
            let host_ok = has_bit(&host_bits, i);
            if !rule.hosts.is_empty() && !host_ok {
                // Concerns another host: counted, not listed.
                explanation.other_hosts += 1;
                continue;
            }
            let facts = Facts {
                req,
                host: &host,
                path: &path,
                host_ok,
                path_ok: has_bit(&path_bits, i),
            };
            match examine(rule, compiled, &facts, &mut json) {
                Ok(conditions) => {
                    explanation.matched = Some(MatchedRule {
                        name: rule.name.clone(),
                        location: rule.location.clone(),
                        label: rule.label.clone(),
                        conditions,
                    });
                    explanation.action = rule.action;
                    explanation.window = rule.window;
                    explanation.summary =
                        rule.summary.as_ref().map(|s| s.render(req, json.value()));
                    break;
                }
                Err(Failure::BodyUnread(reason)) => {
                    explanation.body_unread = true;
                    explanation.passed_over.push((
                        rule.name.clone(),
                        rule.location.clone(),
                        reason,
                    ));
                }
                Err(Failure::Condition(reason)) => {
                    explanation.passed_over.push((
                        rule.name.clone(),
                        rule.location.clone(),
                        reason,
                    ));
                }
            }
        }

        let (decision, rule) = self.connect(req.host);
        let (at_connect, why) = match (decision, rule) {
            (ConnectDecision::Tunnel(Some(r)), _) => (
                "tunnelled blind",
                format!(
                    "rule {:?} is automatic and has no condition beyond host",
                    r.name
                ),
            ),
            (ConnectDecision::Refuse(Some(r)), _) => (
                "refused",
                format!("rule {:?} denies the host outright", r.name),
            ),
            (ConnectDecision::Intercept, Some(r)) if r.host_only() => (
                "intercepted",
                format!("rule {:?} reviews every request to this host", r.name),
            ),
            (ConnectDecision::Intercept, Some(r)) => (
                "intercepted",
                format!(
                    "the first rule for this host, {:?}, has conditions beyond host ({})",
                    r.name,
                    beyond_host(r).join(", ")
                ),
            ),
            (ConnectDecision::Tunnel(None), _) => (
                "tunnelled blind",
                "no rule names this host and unmatched is \"automatic\"".to_owned(),
            ),
            (ConnectDecision::Refuse(None), _) => (
                "refused",
                "no rule names this host and unmatched is \"deny\"".to_owned(),
            ),
            (ConnectDecision::Intercept, None) => (
                "intercepted",
                "no rule names this host and unmatched is \"review\"".to_owned(),
            ),
        };
        explanation.at_connect = at_connect;
        explanation.connect = format!("{host} is {at_connect}: {why}");
        explanation
    }

    /// One row per rule, in decision order, then the fallback, for `airlock
    /// rules check`: the full text, however wide.
    pub fn classification_table(&self) -> String {
        self.classification().to_text(None)
    }

    /// [`RuleSet::classification_table`] fitted to `width` columns: long
    /// host and path lists are cut short, with the number left out.
    pub fn classification_table_within(&self, width: usize) -> String {
        self.classification().to_text(Some(width))
    }

    /// The classification in full, for `airlock rules check --format json`.
    pub fn classification_json(&self) -> serde_json::Value {
        let pairs = |pairs: &[(String, String)]| -> serde_json::Map<String, serde_json::Value> {
            pairs
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::from(v.as_str())))
                .collect()
        };
        let rules: Vec<serde_json::Value> = self
            .rules
            .iter()
            .map(|rule| {
                serde_json::json!({
                    "name": rule.name,
                    "action": rule.action.as_str(),
                    "at": decided_at(rule),
                    "host": rule.hosts,
                    "method": rule.methods,
                    "path": rule.paths,
                    "query": pairs(&rule.query),
                    "headers": pairs(&rule.headers),
                    "json": pairs(&rule.json),
                    "mcp_tool": rule.mcp_tools,
                    "window": rule.window.map(|w| w.to_string()),
                    "location": rule.location.to_string(),
                })
            })
            .collect();
        serde_json::json!({
            "rules": rules,
            "unmatched": {
                "action": self.unmatched.as_str(),
                "at": unmatched_at(self.unmatched),
            },
        })
    }

    fn classification(&self) -> Classification {
        let mut rows: Vec<Row> = self
            .rules
            .iter()
            .map(|rule| Row {
                cells: [
                    rule.name.clone(),
                    rule.action.to_string(),
                    decided_at(rule).to_owned(),
                    rule.window
                        .map_or_else(|| "-".to_owned(), |w| w.to_string()),
                ],
                matches: conditions(rule),
            })
            .collect();
        rows.push(Row {
            cells: [
                "(unmatched)".to_owned(),
                self.unmatched.to_string(),
                unmatched_at(self.unmatched).to_owned(),
                "-".to_owned(),
            ],
            matches: vec![Part::plain("anything else")],
        });
        Classification { rows }
    }
}

/// When a rule is decided: at CONNECT, or per request once intercepted.
fn decided_at(rule: &Rule) -> &'static str {
    if rule.host_only() {
        "connect"
    } else {
        "request"
    }
}

fn unmatched_at(unmatched: Action) -> &'static str {
    match unmatched {
        Action::Review => "request",
        Action::Automatic | Action::Deny => "connect",
    }
}

/// The classification table before it is laid out.
struct Classification {
    rows: Vec<Row>,
}

/// RULE, ACTION, AT and WINDOW as they print, and MATCHES in parts that
/// can be cut short.
struct Row {
    cells: [String; 4],
    matches: Vec<Part>,
}

/// One condition of MATCHES: a prefix and a comma-separated list.
struct Part {
    prefix: String,
    items: Vec<String>,
}

impl Part {
    fn plain(text: &str) -> Part {
        Part {
            prefix: String::new(),
            items: vec![text.to_owned()],
        }
    }

    /// The first `shown` items, at most `cut_to` characters of them, then
    /// how many items are left out.
    fn render(&self, shown: usize, cut_to: usize) -> String {
        let listed = self.items[..shown].join(",");
        let mut text = self.prefix.clone();
        let cut = listed.chars().count() > cut_to;
        if cut {
            text.extend(listed.chars().take(cut_to.saturating_sub(1)));
            text.push('…');
        } else {
            text.push_str(&listed);
        }
        let left_out = self.items.len() - shown;
        if left_out > 0 {
            let _ = write!(text, "{}+{left_out}", if cut { "" } else { ",…" });
        }
        text
    }

    /// How many characters the first `shown` items take, at most `cut_to`.
    fn listed_chars(&self, shown: usize, cut_to: usize) -> usize {
        let commas = shown.saturating_sub(1);
        let chars: usize = self.items[..shown].iter().map(|i| i.chars().count()).sum();
        (chars + commas).min(cut_to)
    }
}

/// The narrowest MATCHES column a fitted table gets, however narrow the
/// terminal: below this a line wraps rather than say nothing.
const MIN_MATCHES_WIDTH: usize = 12;

impl Classification {
    /// The table, every line within `width` characters when it can be.
    fn to_text(&self, width: Option<usize>) -> String {
        // RULE, ACTION, AT and WINDOW keep their width; MATCHES gets the rest.
        let mut fixed = ["RULE", "ACTION", "AT", "WINDOW"].map(str::len);
        for row in &self.rows {
            for (width, cell) in fixed.iter_mut().zip(&row.cells) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let room = width.map_or(usize::MAX, |w| {
            w.saturating_sub(fixed.iter().sum::<usize>() + 4 * 2)
                .max(MIN_MATCHES_WIDTH)
        });
        let mut lines = vec![["RULE", "ACTION", "AT", "MATCHES", "WINDOW"].map(str::to_owned)];
        for row in &self.rows {
            let [name, action, at, window] = row.cells.clone();
            lines.push([name, action, at, fit(&row.matches, room), window]);
        }

        let mut widths = [0; 5];
        for line in &lines {
            for (width, cell) in widths.iter_mut().zip(line) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let mut table = String::new();
        for cells in &lines {
            let mut line = String::new();
            for (column, (cell, width)) in cells.iter().zip(widths).enumerate() {
                if column > 0 {
                    line.push_str("  ");
                }
                let _ = write!(line, "{cell:<width$}");
            }
            table.push_str(line.trim_end());
            table.push('\n');
        }
        table
    }
}

/// A list is never cut shorter than this many characters.
const MIN_CUT: usize = 8;

/// MATCHES within `room` characters: the longest list gives up items
/// first (each keeps one), then the longest list is cut short with `…`
/// (to no less than [`MIN_CUT`]), and what still does not fit is cut at
/// the end.
fn fit(parts: &[Part], room: usize) -> String {
    // Per part: how many items are shown, and how many characters of them.
    let mut shown: Vec<(usize, usize)> =
        parts.iter().map(|p| (p.items.len(), usize::MAX)).collect();
    loop {
        let rendered: Vec<String> = parts
            .iter()
            .zip(&shown)
            .map(|(p, &(n, cut_to))| p.render(n, cut_to))
            .collect();
        let text = rendered.join(" ");
        let length = text.chars().count();
        if length <= room {
            return text;
        }
        let listed = |i: usize| parts[i].listed_chars(shown[i].0, shown[i].1);
        let fewer = (0..parts.len())
            .filter(|&i| shown[i].0 > 1)
            .max_by_key(|&i| rendered[i].chars().count());
        let shorter = (0..parts.len())
            .filter(|&i| listed(i) > MIN_CUT)
            .max_by_key(|&i| listed(i));
        match (fewer, shorter) {
            (Some(i), _) => shown[i].0 -= 1,
            (None, Some(i)) => shown[i].1 = listed(i).saturating_sub(length - room).max(MIN_CUT),
            (None, None) => {
                let mut cut: String = text.chars().take(room.saturating_sub(1)).collect();
                cut.push('…');
                return cut;
            }
        }
    }
}

/// What a rule matches on, for the MATCHES column: hosts, methods and
/// paths as written; query, header and JSON conditions by their keys.
fn conditions(rule: &Rule) -> Vec<Part> {
    let list = |prefix: &str, items: Vec<String>| Part {
        prefix: prefix.to_owned(),
        items,
    };
    let mut parts = vec![if rule.hosts.is_empty() {
        Part::plain("any host")
    } else {
        list("", rule.hosts.clone())
    }];
    for items in [&rule.methods, &rule.paths] {
        if !items.is_empty() {
            parts.push(list("", items.clone()));
        }
    }
    for (kind, pairs) in [
        ("query", &rule.query),
        ("headers", &rule.headers),
        ("json", &rule.json),
    ] {
        if !pairs.is_empty() {
            let keys = pairs.iter().map(|(k, _)| k.clone()).collect();
            parts.push(list(&format!("+{kind}:"), keys));
        }
    }
    if !rule.mcp_tools.is_empty() {
        parts.push(list("mcp:", rule.mcp_tools.clone()));
    }
    parts
}

struct MatchedRule {
    name: String,
    location: Location,
    label: String,
    conditions: Vec<String>,
}

/// Why a request gets its decision: how many rules concern other hosts,
/// every rule for this host passed over and why, the rule
/// that matched and on what, the action and window, and what happens at
/// CONNECT. Printed by `airlock explain`.
pub struct Explanation {
    request: String,
    path_note: Option<String>,
    /// Rules for other hosts, skipped without a word each.
    other_hosts: usize,
    /// Rules for this host (or any host) that did not match, and why.
    passed_over: Vec<(String, Location, String)>,
    matched: Option<MatchedRule>,
    action: Action,
    unmatched: Action,
    window: Option<Window>,
    summary: Option<String>,
    body_unread: bool,
    connect: String,
    at_connect: &'static str,
}

impl Explanation {
    /// The matching rule's name; `None` when `unmatched` applies.
    pub fn rule(&self) -> Option<&str> {
        self.matched.as_ref().map(|m| m.name.as_str())
    }

    /// The resulting action.
    pub fn action(&self) -> Action {
        self.action
    }

    /// The matching rule's own window (`None`: the configured default).
    pub fn window(&self) -> Option<Window> {
        self.window
    }

    /// "tunnelled blind", "intercepted" or "refused".
    pub fn at_connect(&self) -> &str {
        self.at_connect
    }

    /// True when a rule's JSON conditions could not be checked for want of a
    /// body, so the outcome might differ once the body is known.
    pub fn body_unread(&self) -> bool {
        self.body_unread
    }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "request: {}", self.request)?;
        if let Some(note) = &self.path_note {
            writeln!(f, "  ({note})")?;
        }
        match self.other_hosts {
            0 => {}
            1 => writeln!(f, "  skipped 1 rule for another host")?,
            n => writeln!(f, "  skipped {n} rules for other hosts")?,
        }
        for (name, location, reason) in &self.passed_over {
            writeln!(f, "  passed over {name:?} ({location}): {reason}")?;
        }
        match &self.matched {
            Some(m) => {
                writeln!(f, "matched: {:?} ({})", m.name, m.location)?;
                for condition in &m.conditions {
                    writeln!(f, "  {condition}")?;
                }
            }
            None => writeln!(
                f,
                "matched: no rule; unmatched = {:?} applies",
                self.unmatched.as_str()
            )?,
        }
        write!(f, "action: {}", self.action)?;
        match &self.matched {
            Some(m) if self.action == Action::Review => writeln!(f, " ({:?})", m.label)?,
            _ => writeln!(f)?,
        }
        if self.action == Action::Review {
            match self.window {
                Some(window) => writeln!(f, "window: {window}")?,
                None => writeln!(f, "window: the default ([defaults] window)")?,
            }
        }
        if let Some(summary) = &self.summary {
            writeln!(f, "summary: {summary}")?;
        }
        if self.body_unread {
            writeln!(
                f,
                "note: json conditions were not checked without a body; pass one with --body"
            )?;
        }
        writeln!(f, "at CONNECT: {}", self.connect)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(lists: &[&[&str]]) -> Vec<Part> {
        lists
            .iter()
            .map(|items| Part {
                prefix: String::new(),
                items: items.iter().map(|i| (*i).to_owned()).collect(),
            })
            .collect()
    }

    #[test]
    fn matches_that_fit_are_left_whole() {
        let p = parts(&[&["api.sendgrid.com"], &["POST"], &["/v3/mail/send"]]);
        assert_eq!(fit(&p, 40), "api.sendgrid.com POST /v3/mail/send");
        assert_eq!(fit(&p, usize::MAX), "api.sendgrid.com POST /v3/mail/send");
    }

    #[test]
    fn long_lists_give_up_items_first_and_say_how_many() {
        let p = parts(&[
            &["pastebin.com", "*.pastebin.com", "paste.ee", "hastebin.com"],
            &["POST", "PUT"],
        ]);
        assert_eq!(fit(&p, 30), "pastebin.com,…+3 POST,PUT");
        let cut = fit(&p, 22);
        assert!(cut.chars().count() <= 22 && cut.contains("…+3"), "{cut}");
    }

    #[test]
    fn then_the_longest_list_is_cut_and_the_others_stay_readable() {
        let p = parts(&[
            &["api.postmarkapp.com"],
            &["POST"],
            &["/email/batchWithTemplates"],
        ]);
        let fitted = fit(&p, 30);
        assert_eq!(fitted.chars().count(), 30, "{fitted}");
        assert!(fitted.starts_with("api.postmark"), "{fitted}");
        assert!(fitted.contains("… POST /email/"), "{fitted}");
        let narrow = fit(&p, 12);
        assert_eq!(narrow.chars().count(), 12, "{narrow}");
    }
}

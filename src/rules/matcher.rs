//! The compiled rule set: first-match decisions for requests and CONNECT
//! hosts, explanations, and the classification table. This module owns the
//! matching semantics and keeps them fast enough to sit in front of every
//! request (a thousand rules decide in well under two microseconds). It must
//! never allocate on the per-request path of an ordinary request, never
//! buffer or read a body itself (the caller does, when told `NeedBody`), and
//! never change once built: reloading builds a new `RuleSet`.
//!
//! How a decision stays fast: each field with many patterns (host, path) is
//! one combined [`GlobSet`] over the distinct patterns of all rules, mapped
//! back to the rules that use them. A request's host is matched once against
//! the host set; the rules whose host condition holds (or that have none)
//! become a bitset, walked in rule order. Each candidate's remaining
//! conditions are checked directly, the rare ones (query, headers, JSON)
//! last. When many candidates share a host, they are first pruned by the
//! literal prefixes of their path globs (a few hash lookups), and if they
//! keep failing on their paths anyway, by one pass of the combined path set,
//! so even a thousand rules on one host stay bounded.
//!
//! Split by what it does: [`index`] holds those indexes, [`path`] the
//! request's host and canonical path as matched, [`explain`] the
//! explanations and the table; this file decides.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

use globset::{Candidate, Glob, GlobBuilder, GlobMatcher, GlobSet, GlobSetBuilder};
use serde_json::Value;

use super::load::duplicate_names;
use super::{Action, BodyView, ConnectDecision, Decision, RequestView, Rule, RuleError};

mod explain;
mod index;
mod path;
pub(crate) use path::Folded;

use index::{
    FieldIndex, PathIndex, PathPruning, compile_error, has_bit, rule_path_glob, with_scratch,
};
use path::RequestPath;

pub use explain::Explanation;

/// With more candidates than this after the host, pruning them by literal
/// path prefix first is cheaper than checking their path globs one by one.
const PRUNE_BY_PREFIX_ABOVE: u32 = 8;
/// After this many candidates failed on their own path globs anyway, they
/// share prefixes too, and one pass of the combined path set (exact, but
/// costlier) prunes the rest.
const PATH_MISSES_BEFORE_GLOBSET: usize = 12;

/// Longest request value quoted in an explanation, in characters.
const EXPLAIN_VALUE_CHARS: usize = 120;

/// Host globs are lower-cased here and hosts lower-cased before matching:
/// globset's own case-insensitive mode turns every pattern into a regex,
/// which would lose the hash lookup literal hosts get.
pub(crate) fn host_glob(pattern: &str) -> Result<Glob, globset::Error> {
    GlobBuilder::new(&pattern.to_ascii_lowercase())
        .literal_separator(false)
        .build()
}

/// `*` stays within a path segment, `**` crosses `/`.
pub(crate) fn path_glob(pattern: &str) -> Result<Glob, globset::Error> {
    GlobBuilder::new(pattern).literal_separator(true).build()
}

/// Values (query, header, JSON) are free text: `*` matches anything,
/// including `/`.
pub(crate) fn value_glob(pattern: &str, case_insensitive: bool) -> Result<Glob, globset::Error> {
    GlobBuilder::new(pattern)
        .literal_separator(false)
        .case_insensitive(case_insensitive)
        .build()
}

/// An immutable, compiled set of rules, shared as `Arc<RuleSet>`.
pub struct RuleSet {
    rules: Vec<Rule>,
    compiled: Vec<Compiled>,
    by_name: HashMap<String, usize>,
    unmatched: Action,
    /// Bitset length in `u64` words: one bit per rule.
    words: usize,
    hosts: FieldIndex,
    /// Path globs of review and deny rules, lower-cased: matched against the
    /// canonical path, lower-cased, whatever the request's spelling.
    strict_paths: PathIndex,
    /// Path globs of automatic rules, as written: matched only against a
    /// path that was sent in its canonical form.
    automatic_paths: PathIndex,
    /// Requests decided by each rule (and, last, by `unmatched`) since this
    /// set came into force: atomics, so counting takes no lock and no
    /// allocation on the hot path. A reload starts them again at zero.
    decided: Box<[std::sync::atomic::AtomicU64]>,
}

/// The conditions of one rule that are checked per candidate.
struct Compiled {
    /// The rule's own path globs, for the common case of few candidates
    /// (lower-cased for review and deny rules).
    paths: GlobSet,
    query: Vec<(String, GlobMatcher)>,
    headers: Vec<(http::HeaderName, GlobMatcher)>,
    json: Vec<(String, GlobMatcher)>,
    /// `mcp_tool` globs (case-insensitive for review and deny rules).
    mcp: Option<GlobSet>,
}

/// The body parsed as JSON at most once, and only if a rule asks.
struct LazyJson<'b> {
    body: BodyView<'b>,
    parsed: Option<crate::canonical::json::Parsed>,
}

/// What a rule's `json` conditions see of the body.
enum JsonReading<'j> {
    /// The caller has not read the body yet.
    Unread,
    /// One JSON value, with one reading.
    Clear(&'j Value),
    /// Not JSON, not decodable, or readable more than one way: the
    /// conditions hold for review and deny rules and fail for automatic ones.
    Ambiguous(String),
}

impl<'b> LazyJson<'b> {
    fn new(body: BodyView<'b>) -> LazyJson<'b> {
        LazyJson { body, parsed: None }
    }

    fn reading(&mut self) -> JsonReading<'_> {
        let bytes = match self.body {
            BodyView::Unread => return JsonReading::Unread,
            BodyView::Undecodable => {
                return JsonReading::Ambiguous("the body cannot be decoded".to_owned());
            }
            BodyView::Read(bytes) => bytes,
        };
        let parsed = self
            .parsed
            .get_or_insert_with(|| crate::canonical::json::parse(bytes));
        match (&parsed.value, &parsed.ambiguity) {
            (Some(value), None) => JsonReading::Clear(value),
            (_, Some(ambiguity)) => JsonReading::Ambiguous(ambiguity.to_string()),
            (None, None) => JsonReading::Ambiguous("the body is not JSON".to_owned()),
        }
    }

    /// What `mcp_tool` conditions see: as `json` conditions do, except that
    /// an empty body (a GET of the event stream, a DELETE of a session)
    /// plainly calls no tool.
    fn mcp_reading(&mut self) -> JsonReading<'_> {
        match self.body {
            BodyView::Read(bytes) if crate::canonical::mcp::is_empty(bytes) => {
                JsonReading::Clear(&NO_CALL)
            }
            _ => self.reading(),
        }
    }

    /// The value for summaries: the usual reading even of an ambiguous body.
    fn value(&mut self) -> Option<&Value> {
        let BodyView::Read(bytes) = self.body else {
            return None;
        };
        self.parsed
            .get_or_insert_with(|| crate::canonical::json::parse(bytes))
            .value
            .as_ref()
    }
}

/// What an empty body reads as: no message at all.
static NO_CALL: Value = Value::Null;

/// The text a JSON value is matched as: strings as they are, everything else
/// as compact JSON (`42`, `true`, `null`, `["a"]`).
fn json_text(value: &Value) -> Cow<'_, str> {
    match value {
        Value::String(s) => Cow::Borrowed(s),
        other => Cow::Owned(other.to_string()),
    }
}

fn glob_matches(glob: &GlobMatcher, value: &[u8]) -> bool {
    glob.is_match_candidate(&Candidate::from_bytes(value))
}

fn method_matches(rule: &Rule, method: &str) -> bool {
    rule.methods.is_empty() || rule.methods.iter().any(|m| m.eq_ignore_ascii_case(method))
}

/// How one query or header condition fares over every occurrence of its
/// name. A review or deny rule needs one occurrence to match (some reading
/// of the request meets it); an automatic rule needs the name present as
/// written and every occurrence to match, a query name in any case
/// included (every reading meets it), since servers differ in which of
/// `?to=a&to=b` they read and some read `To` as `to`.
enum Occurrences<'v> {
    Holds(Cow<'v, [u8]>),
    Absent,
    Fails(Cow<'v, [u8]>),
}

fn occurrences<'v>(
    values: impl Iterator<Item = (bool, Cow<'v, [u8]>)>,
    glob: &GlobMatcher,
    automatic: bool,
) -> Occurrences<'v> {
    let mut present = false;
    let mut first = None;
    for (exact, value) in values {
        let ok = glob_matches(glob, &value);
        if automatic && !ok {
            return Occurrences::Fails(value);
        }
        if !automatic && ok {
            return Occurrences::Holds(value);
        }
        present |= exact;
        if first.is_none() {
            first = Some(value);
        }
    }
    match first {
        Some(value) if automatic && present => Occurrences::Holds(value),
        Some(value) if !automatic => Occurrences::Fails(value),
        _ => Occurrences::Absent,
    }
}

/// The values of query parameter `param`, in any case: (named exactly so, value).
fn query_values<'q>(
    query: Option<&'q str>,
    param: &'q str,
) -> impl Iterator<Item = (bool, Cow<'q, [u8]>)> + 'q {
    query
        .into_iter()
        .flat_map(|q| form_urlencoded::parse(q.as_bytes()))
        .filter(move |(k, _)| k.eq_ignore_ascii_case(param))
        .map(move |(k, v)| {
            let v = match v {
                Cow::Borrowed(s) => Cow::Borrowed(s.as_bytes()),
                Cow::Owned(s) => Cow::Owned(s.into_bytes()),
            };
            (k == param, v)
        })
}

fn header_values<'h>(
    headers: &'h http::HeaderMap,
    name: &http::HeaderName,
) -> impl Iterator<Item = (bool, Cow<'h, [u8]>)> + 'h {
    headers
        .get_all(name)
        .into_iter()
        .map(|v| (true, Cow::Borrowed(v.as_bytes())))
}

/// A query some servers split on `;` as well as `&` (Rack 2, older Python
/// and Go) has more than one reading: no automatic query condition holds.
fn query_has_other_separators(query: Option<&str>) -> bool {
    query.is_some_and(|q| q.contains(';'))
}

/// The query read with `;` as a separator too, when it has one.
fn query_split_on_semicolons(query: Option<&str>) -> Option<String> {
    query
        .filter(|q| q.contains(';'))
        .map(|q| q.replace(';', "&"))
}

/// The query a rule's conditions are judged on: for a review or deny rule
/// whose conditions hold only when `;` separates too, that reading.
fn query_as_judged(
    rule: &Rule,
    conditions: &[(String, GlobMatcher)],
    query: Option<&str>,
) -> Option<String> {
    let split = query_split_on_semicolons(query)?;
    (rule.action != Action::Automatic
        && !query_holds(rule, conditions, query)
        && query_holds(rule, conditions, Some(&split)))
    .then_some(split)
}

fn query_matches(rule: &Rule, conditions: &[(String, GlobMatcher)], query: Option<&str>) -> bool {
    if conditions.is_empty() {
        return true;
    }
    if rule.action == Action::Automatic {
        return !query_has_other_separators(query) && query_holds(rule, conditions, query);
    }
    query_holds(rule, conditions, query)
        || query_split_on_semicolons(query)
            .is_some_and(|split| query_holds(rule, conditions, Some(&split)))
}

fn query_holds(rule: &Rule, conditions: &[(String, GlobMatcher)], query: Option<&str>) -> bool {
    let automatic = rule.action == Action::Automatic;
    conditions.iter().all(|(param, glob)| {
        matches!(
            occurrences(query_values(query, param), glob, automatic),
            Occurrences::Holds(_)
        )
    })
}

fn headers_match(
    rule: &Rule,
    conditions: &[(http::HeaderName, GlobMatcher)],
    headers: &http::HeaderMap,
) -> bool {
    let automatic = rule.action == Action::Automatic;
    conditions.iter().all(|(name, glob)| {
        matches!(
            occurrences(header_values(headers, name), glob, automatic),
            Occurrences::Holds(_)
        )
    })
}

/// Whether `doc` calls a tool in `tools` meeting the `json` conditions:
/// strictly for automatic rules (one call, the conditions on it; the
/// headers were found to agree by [`plainly_json`]); for the
/// others, any call a server might run, the conditions read against that
/// call's own message, so a batch cannot hide one ([`crate::canonical::mcp`]).
fn mcp_matches(
    tools: &GlobSet,
    json: &[(String, GlobMatcher)],
    doc: &Value,
    headers: &http::HeaderMap,
    automatic: bool,
) -> bool {
    if automatic {
        crate::canonical::mcp::strict_tool(doc)
            .is_some_and(|name| tools.is_match(name) && json_matches(json, doc, false))
    } else {
        crate::canonical::mcp::lenient_calls(doc)
            .any(|(name, msg)| tools.is_match(name) && json_matches(json, msg, true))
            || (crate::canonical::mcp::header_tools(headers).any(|name| tools.is_match(&*name))
                && json_matches(json, doc, true))
    }
}

/// Whether an automatic rule may read `doc` at all: one `Content-Type`
/// that says JSON, and no `Mcp-Method` or `Mcp-Name` header saying other
/// than the body (a gateway may route by those).
fn plainly_json(headers: &http::HeaderMap, doc: &Value) -> bool {
    crate::canonical::is_json_content_type(headers)
        && crate::canonical::mcp::headers_agree(doc, headers)
}

/// The `json` conditions on `doc`; `any_case` for review and deny rules,
/// whose keys are read as a case-insensitive parser reads them too.
fn json_matches(conditions: &[(String, GlobMatcher)], doc: &Value, any_case: bool) -> bool {
    conditions.iter().all(|(pointer, glob)| {
        json_at(doc, pointer, any_case).is_some_and(|v| glob_matches(glob, json_text(v).as_bytes()))
    })
}

fn json_at<'v>(doc: &'v Value, pointer: &str, any_case: bool) -> Option<&'v Value> {
    match doc.pointer(pointer) {
        Some(v) => Some(v),
        None if any_case => crate::canonical::json::pointer_any_case(doc, pointer),
        None => None,
    }
}

impl RuleSet {
    /// Compiles `rules` in order; `unmatched` applies to requests no rule
    /// matches. Names must be unique: audit and figures are keyed by them.
    pub fn new(rules: Vec<Rule>, unmatched: Action) -> Result<RuleSet, Vec<RuleError>> {
        let mut errors = duplicate_names(&rules);
        let words = rules.len().div_ceil(64);
        let hosts = FieldIndex::build(&rules, words, |r| &r.hosts, host_glob, "host", &mut errors);
        let strict_paths = PathIndex::build(&rules, words, false, &mut errors);
        let automatic_paths = PathIndex::build(&rules, words, true, &mut errors);

        let mut compiled = Vec::with_capacity(rules.len());
        for rule in &rules {
            let mut own_paths = GlobSetBuilder::new();
            let fold = rule.action != Action::Automatic;
            for pattern in &rule.paths {
                // Errors were reported while building the path index.
                if let Ok(glob) = rule_path_glob(pattern, fold) {
                    own_paths.add(glob);
                }
            }
            let paths = own_paths.build().unwrap_or_else(|e| {
                errors.push(compile_error(rule, "path", &rule.paths.join(", "), &e));
                GlobSet::empty()
            });
            let mut values = |conditions: &[(String, String)], what: &str, case_insensitive| {
                let mut out = Vec::with_capacity(conditions.len());
                for (key, pattern) in conditions {
                    match value_glob(pattern, case_insensitive) {
                        Ok(glob) => out.push((key.clone(), glob.compile_matcher())),
                        Err(e) => errors.push(compile_error(rule, what, pattern, &e)),
                    }
                }
                out
            };
            let query = values(&rule.query, "query", false);
            let json = values(&rule.json, "json", false);
            let mut headers = Vec::new();
            for (name, glob) in values(&rule.headers, "header", true) {
                match http::HeaderName::from_bytes(name.as_bytes()) {
                    Ok(name) => headers.push((name, glob)),
                    Err(_) => errors.push(RuleError {
                        location: rule.location.clone(),
                        message: format!("rule {:?}: invalid header name {name:?}", rule.name),
                    }),
                }
            }
            let mcp = (!rule.mcp_tools.is_empty()).then(|| {
                let mut set = GlobSetBuilder::new();
                for pattern in &rule.mcp_tools {
                    match value_glob(pattern, fold) {
                        Ok(glob) => {
                            set.add(glob);
                        }
                        Err(e) => errors.push(compile_error(rule, "mcp_tool", pattern, &e)),
                    }
                }
                set.build().unwrap_or_else(|e| {
                    errors.push(compile_error(
                        rule,
                        "mcp_tool",
                        &rule.mcp_tools.join(", "),
                        &e,
                    ));
                    GlobSet::empty()
                })
            });
            compiled.push(Compiled {
                paths,
                query,
                headers,
                json,
                mcp,
            });
        }

        if !errors.is_empty() {
            return Err(errors);
        }
        let by_name = rules
            .iter()
            .enumerate()
            .map(|(i, r)| (r.name.clone(), i))
            .collect();
        let decided = (0..=rules.len())
            .map(|_| std::sync::atomic::AtomicU64::new(0))
            .collect();
        Ok(RuleSet {
            decided,
            rules,
            compiled,
            by_name,
            unmatched,
            words,
            hosts,
            strict_paths,
            automatic_paths,
        })
    }

    /// The rules in decision order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The rule of that name, e.g. to show the rule of a stored hold.
    pub fn rule(&self, name: &str) -> Option<&Rule> {
        self.by_name.get(name).and_then(|&i| self.rules.get(i))
    }

    /// What applies when no rule matches.
    pub fn unmatched(&self) -> Action {
        self.unmatched
    }

    /// Counts one request decided by `rule` (`None`: by `unmatched`).
    pub fn count(&self, rule: Option<&Rule>) {
        let slot = match rule {
            None => self.rules.len(),
            // The rule is an element of `self.rules`: its index is its
            // offset from the start of the slice.
            Some(r) => {
                let base = self.rules.as_ptr() as usize;
                let at = r as *const Rule as usize;
                let size = std::mem::size_of::<Rule>().max(1);
                let i = at.wrapping_sub(base) / size;
                if i < self.rules.len() && std::ptr::eq(&self.rules[i], r) {
                    i
                } else {
                    return;
                }
            }
        };
        if let Some(c) = self.decided.get(slot) {
            c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// (rule name or `unmatched`, action, requests decided) for every rule.
    pub fn counts(&self) -> impl Iterator<Item = (&str, Action, u64)> + '_ {
        let load = |i: usize| {
            self.decided
                .get(i)
                .map_or(0, |c| c.load(std::sync::atomic::Ordering::Relaxed))
        };
        self.rules
            .iter()
            .enumerate()
            .map(move |(i, r)| (r.name.as_str(), r.action, load(i)))
            .chain(std::iter::once((
                "unmatched",
                self.unmatched,
                load(self.rules.len()),
            )))
    }

    /// The first rule matching the request. With [`BodyView::Unread`], stops
    /// with `NeedBody` at the first candidate that needs the body, so the
    /// caller buffers only when a rule really looks inside it.
    ///
    /// A request that names other methods in override headers is decided
    /// under each of them too, and the strictest verdict wins (deny, then
    /// review, then automatic): the upstream may act on any of them.
    pub fn decide(&self, req: &RequestView<'_>, body: BodyView<'_>) -> Decision<'_> {
        let own = self.decide_as(req, req.method, body);
        if !crate::canonical::has_method_override(req.headers, req.query) {
            return own;
        }
        let mut strictest = own;
        for method in crate::canonical::methods(req.headers, req.query) {
            let other = self.decide_as(req, &method, body);
            if other == Decision::NeedBody || strictest == Decision::NeedBody {
                return Decision::NeedBody;
            }
            if self.severity(&other) > self.severity(&strictest) {
                strictest = other;
            }
        }
        strictest
    }

    /// Deny over review over automatic.
    fn severity(&self, decision: &Decision<'_>) -> u8 {
        let action = match decision {
            Decision::Matched(rule) => rule.action,
            Decision::Unmatched => self.unmatched,
            Decision::NeedBody => return u8::MAX,
        };
        match action {
            Action::Automatic => 0,
            Action::Review => 1,
            Action::Deny => 2,
        }
    }

    /// The first rule matching the request as if its method were `method`.
    fn decide_as(&self, req: &RequestView<'_>, method: &str, body: BodyView<'_>) -> Decision<'_> {
        let host = Folded::host(req.host);
        let path = RequestPath::new(req.path);
        let host_candidate = Candidate::from_bytes(host.as_bytes());
        let mut json = LazyJson::new(body);

        with_scratch(self.words, |s| {
            self.hosts
                .fill(&host_candidate, &mut s.hits, &mut s.candidates);
            let mut path_misses = 0;
            let mut pruning = PathPruning::None;
            let count: u32 = s.candidates.iter().map(|w| w.count_ones()).sum();
            if count > PRUNE_BY_PREFIX_ABOVE {
                path.fill_prefixes(self, &mut s.paths, &mut s.automatic_paths);
                for (c, p) in s.candidates.iter_mut().zip(&s.paths) {
                    *c &= *p;
                }
                pruning = PathPruning::Prefixes;
            }
            for word in 0..self.words {
                let mut bits = s.candidates.get(word).copied().unwrap_or(0);
                while bits != 0 {
                    let i = word * 64 + bits.trailing_zeros() as usize;
                    bits &= bits - 1;
                    let (Some(rule), Some(compiled)) = (self.rules.get(i), self.compiled.get(i))
                    else {
                        continue;
                    };
                    if !method_matches(rule, method) {
                        continue;
                    }
                    if !rule.paths.is_empty() {
                        if pruning != PathPruning::Exact
                            && path_misses >= PATH_MISSES_BEFORE_GLOBSET
                        {
                            path.fill_exact(
                                self,
                                &mut s.hits,
                                &mut s.paths,
                                &mut s.automatic_paths,
                            );
                            for (c, p) in s.candidates.iter_mut().zip(&s.paths) {
                                *c &= *p;
                            }
                            pruning = PathPruning::Exact;
                            bits &= s.candidates.get(word).copied().unwrap_or(0);
                            if !has_bit(&s.paths, i) {
                                continue;
                            }
                        }
                        if pruning != PathPruning::Exact && !path.matches(rule, &compiled.paths) {
                            path_misses += 1;
                            continue;
                        }
                    }
                    if !query_matches(rule, &compiled.query, req.query)
                        || !headers_match(rule, &compiled.headers, req.headers)
                    {
                        continue;
                    }
                    if !compiled.json.is_empty() || compiled.mcp.is_some() {
                        let automatic = rule.action == Action::Automatic;
                        let reading = match compiled.mcp {
                            Some(_) => json.mcp_reading(),
                            None => json.reading(),
                        };
                        let holds = match reading {
                            JsonReading::Unread => return Decision::NeedBody,
                            JsonReading::Ambiguous(_) => !automatic,
                            JsonReading::Clear(doc) => {
                                (!automatic || plainly_json(req.headers, doc))
                                    && match &compiled.mcp {
                                        Some(tools) => mcp_matches(
                                            tools,
                                            &compiled.json,
                                            doc,
                                            req.headers,
                                            automatic,
                                        ),
                                        None => json_matches(&compiled.json, doc, !automatic),
                                    }
                            }
                        };
                        if !holds {
                            continue;
                        }
                    }
                    return Decision::Matched(rule);
                }
            }
            Decision::Unmatched
        })
    }

    /// What to do with a CONNECT to `host` (without port), before answering
    /// it. Only a host whose first rule looks at nothing but the host can be
    /// tunnelled blind or refused; every other host is intercepted so its
    /// requests can be matched.
    pub fn decide_connect(&self, host: &str) -> ConnectDecision<'_> {
        self.connect(host).0
    }

    /// The CONNECT decision and the rule that drove it (also for
    /// `Intercept`, which explanations need).
    fn connect(&self, host: &str) -> (ConnectDecision<'_>, Option<&Rule>) {
        let key = Folded::host(host);
        let first = with_scratch(self.words, |s| {
            self.hosts
                .first(&Candidate::from_bytes(key.as_bytes()), &mut s.hits)
        });
        match first.and_then(|i| self.rules.get(i)) {
            Some(rule) if rule.host_only() => match rule.action {
                Action::Automatic => (ConnectDecision::Tunnel(Some(rule)), Some(rule)),
                Action::Deny => (ConnectDecision::Refuse(Some(rule)), Some(rule)),
                Action::Review => (ConnectDecision::Intercept, Some(rule)),
            },
            Some(rule) => (ConnectDecision::Intercept, Some(rule)),
            None => match self.unmatched {
                Action::Automatic => (ConnectDecision::Tunnel(None), None),
                Action::Deny => (ConnectDecision::Refuse(None), None),
                Action::Review => (ConnectDecision::Intercept, None),
            },
        }
    }
}

impl fmt::Debug for RuleSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RuleSet")
            .field("rules", &self.rules.len())
            .field("unmatched", &self.unmatched)
            .finish_non_exhaustive()
    }
}

/// What a request presents to one rule, worked out once for all rules.
struct Facts<'a> {
    req: &'a RequestView<'a>,
    host: &'a str,
    path: &'a str,
    host_ok: bool,
    path_ok: bool,
}

enum Failure {
    Condition(String),
    BodyUnread(String),
}

/// Checks one rule the way `decide` does, in the same order, saying what
/// held (on success) or the first thing that did not.
fn examine(
    rule: &Rule,
    compiled: &Compiled,
    facts: &Facts<'_>,
    json: &mut LazyJson<'_>,
) -> Result<Vec<String>, Failure> {
    let fail = |reason: String| Err(Failure::Condition(reason));
    let mut held = Vec::new();
    if !rule.hosts.is_empty() {
        if !facts.host_ok {
            return fail(format!(
                "host {:?} does not match {:?}",
                bounded(facts.host),
                rule.hosts
            ));
        }
        held.push(format!("host {:?} matches {:?}", facts.host, rule.hosts));
    }
    if !rule.methods.is_empty() {
        let method = bounded(facts.req.method);
        if !method_matches(rule, facts.req.method) {
            return fail(format!(
                "method {method:?} is not one of {:?}",
                rule.methods
            ));
        }
        held.push(format!("method {method:?} is one of {:?}", rule.methods));
    }
    if !rule.paths.is_empty() {
        if !facts.path_ok {
            return fail(format!(
                "path {:?} does not match {:?}",
                bounded(facts.path),
                rule.paths
            ));
        }
        held.push(format!(
            "path {:?} matches {:?}",
            bounded(facts.path),
            rule.paths
        ));
    }
    let automatic = rule.action == Action::Automatic;
    if automatic && !compiled.query.is_empty() && query_has_other_separators(facts.req.query) {
        return fail(
            "the query has `;`, which some servers read as a separator, so the query conditions of an automatic rule fail"
                .to_owned(),
        );
    }
    let split = query_as_judged(rule, &compiled.query, facts.req.query);
    let query = split.as_deref().or(facts.req.query);
    if split.is_some() {
        held.push("the query read with `;` as a separator, as some servers read it".to_owned());
    }
    for ((param, glob), (_, pattern)) in compiled.query.iter().zip(&rule.query) {
        match occurrences(query_values(query, param), glob, automatic) {
            Occurrences::Holds(v) => held.push(format!(
                "query {param:?} = {:?} matches {pattern:?}",
                bounded(&String::from_utf8_lossy(&v))
            )),
            Occurrences::Absent => {
                return fail(format!(
                    "query parameter {param:?} is absent (wanted {pattern:?})"
                ));
            }
            Occurrences::Fails(v) => {
                return fail(format!(
                    "query {param:?} = {:?} does not match {pattern:?}",
                    bounded(&String::from_utf8_lossy(&v))
                ));
            }
        }
    }
    for ((name, glob), (_, pattern)) in compiled.headers.iter().zip(&rule.headers) {
        match occurrences(header_values(facts.req.headers, name), glob, automatic) {
            Occurrences::Holds(v) => held.push(format!(
                "header {:?} = {:?} matches {pattern:?}",
                name.as_str(),
                bounded(&String::from_utf8_lossy(&v))
            )),
            Occurrences::Absent => {
                return fail(format!(
                    "header {:?} is absent (wanted {pattern:?})",
                    name.as_str()
                ));
            }
            Occurrences::Fails(v) => {
                return fail(format!(
                    "header {:?} = {:?} does not match {pattern:?}",
                    name.as_str(),
                    bounded(&String::from_utf8_lossy(&v))
                ));
            }
        }
    }
    if !compiled.json.is_empty() || compiled.mcp.is_some() {
        let automatic = rule.action == Action::Automatic;
        let (reading, what, fails, holds) = match compiled.mcp {
            Some(_) => (
                json.mcp_reading(),
                "the mcp_tool condition",
                "fails",
                "holds",
            ),
            None => (json.reading(), "the json conditions", "fail", "hold"),
        };
        let doc = match reading {
            JsonReading::Unread => {
                let wanted = match compiled.mcp {
                    Some(_) => format!("mcp_tool {:?}", rule.mcp_tools),
                    None => format!(
                        "json {:?}",
                        rule.json
                            .iter()
                            .map(|(p, _)| p.as_str())
                            .collect::<Vec<_>>()
                    ),
                };
                return Err(Failure::BodyUnread(format!(
                    "{wanted} needs the request body, and none was given"
                )));
            }
            JsonReading::Ambiguous(why) if automatic => {
                return fail(format!("{why}, so {what} of an automatic rule {fails}"));
            }
            JsonReading::Ambiguous(why) => {
                held.push(format!(
                    "{why}, so {what} of a {} rule {holds}",
                    rule.action
                ));
                return Ok(held);
            }
            JsonReading::Clear(_)
                if automatic && !crate::canonical::is_json_content_type(facts.req.headers) =>
            {
                return fail(format!(
                    "Content-Type does not say plainly that the body is JSON, so {what} of an automatic rule {fails}"
                ));
            }
            JsonReading::Clear(doc)
                if automatic && !crate::canonical::mcp::headers_agree(doc, facts.req.headers) =>
            {
                return fail(format!(
                    "the Mcp-Method or Mcp-Name header says other than the body, so {what} of an automatic rule {fails}"
                ));
            }
            JsonReading::Clear(doc) => doc,
        };
        // The message the json conditions read: the body, or the tool call
        // in it the rule names.
        let msg = match &compiled.mcp {
            None => doc,
            Some(tools) => {
                let called: Vec<(Cow<'_, str>, &Value)> = if automatic {
                    crate::canonical::mcp::strict_tool(doc)
                        .map(|name| (Cow::Borrowed(name), doc))
                        .into_iter()
                        .collect()
                } else {
                    crate::canonical::mcp::lenient_calls(doc)
                        .map(|(n, m)| (Cow::Borrowed(n), m))
                        .chain(
                            crate::canonical::mcp::header_tools(facts.req.headers)
                                .map(|n| (n, doc)),
                        )
                        .collect()
                };
                if called.is_empty() {
                    return fail(if automatic {
                        "the body is not one JSON-RPC 2.0 tools/call request".to_owned()
                    } else {
                        "the body calls no MCP tool (tools/call)".to_owned()
                    });
                }
                let named: Vec<&(Cow<'_, str>, &Value)> = called
                    .iter()
                    .filter(|(name, _)| tools.is_match(&**name))
                    .collect();
                let Some(&&(ref name, msg)) = named
                    .iter()
                    .find(|(_, msg)| json_matches(&compiled.json, msg, !automatic))
                    .or(named.first())
                else {
                    return fail(format!(
                        "MCP tool {:?} does not match mcp_tool {:?}",
                        called.iter().map(|(n, _)| bounded(n)).collect::<Vec<_>>(),
                        rule.mcp_tools
                    ));
                };
                held.push(format!(
                    "MCP tools/call of {:?} matches mcp_tool {:?}",
                    bounded(name),
                    rule.mcp_tools
                ));
                msg
            }
        };
        for ((pointer, glob), (_, pattern)) in compiled.json.iter().zip(&rule.json) {
            match json_at(msg, pointer, !automatic).map(json_text) {
                None => return fail(format!("json {pointer:?} is absent (wanted {pattern:?})")),
                Some(v) if glob_matches(glob, v.as_bytes()) => held.push(format!(
                    "json {pointer:?} = {:?} matches {pattern:?}",
                    bounded(&v)
                )),
                Some(v) => {
                    return fail(format!(
                        "json {pointer:?} = {:?} does not match {pattern:?}",
                        bounded(&v)
                    ));
                }
            }
        }
    }
    if held.is_empty() {
        held.push("no conditions: matches every request".to_owned());
    }
    Ok(held)
}

/// The kinds of condition a rule has besides its host.
fn beyond_host(rule: &Rule) -> Vec<&'static str> {
    let mut kinds = Vec::new();
    for (present, kind) in [
        (!rule.methods.is_empty(), "method"),
        (!rule.paths.is_empty(), "path"),
        (!rule.query.is_empty(), "query"),
        (!rule.headers.is_empty(), "headers"),
        (!rule.json.is_empty(), "json"),
        (!rule.mcp_tools.is_empty(), "mcp_tool"),
    ] {
        if present {
            kinds.push(kind);
        }
    }
    kinds
}

/// Request text cut short for explanations; `{:?}` then escapes the rest.
fn bounded(s: &str) -> Cow<'_, str> {
    match s.char_indices().nth(EXPLAIN_VALUE_CHARS) {
        None => Cow::Borrowed(s),
        Some((cut, _)) => Cow::Owned(format!("{}…", s.get(..cut).unwrap_or_default())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::parse_file;
    use http::{HeaderMap, HeaderValue};
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    fn rules(text: &str) -> Vec<Rule> {
        parse_file("t.toml", text).unwrap_or_else(|e| panic!("{e:#?}"))
    }

    fn set(text: &str, unmatched: Action) -> RuleSet {
        RuleSet::new(rules(text), unmatched).unwrap_or_else(|e| panic!("{e:#?}"))
    }

    /// An owned request, viewed as the proxy would.
    struct Req {
        method: String,
        host: String,
        path: String,
        query: Option<String>,
        headers: HeaderMap,
    }

    fn req(method: &str, host: &str, target: &str) -> Req {
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p, Some(q.to_owned())),
            None => (target, None),
        };
        Req {
            method: method.to_owned(),
            host: host.to_owned(),
            path: path.to_owned(),
            query,
            headers: HeaderMap::new(),
        }
    }

    impl Req {
        fn header(mut self, name: &'static str, value: &'static str) -> Req {
            self.headers.append(name, HeaderValue::from_static(value));
            self
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
    }

    fn decided<'a>(set: &'a RuleSet, r: &Req, body: BodyView<'_>) -> Option<&'a str> {
        match set.decide(&r.view(), body) {
            Decision::Matched(rule) => Some(&rule.name),
            Decision::Unmatched => None,
            Decision::NeedBody => Some("<need body>"),
        }
    }

    fn name(set: &RuleSet, r: &Req) -> Option<String> {
        decided(set, r, BodyView::Read(b"")).map(str::to_owned)
    }

    const MAIL: &str = r#"
[[rule]]
name = "openai"
action = "automatic"
host = ["api.openai.com"]

[[rule]]
name = "mail-send"
action = "review"
host = ["api.sendgrid.com"]
method = ["POST"]
path = ["/v3/mail/send"]
window = "2h"

[[rule]]
name = "sendgrid-reads"
action = "automatic"
host = ["api.sendgrid.com"]
method = ["GET"]

[[rule]]
name = "paste"
action = "deny"
host = ["pastebin.com", "*.pastebin.com"]
"#;

    #[test]
    fn first_matching_rule_wins_in_file_order() {
        let set = set(
            r#"
[[rule]]
name = "specific"
action = "review"
host = ["api.x.com"]
path = ["/v1/pay"]

[[rule]]
name = "broad"
action = "automatic"
host = ["api.x.com"]

[[rule]]
name = "never"
action = "deny"
host = ["api.x.com"]
path = ["/v1/pay"]
"#,
            Action::Review,
        );
        assert_eq!(
            name(&set, &req("POST", "api.x.com", "/v1/pay")).as_deref(),
            Some("specific")
        );
        assert_eq!(
            name(&set, &req("POST", "api.x.com", "/v1/other")).as_deref(),
            Some("broad")
        );
    }

    #[test]
    fn first_match_order_runs_across_files_by_file_name() {
        let dir =
            std::env::temp_dir().join(format!("airlock-matcher-order-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let write = |file: &str, text: &str| {
            if let Err(e) =
                std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(dir.join(file), text))
            {
                panic!("{file}: {e}");
            }
        };
        write(
            "50-broad.toml",
            "[[rule]]\nname = \"broad\"\naction = \"automatic\"\nhost = [\"*.x.com\"]\n",
        );
        write(
            "10-narrow.toml",
            "[[rule]]\nname = \"narrow\"\naction = \"deny\"\nhost = [\"api.x.com\"]\n",
        );
        let loaded = crate::rules::load_dir(&dir).unwrap_or_else(|e| panic!("{e:#?}"));
        let set = RuleSet::new(loaded, Action::Review).unwrap_or_else(|e| panic!("{e:#?}"));
        assert_eq!(
            name(&set, &req("GET", "api.x.com", "/")).as_deref(),
            Some("narrow")
        );
        assert_eq!(
            name(&set, &req("GET", "www.x.com", "/")).as_deref(),
            Some("broad")
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn hosts_match_without_case_or_trailing_dot() {
        let set = set(MAIL, Action::Review);
        for host in ["api.openai.com", "API.OpenAI.com", "api.openai.com."] {
            assert_eq!(
                name(&set, &req("POST", host, "/v1/chat")).as_deref(),
                Some("openai"),
                "{host}"
            );
        }
        assert_eq!(
            name(&set, &req("POST", "api.openai.com.evil.net", "/")),
            None
        );
        assert_eq!(
            name(&set, &req("GET", "eu.pastebin.com", "/")).as_deref(),
            Some("paste")
        );
        assert_eq!(
            name(&set, &req("GET", "pastebin.com", "/")).as_deref(),
            Some("paste")
        );
        assert_eq!(name(&set, &req("GET", "notpastebin.com", "/")), None);
    }

    #[test]
    fn methods_match_exactly_whatever_their_case() {
        let set = set(MAIL, Action::Review);
        assert_eq!(
            name(&set, &req("post", "api.sendgrid.com", "/v3/mail/send")).as_deref(),
            Some("mail-send")
        );
        assert_eq!(
            name(&set, &req("GET", "api.sendgrid.com", "/v3/mail/send")).as_deref(),
            Some("sendgrid-reads")
        );
        assert_eq!(
            name(&set, &req("PUT", "api.sendgrid.com", "/v3/mail/send")),
            None
        );
    }

    #[test]
    fn single_star_stays_in_a_segment_and_double_star_crosses() {
        let set = set(
            r#"
[[rule]]
name = "one-segment"
action = "review"
path = ["/v1/customers/*"]

[[rule]]
name = "any-depth"
action = "deny"
path = ["/v1/admin/**"]
"#,
            Action::Automatic,
        );
        assert_eq!(
            name(&set, &req("GET", "h", "/v1/customers/42")).as_deref(),
            Some("one-segment")
        );
        assert_eq!(name(&set, &req("GET", "h", "/v1/customers/42/notes")), None);
        assert_eq!(
            name(&set, &req("GET", "h", "/v1/admin/users/7/delete")).as_deref(),
            Some("any-depth")
        );
    }

    /// Every spelling an upstream may read as `/v3/mail/send`.
    const MAIL_SEND_SPELLINGS: [&str; 14] = [
        "/v3/mail/send",
        "/v3/mail/sen%64",
        "/v3/%6Dail/send",
        "/v3/x/../mail/send",
        "/v3/./mail/send",
        "//v3/mail/send",
        "/v3//mail/send",
        "/v3/mail/send/",
        "/v3/mail%2Fsend",
        "/v3/mail%252fsend",
        "/V3/Mail/SEND",
        "/v3;a=1/mail/send;x",
        "/v3\\mail\\send",
        "/v3/mail%5Csend",
    ];

    #[test]
    fn review_and_deny_rules_match_every_spelling_of_their_path() {
        let rules = r#"
[[rule]]
name = "mail-send"
action = "review"
host = ["api.sendgrid.com"]
method = ["POST"]
path = ["/v3/mail/send"]

[[rule]]
name = "no-deletes"
action = "deny"
host = ["api.sendgrid.com"]
path = ["/v3/Templates/*"]

[[rule]]
name = "sendgrid-rest"
action = "automatic"
host = ["api.sendgrid.com"]
path = ["/v3/**"]
"#;
        let set = set(rules, Action::Review);
        for path in MAIL_SEND_SPELLINGS {
            assert_eq!(
                name(&set, &req("POST", "api.sendgrid.com", path)).as_deref(),
                Some("mail-send"),
                "{path}"
            );
        }
        for path in [
            "/v3/templates/t1",
            "/v3//TEMPLATES/t1/",
            "/v3/templates%2Ft1",
        ] {
            assert_eq!(
                name(&set, &req("GET", "api.sendgrid.com", path)).as_deref(),
                Some("no-deletes"),
                "{path}"
            );
        }
        assert_eq!(
            name(&set, &req("GET", "api.sendgrid.com", "/v3/stats")).as_deref(),
            Some("sendgrid-rest")
        );
    }

    #[test]
    fn automatic_path_rules_match_only_a_path_sent_canonical() {
        let set = set(
            "[[rule]]\nname = \"reads\"\naction = \"automatic\"\nhost = [\"h\"]\npath = [\"/v3/**\"]\n",
            Action::Review,
        );
        assert_eq!(
            name(&set, &req("GET", "h", "/v3/stats")).as_deref(),
            Some("reads")
        );
        for path in MAIL_SEND_SPELLINGS
            .iter()
            .skip(1)
            .chain(&["/V3/stats", "/v3/stats/"])
        {
            assert_eq!(name(&set, &req("POST", "h", path)), None, "{path}");
        }
    }

    #[test]
    fn a_thousand_rules_on_one_host_prune_by_path_the_same_way() {
        // Enough candidates that decide() prunes by prefix and by the
        // combined path sets: the verdicts must not change.
        let mut text = String::new();
        for i in 0..100 {
            text.push_str(&format!(
                "[[rule]]\nname = \"r{i}\"\naction = \"review\"\nhost = [\"h\"]\npath = [\"/v{i}/Send\"]\n"
            ));
            text.push_str(&format!(
                "[[rule]]\nname = \"a{i}\"\naction = \"automatic\"\nhost = [\"h\"]\npath = [\"/v{i}/**\"]\n"
            ));
        }
        let set = set(&text, Action::Deny);
        assert_eq!(
            name(&set, &req("POST", "h", "/v77/send")).as_deref(),
            Some("r77")
        );
        assert_eq!(
            name(&set, &req("POST", "h", "/V77//SEND/")).as_deref(),
            Some("r77")
        );
        assert_eq!(
            name(&set, &req("POST", "h", "/v77/other")).as_deref(),
            Some("a77")
        );
        assert_eq!(name(&set, &req("POST", "h", "/v77//other")), None);
    }

    #[test]
    fn repeated_query_and_header_values_meet_review_on_any_and_automatic_on_all() {
        let rules = r#"
[[rule]]
name = "live-send"
action = "review"
host = ["h"]
query = { mode = "live" }

[[rule]]
name = "test-mode"
action = "automatic"
host = ["h"]
query = { mode = "test" }
headers = { "x-account" = "acct_test_*" }
"#;
        let set = set(rules, Action::Deny);
        let r = |target: &str| req("POST", "h", target);
        let acct = |t: &str| r(t).header("x-account", "acct_test_1");
        assert_eq!(
            name(&set, &acct("/?mode=test")).as_deref(),
            Some("test-mode")
        );
        // `;` is a separator to some servers: `mode=live` could be read.
        assert_eq!(
            name(&set, &acct("/?mode=test&x=1;mode=live")).as_deref(),
            Some("live-send")
        );
        assert_eq!(name(&set, &acct("/?mode=test;x=1")), None);
        for target in [
            "/?mode=test&mode=live",
            "/?mode=live&mode=test",
            "/?mode=test&Mode=live",
            "/?MODE=live&mode=test",
        ] {
            assert_eq!(
                name(&set, &acct(target)).as_deref(),
                Some("live-send"),
                "{target}"
            );
        }
        // Another value beside the one automatic names: not automatic.
        assert_eq!(name(&set, &acct("/?mode=test&mode=other")), None);
        assert_eq!(name(&set, &acct("/?Mode=test")), None);
        let two_accounts = r("/?mode=test")
            .header("x-account", "acct_test_1")
            .header("x-account", "acct_live_9");
        assert_eq!(name(&set, &two_accounts), None);
    }

    #[test]
    fn method_overrides_are_classified_too_and_the_strictest_wins() {
        let rules = r#"
[[rule]]
name = "reads"
action = "automatic"
host = ["h"]
method = ["GET"]

[[rule]]
name = "writes"
action = "review"
host = ["h"]
method = ["POST"]

[[rule]]
name = "deletes"
action = "deny"
host = ["h"]
method = ["DELETE"]
"#;
        let set = set(rules, Action::Automatic);
        let get = || req("GET", "h", "/x");
        assert_eq!(name(&set, &get()).as_deref(), Some("reads"));
        for header in [
            "x-http-method-override",
            "x-http-method",
            "x-method-override",
        ] {
            assert_eq!(
                name(&set, &get().header(header, "post")).as_deref(),
                Some("writes"),
                "{header}"
            );
            assert_eq!(
                name(&set, &get().header(header, "DELETE")).as_deref(),
                Some("deletes")
            );
        }
        assert_eq!(
            name(&set, &req("GET", "h", "/x?_method=post")).as_deref(),
            Some("writes")
        );
        assert_eq!(
            name(&set, &req("GET", "h", "/x?a=1&_HttpMethod=DELETE")).as_deref(),
            Some("deletes")
        );
        let both = get()
            .header("x-http-method-override", "POST")
            .header("x-method-override", "DELETE");
        assert_eq!(name(&set, &both).as_deref(), Some("deletes"));
        // An override to a method no rule names falls to `unmatched` (here automatic).
        assert_eq!(
            name(&set, &get().header("x-http-method", "PATCH")).as_deref(),
            Some("reads")
        );
    }

    #[test]
    fn query_conditions_need_the_parameter_and_match_any_occurrence() {
        let set = set(
            "[[rule]]\nname = \"live\"\naction = \"review\"\nquery = { mode = \"live*\" }\n",
            Action::Automatic,
        );
        assert_eq!(
            name(&set, &req("GET", "h", "/?mode=live")).as_deref(),
            Some("live")
        );
        assert_eq!(
            name(&set, &req("GET", "h", "/?mode=test&mode=live-eu")).as_deref(),
            Some("live")
        );
        assert_eq!(
            name(&set, &req("GET", "h", "/?mode=%6Cive+now")).as_deref(),
            Some("live"),
            "decoded"
        );
        assert_eq!(name(&set, &req("GET", "h", "/?mode=test")), None);
        assert_eq!(name(&set, &req("GET", "h", "/?other=live")), None);
        assert_eq!(name(&set, &req("GET", "h", "/")), None);
    }

    #[test]
    fn header_conditions_ignore_case_and_need_the_header() {
        let set = set(
            "[[rule]]\nname = \"live-key\"\naction = \"review\"\nheaders = { \"Authorization\" = \"bearer sk_live_*\" }\n",
            Action::Automatic,
        );
        let with = |value: &'static str| req("POST", "h", "/").header("authorization", value);
        assert_eq!(
            name(&set, &with("Bearer SK_LIVE_abc")).as_deref(),
            Some("live-key")
        );
        assert_eq!(name(&set, &with("Bearer sk_test_abc")), None);
        assert_eq!(name(&set, &req("POST", "h", "/")), None);
        let both = req("POST", "h", "/")
            .header("authorization", "Basic x")
            .header("authorization", "Bearer sk_live_1");
        assert_eq!(
            name(&set, &both).as_deref(),
            Some("live-key"),
            "any value may match"
        );
    }

    const JSON_RULES: &str = r#"
[[rule]]
name = "big-charge"
action = "review"
host = ["api.stripe.com"]
method = ["POST"]
json = { "/amount" = "[1-9][0-9][0-9][0-9]*", "/livemode" = "true" }

[[rule]]
name = "stripe"
action = "automatic"
host = ["api.stripe.com"]
"#;

    #[test]
    fn json_rule_asks_for_the_body_then_decides_on_it() {
        let set = set(JSON_RULES, Action::Review);
        let charge = req("POST", "api.stripe.com", "/v1/charges");
        assert_eq!(
            decided(&set, &charge, BodyView::Unread),
            Some("<need body>")
        );
        let big = br#"{"amount": 125000, "livemode": true}"#;
        let small = br#"{"amount": 12, "livemode": true}"#;
        assert_eq!(
            decided(&set, &charge, BodyView::Read(big)),
            Some("big-charge")
        );
        assert_eq!(
            decided(&set, &charge, BodyView::Read(small)),
            Some("stripe")
        );
        assert_eq!(
            decided(&set, &charge, BodyView::Read(br#"{"amount": 5000}"#)),
            Some("stripe"),
            "missing pointer"
        );
    }

    #[test]
    fn body_is_not_asked_for_when_no_json_rule_is_reached() {
        let set = set(JSON_RULES, Action::Review);
        let read = req("GET", "api.stripe.com", "/v1/charges");
        assert_eq!(decided(&set, &read, BodyView::Unread), Some("stripe"));
        assert_eq!(
            decided(&set, &req("POST", "other.com", "/"), BodyView::Unread),
            None
        );
    }

    #[test]
    fn a_body_with_more_than_one_reading_meets_review_json_conditions() {
        let set = set(JSON_RULES, Action::Review);
        let charge = req("POST", "api.stripe.com", "/v1/charges");
        for body in [
            &b"amount=125000"[..],
            b"",
            br#"{"amount": 12, "livemode": true} {"amount": 9999}"#,
            br#"{"amount": 12, "amount": 9999, "livemode": true}"#,
            br#"{"amount": 12, "Amount": 9999, "livemode": true}"#,
        ] {
            assert_eq!(
                decided(&set, &charge, BodyView::Read(body)),
                Some("big-charge"),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        assert_eq!(
            decided(&set, &charge, BodyView::Undecodable),
            Some("big-charge")
        );
    }

    #[test]
    fn a_body_with_more_than_one_reading_never_meets_automatic_json_conditions() {
        let set = set(
            r#"
[[rule]]
name = "draft"
action = "automatic"
host = ["h"]
json = { "/status" = "created" }
"#,
            Action::Review,
        );
        let r = req("POST", "h", "/envelopes").header("content-type", "application/json");
        assert_eq!(
            decided(&set, &r, BodyView::Read(br#"{"status":"created"}"#)),
            Some("draft")
        );
        // The same JSON, not declared as JSON: a server may read it as a form.
        for content_type in ["application/x-www-form-urlencoded", "text/plain"] {
            let form = req("POST", "h", "/envelopes").header("content-type", content_type);
            assert_eq!(
                decided(&set, &form, BodyView::Read(br#"{"status":"created"}"#)),
                None
            );
        }
        let untyped = req("POST", "h", "/envelopes");
        assert_eq!(
            decided(&set, &untyped, BodyView::Read(br#"{"status":"created"}"#)),
            None
        );
        let folded = "{\"status\":\"created\",\"\u{17f}tatus\":\"sent\"}";
        assert_eq!(decided(&set, &r, BodyView::Read(folded.as_bytes())), None);
        for body in [
            &br#"{"status":"created","Status":"sent"}"#[..],
            br#"{"status":"sent","status":"created"}"#,
            br#"{"status":"created"}x"#,
            b"status=created",
        ] {
            assert_eq!(
                decided(&set, &r, BodyView::Read(body)),
                None,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        assert_eq!(decided(&set, &r, BodyView::Undecodable), None);
    }

    #[test]
    fn json_values_match_as_their_text() {
        let set = set(
            r#"
[[rule]]
name = "null"
action = "deny"
json = { "/a" = "null" }
[[rule]]
name = "array"
action = "deny"
json = { "/a" = "[[]1,2[]]" }
[[rule]]
name = "object"
action = "deny"
json = { "/a" = "\\{\"k\":*\\}" }
[[rule]]
name = "string"
action = "deny"
json = { "/a" = "12" }
"#,
            Action::Automatic,
        );
        let r = req("POST", "h", "/");
        let on = |body: &'static [u8]| decided(&set, &r, BodyView::Read(body)).map(str::to_owned);
        assert_eq!(on(br#"{"a": null}"#).as_deref(), Some("null"));
        assert_eq!(on(br#"{"a": [1, 2]}"#).as_deref(), Some("array"));
        assert_eq!(on(br#"{"a": {"k": 1}}"#).as_deref(), Some("object"));
        assert_eq!(on(br#"{"a": "12"}"#).as_deref(), Some("string"));
        assert_eq!(
            on(br#"{"a": 12}"#).as_deref(),
            Some("string"),
            "numbers match as their text"
        );
        assert_eq!(on(br#"{"b": 12}"#), None);
    }

    fn connect(set: &RuleSet, host: &str) -> String {
        match set.decide_connect(host) {
            ConnectDecision::Tunnel(Some(r)) => format!("tunnel by {}", r.name),
            ConnectDecision::Tunnel(None) => "tunnel by unmatched".to_owned(),
            ConnectDecision::Refuse(Some(r)) => format!("refuse by {}", r.name),
            ConnectDecision::Refuse(None) => "refuse by unmatched".to_owned(),
            ConnectDecision::Intercept => "intercept".to_owned(),
        }
    }

    #[test]
    fn connect_is_decided_by_the_first_rule_for_the_host() {
        let text = format!(
            "{MAIL}\n[[rule]]\nname = \"review-all\"\naction = \"review\"\nhost = [\"crm.example.com\"]\n"
        );
        for unmatched in [Action::Automatic, Action::Review, Action::Deny] {
            let set = set(&text, unmatched);
            assert_eq!(connect(&set, "api.openai.com"), "tunnel by openai");
            assert_eq!(connect(&set, "PASTEBIN.com"), "refuse by paste");
            assert_eq!(
                connect(&set, "api.sendgrid.com"),
                "intercept",
                "conditions beyond host"
            );
            assert_eq!(
                connect(&set, "crm.example.com"),
                "intercept",
                "host-only review"
            );
        }
        assert_eq!(
            connect(&set(&text, Action::Automatic), "else.com"),
            "tunnel by unmatched"
        );
        assert_eq!(
            connect(&set(&text, Action::Deny), "else.com"),
            "refuse by unmatched"
        );
        assert_eq!(
            connect(&set(&text, Action::Review), "else.com"),
            "intercept"
        );
    }

    #[test]
    fn a_rule_without_host_applies_at_connect_to_every_host() {
        let set = set(
            "[[rule]]\nname = \"posts\"\naction = \"review\"\nmethod = [\"POST\"]\n\n\
             [[rule]]\nname = \"openai\"\naction = \"automatic\"\nhost = [\"api.openai.com\"]\n",
            Action::Automatic,
        );
        assert_eq!(connect(&set, "api.openai.com"), "intercept");
        let blanket = self::set(
            "[[rule]]\nname = \"all\"\naction = \"deny\"\n",
            Action::Automatic,
        );
        assert_eq!(connect(&blanket, "anything.org"), "refuse by all");
    }

    #[test]
    fn duplicate_rule_name_across_files_names_the_first() {
        let mut all = rules("[[rule]]\nname = \"dup\"\naction = \"deny\"\n");
        all.extend(
            parse_file(
                "b.toml",
                "\n\n[[rule]]\nname = \"dup\"\naction = \"review\"\n",
            )
            .unwrap_or_default(),
        );
        let errors = RuleSet::new(all, Action::Review).err().unwrap_or_default();
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            ["b.toml:3:1: duplicate rule name \"dup\": first defined at t.toml:1:1"]
        );
    }

    #[test]
    fn invalid_hand_built_rule_is_refused_at_its_location() {
        let mut rule = rules("[[rule]]\nname = \"a\"\naction = \"deny\"\n").remove(0);
        rule.paths = vec!["/v1/[".to_owned()];
        let errors = RuleSet::new(vec![rule], Action::Review)
            .err()
            .unwrap_or_default();
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0]
                .to_string()
                .starts_with("t.toml:1:1: rule \"a\": invalid path glob"),
            "{}",
            errors[0]
        );
    }

    #[test]
    fn explanation_says_why_each_rule_was_passed_over() {
        let set = set(MAIL, Action::Review);
        let r = req("POST", "api.sendgrid.com", "/v3/mail/send");
        let explained = set.explain(&r.view(), BodyView::Unread);
        assert_eq!(explained.rule(), Some("mail-send"));
        assert_eq!(explained.action(), Action::Review);
        assert_eq!(explained.at_connect(), "intercepted");
        let text = explained.to_string();
        for line in [
            "request: POST api.sendgrid.com/v3/mail/send",
            "skipped 1 rule for another host",
            "matched: \"mail-send\" (t.toml:7:1)",
            "path \"/v3/mail/send\" matches [\"/v3/mail/send\"]",
            "action: review (\"mail-send\")",
            "window: 2h",
            "at CONNECT: api.sendgrid.com is intercepted: the first rule for this host, \"mail-send\", has conditions beyond host (method, path)",
        ] {
            assert!(text.contains(line), "missing {line:?} in:\n{text}");
        }
    }

    #[test]
    fn explanation_of_an_unmatched_request() {
        let set = set(MAIL, Action::Review);
        let r = req("POST", "api.sendgrid.com", "/v3/templates");
        let text = set.explain(&r.view(), BodyView::Unread).to_string();
        for line in [
            "passed over \"mail-send\" (t.toml:7:1): path \"/v3/templates\" does not match [\"/v3/mail/send\"]",
            "passed over \"sendgrid-reads\" (t.toml:15:1): method \"POST\" is not one of [\"GET\"]",
            "matched: no rule; unmatched = \"review\" applies",
            "window: the default",
            "skipped 2 rules for other hosts",
        ] {
            assert!(text.contains(line), "missing {line:?} in:\n{text}");
        }
        assert!(
            !text.contains("openai") && !text.contains("paste"),
            "{text}"
        );
        let tunnelled = set.explain(&req("GET", "api.openai.com", "/").view(), BodyView::Unread);
        assert!(tunnelled.to_string().contains(
            "at CONNECT: api.openai.com is tunnelled blind: rule \"openai\" is automatic and has no condition beyond host"
        ), "{tunnelled}");
    }

    #[test]
    fn explanation_of_json_conditions_with_and_without_body() {
        let set = set(JSON_RULES, Action::Review);
        let r = req("POST", "api.stripe.com", "/v1/charges");
        let unread = set.explain(&r.view(), BodyView::Unread);
        assert!(unread.body_unread());
        assert!(
            unread.to_string().contains("needs the request body"),
            "{unread}"
        );
        let small = set.explain(
            &r.view(),
            BodyView::Read(br#"{"amount": 12, "livemode": true}"#),
        );
        assert!(
            small
                .to_string()
                .contains("json \"/amount\" = \"12\" does not match"),
            "{small}"
        );
        let junk = set.explain(&r.view(), BodyView::Read(b"<xml/>"));
        assert!(
            junk.to_string()
                .contains("is not exactly one JSON value (expected value at line 1 column 1), so the json conditions of a review rule hold"),
            "{junk}"
        );
        assert_eq!(junk.rule(), Some("big-charge"));
    }

    const MCP_RULES: &str = r#"
[[rule]]
name = "mcp-send"
action = "review"
host = ["mcp.example.com"]
mcp_tool = ["send_*", "delete_*"]
json = { "/params/arguments/to" = "*@*" }

[[rule]]
name = "mcp-reads"
action = "automatic"
host = ["mcp.example.com"]
mcp_tool = ["get_*", "list_*"]

[[rule]]
name = "mcp-denied"
action = "deny"
host = ["mcp.example.com"]
mcp_tool = ["transfer_funds"]

[[rule]]
name = "mcp-plumbing"
action = "automatic"
host = ["mcp.example.com"]
"#;

    /// MCP_RULES behind an automatic `ping` rule reading `/method`.
    fn set_with_plumbing() -> RuleSet {
        set(
            &format!(
                "[[rule]]\nname = \"ping\"\naction = \"automatic\"\nhost = [\"mcp.example.com\"]\njson = {{ \"/method\" = \"ping\" }}\n{MCP_RULES}"
            ),
            Action::Review,
        )
    }

    fn call(name: &str, args: &str) -> Vec<u8> {
        format!(r#"{{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{{"name":"{name}","arguments":{args}}}}}"#).into_bytes()
    }

    #[test]
    fn mcp_tool_rules_read_the_called_tool() {
        let set = set(MCP_RULES, Action::Review);
        let post =
            req("POST", "mcp.example.com", "/mcp").header("content-type", "application/json");
        assert_eq!(decided(&set, &post, BodyView::Unread), Some("<need body>"));
        let to = r#"{"to":"ana@client.example"}"#;
        for (body, rule) in [
            (call("send_email", to), "mcp-send"),
            (call("send_email", "{}"), "mcp-plumbing"),
            (call("get_me", "{}"), "mcp-reads"),
            (call("transfer_funds", "{}"), "mcp-denied"),
            (call("other", "{}"), "mcp-plumbing"),
            (
                br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#.to_vec(),
                "mcp-plumbing",
            ),
            (
                br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#.to_vec(),
                "mcp-plumbing",
            ),
            // Another reading of the same call: review and deny globs fold case.
            (call("Send_Email", to), "mcp-send"),
            (call("TRANSFER_FUNDS", "{}"), "mcp-denied"),
        ] {
            assert_eq!(
                decided(&set, &post, BodyView::Read(&body)),
                Some(rule),
                "{}",
                String::from_utf8_lossy(&body)
            );
        }
        // The event stream and the end of a session carry no body.
        let get = req("GET", "mcp.example.com", "/mcp");
        assert_eq!(
            decided(&set, &get, BodyView::Read(b"")),
            Some("mcp-plumbing")
        );
        let delete = req("DELETE", "mcp.example.com", "/mcp");
        assert_eq!(
            decided(&set, &delete, BodyView::Read(b"")),
            Some("mcp-plumbing")
        );
    }

    #[test]
    fn every_reading_of_a_call_to_a_reviewed_tool_is_held() {
        let set = set(MCP_RULES, Action::Review);
        let post =
            req("POST", "mcp.example.com", "/mcp").header("content-type", "application/json");
        let to = r#"{"to":"ana@client.example"}"#;
        let send = String::from_utf8(call("send_email", to)).unwrap();
        let get = String::from_utf8(call("get_me", "{}")).unwrap();
        for body in [
            // A batch: any call in it.
            format!("[{get},{send}]"),
            // The method in another case; no "jsonrpc"; no id.
            send.replace("tools/call", "TOOLS/CALL"),
            send.replace(r#""jsonrpc":"2.0","#, ""),
            send.replace(r#""id":7,"#, ""),
            // Two names: a server may take either.
            get.replace(
                r#""name":"get_me""#,
                r#""name":"get_me","name":"send_email""#,
            ),
            // Trailing data, or not JSON at all.
            format!("{get} {send}"),
            "name=send_email".to_owned(),
        ] {
            assert_eq!(
                decided(&set, &post, BodyView::Read(body.as_bytes())),
                Some("mcp-send"),
                "{body}"
            );
        }
        // A batch of reads only is not one call: an automatic mcp_tool rule
        // does not pass it.
        let reads = format!("[{get},{get}]");
        assert_eq!(
            decided(&set, &post, BodyView::Read(reads.as_bytes())),
            Some("mcp-plumbing")
        );
        // Mcp-Name says what a gateway may route by: a reviewed tool named
        // there is held, and a read it contradicts is not passed.
        let routed = req("POST", "mcp.example.com", "/mcp")
            .header("content-type", "application/json")
            .header("mcp-name", "send_email");
        assert_eq!(
            decided(&set, &routed, BodyView::Read(get.as_bytes())),
            Some("mcp-plumbing"),
            "json conditions still read the body: no recipient there"
        );
        let routed_to = req("POST", "mcp.example.com", "/mcp")
            .header("content-type", "application/json")
            .header("mcp-name", "send_email");
        let body = get.replace(
            r#""arguments":{}"#,
            r#""arguments":{"to":"ana@client.example"}"#,
        );
        assert_eq!(
            decided(&set, &routed_to, BodyView::Read(body.as_bytes())),
            Some("mcp-send")
        );
        let named = req("POST", "mcp.example.com", "/mcp")
            .header("content-type", "application/json")
            .header("mcp-name", "get_me");
        assert_eq!(
            decided(&set, &named, BodyView::Read(get.as_bytes())),
            Some("mcp-reads")
        );
        // A json rule (the protocol's plumbing, say) passes no body whose
        // Mcp-Method or Mcp-Name header says otherwise.
        let plumbing = set_with_plumbing();
        let ping = r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":{"name":"send_email","arguments":{"to":"a@b"}}}"#;
        let plain =
            req("POST", "mcp.example.com", "/mcp").header("content-type", "application/json");
        assert_eq!(
            decided(&plumbing, &plain, BodyView::Read(ping.as_bytes())),
            Some("ping")
        );
        let lying = req("POST", "mcp.example.com", "/mcp")
            .header("content-type", "application/json")
            .header("mcp-method", "tools/call")
            .header("mcp-name", "send_email");
        assert_eq!(
            decided(&plumbing, &lying, BodyView::Read(ping.as_bytes())),
            Some("mcp-send")
        );
        let honest = req("POST", "mcp.example.com", "/mcp")
            .header("content-type", "application/json")
            .header("mcp-method", "ping");
        assert_eq!(
            decided(&plumbing, &honest, BodyView::Read(ping.as_bytes())),
            Some("ping")
        );
        // A key alone in another case is read as a case-insensitive
        // parser reads it, by review and deny rules only.
        let upper = call("send_email", r#"{"TO":"ana@client.example"}"#);
        assert_eq!(
            decided(&set, &post, BodyView::Read(&upper)),
            Some("mcp-send")
        );
        // Without a JSON Content-Type an automatic rule does not read it.
        let plain = req("POST", "mcp.example.com", "/mcp");
        assert_eq!(
            decided(&set, &plain, BodyView::Read(get.as_bytes())),
            Some("mcp-plumbing")
        );
        assert_eq!(
            decided(&set, &plain, BodyView::Read(send.as_bytes())),
            Some("mcp-send")
        );
    }

    #[test]
    fn explanation_of_mcp_tool_conditions() {
        let set = set(MCP_RULES, Action::Review);
        let post =
            req("POST", "mcp.example.com", "/mcp").header("content-type", "application/json");
        let body = call("get_me", "{}");
        let e = set.explain(&post.view(), BodyView::Read(&body)).to_string();
        assert!(
            e.contains(r#"MCP tool ["get_me"] does not match mcp_tool ["send_*", "delete_*"]"#),
            "{e}"
        );
        assert!(
            e.contains(r#"MCP tools/call of "get_me" matches mcp_tool ["get_*", "list_*"]"#),
            "{e}"
        );
        let table = set.classification_table();
        assert!(table.contains("mcp:send_*,delete_*"), "{table}");
    }

    #[test]
    fn classification_table_lists_every_rule_and_the_fallback() {
        let set = set(&format!("{MAIL}{JSON_RULES}"), Action::Review);
        let table = set.classification_table();
        let expected = "\
RULE            ACTION     AT       MATCHES                                      WINDOW
openai          automatic  connect  api.openai.com                               -
mail-send       review     request  api.sendgrid.com POST /v3/mail/send          2h
sendgrid-reads  automatic  request  api.sendgrid.com GET                         -
paste           deny       connect  pastebin.com,*.pastebin.com                  -
big-charge      review     request  api.stripe.com POST +json:/amount,/livemode  -
stripe          automatic  connect  api.stripe.com                               -
(unmatched)     review     request  anything else                                -
";
        assert_eq!(table, expected, "\n{table}");
    }

    /// The meaning of the rules without any index: each rule in turn, each
    /// glob compiled on its own.
    /// The path semantics as written in SPEC, glob by glob.
    fn path_holds(rule: &Rule, raw: &str) -> bool {
        let canonical = crate::canonical::path::canonical(raw);
        let glob_holds = |pattern: &str, path: &str| {
            path_glob(pattern).is_ok_and(|g| g.compile_matcher().is_match(path))
        };
        rule.paths.is_empty()
            || if rule.action == Action::Automatic {
                canonical == raw && rule.paths.iter().any(|g| glob_holds(g, raw))
            } else {
                let folded = canonical.to_ascii_lowercase();
                rule.paths
                    .iter()
                    .any(|g| glob_holds(&g.to_ascii_lowercase(), &folded))
            }
    }

    fn linear_scan(list: &[Rule], r: &Req) -> Option<String> {
        let host = r.host.to_ascii_lowercase();
        let any = |globs: &[String], make: fn(&str) -> Result<Glob, globset::Error>, s: &str| {
            globs.is_empty()
                || globs
                    .iter()
                    .any(|g| make(g).is_ok_and(|g| g.compile_matcher().is_match(s)))
        };
        list.iter()
            .find(|rule| {
                any(&rule.hosts, host_glob, &host)
                    && method_matches(rule, &r.method)
                    && path_holds(rule, &r.path)
                    && rule.query.iter().all(|(k, v)| {
                        let glob = value_glob(v, false).map(|g| g.compile_matcher());
                        r.query.as_deref().is_some_and(|q| {
                            form_urlencoded::parse(q.as_bytes()).any(|(qk, qv)| {
                                qk == k.as_str()
                                    && glob.as_ref().is_ok_and(|g| g.is_match(qv.as_ref()))
                            })
                        })
                    })
            })
            .map(|rule| rule.name.clone())
    }

    #[test]
    fn thousand_rules_on_one_host_agree_with_a_linear_scan() {
        // Rules told apart by an early literal prefix, then rules sharing
        // `/api/` that only the combined path set can tell apart.
        let mut text = String::new();
        for i in 0..400 {
            let path = if i < 200 {
                format!("/p/{i}/*")
            } else {
                format!("/api/*/thing-{i}")
            };
            text.push_str(&format!(
                "[[rule]]\nname = \"r{i}\"\naction = \"review\"\nhost = [\"one.example.com\"]\npath = [\"{path}\"]\n"
            ));
        }
        text.push_str("[[rule]]\nname = \"rest\"\naction = \"automatic\"\nhost = [\"one.example.com\"]\npath = [\"**/tail\"]\n");
        let list = rules(&text);
        let set = RuleSet::new(list.clone(), Action::Review).unwrap_or_else(|e| panic!("{e:#?}"));
        for target in [
            "/p/0/x",
            "/p/7/x",
            "/p/199/x",
            "/p/200/x",
            "/api/v/thing-200",
            "/api/v/thing-399",
            "/api/v/w/thing-399",
            "/api/v/thing-4",
            "/x/tail",
            "/p/150/tail",
            "/api/x/tail",
            "/",
        ] {
            let r = req("GET", "one.example.com", target);
            assert_eq!(name(&set, &r), linear_scan(&list, &r), "{target}");
        }
        assert_eq!(
            name(&set, &req("GET", "one.example.com", "/api/v/thing-399")).as_deref(),
            Some("r399")
        );
    }

    #[test]
    fn double_star_suffix_needs_something_below_the_directory() {
        // The prefix index relies on `/v1/**` matching only below `/v1/`.
        let glob = path_glob("/v1/**").map(|g| g.compile_matcher());
        assert!(glob.as_ref().is_ok_and(|g| g.is_match("/v1/a/b")));
        assert!(glob.as_ref().is_ok_and(|g| !g.is_match("/v1")));
        let middle = path_glob("/a/**/b").map(|g| g.compile_matcher());
        assert!(
            middle
                .as_ref()
                .is_ok_and(|g| g.is_match("/a/b") && g.is_match("/a/x/y/b"))
        );
    }

    /// Builds many rules sharing hosts, so both the few-candidate path and the
    /// pruning path are exercised, and compares with a plain linear scan.
    #[test]
    fn indexed_decisions_agree_with_a_linear_scan() {
        let mut text = String::new();
        for i in 0..300 {
            let host = match i % 5 {
                0 => "shared.example.com".to_owned(),
                1 => format!("h{i}.example.com"),
                2 => "*.wild.example.com".to_owned(),
                _ => format!("{{a,b}}{}.example.com", i % 7),
            };
            let mut rule =
                format!("[[rule]]\nname = \"r{i}\"\naction = \"review\"\nhost = [\"{host}\"]\n");
            if i % 3 != 0 {
                rule.push_str(&format!("path = [\"/v{}/*/items/**\", \"/p{i}\"]\n", i % 4));
            }
            if i % 4 == 1 {
                rule.push_str("method = [\"POST\", \"PUT\"]\n");
            }
            if i % 11 == 0 {
                rule.push_str(&format!("query = {{ k = \"{}*\" }}\n", i % 3));
            }
            text.push_str(&rule);
        }
        let list = rules(&text);
        let set = RuleSet::new(list.clone(), Action::Review).unwrap_or_else(|e| panic!("{e:#?}"));
        let linear = |r: &Req| linear_scan(&list, r);
        let mut checked = 0;
        for host in [
            "shared.example.com",
            "h16.example.com",
            "x.wild.example.com",
            "a3.example.com",
            "B5.example.com",
            "none.org",
        ] {
            for method in ["GET", "POST"] {
                for target in [
                    "/v1/x/items/a/b",
                    "/v2/y/items/z",
                    "/v3/q/items/",
                    "/p298",
                    "/p16?k=1",
                    "/p33?k=0x",
                    "/nothing",
                ] {
                    let r = req(method, host, target);
                    assert_eq!(name(&set, &r), linear(&r), "{method} {host}{target}");
                    assert_eq!(
                        set.explain(&r.view(), BodyView::Unread)
                            .rule()
                            .map(str::to_owned),
                        linear(&r)
                    );
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, 84);
    }

    #[test]
    fn empty_rule_set_applies_unmatched_everywhere() {
        let set = RuleSet::new(Vec::new(), Action::Deny).unwrap_or_else(|e| panic!("{e:#?}"));
        assert_eq!(name(&set, &req("GET", "a.com", "/")), None);
        assert_eq!(connect(&set, "a.com"), "refuse by unmatched");
        assert!(set.classification_table().contains("(unmatched)  deny"));
    }

    #[test]
    fn rule_set_is_shareable_across_threads() {
        fn shareable<T: Send + Sync + 'static>() {}
        shareable::<RuleSet>();
        let set = set(MAIL, Action::Review);
        assert_eq!(set.rule("paste").map(|r| r.action), Some(Action::Deny));
        assert_eq!(set.rules().len(), 4);
        assert_eq!(set.unmatched(), Action::Review);
    }

    /// Counts this thread's heap allocations, to hold the hot path to its
    /// promise of allocating nothing.
    struct Counting;

    thread_local! {
        static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
    }

    // SAFETY: defers every operation to `System`; only counts.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
            // SAFETY: same contract as the caller's.
            unsafe { System.alloc(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: same contract as the caller's.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    #[global_allocator]
    static COUNTING: Counting = Counting;

    #[test]
    fn ordinary_decisions_allocate_nothing_once_warm() {
        let mut text = String::from(MAIL);
        for i in 0..200 {
            text.push_str(&format!(
                "[[rule]]\nname = \"r{i}\"\naction = \"review\"\nhost = [\"*.example-{i}.com\"]\npath = [\"/v1/*/x\"]\n"
            ));
        }
        let set = set(&text, Action::Review);
        let hit = req("POST", "api.sendgrid.com", "/v3/mail/send");
        let wild = req("GET", "a.example-150.com", "/v1/q/x");
        let miss = req("GET", "nowhere.org", "/");
        let run = || {
            for r in [&hit, &wild, &miss] {
                let _ = set.decide(&r.view(), BodyView::Unread);
                let _ = set.decide_connect(&r.host);
            }
        };
        run();
        let before = ALLOCATIONS.with(Cell::get);
        for _ in 0..10 {
            run();
        }
        assert_eq!(ALLOCATIONS.with(Cell::get) - before, 0);
    }
}

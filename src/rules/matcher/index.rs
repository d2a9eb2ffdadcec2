//! The indexes that keep a decision fast: each field with many patterns
//! (host, path) compiled once into a combined glob set mapped back to its
//! rules, literal path prefixes for cheap pruning, rule lists as bitsets,
//! and per-thread scratch buffers so deciding allocates nothing once warm.
//! This module never decides: it only narrows the candidates the matcher
//! then checks in rule order, and never rules out a rule that could match.

use std::cell::RefCell;
use std::collections::HashMap;

use globset::{Candidate, Glob, GlobSet, GlobSetBuilder};

use super::path_glob;
use crate::rules::{Action, Location, Rule, RuleError};

/// One field's patterns over all rules, each distinct pattern compiled once.
pub(super) struct FieldIndex {
    pub(super) set: GlobSet,
    /// For each pattern of `set`, the rules using it.
    rules_of: Vec<RuleList>,
    /// Rules without this condition: they pass it whatever the request.
    pub(super) unconditional: Vec<u64>,
    /// The first of those, so CONNECT needs no bitset.
    first_unconditional: Option<usize>,
}

impl FieldIndex {
    pub(super) fn build(
        rules: &[Rule],
        words: usize,
        patterns_of: impl Fn(&Rule) -> &[String],
        compile: impl Fn(&str) -> Result<Glob, globset::Error>,
        what: &str,
        errors: &mut Vec<RuleError>,
    ) -> FieldIndex {
        let mut builder = GlobSetBuilder::new();
        let mut slot_of: HashMap<&str, usize> = HashMap::new();
        let mut rules_of: Vec<RuleList> = Vec::new();
        let mut unconditional = vec![0; words];
        let mut first_unconditional = None;
        for (i, rule) in rules.iter().enumerate() {
            let patterns = patterns_of(rule);
            if patterns.is_empty() {
                set_bit(&mut unconditional, i);
                first_unconditional.get_or_insert(i);
            }
            for pattern in patterns {
                if let Some(&slot) = slot_of.get(pattern.as_str()) {
                    // A rule may repeat a pattern; list it once.
                    if let Some(list) = rules_of.get_mut(slot) {
                        list.push(i);
                    }
                    continue;
                }
                match compile(pattern) {
                    Ok(glob) => {
                        builder.add(glob);
                        slot_of.insert(pattern, rules_of.len());
                        rules_of.push(RuleList::new(i));
                    }
                    Err(e) => errors.push(compile_error(rule, what, pattern, &e)),
                }
            }
        }
        let set = builder.build().unwrap_or_else(|e| {
            errors.push(RuleError {
                location: rules.first().map_or_else(whole_set, |r| r.location.clone()),
                message: format!("cannot compile the {what} globs: {e}"),
            });
            GlobSet::empty()
        });
        for list in &mut rules_of {
            list.seal(words);
        }
        FieldIndex {
            set,
            rules_of,
            unconditional,
            first_unconditional,
        }
    }

    /// Sets `into` to the rules whose condition on this field holds.
    pub(super) fn fill(&self, candidate: &Candidate<'_>, hits: &mut Vec<usize>, into: &mut [u64]) {
        into.copy_from_slice(&self.unconditional);
        self.set.matches_candidate_into(candidate, hits);
        for &pattern in hits.iter() {
            if let Some(list) = self.rules_of.get(pattern) {
                list.add_to(into);
            }
        }
    }

    /// The first rule whose condition on this field holds, if any.
    pub(super) fn first(&self, candidate: &Candidate<'_>, hits: &mut Vec<usize>) -> Option<usize> {
        self.set.matches_candidate_into(candidate, hits);
        hits.iter()
            .filter_map(|&pattern| self.rules_of.get(pattern)?.first())
            .chain(self.first_unconditional)
            .min()
    }
}

/// A cheap, necessary (not sufficient) path condition: a path glob can only
/// match paths that start with its literal prefix. Prefixes are cut back to
/// their last `/`, so a request path is looked up once per `/` it contains.
pub(super) struct PathPrefixes {
    by_prefix: HashMap<Box<str>, RuleList>,
    /// Rules without a path condition, or with a glob that has no literal
    /// prefix (`**/send`): the prefixes cannot rule them out.
    anywhere: Vec<u64>,
}

impl PathPrefixes {
    /// Over the rules `covers` selects (their patterns lower-cased when
    /// `fold`); every other rule is `anywhere`, so that this index never
    /// rules out a rule it does not cover.
    pub(super) fn build(
        rules: &[Rule],
        words: usize,
        covers: impl Fn(&Rule) -> bool,
        fold: bool,
    ) -> PathPrefixes {
        let mut by_prefix: HashMap<Box<str>, RuleList> = HashMap::new();
        let mut anywhere = vec![0; words];
        for (i, rule) in rules.iter().enumerate() {
            if rule.paths.is_empty() || !covers(rule) {
                set_bit(&mut anywhere, i);
                continue;
            }
            for pattern in &rule.paths {
                let literal = pattern
                    .find(['*', '?', '[', '{', '\\'])
                    .map_or(pattern.as_str(), |meta| &pattern[..meta]);
                match literal.rfind('/') {
                    Some(slash) => {
                        let prefix = &literal[..=slash];
                        let prefix: Box<str> = if fold {
                            prefix.to_ascii_lowercase().into()
                        } else {
                            prefix.into()
                        };
                        by_prefix
                            .entry(prefix)
                            .or_insert_with(|| RuleList::new(i))
                            .push(i);
                    }
                    None => set_bit(&mut anywhere, i),
                }
            }
        }
        for list in by_prefix.values_mut() {
            list.seal(words);
        }
        PathPrefixes {
            by_prefix,
            anywhere,
        }
    }

    /// Sets `into` to the rules whose path condition may hold for `path`
    /// (`None`: for no path, so only the rules it cannot rule out).
    pub(super) fn fill(&self, path: Option<&str>, into: &mut [u64]) {
        into.copy_from_slice(&self.anywhere);
        let Some(path) = path else {
            return;
        };
        for (at, byte) in path.bytes().enumerate() {
            if byte != b'/' {
                continue;
            }
            if let Some(rules) = path.get(..=at).and_then(|p| self.by_prefix.get(p)) {
                rules.add_to(into);
            }
        }
    }
}

/// How far the candidates have been pruned by path.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum PathPruning {
    None,
    /// By literal prefix: each survivor still checks its own path globs.
    Prefixes,
    /// By the combined path set: survivors' paths are known to match.
    Exact,
}

/// The path conditions of one kind of rule (review and deny, or
/// automatic): the combined glob set and the literal prefixes. Rules of the
/// other kind pass both, so the two indexes are combined with AND.
pub(super) struct PathIndex {
    pub(super) globs: FieldIndex,
    pub(super) prefixes: PathPrefixes,
}

impl PathIndex {
    pub(super) fn build(
        rules: &[Rule],
        words: usize,
        automatic: bool,
        errors: &mut Vec<RuleError>,
    ) -> PathIndex {
        let covers = move |r: &Rule| (r.action == Action::Automatic) == automatic;
        let none: &[String] = &[];
        let globs = FieldIndex::build(
            rules,
            words,
            |r| if covers(r) { &r.paths } else { none },
            |p| rule_path_glob(p, !automatic),
            "path",
            errors,
        );
        PathIndex {
            globs,
            prefixes: PathPrefixes::build(rules, words, covers, !automatic),
        }
    }
}

/// A rule's path glob: lower-cased (`fold`) for review and deny rules, which
/// match the lower-cased canonical path.
pub(super) fn rule_path_glob(pattern: &str, fold: bool) -> Result<Glob, globset::Error> {
    if fold {
        path_glob(&pattern.to_ascii_lowercase())
    } else {
        path_glob(pattern)
    }
}

/// The rules sharing one pattern, ascending. A long list is also kept as a
/// bitset: a host shared by a thousand rules is then a few word ORs rather
/// than a thousand bit sets.
pub(super) struct RuleList {
    rules: Vec<usize>,
    dense: Option<Vec<u64>>,
}

impl RuleList {
    pub(super) fn new(first: usize) -> RuleList {
        RuleList {
            rules: vec![first],
            dense: None,
        }
    }

    /// Rules arrive in order; a rule repeating a pattern is listed once.
    pub(super) fn push(&mut self, rule: usize) {
        if self.rules.last() != Some(&rule) {
            self.rules.push(rule);
        }
    }

    pub(super) fn seal(&mut self, words: usize) {
        if self.rules.len() > words {
            let mut bits = vec![0; words];
            for &rule in &self.rules {
                set_bit(&mut bits, rule);
            }
            self.dense = Some(bits);
        }
    }

    pub(super) fn add_to(&self, into: &mut [u64]) {
        match &self.dense {
            Some(bits) => {
                for (word, b) in into.iter_mut().zip(bits) {
                    *word |= *b;
                }
            }
            None => {
                for &rule in &self.rules {
                    set_bit(into, rule);
                }
            }
        }
    }

    pub(super) fn first(&self) -> Option<usize> {
        self.rules.first().copied()
    }
}

pub(super) fn whole_set() -> Location {
    Location {
        file: "(rules)".to_owned(),
        line: 0,
        column: 0,
    }
}

pub(super) fn compile_error(
    rule: &Rule,
    what: &str,
    pattern: &str,
    e: &globset::Error,
) -> RuleError {
    RuleError {
        location: rule.location.clone(),
        message: format!(
            "rule {:?}: invalid {what} glob {pattern:?}: {}",
            rule.name,
            e.kind()
        ),
    }
}

pub(super) fn set_bit(bits: &mut [u64], i: usize) {
    if let Some(word) = bits.get_mut(i / 64) {
        *word |= 1 << (i % 64);
    }
}

pub(super) fn has_bit(bits: &[u64], i: usize) -> bool {
    bits.get(i / 64)
        .is_some_and(|word| word >> (i % 64) & 1 == 1)
}

/// Per-thread buffers reused across requests so that deciding allocates
/// nothing once warm.
#[derive(Default)]
pub(super) struct Scratch {
    pub(super) hits: Vec<usize>,
    pub(super) candidates: Vec<u64>,
    pub(super) paths: Vec<u64>,
    /// The automatic rules' half of a path pruning, ANDed into `paths`.
    pub(super) automatic_paths: Vec<u64>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

pub(super) fn with_scratch<R>(words: usize, f: impl FnOnce(&mut Scratch) -> R) -> R {
    let prepare = |s: &mut Scratch| {
        s.candidates.resize(words, 0);
        s.paths.resize(words, 0);
        s.automatic_paths.resize(words, 0);
    };
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut scratch) => {
            prepare(&mut scratch);
            f(&mut scratch)
        }
        // Only reachable if a caller re-entered from inside a decision;
        // correctness over speed then.
        Err(_) => {
            let mut scratch = Scratch::default();
            prepare(&mut scratch);
            f(&mut scratch)
        }
    })
}

//! A request's host and path as rules match them: ASCII lower case on the
//! stack, and the canonical path with whether it was sent that way, which
//! decides how review and deny globs (every spelling, any case) and
//! automatic globs (the canonical spelling only) see it. It must never
//! allocate for an ordinary, canonical path.

use std::borrow::Cow;

use globset::{Candidate, GlobSet};

use super::RuleSet;
use crate::rules::{Action, Rule};

/// A host or path as matched, in ASCII lower case (a host also loses one
/// trailing dot, the fully qualified spelling). Kept on the stack for
/// ordinary lengths.
#[expect(
    clippy::large_enum_variant,
    reason = "built on the stack for one decision; boxing the buffer would be the allocation it avoids"
)]
pub(crate) enum Folded {
    Inline([u8; 255], usize),
    Heap(Vec<u8>),
}

impl Folded {
    pub(crate) fn host(host: &str) -> Folded {
        Folded::new(host.strip_suffix('.').unwrap_or(host))
    }

    pub(super) fn new(text: &str) -> Folded {
        let text = text.as_bytes();
        let mut buf = [0u8; 255];
        match buf.get_mut(..text.len()) {
            Some(inline) => {
                inline.copy_from_slice(text);
                inline.make_ascii_lowercase();
                Folded::Inline(buf, text.len())
            }
            None => Folded::Heap(text.to_ascii_lowercase()),
        }
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        match self {
            Folded::Inline(buf, len) => buf.get(..*len).unwrap_or_default(),
            Folded::Heap(v) => v,
        }
    }
}

/// A request's path as the rules read it (see [`crate::canonical::path`]).
pub(super) struct RequestPath<'a> {
    pub(super) canonical: Cow<'a, str>,
    /// The canonical path in lower case, for review and deny globs.
    pub(super) folded: Folded,
    /// Whether the path was sent in its canonical form: an automatic path
    /// glob matches nothing else.
    pub(super) as_sent: bool,
}

impl<'a> RequestPath<'a> {
    pub(super) fn new(raw: &'a str) -> RequestPath<'a> {
        let canonical = crate::canonical::path::canonical(raw);
        let as_sent = canonical == raw;
        let folded = Folded::new(&canonical);
        RequestPath {
            canonical,
            folded,
            as_sent,
        }
    }

    /// Does `rule`'s own path glob set hold for this path?
    pub(super) fn matches(&self, rule: &Rule, globs: &GlobSet) -> bool {
        if rule.action == Action::Automatic {
            self.as_sent && globs.is_match(&*self.canonical)
        } else {
            globs.is_match_candidate(&Candidate::from_bytes(self.folded.as_bytes()))
        }
    }

    /// Sets `into` to the rules whose path conditions hold, through the
    /// combined glob sets (exact).
    pub(super) fn fill_exact(
        &self,
        set: &RuleSet,
        hits: &mut Vec<usize>,
        into: &mut [u64],
        other: &mut [u64],
    ) {
        set.strict_paths
            .globs
            .fill(&Candidate::from_bytes(self.folded.as_bytes()), hits, into);
        if self.as_sent {
            set.automatic_paths
                .globs
                .fill(&Candidate::new(&*self.canonical), hits, other);
        } else {
            other.copy_from_slice(&set.automatic_paths.globs.unconditional);
        }
        for (a, b) in into.iter_mut().zip(other.iter()) {
            *a &= *b;
        }
    }

    /// Sets `into` to the rules whose path conditions may hold, by literal
    /// prefix (necessary, not sufficient).
    pub(super) fn fill_prefixes(&self, set: &RuleSet, into: &mut [u64], other: &mut [u64]) {
        let folded = std::str::from_utf8(self.folded.as_bytes()).ok();
        set.strict_paths.prefixes.fill(folded, into);
        set.automatic_paths
            .prefixes
            .fill(self.as_sent.then_some(&*self.canonical), other);
        for (a, b) in into.iter_mut().zip(other.iter()) {
            *a &= *b;
        }
    }
}

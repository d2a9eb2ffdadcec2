//! JSON as rules read it, with the readings an upstream might take that
//! differ from airlock's flagged. A body is unambiguous only when it is
//! exactly one JSON value and no object in it has a key twice, or two keys
//! that differ only in case: parsers disagree on which of a duplicate wins,
//! and case-insensitive ones (common in .NET and some Java stacks) read
//! `Status` as `status`.
//!
//! This module never decides anything: it reports, and the rules resolve
//! ambiguity toward review.

use std::collections::HashMap;
use std::fmt;

use serde::de::{DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Why a body has more than one plausible reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ambiguity {
    /// Not exactly one JSON value: not JSON, trailing data, or empty.
    NotOneValue(String),
    /// An object has this key more than once (the last one is kept).
    DuplicateKey(String),
    /// An object has keys that differ only in case.
    CaseVariantKeys(String, String),
}

impl fmt::Display for Ambiguity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ambiguity::NotOneValue(e) => write!(f, "the body is not exactly one JSON value ({e})"),
            Ambiguity::DuplicateKey(k) => write!(f, "the key {k:?} appears more than once"),
            Ambiguity::CaseVariantKeys(a, b) => {
                write!(f, "the keys {a:?} and {b:?} differ only in case")
            }
        }
    }
}

/// A body read as JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    /// The value, when the body is JSON at all (with duplicates, the last
    /// one of each key, as most parsers keep).
    pub value: Option<Value>,
    /// The first reason another reading is plausible, if any.
    pub ambiguity: Option<Ambiguity>,
}

impl Parsed {
    /// The value, only when there is no other plausible reading.
    pub fn unambiguous(&self) -> Option<&Value> {
        match self.ambiguity {
            None => self.value.as_ref(),
            Some(_) => None,
        }
    }
}

/// Parses `bytes` (UTF-8 text, as [`super::body::decode`] gives it).
pub fn parse(bytes: &[u8]) -> Parsed {
    let mut found = None;
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = Seed { found: &mut found }.deserialize(&mut de);
    let value = match value.and_then(|v| de.end().map(|()| v)) {
        Ok(v) => v,
        Err(e) => {
            let value = serde_json::from_slice(bytes).ok();
            return Parsed {
                value,
                ambiguity: Some(Ambiguity::NotOneValue(e.to_string())),
            };
        }
    };
    Parsed {
        value: Some(value),
        ambiguity: found,
    }
}

/// What `pointer` (RFC 6901) reaches in `doc` when its keys are read as a
/// case-insensitive parser reads them: each key exactly, else the first
/// key that folds to it. Review and deny rules read bodies this way.
pub fn pointer_any_case<'v>(doc: &'v Value, pointer: &str) -> Option<&'v Value> {
    if pointer.is_empty() {
        return Some(doc);
    }
    let mut at = doc;
    for token in pointer.strip_prefix('/')?.split('/') {
        let token = token.replace("~1", "/").replace("~0", "~");
        at = match at {
            Value::Object(map) => map.get(&token).or_else(|| {
                let want = fold(&token);
                map.iter().find(|(k, _)| fold(k) == want).map(|(_, v)| v)
            })?,
            Value::Array(items) => items.get(token.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(at)
}

/// A key as a case-insensitive parser may read it: upper-cased then
/// lower-cased, so that `ſ` (read as `s` by Unicode simple folding, as Go's
/// encoding/json does), the Kelvin sign and `ß` meet their ASCII readings.
pub fn fold(key: &str) -> String {
    key.to_uppercase().to_lowercase()
}

/// Builds a [`Value`] like serde_json does, noting the first ambiguity.
struct Seed<'f> {
    found: &'f mut Option<Ambiguity>,
}

impl<'de> DeserializeSeed<'de> for Seed<'_> {
    type Value = Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Seed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(Seed {
            found: &mut *self.found,
        })? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        // Each key seen so far, case-folded, with its spelling.
        let mut by_fold: HashMap<String, String> = HashMap::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(Seed {
                found: &mut *self.found,
            })?;
            if self.found.is_none() {
                let fold = fold(&key);
                match by_fold.get(&fold) {
                    Some(seen) if *seen == key => {
                        *self.found = Some(Ambiguity::DuplicateKey(key.clone()));
                    }
                    Some(seen) => {
                        *self.found = Some(Ambiguity::CaseVariantKeys(seen.clone(), key.clone()));
                    }
                    None => {
                        by_fold.insert(fold, key.clone());
                    }
                }
            }
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ambiguity(body: &str) -> Option<Ambiguity> {
        parse(body.as_bytes()).ambiguity
    }

    #[test]
    fn plain_json_is_unambiguous() {
        for body in [
            r#"{"status":"created","to":[{"email":"a@b"}]}"#,
            r#"  [1, 2, {"a": null}]  "#,
            "42",
            r#""text""#,
            r#"{"a":{"x":1},"b":{"x":2}}"#,
        ] {
            assert_eq!(ambiguity(body), None, "{body}");
            assert!(parse(body.as_bytes()).unambiguous().is_some());
        }
    }

    #[test]
    fn duplicate_and_case_variant_keys_are_ambiguous() {
        let table = [
            (
                r#"{"status":"sent","status":"created"}"#,
                Ambiguity::DuplicateKey("status".into()),
            ),
            (
                r#"{"status":"created","Status":"sent"}"#,
                Ambiguity::CaseVariantKeys("status".into(), "Status".into()),
            ),
            (
                r#"{"a":[{"to":1,"TO":2}]}"#,
                Ambiguity::CaseVariantKeys("to".into(), "TO".into()),
            ),
            (
                r#"{"st\u0061tus":1,"status":2}"#,
                Ambiguity::DuplicateKey("status".into()),
            ),
            (
                "{\"status\":\"created\",\"\u{17f}tatus\":\"sent\"}",
                Ambiguity::CaseVariantKeys("status".into(), "\u{17f}tatus".into()),
            ),
            (
                r#"{"ÉTAT":1,"état":2}"#,
                Ambiguity::CaseVariantKeys("ÉTAT".into(), "état".into()),
            ),
        ];
        for (body, want) in table {
            let parsed = parse(body.as_bytes());
            assert_eq!(parsed.ambiguity, Some(want), "{body}");
            assert!(parsed.value.is_some());
            assert!(parsed.unambiguous().is_none());
        }
    }

    #[test]
    fn anything_but_one_value_is_ambiguous() {
        for body in [
            "",
            "   ",
            "{\"a\":1} {\"a\":2}",
            "{\"a\":1}x",
            "{\"a\":",
            "nope",
            "\u{feff}{}",
        ] {
            assert!(
                matches!(ambiguity(body), Some(Ambiguity::NotOneValue(_))),
                "{body:?}"
            );
        }
        let deep = "[".repeat(200) + &"]".repeat(200);
        assert!(matches!(ambiguity(&deep), Some(Ambiguity::NotOneValue(_))));
    }

    #[test]
    fn the_last_of_a_duplicate_is_kept_as_most_parsers_do() {
        let parsed = parse(br#"{"status":"sent","status":"created"}"#);
        assert_eq!(parsed.value.unwrap()["status"], "created");
    }
}

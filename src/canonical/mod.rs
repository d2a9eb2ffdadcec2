//! One reading of a request for the rules, the reviewer and the upstream.
//!
//! An agent is untrusted: it may spell a request so that airlock reads one
//! thing and the upstream acts on another. This module owns the one reading
//! airlock judges by: the canonical path ([`path`]), the methods a request
//! may be acted on as ([`methods`]), the body decoded for reading ([`body`])
//! and the JSON in it with every ambiguity flagged ([`json`]). The rules
//! match on it, the hold shows it, and what is sent is the request it was
//! read from.
//!
//! This module is pure: no I/O, no configuration, no knowledge of rules,
//! connections or the store. It never panics on any input.

pub mod body;
pub mod json;
pub mod path;

use http::HeaderMap;
use http::header::HeaderName;

/// Headers that ask a server to act as if the request had another method.
pub static METHOD_OVERRIDES: [HeaderName; 3] = [
    HeaderName::from_static("x-http-method-override"),
    HeaderName::from_static("x-http-method"),
    HeaderName::from_static("x-method-override"),
];

/// True when the request names another method in an override header.
pub fn has_method_override(headers: &HeaderMap) -> bool {
    !headers.is_empty() && METHOD_OVERRIDES.iter().any(|h| headers.contains_key(h))
}

/// The further methods a request may be acted on as, besides its own: every
/// value of every override header, upper-cased, each one once.
pub fn methods(headers: &HeaderMap) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for name in &METHOD_OVERRIDES {
        for value in headers.get_all(name) {
            for m in String::from_utf8_lossy(value.as_bytes()).split(',') {
                let m = m.trim().to_ascii_uppercase();
                if !m.is_empty() && !out.contains(&m) {
                    out.push(m);
                }
            }
        }
    }
    out
}

/// Does a TLS server name (SNI) name `host`? Case-insensitive, one trailing
/// dot ignored on either side.
pub fn same_host(a: &str, b: &str) -> bool {
    fn trim(s: &str) -> &str {
        s.strip_suffix('.').unwrap_or(s)
    }
    trim(a).eq_ignore_ascii_case(trim(b))
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    #[test]
    fn override_headers_add_methods() {
        let mut h = HeaderMap::new();
        assert!(!has_method_override(&h));
        h.insert("x-http-method-override", HeaderValue::from_static("post"));
        h.append(
            "x-method-override",
            HeaderValue::from_static("DELETE, post"),
        );
        h.insert("x-http-method", HeaderValue::from_static("PUT"));
        assert!(has_method_override(&h));
        assert_eq!(methods(&h), vec!["POST", "PUT", "DELETE"]);
    }

    #[test]
    fn server_names_compare_without_case_or_trailing_dot() {
        assert!(same_host("API.example.com.", "api.example.com"));
        assert!(same_host("api.example.com", "api.example.com."));
        assert!(!same_host(
            "gmail.googleapis.com",
            "generativelanguage.googleapis.com"
        ));
        assert!(!same_host("api.example.com..", "api.example.com"));
    }
}

//! One reading of a request for the rules, the reviewer and the upstream.
//!
//! An agent is untrusted: it may spell a request so that airlock reads one
//! thing and the upstream acts on another. This module owns the one reading
//! airlock judges by: the canonical path ([`path`]), the methods a request
//! may be acted on as ([`methods`]), the body decoded for reading ([`body`])
//! and the JSON in it with every ambiguity flagged ([`json`]); [`read`]
//! puts them together into one [`Reading`]. The rules match on it, the
//! hold and the page show it, and what is sent is the request it was read
//! from.
//!
//! This module is pure: no I/O, no configuration, no knowledge of rules,
//! connections or the store. It never panics on any input.

pub mod body;
pub mod json;
pub mod mcp;
pub mod path;

use std::borrow::Cow;

use http::HeaderMap;
use http::header::HeaderName;

/// The whole reading of one request, as a hold, the page and the API show
/// it. (The proxy's hot path takes the same pieces lazily: it decodes a
/// body only when a rule looks inside it.)
#[derive(Debug)]
pub struct Reading<'r> {
    /// The path the rules matched.
    pub path: String,
    /// The methods besides its own the request may be acted on as.
    pub methods: Vec<String>,
    /// The body decoded for reading; the bytes as sent when nothing needed
    /// undoing or they cannot be decoded.
    pub body: Cow<'r, [u8]>,
    /// What was undone to read the body (`gzip`), when anything was.
    pub decoded_from: Option<String>,
    /// Each way the request can be read other than the plain one, in words.
    pub ambiguities: Vec<String>,
}

/// Reads a request the way airlock judges it: `path` and `query` apart,
/// the headers as they will be sent, and the body as sent. `limit` bounds
/// the decoded body.
pub fn read<'r>(
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    body: &'r [u8],
    limit: u64,
) -> Reading<'r> {
    let mut ambiguities = Vec::new();
    let methods = methods(headers, query);
    if !methods.is_empty() {
        ambiguities.push(format!(
            "an override header or parameter asks the server to act as {} (the request was classified under that too)",
            methods.join(", ")
        ));
    }
    let canonical_path = path::canonical(path);
    if canonical_path != path {
        ambiguities.push(format!(
            "the path {path:?} is read as {canonical_path:?} by the rules; the upstream receives it as written"
        ));
    }
    let (decoded, decoded_from) = match body::decode(headers, body, limit) {
        Ok(Cow::Borrowed(b)) => (Cow::Borrowed(b), None),
        Ok(Cow::Owned(b)) => (Cow::Owned(b), Some(codings(headers))),
        Err(e) => {
            ambiguities.push(format!("{e}: shown as sent"));
            (Cow::Borrowed(body), None)
        }
    };
    let says_json = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.to_ascii_lowercase().contains("json"));
    let looks_json = decoded
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| matches!(b, b'{' | b'['));
    if says_json || looks_json {
        match json::parse(&decoded).ambiguity {
            // Text that merely starts like JSON is not claimed to be JSON.
            Some(json::Ambiguity::NotOneValue(_)) if !says_json => {}
            Some(a) => ambiguities.push(a.to_string()),
            None => {}
        }
    }
    Reading {
        path: canonical_path.into_owned(),
        methods,
        body: decoded,
        decoded_from,
        ambiguities,
    }
}

/// The codings and character set that were undone, in words.
fn codings(headers: &HeaderMap) -> String {
    let listed: Vec<&str> = headers
        .get_all(http::header::CONTENT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if listed.is_empty() {
        "a Unicode encoding other than UTF-8, or a byte-order mark".to_owned()
    } else {
        listed.join(", ")
    }
}

/// Headers that ask a server to act as if the request had another method.
pub static METHOD_OVERRIDES: [HeaderName; 3] = [
    HeaderName::from_static("x-http-method-override"),
    HeaderName::from_static("x-http-method"),
    HeaderName::from_static("x-method-override"),
];

/// Headers that ask a server, or a front end before it, to act on another
/// host or URL than the request's own (`X-Original-URL` and `X-Rewrite-URL`
/// re-route in Symfony and IIS; `X-Forwarded-Host` and `Forwarded` set the
/// host many frameworks route by). The target is the request's own: these
/// are removed before rules, hold and upstream see it.
pub static TARGET_OVERRIDES: [HeaderName; 7] = [
    HeaderName::from_static("x-original-url"),
    HeaderName::from_static("x-rewrite-url"),
    HeaderName::from_static("x-forwarded-host"),
    HeaderName::from_static("x-forwarded-server"),
    HeaderName::from_static("x-host"),
    HeaderName::from_static("x-http-host-override"),
    HeaderName::from_static("forwarded"),
];

/// Removes [`TARGET_OVERRIDES`]; cheap when there are none.
pub fn remove_target_overrides(headers: &mut HeaderMap) {
    for name in &TARGET_OVERRIDES {
        if headers.contains_key(name) {
            headers.remove(name);
        }
    }
}

/// Query parameters that ask a server to act as another method: `_method`
/// (Laravel, Symfony, Rack) and `_HttpMethod` (Salesforce), in any case.
const QUERY_OVERRIDES: [&str; 2] = ["_method", "_httpmethod"];

/// The values of the query's method-override parameters.
fn query_overrides(query: Option<&str>) -> impl Iterator<Item = String> + '_ {
    query
        .filter(|q| q.contains('_'))
        .into_iter()
        .flat_map(|q| form_urlencoded::parse(q.as_bytes()))
        .filter(|(k, _)| QUERY_OVERRIDES.iter().any(|o| k.eq_ignore_ascii_case(o)))
        .map(|(_, v)| v.into_owned())
}

/// True when the request names another method, in an override header or
/// query parameter.
pub fn has_method_override(headers: &HeaderMap, query: Option<&str>) -> bool {
    (!headers.is_empty() && METHOD_OVERRIDES.iter().any(|h| headers.contains_key(h)))
        || query_overrides(query).next().is_some()
}

/// The further methods a request may be acted on as, besides its own: every
/// value of every override header and query parameter, upper-cased, each
/// one once.
pub fn methods(headers: &HeaderMap, query: Option<&str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let values = METHOD_OVERRIDES
        .iter()
        .flat_map(|name| headers.get_all(name))
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .chain(query_overrides(query));
    for value in values {
        for m in value.split(',') {
            let m = m.trim().to_ascii_uppercase();
            if !m.is_empty() && !out.contains(&m) {
                out.push(m);
            }
        }
    }
    out
}

/// Removes every header whose name has an underscore, as nginx does by
/// default: CGI-style servers (Rack, PHP-FPM, WSGI) read `X_Forwarded_Host`
/// or `X_HTTP_Method_Override` as their dashed twins, which airlock would
/// otherwise not recognise. Cheap when there are none.
pub fn remove_underscored(headers: &mut HeaderMap) {
    if !headers.keys().any(|k| k.as_str().contains('_')) {
        return;
    }
    let names: Vec<HeaderName> = headers
        .keys()
        .filter(|k| k.as_str().contains('_'))
        .cloned()
        .collect();
    for name in names {
        headers.remove(&name);
    }
}

/// True when the request says, once and plainly, that its body is JSON
/// (`application/json` or `…+json`, in a Unicode charset or none): only
/// then may an automatic rule's `json` conditions hold, since a server may
/// read any other body (a form, say) differently.
pub fn is_json_content_type(headers: &HeaderMap) -> bool {
    let mut types = headers.get_all(http::header::CONTENT_TYPE).iter();
    let (Some(only), None) = (types.next(), types.next()) else {
        return false;
    };
    let Ok(text) = only.to_str() else {
        return false;
    };
    let mut parts = text.split(';');
    let media = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
    if media != "application/json"
        && !(media.starts_with("application/") && media.ends_with("+json"))
    {
        return false;
    }
    parts.all(|p| match p.split_once('=') {
        Some((k, v)) if k.trim().eq_ignore_ascii_case("charset") => matches!(
            v.trim().trim_matches('"').to_ascii_lowercase().as_str(),
            "utf-8"
                | "utf8"
                | "utf-16"
                | "utf-16le"
                | "utf-16be"
                | "utf-32"
                | "utf-32le"
                | "utf-32be"
        ),
        _ => true,
    })
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
        assert!(!has_method_override(&h, None));
        h.insert("x-http-method-override", HeaderValue::from_static("post"));
        h.append(
            "x-method-override",
            HeaderValue::from_static("DELETE, post"),
        );
        h.insert("x-http-method", HeaderValue::from_static("PUT"));
        assert!(has_method_override(&h, None));
        assert_eq!(methods(&h, None), vec!["POST", "PUT", "DELETE"]);
        let none = HeaderMap::new();
        assert!(has_method_override(&none, Some("a=1&_method=delete")));
        assert!(has_method_override(&none, Some("_HttpMethod=PATCH")));
        assert!(!has_method_override(&none, Some("a_b=1&method=x")));
        assert_eq!(
            methods(&none, Some("_METHOD=delete&_method=put")),
            vec!["DELETE", "PUT"]
        );
    }

    #[test]
    fn one_reading_names_every_other() {
        use std::io::Write as _;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(br#"{"status":"created","Status":"sent"}"#)
            .unwrap();
        let gz = e.finish().unwrap();
        let mut h = HeaderMap::new();
        h.insert("content-encoding", HeaderValue::from_static("gzip"));
        h.insert("content-type", HeaderValue::from_static("application/json"));
        h.insert("x-http-method-override", HeaderValue::from_static("DELETE"));
        let r = read("/v3//mail/send/", None, &h, &gz, 1 << 20);
        assert_eq!(r.path, "/v3/mail/send");
        assert_eq!(r.methods, vec!["DELETE"]);
        assert_eq!(&*r.body, br#"{"status":"created","Status":"sent"}"#);
        assert_eq!(r.decoded_from.as_deref(), Some("gzip"));
        assert_eq!(r.ambiguities.len(), 3, "{:#?}", r.ambiguities);
        assert!(r.ambiguities[0].contains("DELETE"));
        assert!(r.ambiguities[1].contains("\"/v3/mail/send\""));
        assert!(r.ambiguities[2].contains("differ only in case"));

        let plain = read("/notes", None, &HeaderMap::new(), b"hello", 1 << 20);
        assert!(plain.ambiguities.is_empty());
        assert!(matches!(plain.body, Cow::Borrowed(_)));
        let mut corrupt = HeaderMap::new();
        corrupt.insert("content-encoding", HeaderValue::from_static("br"));
        let r = read("/x", None, &corrupt, b"not brotli", 1 << 20);
        assert_eq!(&*r.body, b"not brotli");
        assert!(r.ambiguities[0].contains("cannot be decoded"));
    }

    #[test]
    fn only_a_plain_json_content_type_is_json() {
        let with = |values: &[&'static str]| {
            let mut h = HeaderMap::new();
            for v in values {
                h.append("content-type", HeaderValue::from_static(v));
            }
            is_json_content_type(&h)
        };
        assert!(with(&["application/json"]));
        assert!(with(&["Application/JSON; charset=UTF-8"]));
        assert!(with(&["application/vnd.api+json"]));
        assert!(!with(&[]));
        assert!(!with(&["application/x-www-form-urlencoded"]));
        assert!(!with(&["text/plain"]));
        assert!(!with(&["application/json; charset=latin1"]));
        assert!(!with(&[
            "application/json",
            "application/x-www-form-urlencoded"
        ]));
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

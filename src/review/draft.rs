//! What a reviewer reads of a held request: the body as it will be read
//! upstream (its `Content-Encoding` undone, UTF-16/32 as text), and every
//! place where the request could be read another way, named, so that a
//! reviewer never approves one reading while the upstream acts on another.
//!
//! This module only reads a stored hold; it never changes what is sent.

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::canonical;
use crate::holds::Hold;

/// Bodies are stored at most `max_body` long and were decoded within it
/// before they were held; this only bounds a hold written by an older
/// version.
const DECODE_LIMIT: u64 = 64 * 1024 * 1024;

/// A held request as the rules read it: the body decoded, every other
/// reading named ([`canonical::read`] on the stored request).
pub fn read<'b>(hold: &Hold, raw: &'b [u8]) -> canonical::Reading<'b> {
    let uri: Option<http::Uri> = hold.url.parse().ok();
    let path = uri.as_ref().map_or("/", http::Uri::path);
    let query = uri.as_ref().and_then(http::Uri::query);
    canonical::read(path, query, &header_map(hold), raw, DECODE_LIMIT)
}

/// The stored headers as the proxy saw them.
fn header_map(hold: &Hold) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (k, v) in &hold.headers {
        if let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            map.append(k, v);
        }
    }
    map
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn hold(url: &str, headers: &[(&str, &str)], content_type: Option<&str>) -> Hold {
        let mut h: Hold = serde_json::from_value(serde_json::json!({
            "id": "0", "state": "pending", "rule": "r", "label": "l", "summary": "s",
            "agent": "a", "trigger": "t", "method": "POST", "url": url, "headers": [],
            "body_size": 0, "created_at": "2026-01-01T00:00:00Z",
            "expires_at": "2026-01-01T01:00:00Z", "status_token": "x", "fingerprint": "f",
            "secret_headers": [], "edited": false, "sending": false, "replayed": false,
            "max_wait_secs": 0,
        }))
        .unwrap();
        h.headers = headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        h.content_type = content_type.map(str::to_owned);
        h
    }

    #[test]
    fn a_compressed_body_is_shown_decoded() {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(br#"{"to":"a@b"}"#).unwrap();
        let gz = e.finish().unwrap();
        let h = hold(
            "https://h/v3/mail/send",
            &[
                ("content-encoding", "gzip"),
                ("content-type", "application/json"),
            ],
            Some("application/json"),
        );
        let d = read(&h, &gz);
        assert_eq!(&*d.body, br#"{"to":"a@b"}"#);
        assert_eq!(d.decoded_from.as_deref(), Some("gzip"));
        assert!(d.ambiguities.is_empty(), "{:?}", d.ambiguities);
    }

    #[test]
    fn every_other_reading_is_named() {
        let h = hold(
            "https://h//v3/mail/send?x=1",
            &[("x-http-method-override", "DELETE")],
            Some("application/json"),
        );
        let d = read(&h, br#"{"status":"created","Status":"sent"}"#);
        assert_eq!(d.ambiguities.len(), 3, "{:#?}", d.ambiguities);
        assert!(d.ambiguities[0].contains("DELETE"));
        assert!(d.ambiguities[1].contains("\"/v3/mail/send\""));
        assert!(d.ambiguities[2].contains("differ only in case"));
        let plain = hold("https://h/notes", &[], Some("text/plain"));
        assert!(read(&plain, b"hello").ambiguities.is_empty());
    }
}

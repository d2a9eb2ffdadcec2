//! Body decoding: the first byte chooses the Content-Encoding and charset,
//! the second the limit, the rest is the body. Decoding never returns more
//! than the limit.
#![no_main]

use airlock::canonical::body::{BodyError, decode};
use http::header::{CONTENT_ENCODING, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;

const CODINGS: [&str; 8] = [
    "identity",
    "gzip",
    "deflate",
    "br",
    "zstd",
    "x-gzip",
    "gzip, br",
    "deflate, zstd",
];
const CHARSETS: [Option<&str>; 8] = [
    None,
    Some("utf-8"),
    Some("utf-16"),
    Some("utf-16be"),
    Some("utf-16le"),
    Some("utf-32"),
    Some("utf-32be"),
    Some("\"UTF-32LE\""),
];

fuzz_target!(|data: &[u8]| {
    let [choice, size, raw @ ..] = data else {
        return;
    };
    let coding = CODINGS[usize::from(choice & 7)];
    let mut headers = HeaderMap::new();
    if coding != "identity" {
        headers.insert(CONTENT_ENCODING, HeaderValue::from_static(coding));
    }
    if let Some(charset) = CHARSETS[usize::from((choice >> 3) & 7)] {
        let ct = format!("application/json; charset={charset}");
        headers.insert(CONTENT_TYPE, HeaderValue::from_str(&ct).unwrap());
    }
    // Small limits reach TooLarge often; 0 and 64 KiB bound the range.
    let limit = match size {
        0 => 0,
        255 => 64 * 1024,
        n => u64::from(*n) * 16,
    };
    match decode(&headers, raw, limit) {
        Ok(out) => {
            let len = out.len() as u64;
            assert!(
                len <= limit,
                "{coding}: {len} bytes decoded under a limit of {limit}"
            );
        }
        Err(BodyError::TooLarge { limit: l }) => assert_eq!(l, limit),
        Err(BodyError::Undecodable(_)) => {}
    }
});

//! The canonical path: the one spelling of a request path that rules match,
//! whatever spelling the agent chose. Upstream servers differ in how they
//! read `//`, `%2F`, `\`, `;params`, dot segments and trailing slashes, so
//! airlock reads them all the same way and lets the rules decide on that.
//!
//! This module never allocates for a path that is already canonical (the
//! common case), and never fails: any input has a canonical form.

use std::borrow::Cow;

/// The canonical form of `path` (without its query): `%XX` of unreserved
/// characters and of `/` and `\` decoded (also under escaped `%`s, and
/// again wherever a decoded byte completes a new escape, as an upstream
/// that decodes more than once would read them), `\` read as `/`,
/// `;parameters` dropped from every segment, dot segments removed, repeated
/// `/` collapsed and a trailing `/` dropped. Borrowed when `path` is already
/// canonical.
pub fn canonical(path: &str) -> Cow<'_, str> {
    if is_canonical(path) {
        return Cow::Borrowed(path);
    }
    Cow::Owned(build(&decode(path)))
}

/// True when `canonical(path) == path`, decided without allocating in the
/// common case.
pub fn is_canonical(path: &str) -> bool {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return false;
    }
    if bytes.len() > 1 && bytes.last() == Some(&b'/') {
        return false;
    }
    let mut segment_start = 1;
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'\\' | b';' => return false,
            b'%' if escapes(bytes.get(i + 1..).unwrap_or_default()) => return false,
            b'/' if i > 0 => {
                if dot_or_empty(bytes.get(segment_start..i)) {
                    return false;
                }
                segment_start = i + 1;
            }
            _ => {}
        }
    }
    // The last segment ("/" alone has an empty one, which is fine).
    bytes.len() == 1 || !dot_or_empty(bytes.get(segment_start..))
}

fn dot_or_empty(segment: Option<&[u8]>) -> bool {
    matches!(segment, Some(b"" | b"." | b".."))
}

/// True when `rest` (after a `%`) starts an escape canonicalisation
/// decodes: `%2F` is `/`, and so are `%252F` and `%25252F`, which an
/// upstream that decodes more than once reads as `/`.
fn escapes(rest: &[u8]) -> bool {
    // Any number of `25`s (an escaped `%`) before the escape itself.
    let mut at = 0;
    loop {
        let hex = rest.get(at..at + 2);
        if decodes(hex).is_some() {
            return true;
        }
        if hex != Some(b"25") {
            return false;
        }
        at += 2;
    }
}

/// The byte a `%XX` escape stands for, if canonicalisation decodes it.
fn decodes(hex: Option<&[u8]>) -> Option<u8> {
    let hex = hex?;
    let text = std::str::from_utf8(hex).ok()?;
    if hex.len() != 2 || !hex.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    let c = u8::from_str_radix(text, 16).ok()?;
    (c.is_ascii_alphanumeric() || b"-._~/\\".contains(&c)).then_some(c)
}

/// Every escape canonicalisation decodes, decoded until none is left: a
/// decoded byte may complete an escape with the bytes before it (`%%33%33`
/// reads as `%33`, then as `3`), so each byte is pushed and an escape that
/// it ends is replaced by its byte, which may end another. One pass, and
/// the result has no escape left to decode.
fn decode(path: &str) -> Cow<'_, str> {
    if !path.contains('%') {
        return Cow::Borrowed(path);
    }
    let mut out: Vec<u8> = Vec::with_capacity(path.len());
    for &b in path.as_bytes() {
        out.push(b);
        while let Some((c, start)) = escape_ending(&out) {
            out.truncate(start);
            out.push(c);
        }
    }
    // Only ASCII bytes were replaced by ASCII bytes: still UTF-8.
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

/// The escape that ends `buf`, if canonicalisation decodes it: the byte it
/// stands for and where its `%` is (`%2F`, `%252F`, `%25252F`, …).
fn escape_ending(buf: &[u8]) -> Option<(u8, usize)> {
    let mut at = buf.len().checked_sub(2)?;
    let c = decodes(buf.get(at..))?;
    loop {
        let before = at.checked_sub(1)?;
        if buf.get(before) == Some(&b'%') {
            return Some((c, before));
        }
        if buf.get(at.checked_sub(2)?..at) != Some(b"25") {
            return None;
        }
        at -= 2;
    }
}

/// `\` as `/`, `;params` dropped, dot and empty segments resolved, no
/// trailing `/`.
fn build(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split(['/', '\\']) {
        let segment = segment.split_once(';').map_or(segment, |(s, _)| s);
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(path.len() + 1);
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_of_one_path_reads_the_same() {
        let table = [
            ("/v3/mail/send", "/v3/mail/send"),
            ("//v3/mail/send", "/v3/mail/send"),
            ("/v3//mail/send", "/v3/mail/send"),
            ("/v3/mail/send/", "/v3/mail/send"),
            ("/v3/mail/send//", "/v3/mail/send"),
            ("/v3/mail%2Fsend", "/v3/mail/send"),
            ("/v3/mail%2fsend", "/v3/mail/send"),
            ("/v3/mail%252Fsend", "/v3/mail/send"),
            ("/v3/mail%25252Fsend", "/v3/mail/send"),
            ("/a%2525", "/a%2525"),
            ("/a%25zz", "/a%25zz"),
            ("/v3/mail%%32%46send", "/v3/mail/send"),
            ("/%%33%33", "/3"),
            ("/%%%%3333", "/%3"),
            ("/%%%%%%%%%%%%%%%%%%%%%%%%%3333333333333333333333333", "/%3"),
            ("/v3/mail/sen%64", "/v3/mail/send"),
            ("/v3\\mail\\send", "/v3/mail/send"),
            ("/v3/mail%5Csend", "/v3/mail/send"),
            ("/v3/mail;x=1/send;jsessionid=2", "/v3/mail/send"),
            ("/v3/mail/send;", "/v3/mail/send"),
            ("/x/../v3/mail/send", "/v3/mail/send"),
            ("/v3/./mail/send", "/v3/mail/send"),
            ("/v3/mail/%2e%2e/mail/send", "/v3/mail/send"),
            ("/../../v3/mail/send", "/v3/mail/send"),
            ("/v3/mail/send/.", "/v3/mail/send"),
            ("/v3/mail/send/..", "/v3/mail"),
            ("/", "/"),
            ("", "/"),
            ("//", "/"),
            ("/..", "/"),
            ("*", "/*"),
            ("/a%40b", "/a%40b"),
            ("/a%zz", "/a%zz"),
            ("/a%2", "/a%2"),
            ("/a%", "/a%"),
            ("/caf%C3%A9", "/caf%C3%A9"),
            ("/V3/Mail/Send", "/V3/Mail/Send"),
        ];
        for (raw, want) in table {
            assert_eq!(canonical(raw), want, "canonical({raw:?})");
            assert_eq!(is_canonical(raw), raw == want, "is_canonical({raw:?})");
            assert!(
                is_canonical(&canonical(raw)),
                "canonical({raw:?}) is canonical"
            );
        }
    }

    #[test]
    fn a_canonical_path_is_borrowed() {
        for path in ["/", "/v3/mail/send", "/a%40b", "/v1/customers/cus_1"] {
            assert!(matches!(canonical(path), Cow::Borrowed(_)), "{path}");
        }
    }

    #[test]
    fn multibyte_text_never_splits() {
        for path in ["/é%", "/%é", "/é%2", "/%%%2F%", "/\u{1F600}/../x;é"] {
            let c = canonical(path);
            assert!(is_canonical(&c), "{path:?} -> {c:?}");
        }
    }
}

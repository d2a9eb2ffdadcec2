//! The body as rules and reviewers read it: `Content-Encoding` undone
//! (gzip, deflate, br, zstd; the decoded size bounded by `max_body`, so a
//! compression bomb is refused rather than inflated), and UTF-16/32 or a
//! byte-order mark read as the UTF-8 text it stands for.
//!
//! This module never changes what is sent upstream: it reads a copy. It
//! never reads past the limit it is given.

use std::borrow::Cow;
use std::io::Read;

use http::HeaderMap;
use http::header::{CONTENT_ENCODING, CONTENT_TYPE};

/// Why a body could not be read as text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// Decoded, the body is larger than the limit.
    #[error("the decoded body is larger than {limit} bytes")]
    TooLarge { limit: u64 },
    /// An encoding airlock does not decode, or data that is not in the
    /// encoding it claims: the body cannot be read with certainty.
    #[error("the body cannot be decoded: {0}")]
    Undecodable(String),
}

/// The body decoded for reading: borrowed when nothing needed undoing;
/// never more than `limit` bytes.
pub fn decode<'b>(
    headers: &HeaderMap,
    raw: &'b [u8],
    limit: u64,
) -> Result<Cow<'b, [u8]>, BodyError> {
    let mut body = Cow::Borrowed(raw);
    // Codings are listed in the order they were applied: undo from the last.
    let codings: Vec<String> = headers
        .get_all(CONTENT_ENCODING)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(|c| String::from_utf8_lossy(c).trim().to_ascii_lowercase())
        .filter(|c| !c.is_empty() && c != "identity")
        .collect();
    for coding in codings.iter().rev() {
        body = Cow::Owned(undo(coding, &body, limit)?);
    }
    let charset = charset(headers);
    let body = match to_utf8(&body, charset.as_deref())? {
        Some(text) => Cow::Owned(text.into_bytes()),
        None => body,
    };
    // UTF-16 text grows by half as UTF-8: the text read counts too.
    if body.len() as u64 > limit {
        return Err(BodyError::TooLarge { limit });
    }
    Ok(body)
}

fn undo(coding: &str, data: &[u8], limit: u64) -> Result<Vec<u8>, BodyError> {
    match coding {
        "gzip" | "x-gzip" => bounded(flate2::read::MultiGzDecoder::new(data), limit, coding),
        // "deflate" is zlib-wrapped by the standard, raw by some senders:
        // read it either way.
        "deflate" => {
            bounded(flate2::read::ZlibDecoder::new(data), limit, coding).or_else(|e| match e {
                BodyError::TooLarge { .. } => Err(e),
                BodyError::Undecodable(_) => {
                    bounded(flate2::read::DeflateDecoder::new(data), limit, coding)
                }
            })
        }
        "br" => bounded(
            brotli_decompressor::Decompressor::new(data, 4096),
            limit,
            coding,
        ),
        "zstd" => {
            let decoder = ruzstd::decoding::StreamingDecoder::new(data)
                .map_err(|e| BodyError::Undecodable(format!("zstd: {e}")))?;
            bounded(decoder, limit, coding)
        }
        other => Err(BodyError::Undecodable(format!(
            "unsupported Content-Encoding {other:?}"
        ))),
    }
}

/// Reads at most `limit` decoded bytes; one more means too large.
fn bounded(reader: impl Read, limit: u64, coding: &str) -> Result<Vec<u8>, BodyError> {
    let mut out = Vec::new();
    reader
        .take(limit.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| BodyError::Undecodable(format!("{coding}: {e}")))?;
    if out.len() as u64 > limit {
        return Err(BodyError::TooLarge { limit });
    }
    Ok(out)
}

/// The `charset` parameter of `Content-Type`, lower-cased.
fn charset(headers: &HeaderMap) -> Option<String> {
    let ct = headers.get(CONTENT_TYPE)?.to_str().ok()?;
    ct.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("charset")
            .then(|| v.trim().trim_matches('"').to_ascii_lowercase())
    })
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Utf {
    Eight,
    Sixteen { big: bool },
    ThirtyTwo { big: bool },
}

/// The text as UTF-8 when it is in another Unicode encoding or starts with a
/// byte-order mark; `None` when it is already plain UTF-8 (or not text).
fn to_utf8(data: &[u8], charset: Option<&str>) -> Result<Option<String>, BodyError> {
    let (utf, bom) = match data {
        [0, 0, 0xFE, 0xFF, ..] => (Utf::ThirtyTwo { big: true }, 4),
        [0xFF, 0xFE, 0, 0, ..] => (Utf::ThirtyTwo { big: false }, 4),
        [0xEF, 0xBB, 0xBF, ..] => (Utf::Eight, 3),
        [0xFE, 0xFF, ..] => (Utf::Sixteen { big: true }, 2),
        [0xFF, 0xFE, ..] => (Utf::Sixteen { big: false }, 2),
        // Without a mark, JSON's first character is ASCII (RFC 4627 §3):
        // the pattern of zero bytes tells the encoding.
        [0, 0, 0, a, ..] if *a != 0 => (Utf::ThirtyTwo { big: true }, 0),
        [a, 0, 0, 0, ..] if *a != 0 => (Utf::ThirtyTwo { big: false }, 0),
        [0, a, ..] if *a != 0 => (Utf::Sixteen { big: true }, 0),
        [a, 0, ..] if *a != 0 => (Utf::Sixteen { big: false }, 0),
        _ => match charset {
            Some("utf-16be") => (Utf::Sixteen { big: true }, 0),
            Some("utf-16le" | "utf-16") => (Utf::Sixteen { big: false }, 0),
            Some("utf-32be") => (Utf::ThirtyTwo { big: true }, 0),
            Some("utf-32le" | "utf-32") => (Utf::ThirtyTwo { big: false }, 0),
            _ => return Ok(None),
        },
    };
    let rest = data.get(bom..).unwrap_or_default();
    let bad = |what: &str| BodyError::Undecodable(format!("not valid {what}"));
    let text = match utf {
        Utf::Eight => std::str::from_utf8(rest)
            .map_err(|_| bad("UTF-8"))?
            .to_owned(),
        Utf::Sixteen { big } => {
            if rest.len() % 2 != 0 {
                return Err(bad("UTF-16"));
            }
            let units = rest.chunks_exact(2).map(|c| match c {
                [a, b] if big => u16::from_be_bytes([*a, *b]),
                [a, b] => u16::from_le_bytes([*a, *b]),
                _ => 0,
            });
            char::decode_utf16(units)
                .collect::<Result<String, _>>()
                .map_err(|_| bad("UTF-16"))?
        }
        Utf::ThirtyTwo { big } => {
            if rest.len() % 4 != 0 {
                return Err(bad("UTF-32"));
            }
            rest.chunks_exact(4)
                .map(|c| {
                    let n = match c {
                        [a, b, c, d] if big => u32::from_be_bytes([*a, *b, *c, *d]),
                        [a, b, c, d] => u32::from_le_bytes([*a, *b, *c, *d]),
                        _ => u32::MAX,
                    };
                    char::from_u32(n).ok_or_else(|| bad("UTF-32"))
                })
                .collect::<Result<String, _>>()?
        }
    };
    Ok(Some(text))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    const JSON: &[u8] = br#"{"to":"client@example.com","subject":"hi"}"#;

    #[test]
    fn plain_utf8_is_borrowed() {
        let got = decode(&HeaderMap::new(), JSON, 1024).unwrap();
        assert!(matches!(got, Cow::Borrowed(_)));
    }

    #[test]
    fn each_content_encoding_is_undone() {
        let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        zlib.write_all(JSON).unwrap();
        let zlib = zlib.finish().unwrap();
        let mut raw =
            flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        raw.write_all(JSON).unwrap();
        let raw = raw.finish().unwrap();
        let zstd = zstd_frame(JSON);
        let br = brotli_stored(JSON);
        for (coding, data) in [
            ("gzip", gzip(JSON)),
            ("deflate", zlib),
            ("deflate", raw),
            ("zstd", zstd),
            ("br", br),
        ] {
            let h = headers(&[("content-encoding", coding)]);
            assert_eq!(decode(&h, &data, 1024).unwrap(), JSON, "{coding}");
        }
        let twice = gzip(&gzip(JSON));
        let h = headers(&[("content-encoding", "gzip, gzip")]);
        assert_eq!(decode(&h, &twice, 1024).unwrap(), JSON);
    }

    #[test]
    fn a_compression_bomb_is_too_large() {
        let bomb = gzip(&vec![b' '; 1 << 20]);
        assert!(bomb.len() < 4096);
        let h = headers(&[("content-encoding", "gzip")]);
        assert_eq!(
            decode(&h, &bomb, 64 * 1024),
            Err(BodyError::TooLarge { limit: 64 * 1024 })
        );
    }

    #[test]
    fn text_that_grows_as_utf8_is_too_large() {
        // Three UTF-16 code units that are three bytes each as UTF-8.
        let le16: Vec<u8> = "\u{20ac}\u{20ac}\u{20ac}"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        let h = headers(&[("content-type", "application/json; charset=utf-16le")]);
        assert_eq!(decode(&h, &le16, 9).unwrap().len(), 9);
        assert_eq!(decode(&h, &le16, 8), Err(BodyError::TooLarge { limit: 8 }));
        let h = headers(&[
            ("content-encoding", "gzip"),
            ("content-type", "text/plain; charset=utf-16le"),
        ]);
        assert_eq!(
            decode(&h, &gzip(&le16), 6),
            Err(BodyError::TooLarge { limit: 6 })
        );
    }

    #[test]
    fn unknown_or_corrupt_encodings_are_undecodable() {
        let h = headers(&[("content-encoding", "compress")]);
        assert!(matches!(
            decode(&h, JSON, 1024),
            Err(BodyError::Undecodable(_))
        ));
        let h = headers(&[("content-encoding", "gzip")]);
        assert!(matches!(
            decode(&h, JSON, 1024),
            Err(BodyError::Undecodable(_))
        ));
    }

    #[test]
    fn utf16_and_utf32_and_marks_read_as_utf8() {
        let text = std::str::from_utf8(JSON).unwrap();
        let le16: Vec<u8> = text.encode_utf16().flat_map(u16::to_le_bytes).collect();
        let be16: Vec<u8> = text.encode_utf16().flat_map(u16::to_be_bytes).collect();
        let le32: Vec<u8> = text
            .chars()
            .flat_map(|c| (c as u32).to_le_bytes())
            .collect();
        let be32: Vec<u8> = text
            .chars()
            .flat_map(|c| (c as u32).to_be_bytes())
            .collect();
        let mut bom8 = vec![0xEF, 0xBB, 0xBF];
        bom8.extend_from_slice(JSON);
        let mut bom16 = vec![0xFF, 0xFE];
        bom16.extend_from_slice(&le16);
        for data in [le16, be16, le32, be32, bom8, bom16] {
            assert_eq!(decode(&HeaderMap::new(), &data, 1024).unwrap(), JSON);
        }
    }

    /// A zstd frame holding `data` as one raw block (RFC 8878 §3.1).
    fn zstd_frame(data: &[u8]) -> Vec<u8> {
        let mut f = vec![0x28, 0xB5, 0x2F, 0xFD];
        // Single segment, 1-byte content size.
        f.push(0b0010_0000);
        f.push(u8::try_from(data.len()).unwrap());
        let header = (u32::try_from(data.len()).unwrap() << 3) | 1; // last, raw
        f.extend_from_slice(&header.to_le_bytes()[..3]);
        f.extend_from_slice(data);
        f
    }

    /// A brotli stream holding `data` uncompressed (RFC 7932 §9.2).
    fn brotli_stored(data: &[u8]) -> Vec<u8> {
        let mut w = BitWriter::default();
        w.bits(0, 1); // WBITS = 16
        w.bits(0, 1); // ISLAST = 0
        w.bits(0, 2); // MNIBBLES = 4
        w.bits(u32::try_from(data.len() - 1).unwrap(), 16); // MLEN - 1
        w.bits(1, 1); // ISUNCOMPRESSED
        let mut out = w.finish();
        out.extend_from_slice(data);
        let mut end = BitWriter::default();
        end.bits(1, 1); // ISLAST
        end.bits(1, 1); // ISLASTEMPTY
        out.extend(end.finish());
        out
    }

    #[derive(Default)]
    struct BitWriter {
        bytes: Vec<u8>,
        used: u32,
    }

    impl BitWriter {
        fn bits(&mut self, value: u32, n: u32) {
            for i in 0..n {
                if self.used.is_multiple_of(8) {
                    self.bytes.push(0);
                }
                let bit = u8::from((value >> i) & 1 == 1);
                *self.bytes.last_mut().unwrap() |= bit << (self.used % 8);
                self.used += 1;
            }
        }

        fn finish(self) -> Vec<u8> {
            self.bytes
        }
    }
}

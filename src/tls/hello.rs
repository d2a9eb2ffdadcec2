//! Reading a TLS ClientHello without terminating TLS: the server name (SNI)
//! the agent asks for and whether it hides the real one (Encrypted Client
//! Hello). airlock checks both before a CONNECT carries anything, so that a
//! tunnel opened for one host cannot be used to reach another behind the
//! same front end.
//!
//! This module only parses bytes it is given; it never reads a socket, and
//! it never panics or reads past a bound on any input.

/// The most bytes a ClientHello may take, records included. Post-quantum
/// key shares make hellos of a few KiB; this leaves room and bounds memory.
pub const MAX_HELLO: usize = 64 * 1024;

const HANDSHAKE: u8 = 22;
const CLIENT_HELLO: u8 = 1;
const EXT_SERVER_NAME: u16 = 0;
/// Encrypted Client Hello (RFC 9849), and the drafts' code points before it.
const EXT_ECH: [u16; 6] = [0xfe0d, 0xfe0c, 0xfe0b, 0xfe0a, 0xfe09, 0xfe08];
/// The abandoned encrypted-SNI extension.
const EXT_ESNI: u16 = 0xffce;

/// What a ClientHello says about where it is going.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientHello {
    /// The host name asked for, as sent (not lower-cased).
    pub server_name: Option<String>,
    /// True when the hello carries an encrypted inner hello (ECH or ESNI):
    /// the name above is then not the one the server will act on.
    pub encrypted: bool,
}

/// The outcome of looking at the first bytes of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peek {
    /// Not enough bytes yet: read more and look again.
    Incomplete,
    /// A whole ClientHello.
    Hello(ClientHello),
    /// Not a TLS ClientHello, or not one airlock can read with certainty.
    Invalid(&'static str),
}

/// Looks at the bytes a client sent first.
pub fn peek(buf: &[u8]) -> Peek {
    // Concatenate the handshake records' payloads until the ClientHello
    // message is complete.
    let mut handshake: Vec<u8> = Vec::new();
    let mut rest = buf;
    loop {
        let Some(&[kind, major, _, hi, lo]) = rest.get(..5) else {
            return if rest.is_empty() || rest.first() == Some(&HANDSHAKE) {
                incomplete_or_too_big(buf)
            } else {
                Peek::Invalid("not a TLS handshake")
            };
        };
        if kind != HANDSHAKE || major != 3 {
            return Peek::Invalid("not a TLS handshake");
        }
        let len = usize::from(u16::from_be_bytes([hi, lo]));
        if len == 0 {
            return Peek::Invalid("an empty TLS record");
        }
        let Some(fragment) = rest.get(5..5 + len) else {
            return incomplete_or_too_big(buf);
        };
        handshake.extend_from_slice(fragment);
        rest = rest.get(5 + len..).unwrap_or_default();
        match handshake.get(..4) {
            Some(&[CLIENT_HELLO, a, b, c]) => {
                let body_len = usize::from(a) << 16 | usize::from(b) << 8 | usize::from(c);
                if body_len + 4 > MAX_HELLO {
                    return Peek::Invalid("a ClientHello larger than airlock reads");
                }
                if let Some(body) = handshake.get(4..4 + body_len) {
                    return match client_hello(body) {
                        Some(hello) => Peek::Hello(hello),
                        None => Peek::Invalid("a malformed ClientHello"),
                    };
                }
            }
            Some(_) => return Peek::Invalid("the first handshake message is not a ClientHello"),
            None => {}
        }
    }
}

fn incomplete_or_too_big(buf: &[u8]) -> Peek {
    if buf.len() >= MAX_HELLO {
        Peek::Invalid("a ClientHello larger than airlock reads")
    } else {
        Peek::Incomplete
    }
}

/// A cursor over a ClientHello's fields, every read bounds-checked.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let taken = self.0.get(..n)?;
        self.0 = self.0.get(n..)?;
        Some(taken)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1)?.first().copied()
    }

    fn u16(&mut self) -> Option<u16> {
        match self.take(2)? {
            &[a, b] => Some(u16::from_be_bytes([a, b])),
            _ => None,
        }
    }

    /// A field prefixed by a one- or two-byte length.
    fn vec8(&mut self) -> Option<&'a [u8]> {
        let n = self.u8()?;
        self.take(usize::from(n))
    }

    fn vec16(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }
}

fn client_hello(body: &[u8]) -> Option<ClientHello> {
    let mut r = Reader(body);
    r.take(2 + 32)?; // legacy_version, random
    r.vec8()?; // legacy_session_id
    r.vec16()?; // cipher_suites
    r.vec8()?; // legacy_compression_methods
    let mut hello = ClientHello {
        server_name: None,
        encrypted: false,
    };
    if r.0.is_empty() {
        // No extensions at all (an old client): no SNI.
        return Some(hello);
    }
    let mut extensions = Reader(r.vec16()?);
    if !r.0.is_empty() {
        return None;
    }
    let mut seen_sni = false;
    while !extensions.0.is_empty() {
        let kind = extensions.u16()?;
        let data = extensions.vec16()?;
        if EXT_ECH.contains(&kind) || kind == EXT_ESNI {
            hello.encrypted = true;
        }
        if kind == EXT_SERVER_NAME {
            if seen_sni {
                return None;
            }
            seen_sni = true;
            hello.server_name = server_name(data)?;
        }
    }
    Some(hello)
}

/// The one `host_name` of a server_name extension (RFC 6066 §3); more than
/// one, or one that is not plain ASCII, is malformed.
fn server_name(data: &[u8]) -> Option<Option<String>> {
    let mut outer = Reader(data);
    let mut list = Reader(outer.vec16()?);
    if !outer.0.is_empty() {
        return None;
    }
    let mut name = None;
    while !list.0.is_empty() {
        let kind = list.u8()?;
        let value = list.vec16()?;
        if kind != 0 {
            continue;
        }
        if name.is_some() || value.is_empty() || !value.iter().all(|b| b.is_ascii_graphic()) {
            return None;
        }
        name = Some(String::from_utf8_lossy(value).into_owned());
    }
    Some(name)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A ClientHello record as a client would send it, with these
    /// extensions (type, data).
    pub(crate) fn hello_record(extensions: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut body = vec![3, 3];
        body.extend_from_slice(&[7; 32]);
        body.push(0); // session id
        body.extend_from_slice(&[0, 2, 0x13, 0x01]); // one cipher suite
        body.extend_from_slice(&[1, 0]); // null compression
        let mut exts = Vec::new();
        for (kind, data) in extensions {
            exts.extend_from_slice(&kind.to_be_bytes());
            exts.extend_from_slice(&u16::try_from(data.len()).unwrap().to_be_bytes());
            exts.extend_from_slice(data);
        }
        body.extend_from_slice(&u16::try_from(exts.len()).unwrap().to_be_bytes());
        body.extend_from_slice(&exts);
        let mut handshake = vec![CLIENT_HELLO];
        handshake.extend_from_slice(&u32::try_from(body.len()).unwrap().to_be_bytes()[1..]);
        handshake.extend_from_slice(&body);
        let mut record = vec![HANDSHAKE, 3, 1];
        record.extend_from_slice(&u16::try_from(handshake.len()).unwrap().to_be_bytes());
        record.extend_from_slice(&handshake);
        record
    }

    pub(crate) fn sni(name: &str) -> (u16, Vec<u8>) {
        let mut entry = vec![0];
        entry.extend_from_slice(&u16::try_from(name.len()).unwrap().to_be_bytes());
        entry.extend_from_slice(name.as_bytes());
        let mut data = u16::try_from(entry.len()).unwrap().to_be_bytes().to_vec();
        data.extend_from_slice(&entry);
        (EXT_SERVER_NAME, data)
    }

    fn named(name: &str, encrypted: bool) -> Peek {
        Peek::Hello(ClientHello {
            server_name: Some(name.to_owned()),
            encrypted,
        })
    }

    #[test]
    fn the_server_name_is_read_whole_or_asked_more_of() {
        let record = hello_record(&[(10, vec![0, 2, 0, 29]), sni("Gmail.googleapis.com")]);
        assert_eq!(peek(&record), named("Gmail.googleapis.com", false));
        for cut in 0..record.len() {
            assert_eq!(peek(&record[..cut]), Peek::Incomplete, "cut at {cut}");
        }
    }

    #[test]
    fn a_hello_split_over_records_is_joined() {
        let record = hello_record(&[sni("api.example.com")]);
        let handshake = &record[5..];
        let (a, b) = handshake.split_at(10);
        let mut split = Vec::new();
        for part in [a, b] {
            split.extend_from_slice(&[HANDSHAKE, 3, 3]);
            split.extend_from_slice(&u16::try_from(part.len()).unwrap().to_be_bytes());
            split.extend_from_slice(part);
        }
        assert_eq!(peek(&split), named("api.example.com", false));
    }

    #[test]
    fn encrypted_hellos_are_flagged() {
        for kind in [0xfe0d, 0xfe0a, EXT_ESNI] {
            let record = hello_record(&[sni("public.example.com"), (kind, vec![1, 2, 3])]);
            assert_eq!(peek(&record), named("public.example.com", true));
        }
    }

    #[test]
    fn no_extensions_or_no_sni_means_no_name() {
        let record = hello_record(&[(10, vec![0, 2, 0, 29])]);
        assert_eq!(
            peek(&record),
            Peek::Hello(ClientHello {
                server_name: None,
                encrypted: false
            })
        );
    }

    #[test]
    fn other_bytes_are_not_a_hello() {
        assert!(matches!(
            peek(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
            Peek::Invalid(_)
        ));
        assert!(matches!(
            peek(&[22, 3, 3, 0, 4, 2, 0, 0, 0]),
            Peek::Invalid(_)
        ));
        assert!(matches!(peek(&[22, 3, 3, 0, 0]), Peek::Invalid(_)));
        let two = hello_record(&[sni("a.example.com"), sni("b.example.com")]);
        assert!(matches!(peek(&two), Peek::Invalid(_)));
        let mut huge = vec![22, 3, 3, 0, 16, CLIENT_HELLO, 0x7f, 0xff, 0xff];
        huge.resize(21, 0);
        assert!(matches!(peek(&huge), Peek::Invalid(_)));
    }
}

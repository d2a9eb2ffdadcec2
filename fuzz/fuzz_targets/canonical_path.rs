//! The canonical path: any input has one, it is a fixed point, and
//! `is_canonical` agrees with it.
#![no_main]

use airlock::canonical::path::{canonical, is_canonical};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = String::from_utf8_lossy(data);
    let c = canonical(&path);
    assert_eq!(
        is_canonical(&path),
        c == path,
        "is_canonical({path:?}), canonical {c:?}"
    );
    assert!(
        is_canonical(&c),
        "canonical({path:?}) = {c:?} is not canonical"
    );
    assert_eq!(canonical(&c), c, "canonical is not idempotent on {path:?}");
    assert!(c.starts_with('/'), "{c:?}");
    assert!(
        !c.contains("//") && !c.contains('\\') && !c.contains(';'),
        "{c:?}"
    );
    assert!(c == "/" || !c.ends_with('/'), "{c:?}");
    assert!(
        c.split('/').skip(1).all(|s| s != "." && s != ".."),
        "a dot segment in {c:?}"
    );
    // The same as decoding in whole rounds until nothing is left.
    let mut rounds = path.to_string();
    while let Some(next) = decode_round(&rounds) {
        rounds = next;
    }
    assert_eq!(canonical(&rounds), c, "rounds of decoding read {rounds:?}");
});

/// One left-to-right round of decoding `%XX` (under any number of escaped
/// `%`s) of unreserved characters, `/` and `\`; `None` when none was.
fn decode_round(path: &str) -> Option<String> {
    let b = path.as_bytes();
    let hex = |i: usize| -> Option<u8> {
        let s = std::str::from_utf8(b.get(i..i + 2)?).ok()?;
        u8::from_str_radix(s, 16)
            .ok()
            .filter(|_| s.bytes().all(|c| c.is_ascii_hexdigit()))
    };
    let wanted = |c: u8| c.is_ascii_alphanumeric() || b"-._~/\\".contains(&c);
    let mut out = Vec::with_capacity(b.len());
    let mut changed = false;
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let mut at = i + 1;
            while hex(at) == Some(0x25) {
                at += 2;
            }
            if let Some(c) = hex(at).filter(|&c| wanted(c)) {
                out.push(c);
                i = at + 2;
                changed = true;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    changed.then(|| String::from_utf8(out).expect("ASCII for ASCII"))
}

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
});

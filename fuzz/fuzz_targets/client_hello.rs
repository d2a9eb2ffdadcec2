//! ClientHello peeking: never panics, asks for more only below the bound,
//! and a hello read whole reads the same from a longer buffer while its
//! prefixes read as incomplete or as the same hello.
#![no_main]

use airlock::tls::hello::{MAX_HELLO, Peek, peek};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let got = peek(data);
    if got == Peek::Incomplete {
        assert!(data.len() < MAX_HELLO);
    }
    if data.len() + 1 >= MAX_HELLO {
        return;
    }
    // More bytes never change a verdict.
    let mut longer = data.to_vec();
    longer.push(data.first().copied().unwrap_or(22));
    if got != Peek::Incomplete {
        assert_eq!(peek(&longer), got, "one more byte changed the verdict");
    }
    if let Peek::Hello(_) = &got {
        // Every prefix (a stride of them for long inputs) is incomplete
        // or already the same hello.
        let step = (data.len() / 512).max(1);
        for cut in (0..data.len()).step_by(step) {
            let p = peek(&data[..cut]);
            assert!(
                p == Peek::Incomplete || p == got,
                "prefix of {cut} bytes read as {p:?}, the whole as {got:?}"
            );
        }
    }
});

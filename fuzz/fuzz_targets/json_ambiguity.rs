//! JSON ambiguity: airlock's reading is serde_json's, and it is unambiguous
//! only when serde_json reads exactly one value.
#![no_main]

use airlock::canonical::json::{Ambiguity, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let parsed = parse(data);
    let serde = serde_json::from_slice::<serde_json::Value>(data);
    if let Some(a) = &parsed.ambiguity {
        let _ = a.to_string();
    }
    match (&parsed.ambiguity, &serde) {
        (None, Ok(v)) => assert_eq!(parsed.value.as_ref(), Some(v)),
        (None, Err(e)) => panic!("unambiguous, but serde_json fails: {e}"),
        (Some(a), Err(_)) => assert!(matches!(a, Ambiguity::NotOneValue(_)), "{a:?}"),
        (Some(_), Ok(_)) => {}
    }
    // With or without ambiguity, the value is the one serde_json reads.
    assert_eq!(parsed.value, serde.ok());
    assert_eq!(parsed.unambiguous().is_some(), parsed.ambiguity.is_none());
});

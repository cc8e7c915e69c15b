//! Digest parsing: any string either fails cleanly or yields a digest that
//! prints back as exactly the same string.
//!
//! Exact equality holds because the grammar is canonical: one spelling per
//! algorithm and lowercase hex only. Storage paths are derived from the
//! printed form, so two spellings of one digest would be two files.

#![no_main]

use kraken_core::Digest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(digest) = input.parse::<Digest>() else {
        return;
    };
    let printed = digest.to_string();
    assert_eq!(printed, input);
    assert_eq!(printed.parse::<Digest>(), Ok(digest));
    assert_eq!(digest.as_bytes().len(), digest.algorithm().hash_len());
});

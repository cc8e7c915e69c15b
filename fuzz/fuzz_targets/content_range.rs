//! Upload `Content-Range` headers (`<start>-<end>`, inclusive): any value
//! parses or is refused without a panic, and what parses never runs
//! backwards, so a chunk's length `end - start + 1` cannot underflow.

#![no_main]

use kraken_core::parse_upload_range;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|header: &str| {
    if let Ok((start, end)) = parse_upload_range(header) {
        assert!(start <= end, "{header:?} parsed as {start}-{end}");
        let _ = (end - start).checked_add(1);
    }
});

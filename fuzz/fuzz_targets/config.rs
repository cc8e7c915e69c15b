//! The config loader of the binaries: any text, read as the config file of
//! any of the five components, is accepted or refused with an error;
//! nothing panics, not the TOML parser, the serde defaults, human units nor
//! the validate steps.

#![no_main]

use libfuzzer_sys::fuzz_target;

const COMPONENTS: [&str; 5] = ["origin", "tracker", "build-index", "proxy", "agent"];

fuzz_target!(|input: (u8, &str)| {
    let (which, text) = input;
    let component = COMPONENTS[usize::from(which) % COMPONENTS.len()];
    let _ = kraken_bins::components::parse(component, text);
});

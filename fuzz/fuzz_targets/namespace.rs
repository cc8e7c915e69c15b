//! Namespace validation: whatever is accepted is safe to turn into a
//! relative path under a data directory.
//!
//! Every accepted namespace's components are non-empty, never `.` or `..`,
//! and each is exactly one normal path component, so joining them can never
//! climb out of the directory they are joined to.

#![no_main]

use std::path::{Component, Path};

use kraken_core::{MAX_NAMESPACE_LEN, Namespace};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(namespace) = Namespace::new(input) else {
        return;
    };
    assert_eq!(namespace.as_str(), input);
    assert!(!input.is_empty() && input.len() <= MAX_NAMESPACE_LEN);
    assert_eq!(input.parse::<Namespace>().as_ref(), Ok(&namespace));

    let mut count = 0;
    for component in namespace.components() {
        count += 1;
        assert!(!component.is_empty() && component != "." && component != "..");
        let parts: Vec<_> = Path::new(component).components().collect();
        assert!(
            matches!(parts.as_slice(), [Component::Normal(_)]),
            "{component:?} of {input:?} is not one plain file name"
        );
    }
    assert_eq!(count, input.split('/').count());
});

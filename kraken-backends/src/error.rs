//! The errors of this crate's own making: configuration and routing.
//!
//! Failures of a backend operation are [`BackendError`](kraken_core::BackendError)s,
//! so callers classify them the same way whichever backend answered; this
//! enum covers what goes wrong before any backend is asked.

use kraken_core::Namespace;

/// A configuration or routing failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An option value is out of range or inconsistent with another.
    #[error("invalid option `{option}`: {reason}")]
    InvalidOption {
        /// The option's name, as written in config.
        option: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A namespace routing pattern is not a valid regex.
    #[error("invalid namespace pattern {pattern:?}")]
    BadPattern {
        /// The pattern as configured, before anchoring.
        pattern: String,
        /// Why the regex crate refused it.
        #[source]
        source: regex::Error,
    },
    /// No route's pattern matches a namespace.
    #[error("no backend is configured for namespace {namespace}")]
    NoRoute {
        /// The namespace that matched nothing.
        namespace: Namespace,
    },
    /// No route has a pattern that is written the same way.
    #[error("no route has the pattern {pattern:?}")]
    UnknownPattern {
        /// The pattern looked for.
        pattern: String,
    },
    /// A namespace or pattern that must accept pushes maps to a backend
    /// that cannot store them.
    #[error("{what} accepts pushes but routes to the read-only {backend} backend")]
    ReadOnly {
        /// The namespace or pattern checked.
        what: String,
        /// The kind of the backend it routes to.
        backend: &'static str,
    },
    /// A backend's options do not work, or its start-up check failed.
    #[error("{0}")]
    Config(String),
}

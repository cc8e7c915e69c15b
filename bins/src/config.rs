//! Config files of the binaries: TOML, with serde defaults, human units
//! (`30s`, `64MiB`), unknown keys rejected and a validate step, so a typo
//! or an impossible setting stops the process at start with the file, line
//! and key named, never later at the first request.

use std::fmt;
use std::path::Path;

use anyhow::Context;
use serde::de::DeserializeOwned;

/// A config a binary reads from a file.
pub trait ComponentConfig: DeserializeOwned + fmt::Debug {
    /// Checks settings that parse but cannot work together.
    ///
    /// # Errors
    ///
    /// A message naming the first bad setting.
    fn validate(&self) -> Result<(), String>;

    /// Reads the files the config names (TLS certificates and keys) and
    /// checks they are usable. Run by [`load`], at start and by `--check`,
    /// but not by [`parse`], which never touches the filesystem.
    ///
    /// # Errors
    ///
    /// A message naming the table and the file at fault.
    fn check_files(&self) -> Result<(), String> {
        Ok(())
    }
}

/// Parses and validates a config from TOML text.
///
/// # Errors
///
/// The parser's error (with line, column and key) or the validation
/// message.
pub fn parse<T: ComponentConfig>(text: &str) -> anyhow::Result<T> {
    let config: T = toml::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
    config.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(config)
}

/// Reads, parses and validates the config file at `path`.
///
/// # Errors
///
/// As [`parse`], with the path named; or the file cannot be read.
pub fn load<T: ComponentConfig>(path: &Path) -> anyhow::Result<T> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    let config: T = parse(&text).with_context(|| format!("config file {}", path.display()))?;
    config
        .check_files()
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("config file {}", path.display()))?;
    Ok(config)
}

//! The library's error type. Every variant names the file or value at fault and says what is
//! wrong, so that a CLI user can act on the message alone.

use std::path::{Path, PathBuf};

/// Errors returned by the `cras` library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or folder could not be read or written.
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        /// Not a `#[source]`: the message already includes it (no doubled text in error chains).
        error: std::io::Error,
    },
    /// A dataset folder does not have the expected layout or content.
    #[error("{path}: {msg}")]
    Dataset { path: PathBuf, msg: String },
    /// An image or mask file could not be decoded or is unusable.
    #[error("{path}: {msg}")]
    Image { path: PathBuf, msg: String },
    /// A weight file is unreadable or does not match the expected network.
    #[error("{path}: {msg}")]
    Weights { path: PathBuf, msg: String },
    /// A model checkpoint is unreadable or incompatible.
    #[error("{path}: {msg}")]
    Checkpoint { path: PathBuf, msg: String },
    /// A configuration value is out of range or inconsistent.
    #[error("invalid {name} = {value}: {msg}")]
    Config {
        name: String,
        value: String,
        msg: String,
    },
    /// A tensor operation failed.
    #[error("tensor operation failed: {0}")]
    Tensor(#[from] candle_core::Error),
    /// Anything else, with a message.
    #[error("{0}")]
    Other(String),
}

/// Result alias used across the library.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().to_path_buf(),
            error: source,
        }
    }
    /// A dataset layout error on `path`.
    pub fn dataset(path: impl AsRef<Path>, msg: impl Into<String>) -> Self {
        Error::Dataset {
            path: path.as_ref().to_path_buf(),
            msg: msg.into(),
        }
    }
    /// An image decoding error on `path`.
    pub fn image(path: impl AsRef<Path>, msg: impl Into<String>) -> Self {
        Error::Image {
            path: path.as_ref().to_path_buf(),
            msg: msg.into(),
        }
    }
    /// A weight-file error on `path`.
    pub fn weights(path: impl AsRef<Path>, msg: impl Into<String>) -> Self {
        Error::Weights {
            path: path.as_ref().to_path_buf(),
            msg: msg.into(),
        }
    }
    /// A checkpoint error on `path`.
    pub fn checkpoint(path: impl AsRef<Path>, msg: impl Into<String>) -> Self {
        Error::Checkpoint {
            path: path.as_ref().to_path_buf(),
            msg: msg.into(),
        }
    }
    /// An invalid configuration value.
    pub fn config(name: &str, value: impl std::fmt::Display, msg: impl Into<String>) -> Self {
        Error::Config {
            name: name.to_string(),
            value: value.to_string(),
            msg: msg.into(),
        }
    }
}

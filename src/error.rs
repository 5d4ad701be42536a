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

/// Writes `bytes` to `path` atomically: a temporary file in the same folder, then a rename, so
/// that a failed run never leaves a half-written file behind nor destroys an older one.
///
/// The temporary file is `.<name>.<pid>.<n>.cras-tmp`; one left by a killed earlier write of
/// the same `path` is removed first (so at most one can be left over, until the next write). The
/// file gets the permissions of the `path` it replaces, else the usual ones for a new file
/// (0666 less the umask), not the 0600 of a private temporary file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| Error::io(path, std::io::Error::other("not a file path")))?;
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let prefix = {
        let mut p = std::ffi::OsString::from(".");
        p.push(name);
        p.push(".");
        p
    };
    remove_leftovers(dir, &prefix);
    let mut tmp_name = prefix;
    tmp_name.push(format!(
        "{}.{}.cras-tmp",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let tmp = dir.join(tmp_name);
    let written = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        if let Ok(old) = std::fs::metadata(path) {
            file.set_permissions(old.permissions())?;
        }
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(path, e));
    }
    Ok(())
}

/// Removes `<prefix>*.cras-tmp` files in `dir`: temporary files of killed writes.
fn remove_leftovers(dir: &Path, prefix: &std::ffi::OsStr) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let prefix = prefix.as_encoded_bytes();
    for e in entries.flatten() {
        let n = e.file_name();
        let b = n.as_encoded_bytes();
        if b.starts_with(prefix) && b.ends_with(b".cras-tmp") {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

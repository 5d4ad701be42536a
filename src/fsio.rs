//! Atomic file writes, the crate's ONE helper for them (a leaf: imports only [`crate::error`]).
//! Every file the library or the CLI writes for a user goes through [`write_atomic`] (bytes in
//! memory) or [`write_atomic_with`] (streamed, e.g. a download): a temporary file in the same
//! folder, synced, then renamed over the target, so that a failed run never leaves a
//! half-written file behind nor destroys an older one.
//!
//! The temporary file is `.<name>.<pid>.<n>.cras-tmp`; one left by a killed earlier write of
//! the same path is removed first (so at most one can be left over, until the next write). The
//! file gets the permissions of the file it replaces, else the usual ones for a new file (0666
//! less the umask), not the 0600 of a private temporary file.

use std::fs::File;
use std::path::Path;

use crate::error::{Error, Result};

/// Writes `bytes` to `path` atomically (see the module documentation). An error names `path`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    write_atomic_with(path, |file| {
        file.write_all(bytes).map_err(|e| Error::io(path, e))
    })
}

/// Creates `path` atomically from what `write` puts in the (new, empty) temporary file: the
/// file is synced and renamed over `path` only when `write` succeeds; on any error the
/// temporary file is removed and `path` is left as it was. Errors of the file system name
/// `path`; `write`'s own errors are returned as they are.
pub fn write_atomic_with<T>(path: &Path, write: impl FnOnce(&mut File) -> Result<T>) -> Result<T> {
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
    let written = write_then_rename(&tmp, path, write);
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Creates `tmp`, lets `write` fill it, syncs it and renames it to `path`.
fn write_then_rename<T>(
    tmp: &Path,
    path: &Path,
    write: impl FnOnce(&mut File) -> Result<T>,
) -> Result<T> {
    let io = |e| Error::io(path, e);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(tmp)
        .map_err(io)?;
    if let Ok(old) = std::fs::metadata(path) {
        file.set_permissions(old.permissions()).map_err(io)?;
    }
    let out = write(&mut file)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(tmp, path).map_err(io)?;
    Ok(out)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_streamed_write_leaves_the_old_file_and_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.bin");
        write_atomic(&path, b"old").unwrap();
        let e = write_atomic_with(&path, |f| {
            use std::io::Write;
            f.write_all(b"half").unwrap();
            Err::<(), _>(Error::Other("broke off".into()))
        })
        .unwrap_err();
        assert!(e.to_string().contains("broke off"), "{e}");
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        let n = write_atomic_with(&path, |f| {
            use std::io::Write;
            f.write_all(b"new").map_err(|e| Error::io(&path, e))?;
            Ok(3)
        })
        .unwrap();
        assert_eq!((n, std::fs::read(&path).unwrap()), (3, b"new".to_vec()));
    }
}

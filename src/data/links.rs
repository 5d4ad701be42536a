//! Symbolic links that lead nowhere, met while discovering a dataset.
//!
//! Input: a path found in a dataset folder (or named by a manifest row). Output: whether it is a
//! broken symbolic link ([`broken`]): dangling (its target does not exist) or looping (its
//! target leads back to itself, "too many levels of symbolic links"), with what is wrong.
//! Discovery follows links, so such an entry is neither a file nor a folder: it is skipped, and
//! [`skip`] says so with a warning naming it (never silently). [`gather`] runs a discovery and
//! also returns every link it skipped, for `cras data inspect` to list and count. Discovery lists
//! folders on the calling thread, which is what [`gather`] watches; a manifest row naming a
//! broken link is an error naming it (see [`super::manifest`]).

use std::cell::RefCell;
use std::path::{Path, PathBuf};

/// A symbolic link skipped by discovery.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct BrokenLink {
    /// The link.
    pub path: PathBuf,
    /// What is wrong: its target does not exist, or the links loop.
    pub reason: String,
}

/// What is wrong with `path` when it is a symbolic link that cannot be followed to a file or
/// folder; `None` for anything else (a file, a folder, a good link, a missing path).
pub fn broken(path: &Path) -> Option<String> {
    let own = std::fs::symlink_metadata(path).ok()?;
    if !own.file_type().is_symlink() {
        return None;
    }
    let e = std::fs::metadata(path).err()?;
    let target = std::fs::read_link(path)
        .map(|t| t.display().to_string())
        .unwrap_or_else(|_| "?".into());
    Some(if e.kind() == std::io::ErrorKind::NotFound {
        format!("a broken symbolic link: its target {target} does not exist")
    } else {
        // ELOOP ("too many levels of symbolic links") for a loop; said as the system says it.
        format!("a symbolic link that cannot be followed to {target} ({e}; a loop of links?)")
    })
}

thread_local! {
    /// The links skipped on this thread while a [`gather`] runs (one list per nested call).
    static GATHERING: RefCell<Vec<Vec<BrokenLink>>> = const { RefCell::new(Vec::new()) };
}

/// Skips the broken link `path` (`reason` from [`broken`]): a warning naming it, and a record
/// for the [`gather`] running on this thread, if any.
pub fn skip(path: &Path, reason: String) {
    tracing::warn!("skipping {}: {reason}", path.display());
    let link = BrokenLink {
        path: path.to_path_buf(),
        reason,
    };
    GATHERING.with(|g| {
        if let Some(list) = g.borrow_mut().last_mut() {
            list.push(link);
        }
    });
}

/// Runs `discover` and returns its result with the broken links it skipped on this thread
/// (sorted, each once).
pub fn gather<T>(discover: impl FnOnce() -> T) -> (T, Vec<BrokenLink>) {
    /// Ends the gathering even when `discover` panics, so this thread's stack stays balanced.
    struct Scope;
    impl Drop for Scope {
        fn drop(&mut self) {
            GATHERING.with(|g| g.borrow_mut().pop());
        }
    }
    GATHERING.with(|g| g.borrow_mut().push(Vec::new()));
    let scope = Scope;
    let out = discover();
    let mut links = GATHERING
        .with(|g| g.borrow_mut().last_mut().map(std::mem::take))
        .unwrap_or_default();
    drop(scope);
    links.sort();
    links.dedup();
    (out, links)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dangling_and_looping_links_are_broken_and_gathered_the_rest_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("file.png"), b"x").unwrap();
        std::os::unix::fs::symlink("file.png", d.join("good.png")).unwrap();
        std::os::unix::fs::symlink("gone.png", d.join("dangling.png")).unwrap();
        std::os::unix::fs::symlink("loop_b.png", d.join("loop_a.png")).unwrap();
        std::os::unix::fs::symlink("loop_a.png", d.join("loop_b.png")).unwrap();
        assert_eq!(broken(&d.join("file.png")), None);
        assert_eq!(broken(&d.join("good.png")), None);
        assert_eq!(broken(&d.join("missing.png")), None);
        let dangling = broken(&d.join("dangling.png")).expect("dangling");
        assert!(dangling.contains("gone.png") && dangling.contains("does not exist"));
        let looping = broken(&d.join("loop_a.png")).expect("looping");
        assert!(looping.contains("loop_b.png") && looping.contains("loop"));

        // Outside a gather a skip only warns; inside, it is recorded once.
        skip(&d.join("dangling.png"), dangling.clone());
        let ((), links) = gather(|| {
            for name in ["loop_a.png", "dangling.png", "dangling.png"] {
                let p = d.join(name);
                skip(&p, broken(&p).unwrap());
            }
        });
        let paths: Vec<_> = links.iter().map(|l| l.path.clone()).collect();
        assert_eq!(paths, [d.join("dangling.png"), d.join("loop_a.png")]);
        assert_eq!(links[0].reason, dangling);
        let ((), none) = gather(|| ());
        assert!(none.is_empty());
    }
}

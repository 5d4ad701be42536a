//! The image files a command line names ([`collect_images`]): files as given, folders searched
//! recursively with `walkdir`, following symbolic links, each folder walked once (by its
//! canonical path) so that a folder reached twice is listed once. A link to a folder being
//! walked or to one above the folder named (a loop, found by `walkdir`) is not followed (said
//! in the log). What cannot be read is reported as (path, what is wrong) and never stops the
//! others.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use walkdir::WalkDir;

/// The image files of the arguments, and the arguments that could not be read.
pub struct Collected {
    /// Files as given, folders expanded into their image files (sorted per folder argument).
    pub files: Vec<PathBuf>,
    /// (path, what is wrong) for each argument or folder that could not be read.
    pub errors: Vec<(PathBuf, String)>,
}

/// Expands folders into their image files (sorted), keeps files as given. A missing path or an
/// unreadable folder is reported in [`Collected::errors`]. Symbolic links are followed, but
/// each folder is walked once (by its canonical path), so link loops end and a folder reached
/// twice, through links or from two arguments, is listed once.
pub fn collect_images(paths: &[PathBuf]) -> Collected {
    let mut out = Collected {
        files: Vec::new(),
        errors: Vec::new(),
    };
    let mut seen = HashSet::new();
    for p in paths {
        if p.is_dir() {
            let mut found = walk(p, &mut seen, &mut out.errors);
            found.sort();
            out.files.extend(found);
        } else if p.exists() {
            out.files.push(p.clone());
        } else {
            out.errors
                .push((p.clone(), "no such file or folder".to_string()));
        }
    }
    out
}

/// The image files under `root`, skipping folders already in `seen` (canonical paths).
fn walk(
    root: &Path,
    seen: &mut HashSet<PathBuf>,
    errors: &mut Vec<(PathBuf, String)>,
) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut it = WalkDir::new(root)
        .follow_links(true)
        .sort_by_file_name()
        .into_iter();
    while let Some(entry) = it.next() {
        match entry {
            Ok(e) if e.file_type().is_dir() => match std::fs::canonicalize(e.path()) {
                Ok(real) => {
                    if !seen.insert(real) {
                        it.skip_current_dir();
                    }
                }
                Err(err) => {
                    errors.push((e.into_path(), err.to_string()));
                    it.skip_current_dir();
                }
            },
            Ok(e) => {
                if is_image(e.path()) {
                    found.push(e.into_path());
                }
            }
            Err(err) => on_error(&err, root, &mut found, errors),
        }
    }
    found
}

/// What `walkdir` could not follow or read under `root`: a loop is logged and skipped, a
/// broken link named like an image is listed (its line then says it cannot be read), anything
/// else goes to `errors`.
fn on_error(
    err: &walkdir::Error,
    root: &Path,
    found: &mut Vec<PathBuf>,
    errors: &mut Vec<(PathBuf, String)>,
) {
    let path = err.path().unwrap_or(root).to_path_buf();
    if let Some(ancestor) = err.loop_ancestor() {
        // A link to a folder being walked, or to one above the folder named: its images are
        // listed once already, or lie outside the folder named.
        tracing::info!(
            "not following {}: it leads back to {} (a loop)",
            path.display(),
            ancestor.display()
        );
    } else if is_broken_link(&path) {
        if is_image(&path) {
            found.push(path);
        }
    } else {
        let what = err
            .io_error()
            .map_or_else(|| err.to_string(), |e| e.to_string());
        errors.push((path, what));
    }
}

/// A symbolic link whose target does not exist.
fn is_broken_link(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_symlink()) && !p.exists()
}

/// Whether the file name has an image extension (png, jpg, jpeg, bmp, tif, tiff; any case).
pub fn is_image(p: &Path) -> bool {
    matches!(
        p.extension()
            .and_then(|e| e.to_str())
            .map(|e| e.to_ascii_lowercase())
            .as_deref(),
        Some("png" | "jpg" | "jpeg" | "bmp" | "tif" | "tiff")
    )
}

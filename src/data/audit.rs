//! Per-file checks of a discovered dataset, for `cras data inspect`: every problem listed, not
//! only the first.
//!
//! Input: a [`Dataset`] from [`crate::data::layouts::load_layout`] (any layout or manifest:
//! files found, none read) and whether to decode every file. Train, val and test images are
//! checked, and every mask of a test image (MVTec LOCO has several). Output: an [`Audit`] with each class's image sizes and every
//! [`Problem`] found, each naming its file. The checks are the decoders' own
//! ([`crate::data::decode`]), so a file flagged as an error is one that `train`, `eval`,
//! `predict` or `serve` would refuse:
//! - by default each file is read once and NOT decoded: its header (format from the content,
//!   size), the pixel limit ([`DEFAULT_MAX_PIXELS`]: a header bomb), and its end (a JPEG without
//!   its end-of-image marker is truncated; a PNG without its IEND chunk is decoded to tell
//!   whether its pixels are whole). Each mask must have its image's size.
//! - with `decode`, every file is also fully decoded (images as RGB, masks as masks), which finds
//!   damage inside the data too, at the cost of a decode per file.
//!
//! Warnings (the file is usable): content in another format than its extension says (every
//! command decodes by content), a PNG cut after its pixel data.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::data::dataset::check_mask_size;
use crate::data::decode::{
    check_complete, check_pixels, decode_mask_bytes, decode_rgb_bytes, open_bytes,
    DEFAULT_MAX_PIXELS,
};
use crate::data::Dataset;
use crate::Error;

/// How bad a problem is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// The file is unusable: the commands refuse it.
    Error,
    /// The file is usable but suspicious.
    Warning,
}

/// One problem with one file.
#[derive(Clone, Debug, PartialEq)]
pub struct Problem {
    /// The class it belongs to.
    pub class: String,
    /// The file.
    pub path: PathBuf,
    /// Error or warning.
    pub severity: Severity,
    /// What is wrong and what to do.
    pub message: String,
}

/// The outcome of [`audit`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Audit {
    /// Per class (dataset order), the image sizes seen and how many images have each.
    pub sizes: Vec<BTreeMap<(u32, u32), usize>>,
    /// Every problem, by class then path.
    pub problems: Vec<Problem>,
    /// Files checked (images and masks).
    pub files: usize,
}

impl Audit {
    /// Number of unusable files.
    pub fn errors(&self) -> usize {
        self.problems
            .iter()
            .filter(|p| p.severity == Severity::Error)
            .count()
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Role {
    Image,
    Mask,
}

/// What one file's checks found.
struct FileCheck {
    dims: Option<(u32, u32)>,
    problems: Vec<(Severity, String)>,
}

/// Checks every file of `ds` (module docs); `decode` decodes each one fully.
pub fn audit(ds: &Dataset, decode: bool) -> Audit {
    let mut out = Audit::default();
    for c in &ds.classes {
        let mut files: Vec<(&Path, Role)> = c
            .train
            .iter()
            .chain(&c.val)
            .map(|p| (p.as_path(), Role::Image))
            .collect();
        for t in &c.test {
            files.push((&t.path, Role::Image));
            files.extend(t.masks().map(|m| (m.as_path(), Role::Mask)));
        }
        let checks: Vec<FileCheck> = files
            .par_iter()
            .map(|(p, role)| check_file(p, *role, decode))
            .collect();
        let mut problems: Vec<Problem> = Vec::new();
        let mut sizes = BTreeMap::new();
        let mut dims: BTreeMap<&Path, (u32, u32)> = BTreeMap::new();
        for ((path, role), check) in files.iter().zip(checks) {
            if let Some(d) = check.dims {
                dims.insert(path, d);
                if *role == Role::Image {
                    *sizes.entry(d).or_default() += 1;
                }
            }
            problems.extend(
                check
                    .problems
                    .into_iter()
                    .map(|(severity, message)| Problem {
                        class: c.name.clone(),
                        path: path.to_path_buf(),
                        severity,
                        message,
                    }),
            );
        }
        for t in &c.test {
            for mask in t.masks() {
                let (Some(i), Some(m)) = (dims.get(t.path.as_path()), dims.get(mask.as_path()))
                else {
                    continue;
                };
                if let Err(e) = check_mask_size(mask, *m, &t.path, *i) {
                    problems.push(Problem {
                        class: c.name.clone(),
                        path: mask.clone(),
                        severity: Severity::Error,
                        message: reason(e),
                    });
                }
            }
        }
        problems.sort_by(|a, b| a.path.cmp(&b.path));
        out.files += files.len();
        out.sizes.push(sizes);
        out.problems.extend(problems);
    }
    out
}

/// The message of `e` without the path it names (the problem lists the path).
fn reason(e: Error) -> String {
    match e {
        Error::Image { msg, .. } | Error::Dataset { msg, .. } => msg,
        other => other.to_string(),
    }
}

fn check_file(path: &Path, role: Role, decode: bool) -> FileCheck {
    let mut problems = Vec::new();
    let fail = |problems: &mut Vec<_>, msg: String| {
        problems.push((Severity::Error, msg));
        FileCheck {
            dims: None,
            problems: std::mem::take(problems),
        }
    };
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => return fail(&mut problems, format!("cannot read the file: {e}")),
    };
    let name = path.to_string_lossy();
    let header = match open_bytes(&bytes, &name).and_then(|o| o.header()) {
        Ok(h) => h,
        Err(e) => return fail(&mut problems, reason(e)),
    };
    if let Err(e) = check_pixels(header.width, header.height, DEFAULT_MAX_PIXELS, path) {
        return fail(&mut problems, format!("header bomb: {}", reason(e)));
    }
    let named = image::ImageFormat::from_path(path).ok();
    if named != Some(header.format) {
        let ext = path
            .extension()
            .map(|e| e.to_string_lossy().into_owned())
            .unwrap_or_default();
        let right = header
            .format
            .extensions_str()
            .first()
            .copied()
            .unwrap_or("?");
        problems.push((
            Severity::Warning,
            format!(
                "the content is {:?} but the name says .{ext}; every command decodes it by its \
                 content (rename it to .{right} to avoid confusion)",
                header.format
            ),
        ));
    }
    let complete = match check_complete(&bytes, header.format) {
        Err(r) => return fail(&mut problems, r.to_string()),
        Ok(c) => c,
    };
    if decode || !complete {
        if let Err(e) = full_decode(&bytes, &name, role) {
            let prefix = if complete {
                ""
            } else {
                "truncated PNG (no IEND chunk): "
            };
            return fail(&mut problems, format!("{prefix}{}", reason(e)));
        }
        if !complete {
            problems.push((
                Severity::Warning,
                "the PNG ends without its IEND chunk (cut short?) but its pixels decode"
                    .to_string(),
            ));
        }
    }
    FileCheck {
        dims: Some((header.width, header.height)),
        problems,
    }
}

fn full_decode(bytes: &[u8], name: &str, role: Role) -> crate::Result<()> {
    match role {
        Role::Image => decode_rgb_bytes(bytes, name).map(|_| ()),
        Role::Mask => decode_mask_bytes(bytes, name).map(|_| ()),
    }
}

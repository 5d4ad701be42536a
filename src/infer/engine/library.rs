//! Finding the runtimes' shared libraries at run time (nothing is linked or downloaded at build
//! time).
//!
//! Search order, for each runtime:
//! 1. the runtime crate's usual variable: `ORT_DYLIB_PATH` (a file) for ONNX Runtime;
//!    `OPENVINO_INSTALL_DIR`, `INTEL_OPENVINO_DIR` (installation folders) for OpenVINO;
//! 2. the system's library paths (`LD_LIBRARY_PATH` / `DYLD_LIBRARY_PATH` / `PATH`, then the
//!    usual system folders);
//! 3. a pip-installed `onnxruntime` / `openvino` in the active Python environment
//!    (`VIRTUAL_ENV`, then `CONDA_PREFIX`): `site-packages/onnxruntime/capi/` and
//!    `site-packages/openvino/libs/`.
//!
//! A missing library is an error that names what to install and the variable that points at it.

use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// A located shared library and how it was found (for logs and `cras bench`).
#[derive(Clone, Debug)]
pub struct Located {
    pub path: PathBuf,
    pub how: String,
}

/// The ONNX Runtime shared library (`libonnxruntime.so*`, `onnxruntime.dll`, `libonnxruntime*.dylib`).
pub fn onnxruntime() -> Result<Located> {
    if let Some(v) = std::env::var_os("ORT_DYLIB_PATH").filter(|v| !v.is_empty()) {
        let path = PathBuf::from(v);
        return if path.is_file() {
            Ok(Located {
                path,
                how: "ORT_DYLIB_PATH".into(),
            })
        } else {
            Err(Error::Other(format!(
                "ORT_DYLIB_PATH={}: no such file (it must name the ONNX Runtime shared library, e.g. libonnxruntime.so.1.32.0)",
                path.display()
            )))
        };
    }
    let stem = "onnxruntime";
    if let Some(found) = search_dirs(&system_dirs(), stem) {
        return Ok(found.with_how("system library path"));
    }
    let venv: Vec<PathBuf> = site_packages()
        .into_iter()
        .map(|s| s.join("onnxruntime").join("capi"))
        .collect();
    if let Some(found) = search_dirs(&venv, stem) {
        return Ok(found.with_how("Python environment"));
    }
    Err(Error::Other(
        "ONNX Runtime was not found: `pip install onnxruntime` in the active virtualenv (VIRTUAL_ENV), \
         install its release's lib/ folder on the library path, or set ORT_DYLIB_PATH to \
         libonnxruntime.so (ONNX Runtime 1.24 or newer)"
            .into(),
    ))
}

/// The OpenVINO C library (`libopenvino_c.so*`); its CPU plugin sits in the same folder.
pub fn openvino() -> Result<Located> {
    let stem = "openvino_c";
    for var in ["OPENVINO_INSTALL_DIR", "INTEL_OPENVINO_DIR"] {
        if let Some(v) = std::env::var_os(var).filter(|v| !v.is_empty()) {
            let root = PathBuf::from(&v);
            let dirs: Vec<PathBuf> = [
                "runtime/lib/intel64/Release",
                "runtime/lib/intel64",
                "runtime/lib/aarch64",
                "runtime/lib/arm64/Release",
                "runtime/bin/intel64/Release",
                "lib",
                "libs",
                "",
            ]
            .iter()
            .map(|sub| root.join(sub))
            .collect();
            return search_dirs(&dirs, stem)
                .map(|f| f.with_how(var))
                .ok_or_else(|| {
                    Error::Other(format!(
                        "{var}={}: no OpenVINO C library (libopenvino_c) below this folder",
                        root.display()
                    ))
                });
        }
    }
    if let Some(found) = search_dirs(&system_dirs(), stem) {
        return Ok(found.with_how("system library path"));
    }
    let venv: Vec<PathBuf> = site_packages()
        .into_iter()
        .map(|s| s.join("openvino").join("libs"))
        .collect();
    if let Some(found) = search_dirs(&venv, stem) {
        return Ok(found.with_how("Python environment"));
    }
    Err(Error::Other(
        "OpenVINO was not found: `pip install openvino` in the active virtualenv (VIRTUAL_ENV), \
         install OpenVINO and set OPENVINO_INSTALL_DIR (or source its setupvars.sh), or put \
         libopenvino_c on the library path (OpenVINO 2024 or newer)"
            .into(),
    ))
}

impl Located {
    fn with_how(mut self, how: &str) -> Self {
        self.how = how.to_string();
        self
    }
}

/// Folders of the dynamic loader's search path, then the usual system folders.
fn system_dirs() -> Vec<PathBuf> {
    let var = if cfg!(target_os = "macos") {
        "DYLD_LIBRARY_PATH"
    } else if cfg!(windows) {
        "PATH"
    } else {
        "LD_LIBRARY_PATH"
    };
    let mut dirs: Vec<PathBuf> = std::env::var_os(var)
        .map(|v| std::env::split_paths(&v).collect())
        .unwrap_or_default();
    if cfg!(unix) {
        for d in [
            "/usr/local/lib",
            "/usr/local/lib64",
            "/usr/lib/x86_64-linux-gnu",
            "/usr/lib/aarch64-linux-gnu",
            "/usr/lib64",
            "/usr/lib",
            "/opt/homebrew/lib",
        ] {
            dirs.push(PathBuf::from(d));
        }
    }
    dirs
}

/// `site-packages` folders of the active Python environment (virtualenv, then conda).
fn site_packages() -> Vec<PathBuf> {
    let mut out = Vec::new();
    for var in ["VIRTUAL_ENV", "CONDA_PREFIX"] {
        let Some(root) = std::env::var_os(var).filter(|v| !v.is_empty()) else {
            continue;
        };
        let root = PathBuf::from(root);
        // Windows layout.
        out.push(root.join("Lib").join("site-packages"));
        // Unix layout: lib/python3.X/site-packages (newest first).
        let mut versions: Vec<PathBuf> = std::fs::read_dir(root.join("lib"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("python"))
            })
            .collect();
        versions.sort();
        versions.reverse();
        out.extend(versions.into_iter().map(|p| p.join("site-packages")));
    }
    out
}

/// The first folder holding the library `stem`: the unversioned name, else the newest
/// versioned one (`libonnxruntime.so.1.32.0`, `libopenvino_c.so.2641`).
fn search_dirs(dirs: &[PathBuf], stem: &str) -> Option<Located> {
    dirs.iter()
        .find_map(|d| in_dir(d, stem))
        .map(|path| Located {
            path,
            how: String::new(),
        })
}

fn in_dir(dir: &Path, stem: &str) -> Option<PathBuf> {
    let (prefix, suffix) = (std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX);
    let plain = dir.join(format!("{prefix}{stem}{suffix}"));
    if plain.is_file() {
        return Some(plain);
    }
    // Versioned names: libX.so.1.2.3 (Linux), libX.1.2.3.dylib (macOS).
    let mut versioned: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .filter(|p| {
            let Some(name) = p.file_name().and_then(|n| n.to_str()) else {
                return false;
            };
            let Some(rest) = name.strip_prefix(&format!("{prefix}{stem}")) else {
                return false;
            };
            let version_after = rest.strip_prefix(suffix).is_some_and(|v| {
                v.starts_with('.') && v[1..].starts_with(|c: char| c.is_ascii_digit())
            });
            let version_before = rest.ends_with(suffix)
                && rest.starts_with('.')
                && rest[1..].starts_with(|c: char| c.is_ascii_digit());
            version_after || version_before
        })
        .collect();
    versioned.sort();
    versioned.pop()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versioned_and_plain_names_are_found_and_others_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        assert!(in_dir(d, "onnxruntime").is_none());
        std::fs::write(d.join("libonnxruntime_providers_shared.so"), b"x").unwrap();
        std::fs::write(d.join("libonnxruntime.so.1.31.0"), b"x").unwrap();
        std::fs::write(d.join("libonnxruntime.so.1.32.0"), b"x").unwrap();
        if cfg!(target_os = "linux") {
            assert_eq!(
                in_dir(d, "onnxruntime").unwrap(),
                d.join("libonnxruntime.so.1.32.0"),
                "the newest versioned library, never the providers library"
            );
            std::fs::write(d.join("libonnxruntime.so"), b"x").unwrap();
            assert_eq!(
                in_dir(d, "onnxruntime").unwrap(),
                d.join("libonnxruntime.so")
            );
        }
    }
}

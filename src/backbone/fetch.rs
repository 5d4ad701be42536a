//! Downloading torchvision's ImageNet weight files into the user's cache folder.
//!
//! torchvision names its files `<arch>-<first 8 hex chars of the SHA-256>.pth`; a download is
//! accepted only when its hash starts with that prefix, and is stored atomically (streamed to a
//! temporary file in the cache folder, then renamed: [`crate::fsio::write_atomic_with`]). Without network access the error says
//! exactly where to put a file obtained elsewhere.

use super::weights::hex;
use super::Arch;
use crate::{Error, Result};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// torchvision's ImageNet (IMAGENET1K_V1, what `pretrained=True` loads) file name of `arch`.
pub fn known_file_name(arch: Arch) -> &'static str {
    match arch {
        Arch::WideResnet50_2 => "wide_resnet50_2-95faca4d.pth",
        Arch::WideResnet101_2 => "wide_resnet101_2-32ee1156.pth",
        Arch::Resnet18 => "resnet18-f37072fd.pth",
        Arch::Resnet50 => "resnet50-0676ba61.pth",
    }
}

/// torchvision's download URL of `arch`'s ImageNet weights.
pub fn default_url(arch: Arch) -> String {
    format!(
        "https://download.pytorch.org/models/{}",
        known_file_name(arch)
    )
}

/// `<user cache folder>/cras/weights` (e.g. `~/.cache/cras/weights` on Linux).
pub fn default_cache_dir() -> Result<PathBuf> {
    dirs::cache_dir()
        .map(|d| d.join("cras").join("weights"))
        .ok_or_else(|| Error::Other("no user cache folder on this system; pass --cache DIR".into()))
}

/// The SHA-256 prefix a torchvision-style file name carries (`name-95faca4d.pth` ->
/// `95faca4d`): the hex run of 8 or more characters after the last `-` of the stem.
pub fn expected_hash_prefix(file_name: &str) -> Option<String> {
    let stem = file_name.split('.').next()?;
    let (_, tail) = stem.rsplit_once('-')?;
    (tail.len() >= 8 && tail.chars().all(|c| c.is_ascii_hexdigit()))
        .then(|| tail.to_ascii_lowercase())
}

/// The last path segment of a URL (query and fragment removed).
fn url_file_name(url: &str) -> Option<&str> {
    let path = url.split(['?', '#']).next()?;
    path.rsplit('/').next().filter(|s| !s.is_empty())
}

/// Copies `reader` into `file` (`dest`'s temporary file), hashing on the way: the byte count
/// and the SHA-256 in hex. A broken-off download is an error naming `url`.
fn stream_hashed(
    mut reader: impl Read,
    file: &mut std::fs::File,
    dest: &Path,
    url: &str,
    offline_hint: &dyn Fn() -> String,
) -> Result<(usize, String)> {
    let mut hasher = <sha2::Sha256 as sha2::Digest>::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0usize;
    loop {
        let n = reader.read(&mut buf).map_err(|e| {
            Error::Other(format!(
                "download of {url} broke off after {total} bytes: {e}; {}",
                offline_hint()
            ))
        })?;
        if n == 0 {
            break;
        }
        sha2::Digest::update(&mut hasher, &buf[..n]);
        file.write_all(&buf[..n]).map_err(|e| Error::io(dest, e))?;
        total += n;
    }
    Ok((total, hex(&sha2::Digest::finalize(hasher))))
}

/// Whether the file already at `dest` can be used: its SHA-256 starts with the `prefix` its name
/// promises (or its name promises none).
fn cached_copy_is_good(dest: &Path, prefix: Option<&str>) -> Result<bool> {
    let sha = super::weights::sha256_file(dest)?;
    match prefix {
        Some(p) if sha.starts_with(p) => {
            tracing::info!("{} is already cached (sha256 {sha})", dest.display());
            Ok(true)
        }
        None => {
            tracing::info!(
                "{} is already cached (no hash in its name to check)",
                dest.display()
            );
            Ok(true)
        }
        Some(p) => {
            tracing::warn!(
                "{} has sha256 {sha}, not the {p}... its name promises: downloading again",
                dest.display()
            );
            Ok(false)
        }
    }
}

/// Downloads `url` into `cache_dir` unless a copy with the right hash is already there, and
/// returns the stored file's path.
pub fn fetch(url: &str, cache_dir: &Path) -> Result<PathBuf> {
    let name = url_file_name(url)
        .ok_or_else(|| Error::config("url", url, "does not end with a file name"))?;
    let dest = cache_dir.join(name);
    let prefix = expected_hash_prefix(name);
    if dest.is_file() && cached_copy_is_good(&dest, prefix.as_deref())? {
        return Ok(dest);
    }
    if prefix.is_none() {
        tracing::warn!(
            "{name} carries no SHA-256 prefix in its name: the download cannot be checked"
        );
    }
    let offline_hint = || {
        format!(
            "without network access, download {url} on another machine and copy it to {} \
             (or pass the file with --weights PATH)",
            dest.display()
        )
    };
    let response = ureq::get(url)
        .timeout(std::time::Duration::from_secs(600))
        .call()
        .map_err(|e| Error::Other(format!("could not download {url}: {e}; {}", offline_hint())))?;
    std::fs::create_dir_all(cache_dir).map_err(|e| Error::io(cache_dir, e))?;
    let (total, sha) = crate::fsio::write_atomic_with(&dest, |file| {
        let (total, sha) = stream_hashed(response.into_reader(), file, &dest, url, &offline_hint)?;
        if let Some(p) = &prefix {
            if !sha.starts_with(p.as_str()) {
                return Err(Error::weights(
                    &dest,
                    format!(
                        "download of {url} has sha256 {sha}, but its name promises {p}...: not stored"
                    ),
                ));
            }
        }
        Ok((total, sha))
    })?;
    tracing::info!("stored {} ({total} bytes, sha256 {sha})", dest.display());
    Ok(dest)
}

/// Fetches `arch`'s ImageNet weights (or `url`) into `cache_dir` (default: [`default_cache_dir`]).
pub fn fetch_arch(arch: Arch, url: Option<&str>, cache_dir: Option<&Path>) -> Result<PathBuf> {
    let dir = match cache_dir {
        Some(d) => d.to_path_buf(),
        None => default_cache_dir()?,
    };
    let url = url.map(str::to_string).unwrap_or_else(|| default_url(arch));
    fetch(&url, &dir)
}

//! Downloading torchvision's ImageNet weight files into the user's cache folder.
//!
//! torchvision names its files `<arch>-<first 8 hex chars of the SHA-256>.pth`; a download is
//! accepted only when its hash starts with that prefix, and is stored atomically (streamed to a
//! temporary file in the cache folder, then renamed). Without network access the error says
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

/// Downloads `url` into `cache_dir` unless a copy with the right hash is already there, and
/// returns the stored file's path.
pub fn fetch(url: &str, cache_dir: &Path) -> Result<PathBuf> {
    let name = url_file_name(url)
        .ok_or_else(|| Error::config("url", url, "does not end with a file name"))?;
    let dest = cache_dir.join(name);
    let prefix = expected_hash_prefix(name);
    if dest.is_file() {
        let sha = super::weights::sha256_file(&dest)?;
        match &prefix {
            Some(p) if sha.starts_with(p.as_str()) => {
                tracing::info!("{} is already cached (sha256 {sha})", dest.display());
                return Ok(dest);
            }
            None => {
                tracing::info!(
                    "{} is already cached (no hash in its name to check)",
                    dest.display()
                );
                return Ok(dest);
            }
            Some(p) => tracing::warn!(
                "{} has sha256 {sha}, not the {p}... its name promises: downloading again",
                dest.display()
            ),
        }
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
    let mut tmp =
        tempfile::NamedTempFile::new_in(cache_dir).map_err(|e| Error::io(cache_dir, e))?;
    let mut hasher = <sha2::Sha256 as sha2::Digest>::new();
    let mut reader = response.into_reader();
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
        tmp.write_all(&buf[..n])
            .map_err(|e| Error::io(tmp.path(), e))?;
        total += n;
    }
    let sha = hex(&sha2::Digest::finalize(hasher));
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
    tmp.as_file().sync_all().map_err(|e| Error::io(&dest, e))?;
    tmp.persist(&dest).map_err(|e| Error::io(&dest, e.error))?;
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

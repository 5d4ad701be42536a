//! The configuration of `cras serve` ([`ServeConfig`], its defaults and checks) and the checks
//! of what it names: the address to bind ([`check_addr`]: loopback only unless allowed) and the
//! token file ([`read_token`]).

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// Everything `cras serve` needs.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// Model file written by `cras train`.
    pub model: PathBuf,
    /// Address to bind (`host:port`; port 0 picks a free one).
    pub addr: String,
    /// Device: auto, cpu, cuda or cuda:N.
    pub device: String,
    /// Scoring engine and precision (built once per model generation).
    pub engine: crate::infer::engine::EngineOptions,
    /// Most images per worker batch.
    pub max_batch: usize,
    /// Longest wait for a batch to fill, in milliseconds.
    pub max_wait_ms: u64,
    /// Most requests waiting for the worker.
    pub queue: usize,
    /// Per-request time limit, in milliseconds.
    pub timeout_ms: u64,
    /// Largest request body, in MiB.
    pub max_body_mb: u64,
    /// Largest decoded image, in pixels.
    pub max_pixels: u64,
    /// Most decoded pixels held at once across all requests (413 above, 503 when busy).
    pub max_inflight_pixels: u64,
    /// File holding the bearer token clients must send.
    pub token_file: Option<PathBuf>,
    /// Allow binding a non-loopback address.
    pub allow_remote: bool,
    /// Most connections open at once (keep it under the process's file-descriptor limit).
    pub max_connections: usize,
    /// Longest wait for a request head, in milliseconds (idle connections are closed then).
    pub header_timeout_ms: u64,
    /// Longest wait for a request body, in milliseconds (408 after).
    pub body_timeout_ms: u64,
    /// Longest wait for open connections after a shutdown signal, in milliseconds.
    pub shutdown_grace_ms: u64,
    /// The model's name under `/v2/models/` (None: the model file's stem, see
    /// [`super::v2::default_model_name`]).
    pub model_name: Option<String>,
    /// The saved threshold set's file, watched for changes (None: beside the model,
    /// [`super::thresholds::path_for`]).
    pub thresholds_file: Option<PathBuf>,
    /// Refuse `PUT` / `DELETE /v1/thresholds` with 409 (the file is managed elsewhere).
    pub thresholds_read_only: bool,
    /// How often the threshold file is looked at, in milliseconds.
    pub thresholds_poll_ms: u64,
}

impl ServeConfig {
    /// The defaults of `cras serve` for `model`.
    pub fn new(model: impl Into<PathBuf>) -> Self {
        Self {
            model: model.into(),
            addr: "127.0.0.1:8080".into(),
            device: "auto".into(),
            engine: crate::infer::engine::EngineOptions::default(),
            max_batch: 8,
            max_wait_ms: 5,
            queue: 64,
            timeout_ms: 10_000,
            max_body_mb: 32,
            max_pixels: 40_000_000,
            max_inflight_pixels: 160_000_000,
            token_file: None,
            allow_remote: false,
            max_connections: 256,
            header_timeout_ms: 10_000,
            body_timeout_ms: 30_000,
            shutdown_grace_ms: 15_000,
            model_name: None,
            thresholds_file: None,
            thresholds_read_only: false,
            thresholds_poll_ms: 1000,
        }
    }

    /// The model's name under `/v2/models/`: `model_name`, else the model file's stem.
    pub fn served_name(&self) -> Result<String> {
        match &self.model_name {
            Some(name) => super::v2::check_model_name(name).map(|_| name.clone()),
            None => Ok(super::v2::default_model_name(&self.model)),
        }
    }

    /// The saved threshold set's file: `thresholds_file`, else beside the model.
    pub fn thresholds_path(&self) -> PathBuf {
        self.thresholds_file
            .clone()
            .unwrap_or_else(|| super::thresholds::path_for(&self.model))
    }

    /// Checks the numeric limits.
    pub fn validate(&self) -> Result<()> {
        let positive = [
            ("max-batch", self.max_batch as u64),
            ("queue", self.queue as u64),
            ("timeout-ms", self.timeout_ms),
            ("max-body-mb", self.max_body_mb),
            ("max-pixels", self.max_pixels),
            ("max-inflight-pixels", self.max_inflight_pixels),
            ("max-connections", self.max_connections as u64),
            ("header-timeout-ms", self.header_timeout_ms),
            ("body-timeout-ms", self.body_timeout_ms),
            ("thresholds-poll-ms", self.thresholds_poll_ms),
        ];
        for (name, v) in positive {
            if v == 0 {
                return Err(Error::config(name, v, "must be at least 1"));
            }
        }
        Ok(())
    }
}

/// Refuses a non-loopback `addr` unless `allow_remote`; returns the resolved addresses.
pub fn check_addr(addr: &str, allow_remote: bool) -> Result<Vec<SocketAddr>> {
    let resolved: Vec<SocketAddr> = addr
        .to_socket_addrs()
        .map_err(|e| Error::config("addr", addr, format!("not a host:port address ({e})")))?
        .collect();
    if resolved.is_empty() {
        return Err(Error::config("addr", addr, "resolves to no address"));
    }
    if !allow_remote {
        if let Some(remote) = resolved.iter().find(|a| !a.ip().is_loopback()) {
            return Err(Error::config(
                "addr",
                addr,
                format!("{remote} is not a loopback address; pass --allow-remote to serve other machines"),
            ));
        }
    }
    Ok(resolved)
}

/// Reads the bearer token from `path` (surrounding whitespace removed; must not be empty).
pub fn read_token(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let token = text.trim().to_string();
    if token.is_empty() || token.chars().any(char::is_whitespace) {
        return Err(Error::config(
            "token-file",
            path.display(),
            "must hold one token without spaces",
        ));
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_addresses_need_allow_remote() {
        assert!(check_addr("127.0.0.1:0", false).is_ok());
        assert!(check_addr("[::1]:0", false).is_ok());
        let err = check_addr("0.0.0.0:8080", false).unwrap_err().to_string();
        assert!(err.contains("--allow-remote"), "{err}");
        assert!(check_addr("0.0.0.0:8080", true).is_ok());
        assert!(check_addr("not an address", false).is_err());
    }

    #[test]
    fn zero_limits_are_refused() {
        let mut c = ServeConfig::new("m.safetensors");
        assert!(c.validate().is_ok());
        c.queue = 0;
        assert!(c.validate().unwrap_err().to_string().contains("queue"));
    }
}

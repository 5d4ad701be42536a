//! `cras serve`: runs the HTTP inference service ([`cras::serve`]) until SIGTERM or SIGINT
//! (graceful: in-flight requests finish, exit code 0); SIGHUP reloads the model file, keeping
//! the old model when the new one fails to load.

use std::path::PathBuf;

use cras::serve::{ServeConfig, Server, ServerHandle};

use super::args::{DeviceArg, EngineArgs};

/// Serve a trained model over HTTP (loopback only unless --allow-remote).
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Model file written by `cras train` (re-read on SIGHUP).
    #[arg(long)]
    pub model: PathBuf,
    /// Address to listen on; non-loopback addresses need --allow-remote.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: String,
    #[command(flatten)]
    pub device: DeviceArg,
    /// Most images per inference batch.
    #[arg(long, default_value_t = 8)]
    pub max_batch: usize,
    /// Longest wait for a batch to fill, in milliseconds.
    #[arg(long, default_value_t = 5)]
    pub max_wait_ms: u64,
    /// Most requests waiting for inference (then 503 with Retry-After).
    #[arg(long, default_value_t = 64)]
    pub queue: usize,
    /// Per-request time limit in milliseconds (then 504).
    #[arg(long, default_value_t = 10_000)]
    pub timeout_ms: u64,
    /// Largest request body in MiB (then 413).
    #[arg(long, default_value_t = 32)]
    pub max_body_mb: u64,
    /// Largest decoded image in pixels (then 413).
    #[arg(long, default_value_t = 40_000_000)]
    pub max_pixels: u64,
    /// Most decoded pixels held at once across all requests (a larger request gets 413, one
    /// that does not fit beside those in flight 503 with Retry-After).
    #[arg(long, default_value_t = 160_000_000)]
    pub max_inflight_pixels: u64,
    /// File holding a bearer token; requests other than /v1/health must send
    /// `Authorization: Bearer <token>`.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Allow listening on a non-loopback address.
    #[arg(long)]
    pub allow_remote: bool,
    /// Most connections open at once (further clients wait to be accepted).
    #[arg(long, default_value_t = 256)]
    pub max_connections: usize,
    /// Longest wait for a request head in milliseconds (idle connections close then).
    #[arg(long, default_value_t = 10_000)]
    pub header_timeout_ms: u64,
    /// Longest wait for a request body in milliseconds (then 408).
    #[arg(long, default_value_t = 30_000)]
    pub body_timeout_ms: u64,
    /// On SIGTERM/SIGINT, longest wait for open connections in milliseconds.
    #[arg(long, default_value_t = 15_000)]
    pub shutdown_grace_ms: u64,
    /// The model's name in the Open Inference Protocol routes (/v2/models/NAME); default: the
    /// model file's stem.
    #[arg(long)]
    pub model_name: Option<String>,
    /// The saved threshold set's file (default: beside the model, MODEL.thresholds.json);
    /// watched about every second, so replicas pointing at one shared file decide alike.
    #[arg(long)]
    pub thresholds_file: Option<PathBuf>,
    /// Refuse PUT and DELETE /v1/thresholds with 409 (the file is managed elsewhere, e.g. a
    /// read-only ConfigMap).
    #[arg(long)]
    pub thresholds_read_only: bool,
    #[command(flatten)]
    pub engine: EngineArgs,
}

/// Runs `cras serve`.
pub fn run(a: ServeArgs) -> anyhow::Result<()> {
    let config = ServeConfig {
        model: a.model,
        addr: a.addr,
        device: a.device.device,
        engine: a.engine.options(),
        max_batch: a.max_batch,
        max_wait_ms: a.max_wait_ms,
        queue: a.queue,
        timeout_ms: a.timeout_ms,
        max_body_mb: a.max_body_mb,
        max_pixels: a.max_pixels,
        max_inflight_pixels: a.max_inflight_pixels,
        token_file: a.token_file,
        allow_remote: a.allow_remote,
        max_connections: a.max_connections,
        header_timeout_ms: a.header_timeout_ms,
        body_timeout_ms: a.body_timeout_ms,
        shutdown_grace_ms: a.shutdown_grace_ms,
        model_name: a.model_name,
        thresholds_file: a.thresholds_file,
        thresholds_read_only: a.thresholds_read_only,
        thresholds_poll_ms: 1000,
    };
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        // Listen before the (slow) model load so that an early SIGTERM still stops cleanly.
        let shutdown = shutdown_signal()?;
        let server = Server::bind(&config).await?;
        eprintln!(
            "serving {} on http://{} (POST /v1/predict, GET /v1/health /v1/model /metrics /v1/openapi.json)",
            config.model.display(),
            server.local_addr()?
        );
        eprintln!("inspection page: http://{}/", server.local_addr()?);
        eprintln!(
            "Open Inference Protocol: http://{}/v2/models/{}",
            server.local_addr()?,
            config.served_name()?
        );
        tokio::spawn(reload_on_sighup(server.handle()));
        server.run(shutdown).await?;
        eprintln!("stopped");
        Ok(())
    })
}

/// A future completing on SIGTERM or SIGINT; the handlers are installed when this returns.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        Ok(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = interrupt.recv() => {}
            }
            tracing::info!("shutting down: finishing in-flight requests");
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("shutting down: finishing in-flight requests");
        })
    }
}

/// Reloads the model on every SIGHUP (errors are logged by the handle; the old model stays).
async fn reload_on_sighup(handle: ServerHandle) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hup = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("cannot listen for SIGHUP ({e}); model reload disabled");
                return;
            }
        };
        while hup.recv().await.is_some() {
            let h = handle.clone();
            let _ = tokio::task::spawn_blocking(move || h.reload()).await;
        }
    }
    #[cfg(not(unix))]
    {
        let _ = handle;
    }
}

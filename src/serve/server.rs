//! The server's lifecycle: [`Server::bind`] (checks, model load, worker start, bind),
//! [`Server::run`] (serve until the shutdown signal, finish in-flight requests, join the
//! worker) and the [`ServerHandle`] for model reloads, pauses and the generation in service.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::batcher::{BatchConfig, Batcher};
use super::config::{check_addr, read_token, ServeConfig};
use super::metrics::Metrics;
use super::model_slot::ModelSlot;
use super::{budget, conn, recent, router, thresholds, AppState, Limits};
use crate::{Error, Result};

/// A bound server, ready to [`run`](Server::run).
pub struct Server {
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    conn: conn::ConnLimits,
}

/// A handle to a running server: reloads, pause, counters.
#[derive(Clone)]
pub struct ServerHandle {
    state: Arc<AppState>,
}

impl Server {
    /// Loads the model, starts the worker and binds the address (checked by [`check_addr`]).
    pub async fn bind(config: &ServeConfig) -> Result<Self> {
        config.validate()?;
        let addrs = check_addr(&config.addr, config.allow_remote)?;
        let token = config.token_file.as_deref().map(read_token).transpose()?;
        let model_name = config.served_name()?;
        let saved = thresholds::ThresholdStore::open_with(
            config.thresholds_path(),
            config.thresholds_read_only,
        )?;
        let device = crate::device::select(&config.device)?;
        let path = config.model.clone();
        let engine = config.engine;
        let slot = tokio::task::spawn_blocking(move || ModelSlot::load(&path, &device, &engine))
            .await
            .map_err(|e| Error::Other(format!("loading the model failed unexpectedly: {e}")))??;
        let slot = Arc::new(slot);
        let metrics = Arc::new(Metrics::default());
        let batch = BatchConfig {
            max_batch: config.max_batch,
            max_wait: Duration::from_millis(config.max_wait_ms),
            queue: config.queue,
        };
        let batcher = Batcher::start(slot.clone(), batch, metrics.clone())
            .map_err(|e| Error::Other(format!("cannot start the inference worker: {e}")))?;
        let listener = tokio::net::TcpListener::bind(&addrs[..])
            .await
            .map_err(|e| Error::config("addr", &config.addr, format!("cannot bind: {e}")))?;
        let max_body =
            usize::try_from(config.max_body_mb.saturating_mul(1 << 20)).unwrap_or(usize::MAX);
        let state = Arc::new(AppState {
            slot,
            batcher,
            metrics,
            limits: Limits {
                max_pixels: config.max_pixels,
                timeout: Duration::from_millis(config.timeout_ms),
                max_body,
                body_timeout: Duration::from_millis(config.body_timeout_ms),
            },
            token,
            budget: budget::PixelBudget::new(config.max_inflight_pixels),
            started: Instant::now(),
            model_path: config.model.clone(),
            recent: recent::Recent::default(),
            thresholds: saved,
            model_name,
            thresholds_poll: Duration::from_millis(config.thresholds_poll_ms),
        });
        let conn = conn::ConnLimits {
            max_connections: config.max_connections,
            header_timeout: Duration::from_millis(config.header_timeout_ms),
            shutdown_grace: Duration::from_millis(config.shutdown_grace_ms),
        };
        Ok(Self {
            listener,
            state,
            conn,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> Result<SocketAddr> {
        self.listener
            .local_addr()
            .map_err(|e| Error::Other(format!("bound address: {e}")))
    }

    /// A handle for reloads and counters.
    pub fn handle(&self) -> ServerHandle {
        ServerHandle {
            state: self.state.clone(),
        }
    }

    /// Serves until `shutdown` completes, then finishes in-flight requests and stops the worker.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<()> {
        let app = router(self.state.clone());
        let watcher = tokio::spawn(super::thresholds_watch::watch(
            self.state.clone(),
            self.state.thresholds_poll,
        ));
        conn::serve(self.listener, app, self.conn, shutdown).await;
        watcher.abort();
        let state = self.state;
        tokio::task::spawn_blocking(move || state.batcher.shutdown())
            .await
            .map_err(|e| Error::Other(format!("stopping the worker: {e}")))
    }
}

impl ServerHandle {
    /// Reloads the model from the configured path; see [`ServerHandle::reload_from`].
    /// The saved threshold set is re-read first (a damaged file keeps the set in force).
    pub fn reload(&self) -> Result<u64> {
        if let Err(e) = self.state.thresholds.reload() {
            tracing::error!("threshold set not reloaded, keeping the one in force: {e}");
        }
        let path = self.state.model_path.clone();
        self.reload_from(&path)
    }

    /// Loads the model at `path` beside the current one and swaps it in (new generation
    /// returned). On failure the current model keeps serving and the failure is counted.
    pub fn reload_from(&self, path: &Path) -> Result<u64> {
        match self.state.slot.reload(path) {
            Ok(generation) => {
                tracing::info!(
                    "reloaded {} (model generation {generation})",
                    path.display()
                );
                Ok(generation)
            }
            Err(e) => {
                self.state.metrics.observe_reload_failure();
                tracing::error!("reload failed, keeping the current model: {e}");
                Err(e)
            }
        }
    }

    /// The generation of the model serving now.
    pub fn generation(&self) -> u64 {
        self.state.slot.current().generation
    }

    /// Holds the worker before its next batch until the guard drops (see [`Batcher::pause`]).
    pub fn pause(&self) -> std::sync::MutexGuard<'_, ()> {
        self.state.batcher.pause()
    }
}

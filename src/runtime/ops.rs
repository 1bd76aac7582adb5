//! Operational endpoints of the streaming jobs: `/metrics` (Prometheus text format), `/healthz`
//! (the poll loop is advancing — also while a partition replays its tail) and `/readyz`
//! (partitions assigned and every one caught up with what was already published), served on
//! `--ops-bind` (env `KAPPA_OPS_BIND`) by a small axum server on its own thread.
//!
//! The numbers come from the job's [`Counters`] ([`super::metrics`]); this module only serves them.

use super::metrics::{render, Counters};
use super::shutdown::Shutdown;
use anyhow::Context as _;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::net::SocketAddr;
use std::sync::Arc;

/// `--ops-bind`: where a job serves `/metrics`, `/healthz` and `/readyz`.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct OpsArgs {
    /// Serve /metrics, /healthz and /readyz on this address (e.g. 0.0.0.0:9464); off when unset.
    #[arg(long, env = "KAPPA_OPS_BIND")]
    pub ops_bind: Option<SocketAddr>,
}

/// The router of the operational endpoints.
pub fn router(job: &'static str, counters: Arc<Counters>) -> Router {
    type Ops = State<(&'static str, Arc<Counters>)>;
    Router::new()
        .route(
            "/metrics",
            get(|State((job, c)): Ops| async move { metrics_response(render(job, &c)) }),
        )
        .route(
            "/healthz",
            get(|State((_, c)): Ops| async move {
                probe(c.ops.is_healthy(), "ok", "the poll loop is not advancing")
            }),
        )
        .route(
            "/readyz",
            get(|State((_, c)): Ops| async move {
                probe(c.ops.is_ready(), "ready", "not assigned or still replaying")
            }),
        )
        .with_state((job, counters))
}

/// A Prometheus text-format response.
pub fn metrics_response(text: String) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

fn probe(ok: bool, yes: &'static str, no: &'static str) -> Response {
    if ok {
        (StatusCode::OK, yes).into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, no).into_response()
    }
}

impl OpsArgs {
    /// Starts the endpoint server for `job` when `--ops-bind` is set; it stops with `shutdown`.
    pub fn spawn(
        &self,
        job: &'static str,
        counters: Arc<Counters>,
        shutdown: &Shutdown,
    ) -> anyhow::Result<()> {
        let Some(addr) = self.ops_bind else {
            return Ok(());
        };
        serve(addr, router(job, counters), shutdown)?;
        tracing::info!(%addr, "serving /metrics, /healthz and /readyz");
        Ok(())
    }
}

/// Serves `router` on `addr` on its own thread until `shutdown`. Binds before returning, so a
/// taken port is an error at start-up.
pub fn serve(addr: SocketAddr, router: Router, shutdown: &Shutdown) -> anyhow::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind(addr).with_context(|| format!("binding {addr}"))?;
    listener.set_nonblocking(true)?;
    let bound = listener.local_addr()?;
    let shutdown = shutdown.clone();
    std::thread::Builder::new()
        .name("ops-http".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => return tracing::error!(error = %e, "ops server runtime"),
            };
            let served = rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener)?;
                axum::serve(listener, router)
                    .with_graceful_shutdown(async move { shutdown.triggered().await })
                    .await
            });
            if let Err(e) = served {
                tracing::error!(error = %e, "ops server failed");
            }
        })?;
    Ok(bound)
}

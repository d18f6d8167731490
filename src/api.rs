//! The API server: `GET /health` and `GET /metrics` (Prometheus text format).

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use auditflow_core::metrics::Registry;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Binds the API address, with an error that says what to change.
pub async fn bind(address: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(address).await.with_context(|| {
        format!("cannot listen on {address} for the API; change [api] address or stop what uses it")
    })
}

/// Serves the API until `stop` fires.
pub async fn serve(listener: TcpListener, registry: Arc<Registry>, stop: CancellationToken) {
    let app = Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .with_state(registry);
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await;
    if let Err(error) = served {
        tracing::error!("the API server stopped: {error}");
    }
}

async fn health() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        "{\"status\":\"ok\"}\n",
    )
}

async fn metrics(State(registry): State<Arc<Registry>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        registry.render(),
    )
}

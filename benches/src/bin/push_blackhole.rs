//! A Loki push endpoint that stores nothing: it reads each push request's
//! body whole and answers 204, counting requests and bytes. `benches/loki.sh`
//! measures the `loki` sink's own cost (encoding, snappy, HTTP) against it.
//!
//!   push_blackhole 127.0.0.1:3199      (prints the totals on SIGINT/SIGTERM)

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::routing::post;

/// Requests and bytes taken.
#[derive(Default)]
struct Totals {
    requests: AtomicU64,
    bytes: AtomicU64,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let address = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:3199".to_string());
    let totals = Arc::new(Totals::default());
    let counted = totals.clone();
    let app = axum::Router::new()
        .route(
            "/loki/api/v1/push",
            post(move |body: Bytes| {
                let totals = counted.clone();
                async move {
                    totals.requests.fetch_add(1, Ordering::Relaxed);
                    totals.bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
                    StatusCode::NO_CONTENT
                }
            }),
        )
        // A push is as large as the sink's batch.max_bytes compressed: no limit here.
        .layer(axum::extract::DefaultBodyLimit::disable());
    let listener = tokio::net::TcpListener::bind(&address).await?;
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
        })
        .await?;
    println!(
        "{} requests, {} bytes",
        totals.requests.load(Ordering::Relaxed),
        totals.bytes.load(Ordering::Relaxed)
    );
    Ok(())
}

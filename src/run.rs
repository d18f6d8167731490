//! `auditflow run`: checks the configuration, starts the API server and the pipeline.

use std::path::Path;
use std::process::ExitCode;

use auditflow_core::metrics::Registry;
use auditflow_core::topology::{self, RunOptions};
use tokio_util::sync::CancellationToken;

use crate::{api, validate};

/// Runs the pipeline at `path` until SIGTERM/SIGINT (or, with `once`, until its input ends).
pub fn run(path: &Path, once: bool) -> anyhow::Result<ExitCode> {
    let Some(config) = validate::load(path) else {
        return Ok(ExitCode::FAILURE);
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(async move {
        let registry = Registry::new();
        let shutdown = CancellationToken::new();
        tokio::spawn(stop_on_signal(shutdown.clone()));
        let api_stop = CancellationToken::new();
        if let Some(api_config) = &config.api {
            let listener = api::bind(api_config.address).await?;
            tokio::spawn(api::serve(listener, registry.clone(), api_stop.clone()));
        }
        tracing::info!("pipeline {} started: {}", path.display(), config.summary());
        let result = topology::run(config, registry, RunOptions { once }, shutdown).await;
        api_stop.cancel();
        result?;
        tracing::info!("pipeline stopped: every in-flight event was delivered or reported as not delivered (counted in the errors metrics)");
        Ok(ExitCode::SUCCESS)
    });
    // A blocking read of stdin cannot be interrupted; do not wait for it to return.
    runtime.shutdown_timeout(RUNTIME_SHUTDOWN_GRACE);
    result
}

/// How long the runtime waits for blocking threads (a pending stdin read) once the pipeline has stopped.
const RUNTIME_SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_millis(200);

async fn stop_on_signal(shutdown: CancellationToken) {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!("cannot listen for SIGTERM: {error}");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = terminate => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
    }
    shutdown.cancel();
}

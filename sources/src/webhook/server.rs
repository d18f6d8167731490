//! Accepting connections and serving HTTP/1.1 on them.
//!
//! One task accepts connections; each connection runs in its own task: the TLS
//! handshake (bounded by `header_read_timeout`), then hyper's HTTP/1.1 server
//! with keep-alive and `header_read_timeout` (a client that sends its headers
//! too slowly is disconnected). On shutdown the listener closes, idle
//! connections close, and requests in progress finish (their events are
//! delivered and answered) before the source ends and the pipeline drains.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use auditflow_core::component::SourceContext;
use axum::body::Body;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::Request;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::handler::Receiver;
use super::{tls, WebhookConfig};

/// How many connections may wait to be accepted.
const LISTEN_BACKLOG: u32 = 1024;

/// A webhook source with its socket bound, ready to serve.
pub struct WebhookServer {
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    receiver: Arc<Receiver>,
    shutdown: CancellationToken,
    header_read_timeout: Duration,
}

impl WebhookServer {
    /// Loads the TLS files and binds the address (errors name the option to fix).
    pub fn bind(config: &WebhookConfig, context: SourceContext) -> anyhow::Result<WebhookServer> {
        let tls = config.tls.as_ref().map(tls::acceptor).transpose()?;
        let listener = listen(config.address).with_context(|| {
            format!(
                "cannot listen on {}; change `address` or stop what uses it",
                config.address
            )
        })?;
        tracing::info!(
            component_id = %context.id,
            "webhook source listening on {}{} ({})",
            config.address,
            config.path,
            match &config.tls {
                Some(tls) if tls.client_ca_file.is_some() => "HTTPS, client certificates required",
                Some(_) => "HTTPS",
                None => "plain HTTP",
            }
        );
        Ok(WebhookServer {
            listener,
            tls,
            shutdown: context.shutdown.clone(),
            header_read_timeout: config.header_read_timeout,
            receiver: Arc::new(Receiver::new(config, context)),
        })
    }

    /// Serves until shutdown, then lets the requests in progress finish.
    pub async fn run(self) -> anyhow::Result<()> {
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => break,
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, _peer)) => {
                        connections.spawn(self.connection(stream));
                    }
                    Err(error) => {
                        // Out of file descriptors, most likely: wait for some to close.
                        tracing::warn!("the webhook source cannot accept a connection: {error}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
        drop(self.listener);
        while connections.join_next().await.is_some() {}
        Ok(())
    }

    /// Serves one connection (TLS handshake first, if configured).
    fn connection(&self, stream: TcpStream) -> impl std::future::Future<Output = ()> + Send {
        let tls = self.tls.clone();
        let receiver = self.receiver.clone();
        let shutdown = self.shutdown.clone();
        let timeout = self.header_read_timeout;
        async move {
            let _ = stream.set_nodelay(true);
            let Some(acceptor) = tls else {
                return serve_http(stream, receiver, shutdown, timeout).await;
            };
            match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => serve_http(stream, receiver, shutdown, timeout).await,
                // A connection closed before its hello (a TCP probe) is not a failure.
                Ok(Err(error)) if error.kind() == std::io::ErrorKind::UnexpectedEof => {}
                Ok(Err(error)) => {
                    receiver.tls_failed();
                    tracing::debug!("webhook TLS handshake failed: {error}");
                }
                Err(_) => {
                    receiver.tls_failed();
                    tracing::debug!("webhook TLS handshake timed out");
                }
            }
        }
    }
}

/// A listening socket with a backlog large enough for bursts of connections.
fn listen(address: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if address.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(LISTEN_BACKLOG)
}

async fn serve_http<S>(
    stream: S,
    receiver: Arc<Receiver>,
    shutdown: CancellationToken,
    header_read_timeout: Duration,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |request: Request<Incoming>| {
        let receiver = receiver.clone();
        async move { Ok::<_, Infallible>(receiver.respond(request.map(Body::new)).await) }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .keep_alive(true);
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        _ = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = result {
        tracing::debug!("webhook connection ended: {error}");
    }
}

#![warn(missing_docs)]
//! auditflow-sinks: where events leave a pipeline.
//!
//! One module per sink `type`; [`register`] adds them all to a catalog.
//! [`encoding`] is the line encoding shared by the sinks that write lines;
//! [`http_client`] the batching, retries and acknowledgements shared by the
//! sinks that send HTTP requests (its batch settings also serve the `kafka`
//! sink); every retrying sink waits `auditflow_core::backoff`.

pub mod alertmanager;
pub mod blackhole;
pub mod console;
pub mod elasticsearch;
pub mod encoding;
pub mod file;
pub mod http;
pub mod http_client;
pub mod kafka;
pub mod local_store;
pub mod loki;
pub mod search;

use auditflow_core::component::{Catalog, ComponentSpec};

/// Registers every sink type.
pub fn register(catalog: &mut Catalog) {
    catalog.register("alertmanager", ComponentSpec::Sink(alertmanager::parse));
    catalog.register("blackhole", ComponentSpec::Sink(blackhole::parse));
    catalog.register("console", ComponentSpec::Sink(console::parse));
    catalog.register(
        elasticsearch::TYPE_NAME,
        ComponentSpec::Sink(elasticsearch::parse),
    );
    catalog.register("file", ComponentSpec::Sink(file::parse));
    catalog.register("http", ComponentSpec::Sink(http::parse));
    catalog.register(kafka::TYPE_NAME, ComponentSpec::Sink(kafka::parse));
    catalog.register(
        local_store::TYPE_NAME,
        ComponentSpec::Sink(local_store::parse),
    );
    catalog.register(loki::TYPE_NAME, ComponentSpec::Sink(loki::parse));
}

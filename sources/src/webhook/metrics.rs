//! The webhook source's own metrics, beside the component series every source has.
//!
//! - `auditflow_webhook_requests_total{code}`: requests answered, by HTTP status code;
//! - `auditflow_webhook_request_duration_seconds`: time from a request's headers
//!   to its answer (for a 200, that includes delivery by the sinks), as quantiles;
//! - `auditflow_webhook_requests_in_flight`: requests in progress.
//!
//! Events and bytes received are the component series
//! `auditflow_component_received_events_total` (events of valid requests) and
//! `auditflow_component_received_bytes_total` (bodies as received, before
//! decompression); errors by kind are `auditflow_component_errors_total`.

use std::time::Duration;

use auditflow_core::metrics::{ComponentMetrics, Gauge, Summary};

const REQUESTS: &str = "auditflow_webhook_requests_total";

/// The webhook source's series.
#[derive(Debug, Clone)]
pub struct WebhookMetrics {
    component: ComponentMetrics,
    duration: Summary,
    /// Requests in progress.
    pub in_flight: Gauge,
}

impl WebhookMetrics {
    /// Creates the series.
    pub fn new(component: &ComponentMetrics) -> WebhookMetrics {
        let registry = component.registry();
        let labels = component.labels_with(&[]);
        WebhookMetrics {
            duration: registry.summary(
                "auditflow_webhook_request_duration_seconds",
                "Time from a webhook request's headers to its answer (a 200 includes delivery).",
                &labels,
            ),
            in_flight: registry.gauge(
                "auditflow_webhook_requests_in_flight",
                "Webhook requests in progress.",
                &labels,
            ),
            component: component.clone(),
        }
    }

    /// Records an answered request.
    pub fn answered(&self, code: u16, duration: Duration) {
        let code = code.to_string();
        self.component
            .registry()
            .counter(
                REQUESTS,
                "Webhook requests answered, by HTTP status code.",
                &self.component.labels_with(&[("code", &code)]),
            )
            .add(1);
        self.duration.record_all([duration]);
    }

    /// Counts events and bytes of a received request.
    pub fn received(&self, events: usize, bytes: usize) {
        self.component.received_events.add(events as u64);
        self.component.received_bytes.add(bytes as u64);
    }

    /// Counts an error of one kind.
    pub fn error(&self, error_type: &str) {
        self.component.error(error_type, 1);
    }
}

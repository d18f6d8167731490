//! Synthetic Kubernetes audit traffic (work in progress).

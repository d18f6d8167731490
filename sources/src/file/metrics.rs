//! The file source's own metrics, beside the component series every source has.
//!
//! - `auditflow_file_read_offset_bytes{file}`: the offset read up to (end of the last complete line);
//! - `auditflow_file_committed_offset_bytes{file}`: the offset delivered up to;
//! - `auditflow_file_lag_bytes{file}`: the file's size minus the committed offset
//!   (what is written but not yet delivered; compressed files report 0);
//! - `auditflow_files_watched`: files open;
//! - `auditflow_file_rotations_total{kind="rename"|"truncate"}`: rotations seen;
//! - `auditflow_checkpoint_writes_total`: checkpoint files written.
//!
//! Per-file series are removed when the file is closed or renamed, so rotated
//! names do not pile up.

use auditflow_core::metrics::{ComponentMetrics, Counter, Gauge};

const READ_OFFSET: &str = "auditflow_file_read_offset_bytes";
const COMMITTED_OFFSET: &str = "auditflow_file_committed_offset_bytes";
const LAG: &str = "auditflow_file_lag_bytes";

/// The source-wide series.
#[derive(Debug, Clone)]
pub struct FileMetrics {
    component: ComponentMetrics,
    /// Files open.
    pub files_watched: Gauge,
    /// Renames seen (lumberjack rotation).
    pub renames: Counter,
    /// Truncations seen (copytruncate rotation).
    pub truncations: Counter,
    /// Checkpoint files written.
    pub checkpoint_writes: Counter,
}

/// The series of one file.
#[derive(Debug)]
pub struct FileGauges {
    label: String,
    /// The offset read up to.
    pub read_offset: Gauge,
    /// The offset delivered up to.
    pub committed_offset: Gauge,
    /// Size minus committed offset.
    pub lag: Gauge,
}

impl FileMetrics {
    /// Creates the source-wide series.
    pub fn new(component: &ComponentMetrics) -> FileMetrics {
        let registry = component.registry();
        let labels = component.labels_with(&[]);
        let rotations = |kind| {
            registry.counter(
                "auditflow_file_rotations_total",
                "File rotations the file source saw, by kind (rename or truncate).",
                &component.labels_with(&[("kind", kind)]),
            )
        };
        FileMetrics {
            files_watched: registry.gauge(
                "auditflow_files_watched",
                "Files the file source has open.",
                &labels,
            ),
            renames: rotations("rename"),
            truncations: rotations("truncate"),
            checkpoint_writes: registry.counter(
                "auditflow_checkpoint_writes_total",
                "Checkpoint files the file source wrote.",
                &labels,
            ),
            component: component.clone(),
        }
    }

    /// Creates the series of a file.
    pub fn file(&self, path: &str) -> FileGauges {
        let registry = self.component.registry();
        let labels = self.component.labels_with(&[("file", path)]);
        FileGauges {
            label: path.to_string(),
            read_offset: registry.gauge(
                READ_OFFSET,
                "Offset the file source has read a file up to (end of the last complete line).",
                &labels,
            ),
            committed_offset: registry.gauge(
                COMMITTED_OFFSET,
                "Offset up to which a file's events are delivered (what the checkpoint holds).",
                &labels,
            ),
            lag: registry.gauge(
                LAG,
                "Bytes of a file written but not yet delivered (size minus committed offset).",
                &labels,
            ),
        }
    }

    /// Removes the series of a file that is closed (or known under another name now).
    pub fn forget(&self, gauges: &FileGauges) {
        let registry = self.component.registry();
        let labels = self.component.labels_with(&[("file", &gauges.label)]);
        for name in [READ_OFFSET, COMMITTED_OFFSET, LAG] {
            registry.remove(name, &labels);
        }
    }

    /// Counts errors of one kind.
    pub fn error(&self, error_type: &str) {
        self.component.error(error_type, 1);
    }

    /// Counts bytes read.
    pub fn read_bytes(&self, bytes: usize) {
        self.component.received_bytes.add(bytes as u64);
    }
}

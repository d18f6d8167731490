//! `auditflow validate`: every error of a configuration, or a one-line summary.

use std::path::Path;
use std::process::ExitCode;

use auditflow_core::config::{load_file, PipelineConfig};

use crate::catalog;

/// Checks the configuration at `path`, printing its errors (stderr) or a summary (stdout).
pub fn validate(path: &Path) -> anyhow::Result<ExitCode> {
    match load(path) {
        Some(config) => {
            println!("{}: valid ({})", path.display(), config.summary());
            Ok(ExitCode::SUCCESS)
        }
        None => Ok(ExitCode::FAILURE),
    }
}

/// Loads and checks a configuration; prints warnings, or every error and returns `None`.
pub fn load(path: &Path) -> Option<PipelineConfig> {
    match load_file(path, &catalog::full()) {
        Ok(config) => {
            for warning in &config.warnings {
                eprintln!("warning: {warning}");
            }
            Some(config)
        }
        Err(invalid) => {
            for warning in &invalid.warnings {
                eprintln!("warning: {warning}");
            }
            let errors = invalid.errors;
            for error in &errors {
                eprintln!("error: {error}");
            }
            eprintln!(
                "{}: {} error{} found",
                path.display(),
                errors.len(),
                if errors.len() == 1 { "" } else { "s" }
            );
            None
        }
    }
}

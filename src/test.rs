//! `auditflow test`: runs the rule unit tests of a pipeline's `detect` transforms.
//!
//! Each `detect` transform lists its test files in `tests = [...]`; every test
//! runs against that transform's rules. Prints one line per test, the reasons
//! of each failure, and a summary; exits non-zero when a test fails or when
//! the configuration declares no test at all.

use std::path::Path;
use std::process::ExitCode;

use auditflow_core::config::ComponentConfig;
use auditflow_transforms::detect::testing::{read_test_file, run_test};
use auditflow_transforms::detect::DetectConfig;

use crate::validate;

/// Runs every rule test of the configuration at `path`.
pub fn test(path: &Path) -> anyhow::Result<ExitCode> {
    let Some(config) = validate::load(path) else {
        return Ok(ExitCode::FAILURE);
    };
    let mut passed = 0;
    let mut failed = 0;
    for component in &config.components {
        let ComponentConfig::Transform(transform) = &component.config else {
            continue;
        };
        let Some(detect) = transform
            .as_any()
            .and_then(|any| any.downcast_ref::<DetectConfig>())
        else {
            continue;
        };
        for file in &detect.options().tests {
            let tests = match read_test_file(file) {
                Ok(tests) => tests,
                Err(error) => {
                    eprintln!("error: transforms.{}: {error}", component.id);
                    failed += 1;
                    continue;
                }
            };
            for test in &tests.tests {
                let outcome = run_test(test, detect.rules());
                let status = if outcome.passed() { "ok" } else { "FAILED" };
                println!("test {}: {} ... {status}", component.id, outcome.name);
                for failure in &outcome.failures {
                    println!("    {failure}");
                }
                if outcome.passed() {
                    passed += 1;
                } else {
                    failed += 1;
                }
            }
        }
    }
    if passed + failed == 0 {
        eprintln!(
            "error: {}: no rule tests: list test files in `tests = [...]` of a detect transform",
            path.display()
        );
        return Ok(ExitCode::FAILURE);
    }
    println!("test result: {passed} passed; {failed} failed");
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

//! Every pipeline example in `docs/` is a valid configuration: each ```toml
//! block of each page is checked with `auditflow validate`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{binary, repository_dir, Workspace};

fn pages(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read docs/") {
        let path = entry.expect("a docs entry").path();
        if path.is_dir() {
            pages(&path, found);
        } else if path.extension().is_some_and(|e| e == "md") {
            found.push(path);
        }
    }
}

/// The ```toml blocks of a Markdown page.
fn toml_blocks(text: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        match (&mut current, line.trim_start()) {
            (None, "```toml") => current = Some(String::new()),
            (Some(_), "```") => blocks.extend(current.take()),
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

#[test]
fn every_toml_example_in_the_docs_validates() {
    let mut found = Vec::new();
    pages(&repository_dir().join("docs"), &mut found);
    let workspace = Workspace::new();
    let mut checked = 0;
    for page in &found {
        let text = std::fs::read_to_string(page).expect("read a page");
        for (index, block) in toml_blocks(&text).into_iter().enumerate() {
            let config = workspace.path(&format!("example-{checked}.toml"));
            std::fs::write(&config, &block).expect("write the example");
            let output = Command::new(binary())
                .args(["validate", "--config"])
                .arg(&config)
                .current_dir(repository_dir())
                // The secrets the examples name, as a deployment sets them.
                .env("ES_PASSWORD", "example-password")
                .env("ES_API_KEY", "ZXhhbXBsZTprZXk=")
                .env("LOKI_PASSWORD", "example-password")
                .output()
                .expect("run validate");
            assert!(
                output.status.success(),
                "{} example {}:\n{block}\n{}{}",
                page.display(),
                index + 1,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
            checked += 1;
        }
    }
    assert!(checked >= 2, "only {checked} examples found in docs/");
}

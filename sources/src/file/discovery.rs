//! Finding the files to read: `include` globs minus `exclude` globs.
//!
//! Globs are expanded with the `glob` crate (the rust-lang one): `*`, `?` and
//! `[...]` never cross a `/`, `**` matches any number of directories. An
//! `exclude` glob is matched against the whole path the same way. A directory
//! that cannot be listed is reported as a [`ScanError`] naming it, and the rest
//! of the scan goes on.

use std::io;
use std::path::{Component, Path, PathBuf};

use auditflow_core::config::OptionError;
use glob::{MatchOptions, Pattern};

const MATCH_OPTIONS: MatchOptions = MatchOptions {
    case_sensitive: true,
    require_literal_separator: true,
    require_literal_leading_dot: false,
};

/// A directory or path the scan could not look into.
#[derive(Debug)]
pub struct ScanError {
    /// The directory or path.
    pub path: PathBuf,
    /// What went wrong.
    pub error: io::Error,
}

/// What one scan found.
#[derive(Debug, Default)]
pub struct Scan {
    /// The matching paths, sorted, without duplicates.
    pub paths: Vec<PathBuf>,
    /// The directories that could not be listed.
    pub errors: Vec<ScanError>,
}

/// The `include` and `exclude` globs of a source.
#[derive(Debug, Clone)]
pub struct Discovery {
    include: Vec<String>,
    exclude: Vec<Pattern>,
}

/// Checks a list of globs; every invalid one is an error on `field`.
pub fn check_globs(field: &str, globs: &[String]) -> Vec<OptionError> {
    globs
        .iter()
        .enumerate()
        .filter_map(|(index, glob)| {
            Pattern::new(glob).err().map(|error| {
                OptionError::new(
                    format!("{field}[{index}]"),
                    format!("`{glob}` is not a valid glob: {error}"),
                )
            })
        })
        .collect()
}

impl Discovery {
    /// Globs that were checked with [`check_globs`]; an invalid exclude glob is ignored.
    pub fn new(include: &[String], exclude: &[String]) -> Discovery {
        Discovery {
            include: include.to_vec(),
            exclude: exclude
                .iter()
                .filter_map(|glob| Pattern::new(glob).ok())
                .collect(),
        }
    }

    /// Whether an `exclude` glob matches the path.
    pub fn is_excluded(&self, path: &Path) -> bool {
        self.exclude
            .iter()
            .any(|pattern| pattern.matches_path_with(path, MATCH_OPTIONS))
    }

    /// Expands every `include` glob.
    pub fn scan(&self) -> Scan {
        let mut scan = Scan::default();
        for include in &self.include {
            self.expand(include, &mut scan);
        }
        scan.paths.sort();
        scan.paths.dedup();
        scan
    }

    fn expand(&self, include: &str, scan: &mut Scan) {
        let Ok(paths) = glob::glob_with(include, MATCH_OPTIONS) else {
            return;
        };
        let (paths_before, errors_before) = (scan.paths.len(), scan.errors.len());
        for entry in paths {
            match entry {
                Ok(path) if !self.is_excluded(&path) => scan.paths.push(path),
                Ok(_) => {}
                Err(error) => {
                    let path = error.path().to_path_buf();
                    scan.errors.push(ScanError {
                        path,
                        error: error.into(),
                    });
                }
            }
        }
        if scan.paths.len() == paths_before && scan.errors.len() == errors_before {
            scan.errors.extend(unreachable_prefix(include));
        }
    }
}

/// For a glob that matched nothing: the literal directory it starts from, if it cannot be entered.
///
/// `glob` silently skips literal path parts it cannot stat, so a directory
/// without permission would otherwise look like an empty one.
fn unreachable_prefix(include: &str) -> Option<ScanError> {
    let mut prefix = PathBuf::new();
    for component in Path::new(include).components() {
        let literal = match component {
            Component::Normal(part) => !part.to_string_lossy().contains(['*', '?', '[']),
            _ => true,
        };
        if !literal {
            break;
        }
        prefix.push(component);
    }
    let directory = if prefix.as_os_str() == include {
        prefix.parent()?.to_path_buf()
    } else {
        prefix
    };
    let error = match std::fs::read_dir(&directory) {
        Ok(_) => return None,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return None,
        Err(error) => error,
    };
    Some(ScanError {
        path: directory,
        error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(dir: &Path, name: &str) {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(path, b"x\n").expect("write");
    }

    fn names(dir: &Path, scan: &Scan) -> Vec<String> {
        scan.paths
            .iter()
            .map(|p| {
                p.strip_prefix(dir)
                    .expect("under dir")
                    .display()
                    .to_string()
            })
            .collect()
    }

    #[test]
    fn include_minus_exclude() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let root = dir.path();
        for name in [
            "audit.log",
            "audit-2026-11-24T10-15-30.123.log",
            "audit-2026-11-24T09-00-00.000.log.gz",
            "other.log",
            "sub/audit.log",
        ] {
            touch(root, name);
        }
        let base = root.display();
        let discovery = Discovery::new(
            &[format!("{base}/audit*.log"), format!("{base}/audit*.gz")],
            &[format!("{base}/audit-2026-11-24T10*")],
        );
        let scan = discovery.scan();
        assert!(scan.errors.is_empty(), "{:?}", scan.errors);
        assert_eq!(
            names(root, &scan),
            vec!["audit-2026-11-24T09-00-00.000.log.gz", "audit.log"]
        );
    }

    #[test]
    fn a_star_does_not_cross_directories_but_two_do() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let root = dir.path();
        touch(root, "a.log");
        touch(root, "x/y/b.log");
        let base = root.display();
        let one = Discovery::new(&[format!("{base}/*.log")], &[]).scan();
        assert_eq!(names(root, &one), vec!["a.log"]);
        let deep = Discovery::new(&[format!("{base}/**/*.log")], &[]).scan();
        assert_eq!(names(root, &deep), vec!["a.log", "x/y/b.log"]);
    }

    #[test]
    fn the_same_file_matched_twice_is_listed_once() {
        let dir = tempfile::tempdir().expect("temporary directory");
        touch(dir.path(), "audit.log");
        let base = dir.path().display();
        let scan =
            Discovery::new(&[format!("{base}/*.log"), format!("{base}/audit.log")], &[]).scan();
        assert_eq!(scan.paths.len(), 1);
    }

    #[test]
    fn invalid_globs_are_named() {
        let errors = check_globs("include", &["/ok/*.log".into(), "/bad/[.log".into()]);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].field, "include[1]");
        assert!(errors[0].message.contains("/bad/[.log"));
    }

    #[test]
    fn a_missing_directory_is_not_an_error() {
        let scan = Discovery::new(&["/nonexistent-auditflow/*.log".into()], &[]).scan();
        assert!(scan.paths.is_empty());
        assert!(scan.errors.is_empty());
    }
}

//! Which files the `--file` patterns name right now: a plain path names one file (if it
//! exists), a glob every match. Looked at again every poll, so files that appear later are
//! found, and a path that names another file than before shows a rotation.

use std::fs::Metadata;
use std::path::{Path, PathBuf};

/// One `--file` value.
#[derive(Debug, Clone)]
pub(in crate::send) enum Pattern {
    Path(PathBuf),
    Glob(String),
}

impl Pattern {
    /// Checks the syntax (at start, so a bad pattern is a usage error).
    pub(super) fn parse(text: &str) -> anyhow::Result<Self> {
        if text.is_empty() {
            anyhow::bail!("--file must not be empty");
        }
        if !text.contains(['*', '?', '[']) {
            return Ok(Pattern::Path(PathBuf::from(text)));
        }
        glob::Pattern::new(text)
            .map_err(|e| anyhow::anyhow!("--file {text}: not a valid glob: {e}"))?;
        Ok(Pattern::Glob(text.to_string()))
    }

    /// Whether this pattern names `path` (a glob's `*` stays within one directory, as when
    /// it is looked for).
    pub(super) fn names(&self, path: &Path) -> bool {
        match self {
            Pattern::Path(own) => own == path,
            Pattern::Glob(text) => glob::Pattern::new(text).is_ok_and(|glob| {
                let options = glob::MatchOptions {
                    require_literal_separator: true,
                    ..glob::MatchOptions::new()
                };
                glob.matches_path_with(path, options)
            }),
        }
    }
}

/// The regular files the patterns name, each path once, in pattern order then by name.
/// Metadata follows symbolic links (Kubernetes' /var/log/containers are links).
pub(super) fn matching(patterns: &[Pattern]) -> Vec<(PathBuf, Metadata)> {
    let mut found: Vec<(PathBuf, Metadata)> = Vec::new();
    for pattern in patterns {
        let mut paths = match pattern {
            Pattern::Path(path) => vec![path.clone()],
            Pattern::Glob(text) => match glob::glob(text) {
                // Unreadable directories on the way are skipped, as a shell does.
                Ok(paths) => paths.filter_map(Result::ok).collect(),
                Err(_) => Vec::new(),
            },
        };
        paths.sort();
        for path in paths {
            if found.iter().any(|(seen, _)| *seen == path) {
                continue;
            }
            if let Ok(meta) = std::fs::metadata(&path)
                && meta.is_file()
            {
                found.push((path, meta));
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_find_files_that_appear_later_and_skip_directories() {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().display().to_string();
        let patterns = [
            Pattern::parse(&format!("{root}/*.log")).expect("glob"),
            Pattern::parse(&format!("{root}/a.log")).expect("path"),
        ];
        assert!(matching(&patterns).is_empty());
        std::fs::write(dir.path().join("a.log"), b"x").expect("write");
        std::fs::create_dir(dir.path().join("d.log")).expect("mkdir");
        std::fs::write(dir.path().join("b.txt"), b"x").expect("write");
        let names: Vec<PathBuf> = matching(&patterns).into_iter().map(|(p, _)| p).collect();
        assert_eq!(names, vec![dir.path().join("a.log")]);
        std::fs::write(dir.path().join("c.log"), b"x").expect("write");
        assert_eq!(matching(&patterns).len(), 2);
        assert!(Pattern::parse("[").is_err());
        assert!(Pattern::parse("").is_err());
    }

    #[test]
    fn a_pattern_names_the_paths_it_would_find() {
        let plain = Pattern::parse("/var/log/app.log").expect("path");
        assert!(plain.names(Path::new("/var/log/app.log")));
        assert!(!plain.names(Path::new("/var/log/app.log.1")));
        let glob = Pattern::parse("/var/log/*.log").expect("glob");
        assert!(glob.names(Path::new("/var/log/app.log")));
        assert!(!glob.names(Path::new("/var/log/app.log.1")));
        assert!(
            !glob.names(Path::new("/var/log/sub/app.log")),
            "* stays in its directory"
        );
    }
}

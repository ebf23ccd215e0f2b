//! Where local access logs come from: files, directories (recursively, in reading order),
//! stdin, each fed to the [`Decoder`] as a stream (which finds out whether it is
//! gzip-compressed).

use std::fs::File;
use std::io::{self, BufReader, Write};
use std::path::{Path, PathBuf};

use super::decoder::Decoder;
use super::follow::Seen;
use super::window::Range;

/// AWS writes one when access logging is turned on; it holds no requests.
pub(super) const AWS_TEST_FILE: &str = "ELBAccessLogTestFile";

/// Hidden entries are skipped: the stand-in's `.incoming/`, editors' and tools' temp files.
pub(super) fn is_hidden(name: &str) -> bool {
    name.starts_with('.')
}

/// The order a directory's entries are read in: by the end time their name carries, then by
/// name (untimed names, such as the `yyyy/mm/dd` directories, first, by name). So the files
/// of one interval, one per load-balancer node, are read one after another, and intervals in
/// time order, even with several load balancers in one directory: the reorder window then
/// only has to cover one interval's files (see `order`).
pub(super) fn reading_order(name: &str) -> (Option<i64>, String) {
    (super::window::name_end_time(name), name.to_string())
}

/// What one read of the inputs selects: files and directories the listing window admits, not
/// seen before (`--follow`).
pub(super) struct Pass<'a> {
    pub listing: Range,
    pub seen: Option<&'a mut Seen>,
}

/// A file, a directory (recursively, in [`reading_order`], hidden entries skipped) or `-`.
/// Unreadable paths are reported and counted; only output errors are returned.
pub(super) fn decode_path<W: Write>(
    decoder: &mut Decoder<W>,
    path: &Path,
    pass: &mut Pass<'_>,
) -> io::Result<()> {
    if path == Path::new("-") {
        let stdin = io::stdin().lock();
        return decoder.decode_stream("<stdin>", BufReader::with_capacity(256 * 1024, stdin));
    }
    let metadata = match std::fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(e) => return unreadable(decoder, path, &e),
    };
    if metadata.is_dir() {
        let mut entries: Vec<PathBuf> = match std::fs::read_dir(path) {
            Ok(entries) => entries
                .filter_map(Result::ok)
                .filter(|entry| !is_hidden(&entry.file_name().to_string_lossy()))
                // Symlinked directories are not followed: a link to a parent would loop.
                .filter(|entry| {
                    !entry.file_type().is_ok_and(|t| t.is_symlink()) || entry.path().is_file()
                })
                .map(|entry| entry.path())
                .collect(),
            Err(e) => return unreadable(decoder, path, &e),
        };
        entries.sort_by_cached_key(|entry| {
            let name = entry.file_name().unwrap_or_default().to_string_lossy();
            reading_order(&name)
        });
        for entry in entries {
            let admitted = if entry.is_dir() {
                let components = entry.iter().map(|part| part.to_str().unwrap_or(""));
                pass.listing.admits_dir(components)
            } else {
                let name = entry.file_name().unwrap_or_default().to_string_lossy();
                pass.listing.admits_file(&name)
            };
            if admitted {
                decode_path(decoder, &entry, pass)?;
            }
        }
        return Ok(());
    }
    let name = path.display().to_string();
    if path
        .file_name()
        .is_some_and(|n| n.to_string_lossy().contains(AWS_TEST_FILE))
    {
        tracing::debug!("skipping AWS's test file {name}");
        return Ok(());
    }
    if let Some(seen) = pass.seen.as_deref_mut()
        && !seen.insert(&name)
    {
        return Ok(());
    }
    match File::open(path) {
        Ok(file) => decoder.decode_stream(&name, BufReader::with_capacity(256 * 1024, file)),
        Err(e) => unreadable(decoder, path, &e),
    }
}

fn unreadable<W: Write>(
    decoder: &mut Decoder<W>,
    path: &Path,
    error: &io::Error,
) -> io::Result<()> {
    tracing::error!("cannot read {}: {error}", path.display());
    decoder.counts.unreadable += 1;
    Ok(())
}

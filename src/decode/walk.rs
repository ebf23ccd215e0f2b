//! Where local access logs come from: files, directories (recursively) and stdin, each fed to
//! the [`Decoder`] as a stream (which finds out whether it is gzip-compressed). All the local
//! paths of one read are walked together, best first by time (see `queue`).

use std::fs::File;
use std::io::{self, BufReader, Write};
use std::path::{Path, PathBuf};

use super::decoder::Decoder;
use super::follow::Seen;
use super::queue::ReadingQueue;
use super::window::Range;

/// AWS writes one when access logging is turned on; it holds no requests.
pub(super) const AWS_TEST_FILE: &str = "ELBAccessLogTestFile";

/// Hidden entries are skipped: the stand-in's `.incoming/`, editors' and tools' temp files.
pub(super) fn is_hidden(name: &str) -> bool {
    name.starts_with('.')
}

/// What one read of the inputs selects: files and directories the listing window admits, not
/// seen before (`--follow`).
pub(super) struct Pass<'a> {
    pub listing: Range,
    pub seen: Option<&'a mut Seen>,
}

enum Pending {
    Dir(PathBuf),
    File(PathBuf),
}

pub(super) fn decode_stdin<W: Write>(decoder: &mut Decoder<W>) -> io::Result<()> {
    let stdin = io::stdin().lock();
    decoder.decode_stream("<stdin>", BufReader::with_capacity(256 * 1024, stdin))
}

/// Files and directories (recursively, hidden entries skipped), all of `paths` in one time
/// order, until `stop` says so after a file. Unreadable paths are reported and counted; only
/// output errors are returned.
pub(super) fn decode_local<W: Write>(
    decoder: &mut Decoder<W>,
    paths: &[&Path],
    pass: &mut Pass<'_>,
    stop: &dyn Fn() -> bool,
) -> io::Result<()> {
    let mut queue = ReadingQueue::default();
    for (input, path) in outermost(paths, &pass.listing) {
        match std::fs::metadata(path) {
            Ok(metadata) if metadata.is_dir() => {
                queue.push_dir(input, components(path), Pending::Dir(path.to_path_buf()));
            }
            Ok(_) => queue.push_file(input, components(path), Pending::File(path.to_path_buf())),
            Err(e) => unreadable(decoder, path, &e),
        }
    }
    while let Some((input, pending)) = queue.pop() {
        match pending {
            Pending::Dir(dir) => match std::fs::read_dir(&dir) {
                Ok(entries) => queue_entries(&mut queue, input, entries, &pass.listing),
                Err(e) => unreadable(decoder, &dir, &e),
            },
            Pending::File(path) => {
                decode_file(decoder, &path, pass)?;
                if stop() {
                    break;
                }
            }
        }
    }
    Ok(())
}

/// The paths to walk: all but those that another one's walk reaches (a path named twice, or
/// under another: `logs` and `logs/AWSLogs/1`), whose files would be decoded twice and their
/// messages written twice. Of two naming the same directory, the first is kept.
fn outermost<'p>(paths: &[&'p Path], listing: &Range) -> Vec<(usize, &'p Path)> {
    let real: Vec<Option<PathBuf>> = paths.iter().map(|p| p.canonicalize().ok()).collect();
    let reached_from = |outer: usize, inner: usize| -> bool {
        let (Some(outer_real), Some(inner_real)) = (&real[outer], &real[inner]) else {
            return false;
        };
        match inner_real.strip_prefix(outer_real) {
            Ok(below) if below.as_os_str().is_empty() => outer < inner,
            Ok(below) => walk_reaches(paths[outer], below, listing),
            Err(_) => false,
        }
    };
    let mut kept = Vec::new();
    for (inner, path) in paths.iter().enumerate() {
        match (0..paths.len()).find(|&outer| outer != inner && reached_from(outer, inner)) {
            Some(outer) => tracing::info!(
                "{} is read once, under {}",
                path.display(),
                paths[outer].display()
            ),
            None => kept.push((inner, *path)),
        }
    }
    kept
}

/// Whether the walk from `outer` gets to `outer/below` (no symlinks in `below`): nothing on
/// the way hidden, or pruned by `listing`.
fn walk_reaches(outer: &Path, below: &Path, listing: &Range) -> bool {
    let mut path = outer.to_path_buf();
    below.iter().all(|step| {
        path.push(step);
        let name = step.to_string_lossy();
        let admitted = if path.is_dir() {
            listing.admits_dir(components(&path))
        } else {
            listing.admits_file(&name)
        };
        !is_hidden(&name) && admitted
    })
}

/// A directory's entries that `listing` admits, queued.
fn queue_entries(
    queue: &mut ReadingQueue<Pending>,
    input: usize,
    entries: std::fs::ReadDir,
    listing: &Range,
) {
    for entry in entries.filter_map(Result::ok) {
        if is_hidden(&entry.file_name().to_string_lossy()) {
            continue;
        }
        let path = entry.path();
        // Symlinked directories are not followed: a link to a parent would loop.
        if entry.file_type().is_ok_and(|t| t.is_symlink()) && !path.is_file() {
            continue;
        }
        if path.is_dir() {
            if listing.admits_dir(components(&path)) {
                queue.push_dir(input, components(&path), Pending::Dir(path.clone()));
            }
        } else {
            let name = file_name(&path);
            if listing.admits_file(&name) {
                queue.push_file(input, components(&path), Pending::File(path.clone()));
            }
        }
    }
}

fn components(path: &Path) -> impl DoubleEndedIterator<Item = &str> + Clone {
    path.iter().map(|part| part.to_str().unwrap_or(""))
}

fn file_name(path: &Path) -> String {
    let name = path.file_name().unwrap_or_default();
    name.to_string_lossy().into_owned()
}

fn decode_file<W: Write>(
    decoder: &mut Decoder<W>,
    path: &Path,
    pass: &mut Pass<'_>,
) -> io::Result<()> {
    let name = path.display().to_string();
    if file_name(path).contains(AWS_TEST_FILE) {
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
        Err(e) => {
            unreadable(decoder, path, &e);
            Ok(())
        }
    }
}

fn unreadable<W: Write>(decoder: &mut Decoder<W>, path: &Path, error: &io::Error) {
    tracing::error!("cannot read {}: {error}", path.display());
    decoder.counts.unreadable += 1;
}

//! Where local access logs come from: files, directories (recursively) and stdin, each fed to
//! the [`Decoder`] as a stream (which finds out whether it is gzip-compressed). All the local
//! paths of one read are walked together, best first by time (see `queue`).

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use super::decoder::{self, Decoder};
use super::follow::Seen;
use super::nested;
use super::queue::ReadingQueue;
use super::window::{self, Range};
use crate::access_log;
use flate2::bufread::MultiGzDecoder;

/// AWS writes one when access logging is turned on; it holds no requests.
const AWS_TEST_FILE: &str = "ELBAccessLogTestFile";

/// Whether a file or object named `name` is AWS's test file (skipped, never read).
pub(super) fn is_aws_test_file(name: &str) -> bool {
    name.contains(AWS_TEST_FILE)
}

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
            Ok(_) => queue_file(&mut queue, input, path, pass.seen.as_deref()),
            Err(e) => unreadable(decoder, path, &e),
        }
    }
    while let Some((input, pending)) = queue.pop() {
        match pending {
            Pending::Dir(dir) => match std::fs::read_dir(&dir) {
                Ok(entries) => {
                    let seen = pass.seen.as_deref();
                    queue_entries(&mut queue, input, entries, &pass.listing, seen);
                }
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

/// The paths to walk, with their input numbers: see `nested`.
fn outermost<'p>(paths: &[&'p Path], listing: &Range) -> Vec<(usize, &'p Path)> {
    let places: Vec<Option<Vec<String>>> = paths
        .iter()
        .map(|path| {
            let real = path.canonicalize().ok()?;
            real.iter()
                .map(|part| part.to_str().map(str::to_string))
                .collect()
        })
        .collect();
    let reaches = |outer: usize, below: &[String]| walk_reaches(paths[outer], below, listing);
    let shown = |input: usize| paths[input].display().to_string();
    nested::outermost(&places, reaches, shown)
        .into_iter()
        .map(|input| (input, paths[input]))
        .collect()
}

/// Whether the walk from `outer` gets to `outer/below` (`below` real directories, no links):
/// nothing on the way hidden, or pruned by `listing`.
fn walk_reaches(outer: &Path, below: &[String], listing: &Range) -> bool {
    let mut path = outer.to_path_buf();
    below.iter().all(|name| {
        path.push(name);
        let admitted = if path.is_dir() {
            listing.admits_dir(components(&path))
        } else {
            listing.admits_file(name)
        };
        !is_hidden(name) && admitted
    })
}

/// A directory's entries that `listing` admits, queued.
fn queue_entries(
    queue: &mut ReadingQueue<Pending>,
    input: usize,
    entries: std::fs::ReadDir,
    listing: &Range,
    seen: Option<&Seen>,
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
                queue_file(queue, input, &path, seen);
            }
        }
    }
}

/// A file, queued by the end time its name carries or, without one, by its first entry's
/// (looked up only for a file still to be read: `--follow` lists the read ones again).
fn queue_file(queue: &mut ReadingQueue<Pending>, input: usize, path: &Path, seen: Option<&Seen>) {
    let name = file_name(path);
    let to_be_read = !is_aws_test_file(&name)
        && !seen.is_some_and(|seen| seen.contains(&path.display().to_string()));
    let first_entry = match window::name_end_time(&name) {
        None if to_be_read => first_entry_time(path),
        _ => None,
    };
    let item = Pending::File(path.to_path_buf());
    queue.push_file_logged_from(input, components(path), first_entry, item);
}

/// The log time of a file's first entry (gzip-compressed or not), if it can be read: the
/// first line only, at most 64 KiB of it. Anything unreadable is left to the decoding.
fn first_entry_time(path: &Path) -> Option<i64> {
    let mut file = BufReader::new(File::open(path).ok()?);
    let is_gzip = decoder::is_gzip(file.fill_buf().ok()?);
    let mut line = Vec::new();
    let limit = 64 * 1024;
    if is_gzip {
        let gunzipped = BufReader::new(MultiGzDecoder::new(file));
        gunzipped.take(limit).read_until(b'\n', &mut line).ok()?;
    } else {
        file.take(limit).read_until(b'\n', &mut line).ok()?;
    }
    let line = line.strip_suffix(b"\n").unwrap_or(&line);
    let entry = access_log::parse_entry(line.strip_suffix(b"\r").unwrap_or(line)).ok()?;
    window::entry_time(entry.time).map(|time| time.0)
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
    if is_aws_test_file(&file_name(path)) {
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

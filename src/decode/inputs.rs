//! The inputs named on the command line, and how one read takes them: the local paths
//! together and the prefixes of one bucket together, each group walked in one time order
//! (see `queue`), so that no input falls behind the reorder window's clock.

use std::path::{Path, PathBuf};

use super::config::Config;
use super::s3::S3Url;

/// One input named on the command line.
pub(super) enum Input {
    Stdin,
    Local(PathBuf),
    S3(S3Url),
}

impl Input {
    fn parse(path: &Path) -> Result<Input, String> {
        if path == Path::new("-") {
            return Ok(Input::Stdin);
        }
        match path.to_str().and_then(S3Url::parse) {
            Some(url) => url.map(Input::S3),
            None => Ok(Input::Local(path.to_path_buf())),
        }
    }
}

/// The inputs named (stdin if none), checked before anything is read.
pub(super) fn named(args: &Config) -> Result<Vec<Input>, String> {
    let inputs = if args.paths.is_empty() {
        vec![Input::Stdin]
    } else {
        args.paths
            .iter()
            .map(|path| Input::parse(path))
            .collect::<Result<Vec<_>, _>>()?
    };
    if args.follow && inputs.iter().any(|input| matches!(input, Input::Stdin)) {
        return Err("--follow watches directories and s3:// prefixes, not stdin: name them".into());
    }
    Ok(inputs)
}

/// One step of a read.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Group<'a> {
    Stdin,
    Local(Vec<&'a Path>),
    /// Prefixes of one bucket.
    S3(Vec<&'a S3Url>),
}

/// The steps of one read, in order: stdin where it is named, all the local paths where the
/// first is named, and all the prefixes of a bucket where its first is.
pub(super) fn groups(inputs: &[Input]) -> Vec<Group<'_>> {
    let mut groups: Vec<Group<'_>> = Vec::new();
    for input in inputs {
        let joins = groups.iter_mut().find(|group| match (&**group, input) {
            (Group::Local(_), Input::Local(_)) => true,
            (Group::S3(urls), Input::S3(url)) => urls.iter().any(|u| u.bucket == url.bucket),
            _ => false,
        });
        match (joins, input) {
            (Some(Group::Local(paths)), Input::Local(path)) => paths.push(path),
            (Some(Group::S3(urls)), Input::S3(url)) => urls.push(url),
            (_, Input::Stdin) => groups.push(Group::Stdin),
            (_, Input::Local(path)) => groups.push(Group::Local(vec![path])),
            (_, Input::S3(url)) => groups.push(Group::S3(vec![url])),
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_paths_and_prefixes_of_a_bucket_are_read_together_where_the_first_is_named() {
        let named = ["a", "s3://one/x", "-", "s3://two/y", "b", "s3://one/z"];
        let inputs: Vec<Input> = named
            .iter()
            .map(|text| Input::parse(Path::new(text)).expect("an input"))
            .collect();
        let url = |text: &str| S3Url::parse(text).expect("s3").expect("a url");
        let (x, y, z) = (url("s3://one/x"), url("s3://two/y"), url("s3://one/z"));
        assert_eq!(
            groups(&inputs),
            [
                Group::Local(vec![Path::new("a"), Path::new("b")]),
                Group::S3(vec![&x, &z]),
                Group::Stdin,
                Group::S3(vec![&y]),
            ]
        );
    }
}

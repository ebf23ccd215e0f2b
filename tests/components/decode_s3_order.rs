//! Several prefixes of one bucket are read in one time order, as several local paths are:
//! none falls behind the reorder window's clock, so nothing is written late.

use crate::decode_s3::{alb_file, decode_with, minute, utc};
use crate::support::{Missing, Moto};

async fn prefixes_of_one_bucket_are_read_in_one_time_order() -> Result<(), Missing> {
    let moto = Moto::start(&[]).await?;
    let (first, second) = (tempfile::tempdir(), tempfile::tempdir());
    let trees = [first.expect("temp dir"), second.expect("temp dir")];
    // Files every 6 hours over two days, taking turns between the two trees.
    let start = utc("2026-11-29T00:00:00Z");
    let mut expected = Vec::new();
    for file in 0..8 {
        let end = start + time::Duration::hours(6 * file);
        let logged = end - time::Duration::minutes(4);
        alb_file(trees[file as usize % 2].path(), end, &[logged]);
        expected.extend(format!("{}\n", minute(logged)).into_bytes());
    }
    moto.upload("merged", "a", trees[0].path());
    moto.upload("merged", "b", trees[1].path());
    for urls in [
        ["s3://merged/a", "s3://merged/b"],
        ["s3://merged/b", "s3://merged/a"],
    ] {
        let run = decode_with(&moto, &urls, &[]).await;
        assert_eq!(run.code(), Some(0), "{urls:?}: {}", run.stderr);
        assert_eq!(
            String::from_utf8_lossy(&run.stdout),
            String::from_utf8_lossy(&expected),
            "{urls:?}"
        );
        run.assert_logged("; 0 late");
    }
    Ok(())
}

async fn a_prefix_named_twice_or_under_another_named_prefix_is_read_once() -> Result<(), Missing> {
    let moto = Moto::start(&[]).await?;
    let tree = tempfile::tempdir().expect("temp dir");
    let mut expected = Vec::new();
    let mut objects = Vec::new();
    for end in ["2026-12-01T12:05:00Z", "2026-12-01T12:10:00Z"] {
        let logged = utc(end) - time::Duration::minutes(2);
        let file = alb_file(tree.path(), utc(end), &[logged]);
        let key = file.strip_prefix(tree.path()).expect("under the tree");
        objects.push(format!("s3://twice/a/{}", key.display()));
        expected.extend(format!("{}\n", minute(logged)).into_bytes());
    }
    moto.upload("twice", "a", tree.path());
    let account = "s3://twice/a/AWSLogs/123456789012";
    for urls in [
        ["s3://twice/a", "s3://twice/a/"],
        ["s3://twice/a", account],
        [account, "s3://twice/a"],
        [objects[0].as_str(), "s3://twice/a"],
    ] {
        let run = decode_with(&moto, &urls, &[]).await;
        assert_eq!(run.code(), Some(0), "{urls:?}: {}", run.stderr);
        assert_eq!(
            String::from_utf8_lossy(&run.stdout),
            String::from_utf8_lossy(&expected),
            "{urls:?}: {}",
            run.stderr
        );
        run.assert_logged("in 2 files");
    }
    // A prefix under another that holds nothing is still one the user got wrong.
    let run = decode_with(&moto, &["s3://twice/a", "s3://twice/a/typo"], &[]).await;
    assert_eq!(run.code(), Some(2), "{}", run.stderr);
    run.assert_logged("cannot read s3://twice/a/typo: no such key or prefix");
    assert_eq!(
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&expected)
    );
    Ok(())
}

pub fn trials() -> Vec<libtest_mimic::Trial> {
    crate::trials![
        prefixes_of_one_bucket_are_read_in_one_time_order,
        a_prefix_named_twice_or_under_another_named_prefix_is_read_once
    ]
}

//! The repository's top level is what the project promises: the crate, its tests, examples,
//! the rsyslog configurations, the README and the licence, CI's script and the toolchain pin.
//! A tool that drops its own files there (proptest's regression seeds, say) fails this.

#[test]
fn the_top_level_holds_only_what_it_promises() {
    const PROMISED: &[&str] = &[
        "Cargo.toml",
        "Cargo.lock",
        "src",
        "tests",
        "examples",
        "rsyslog.d",
        "README.md",
        "LICENSE",
        "rust-toolchain.toml",
        ".ci",
        // Git's own, and the build's (ignored by .gitignore).
        ".git",
        ".gitignore",
        "target",
    ];
    let root = env!("CARGO_MANIFEST_DIR");
    let mut unexpected: Vec<String> = std::fs::read_dir(root)
        .expect("the crate's directory can be listed")
        .filter_map(Result::ok)
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| !PROMISED.contains(&name.as_str()))
        .collect();
    unexpected.sort();
    assert!(
        unexpected.is_empty(),
        "not part of the promised top level: {unexpected:?}"
    );
}

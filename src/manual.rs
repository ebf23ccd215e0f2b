//! `completions` and `man`: generated from the same clap definitions as `--help` (handed in by
//! `main.rs`), so they cannot drift from it.

use std::io::Write as _;
use std::path::Path;

use crate::exit::{self, Fatal, Status};
use anyhow::Context;

/// The completion script of `command` (the whole command line's definition) for `shell`.
pub fn completions(mut command: clap::Command, shell: clap_complete::Shell) -> exit::Outcome {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "drifter-rsyslog", &mut script);
    write_stdout(&script)
}

/// The manual pages of `command` (the whole command line's definition): the program's on
/// stdout, or every command's into `dir`.
pub fn man(mut command: clap::Command, dir: Option<&Path>) -> exit::Outcome {
    // Global flags (--log-level, --log-format) reach each command's page.
    command.build();
    match dir {
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(command)
                .render(&mut page)
                .map_err(Fatal::lost)?;
            write_stdout(&page)
        }
        Some(dir) => {
            write_pages(command, dir).map_err(Fatal::usage)?;
            Ok(Status::Success)
        }
    }
}

/// `drifter-rsyslog.1`, and `drifter-rsyslog-<command>.1` for each visible command.
fn write_pages(command: clap::Command, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let command = command.name("drifter-rsyslog");
    let mut pages = vec![("drifter-rsyslog".to_string(), command.clone())];
    for sub in command.get_subcommands().filter(|sub| !sub.is_hide_set()) {
        let name = format!("drifter-rsyslog-{}", sub.get_name());
        pages.push((name.clone(), sub.clone().name(name)));
    }
    for (name, page) in pages {
        let path = dir.join(format!("{name}.1"));
        let mut text = Vec::new();
        clap_mangen::Man::new(page)
            .render(&mut text)
            .with_context(|| format!("cannot render {name}"))?;
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

fn write_stdout(bytes: &[u8]) -> exit::Outcome {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => Ok(Status::Success),
        Err(e) if exit::reader_went_away(&e) => Ok(Status::Success),
        Err(e) => Err(Fatal::lost(e)),
    }
}

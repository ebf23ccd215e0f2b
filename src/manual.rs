//! `completions` and `man`: generated from the same clap definitions as `--help`, so they
//! cannot drift from it.

use std::io::Write as _;
use std::path::Path;

use anyhow::Context;
use clap::CommandFactory;

use crate::cli::{Cli, CompletionsArgs, ManArgs};
use crate::exit::{self, Fatal, Status};

pub fn completions(args: &CompletionsArgs) -> exit::Outcome {
    let mut command = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, "drifter-rsyslog", &mut script);
    write_stdout(&script)
}

pub fn man(args: &ManArgs) -> exit::Outcome {
    let mut command = Cli::command();
    // Global flags (--log-level, --log-format) reach each command's page.
    command.build();
    match &args.dir {
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

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use drifter_rsyslog::cli::{Cli, Command, LogFormat};
use drifter_rsyslog::exit::{self, Fatal};
use drifter_rsyslog::{decode, manual, mock_elb, send, spool};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    exit::finish(run(&cli))
}

fn run(cli: &Cli) -> exit::Outcome {
    init_tracing(cli).map_err(Fatal::usage)?;
    match &cli.command {
        Command::Send(args) => send::run(&args.into()),
        Command::MockElb(args) => mock_elb::run(&args.into()),
        Command::Decode(args) => decode::run(&args.into()),
        Command::Spool(args) => spool::status::run(&args.dir),
        Command::Completions(args) => manual::completions(Cli::command(), args.shell),
        Command::Man(args) => manual::man(Cli::command(), args.dir.as_deref()),
    }
}

/// Diagnostics go to stderr only: stdout is reserved for rsyslog's protocol and for decoded
/// messages.
fn init_tracing(cli: &Cli) -> anyhow::Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.is_empty() => EnvFilter::try_new(&directives)
            .map_err(|e| anyhow::anyhow!("invalid RUST_LOG `{directives}`: {e}"))?,
        _ => EnvFilter::try_new(&cli.log_level)
            .map_err(|e| anyhow::anyhow!("invalid --log-level `{}`: {e}", cli.log_level))?,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    match cli.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    Ok(())
}

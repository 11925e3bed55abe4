//! `outcore`: inspect, generate and compute over arrays larger than memory.
//!
//! The command-line face of the outcore engine. Each subcommand lives in
//! its own module under [`cmd`]; argument parsing shared between them is in
//! [`args`], and printing (text, JSON, progress bars, errors) in [`output`].
//!
//! Exit status: 0 on success; 1 when the command fails, with one line
//! `error: ...` on stderr; 2 for a usage error (bad or missing arguments),
//! also as one line; 130 after SIGINT (Ctrl-C) and 143 after SIGTERM
//! (128 + the signal's number, as shells report), once the run has
//! stopped cleanly: one line `error: interrupted (SIGINT): ...`, no output
//! written, no spill file left. A second signal terminates at once (see
//! [`interrupt`]).

mod args;
mod cmd;
mod interrupt;
mod output;

use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::{Parser, Subcommand};

/// Command-line arguments.
#[derive(Debug, Parser)]
#[command(
    name = "outcore",
    version,
    about = "Out-of-core compute over on-disk arrays (.npy, raw), under a memory budget",
    arg_required_else_help = true,
    propagate_version = true
)]
struct Cli {
    /// The subcommand to run.
    #[command(subcommand)]
    command: Command,
}

/// The subcommands.
///
/// The variants carry no doc comments on purpose: clap would take them as
/// the subcommands' help, over the `about` and `long_about` that each
/// command's `Args` sets beside its code.
#[derive(Debug, Subcommand)]
enum Command {
    // `outcore info`: see `cmd::info`.
    Info(cmd::info::Args),
    // `outcore gen`: see `cmd::gen`.
    Gen(cmd::r#gen::Args),
    // `outcore stats`: see `cmd::stats`.
    Stats(cmd::stats::Args),
    // `outcore convert`: see `cmd::convert`.
    Convert(cmd::convert::Args),
    // `outcore standardize`: see `cmd::standardize`.
    Standardize(cmd::standardize::Args),
    // `outcore sort`: see `cmd::sort`.
    #[command(about = cmd::sort::SORT_ABOUT, long_about = cmd::sort::SORT_LONG)]
    Sort(cmd::sort::Args),
    // `outcore cumsum`: see `cmd::sort`.
    #[command(about = cmd::sort::CUMSUM_ABOUT, long_about = cmd::sort::CUMSUM_LONG)]
    Cumsum(cmd::sort::Args),
    // `outcore cov`: see `cmd::linalg`.
    Cov(cmd::linalg::CovArgs),
    // `outcore gram`: see `cmd::linalg`.
    Gram(cmd::linalg::GramArgs),
    // `outcore pca`: see `cmd::linalg`.
    Pca(cmd::linalg::PcaArgs),
}

impl Command {
    /// Runs the subcommand.
    fn run(self) -> anyhow::Result<()> {
        match self {
            Command::Info(args) => cmd::info::run(args),
            Command::Gen(args) => cmd::r#gen::run(args),
            Command::Stats(args) => cmd::stats::run(args),
            Command::Convert(args) => cmd::convert::run(args),
            Command::Standardize(args) => cmd::standardize::run(args),
            Command::Sort(args) => cmd::sort::run(cmd::sort::Op::Sort, args),
            Command::Cumsum(args) => cmd::sort::run(cmd::sort::Op::Cumsum, args),
            Command::Cov(args) => cmd::linalg::run_cov(args),
            Command::Gram(args) => cmd::linalg::run_gram(args),
            Command::Pca(args) => cmd::linalg::run_pca(args),
        }
    }
}

/// Exit status for a command that failed.
const EXIT_FAILURE: u8 = 1;
/// Exit status for a usage error (as clap uses).
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return usage_error(&err),
    };
    if let Err(err) = interrupt::install() {
        output::print_error(&output::error_line(&err));
        return ExitCode::from(EXIT_FAILURE);
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        // The reader went away (`outcore info x.npy | head -1`): not an error.
        Err(err) if output::is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) if interrupt::is_cancelled(&err) => {
            let (signo, name) = interrupt::received().unwrap_or((0, "cancelled"));
            output::print_error(&format!(
                "interrupted ({name}): {}",
                output::error_line(&err)
            ));
            // 128 + the signal's number, as a shell reports a process
            // killed by it.
            ExitCode::from(u8::try_from(128 + signo).unwrap_or(EXIT_FAILURE))
        }
        Err(err) => {
            output::print_error(&output::error_line(&err));
            if err.downcast_ref::<args::UsageError>().is_some() {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::from(EXIT_FAILURE)
            }
        }
    }
}

/// Runs the parsed command line.
fn run(cli: Cli) -> anyhow::Result<()> {
    cli.command.run()
}

/// Handles a clap error: help and version go out as clap prints them; a
/// usage error becomes one `error: ...` line (the message and any tip) and
/// exit status 2.
fn usage_error(err: &clap::Error) -> ExitCode {
    if !err.use_stderr() || err.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        // --help, --version, or bare `outcore`: print what clap prints.
        let _ = err.print();
        return ExitCode::from(u8::try_from(err.exit_code()).unwrap_or(EXIT_USAGE));
    }
    let rendered = err.render().to_string();
    let mut paragraphs = rendered.split("\n\n").map(output::one_line);
    let mut line = paragraphs.next().unwrap_or_default();
    for tip in paragraphs.filter(|p| p.starts_with("tip:")) {
        line.push_str("; ");
        line.push_str(&tip);
    }
    let message = line.strip_prefix("error: ").unwrap_or(&line);
    output::print_error(&format!("{message} (see --help)"));
    ExitCode::from(EXIT_USAGE)
}

//! One module per subcommand, and [`job`]: what the commands that write
//! one array share. Each subcommand has an `Args` struct (clap arguments,
//! with the subcommand's help) and a `run(Args) -> anyhow::Result<()>`;
//! `main.rs` lists them in its `Command` enum.
//!
//! To add a command: write `cmd/NAME.rs` with `Args` and `run`, declare it
//! here, and add a variant to `Command` and an arm to `Command::run`.
//! Commands that read one array flatten [`crate::args::InputArgs`] into
//! their `Args`; commands that run the engine flatten
//! [`crate::args::EngineArgs`]. Commands that write one array flatten
//! [`job::JobArgs`] instead (IN, OUT, the engine and output options,
//! `--json`, `--explain`) and run through [`job::run`], stating only the
//! expression they write. JSON and text output go through
//! [`crate::output`].

pub(crate) mod convert;
pub(crate) mod r#gen;
pub(crate) mod info;
pub(crate) mod job;
pub(crate) mod linalg;
pub(crate) mod sort;
pub(crate) mod standardize;
pub(crate) mod stats;

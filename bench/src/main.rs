//! `chronoshard-bench`: chronoshard's benchmark harness. This file only parses the command line
//! (clap, one subcommand per tool) and dispatches; each tool lives in its own module.

mod http_client;
mod http_load;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "chronoshard-bench",
    version,
    about = "chronoshard's benchmark harness"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// HTTP/1.1 load generator: keep-alive connections, optional pipelining, latency percentiles.
    Http(http_load::HttpArgs),
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Http(args) => http_load::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("chronoshard-bench: {err}");
            ExitCode::FAILURE
        }
    }
}

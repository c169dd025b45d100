//! `chronoshard-bench`: chronoshard's benchmark harness. This file only parses the command line
//! (clap, one subcommand per tool) and dispatches; each tool lives in its own module.

mod http_client;
mod http_load;
mod progress;
mod query_load;
#[cfg(test)]
mod test_server;
mod tsbs;
mod tsbs_gen;
mod tsbs_query;
mod write_load;

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
    /// Writes TSBS "cpu-only" line protocol (deterministic for a seed) to stdout or a file.
    Gen(tsbs_gen::GenArgs),
    /// Posts line protocol (generated on the fly, or from a file) in batches over keep-alive
    /// connections and reports rows/s, batch latency and server CPU per million rows.
    Write(write_load::WriteArgs),
    /// Runs TSBS's cpu-only query types as SQL over `/api/v1/sql` with keep-alive clients and
    /// reports per type: count, errors, latency percentiles and rows per answer.
    Query(query_load::QueryArgs),
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Http(args) => http_load::run(&args).map_err(|e| e.to_string()),
        Command::Gen(args) => tsbs_gen::run(&args).map_err(|e| e.to_string()),
        Command::Write(args) => write_load::run(&args).map_err(|e| e.to_string()),
        Command::Query(args) => query_load::run(&args).map_err(|e| e.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("chronoshard-bench: {err}");
            ExitCode::FAILURE
        }
    }
}

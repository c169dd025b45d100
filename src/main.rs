//! The `chronoshard` binary: parses the command line, sets up logging, runs the server.

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use chronoshard::cli::{Cli, Command, ServeArgs};
use chronoshard::{config, server};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve(ServeArgs::default())) {
        Command::Config => {
            print!("{}", config::default_toml());
            ExitCode::SUCCESS
        }
        Command::Serve(args) => serve(&args),
    }
}

fn serve(args: &ServeArgs) -> ExitCode {
    let (config, source) = match args.resolve() {
        Ok(x) => x,
        Err(e) => {
            eprintln!("chronoshard: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Logs go through a background writer so no shard ever blocks on stderr.
    let (writer, _guard) = tracing_appender::non_blocking(std::io::stderr());
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.log));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match server::run(config, &source) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            drop(_guard);
            eprintln!("chronoshard: {e}");
            ExitCode::FAILURE
        }
    }
}

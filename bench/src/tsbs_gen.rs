//! `chronoshard-bench gen`: writes TSBS "cpu-only" line protocol (see [`crate::tsbs`]) to stdout
//! or a file, in chunks of [`CHUNK_LINES`] lines through one reused buffer, and prints a one-line
//! throughput summary to stderr. A closed stdout (`| head`) ends the run quietly.

use std::fs::File;
use std::io::{self, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;
use thiserror::Error;

use crate::tsbs::{self, Generator, TsbsConfig, TsbsError};

/// Lines generated per write.
pub const CHUNK_LINES: usize = 4096;

/// Flags of `chronoshard-bench gen`.
#[derive(Debug, Clone, Args)]
pub struct GenArgs {
    /// Number of hosts.
    #[arg(long, default_value_t = 100)]
    pub scale: u64,
    /// Seed of the per-host tags and value walks.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// First timestamp: RFC 3339, or integer nanoseconds since the epoch.
    #[arg(long, default_value = tsbs::DEFAULT_START)]
    pub start: String,
    /// Seconds between two rows of one host.
    #[arg(long, default_value_t = 10)]
    pub interval_s: u64,
    /// Total rows [default: one day's worth for the scale, scale * 86400 / interval-s].
    #[arg(long)]
    pub rows: Option<u64>,
    /// Output file [default: stdout].
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Do not print the summary line to stderr.
    #[arg(long)]
    pub quiet: bool,
}

/// Why `gen` failed.
#[derive(Debug, Error)]
pub enum GenError {
    #[error(transparent)]
    Config(#[from] TsbsError),
    #[error("cannot create --out {}: {source}", path.display())]
    Create { path: PathBuf, source: io::Error },
    #[error("cannot write to {target} after {lines} lines: {source}")]
    Write {
        target: String,
        lines: u64,
        source: io::Error,
    },
}

/// What a run produced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GenReport {
    pub lines: u64,
    pub bytes: u64,
    pub elapsed: Duration,
    /// The reader closed the output (broken pipe) before every row was written.
    pub closed_early: bool,
}

impl GenReport {
    /// `gen: N lines, X MB in S s (L lines/s, M MB/s)`.
    pub fn text(&self) -> String {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        let early = if self.closed_early {
            " (output closed early)"
        } else {
            ""
        };
        format!(
            "gen: {} lines, {:.1} MB in {:.3} s ({:.0} lines/s, {:.1} MB/s){early}",
            self.lines,
            self.bytes as f64 / 1e6,
            secs,
            self.lines as f64 / secs,
            self.bytes as f64 / 1e6 / secs,
        )
    }
}

/// Builds the generator configuration from the flags.
pub fn config(args: &GenArgs) -> Result<TsbsConfig, GenError> {
    let start_ns = tsbs::parse_start(&args.start)?;
    Ok(TsbsConfig::new(
        args.scale,
        args.seed,
        start_ns,
        args.interval_s,
        args.rows,
    )?)
}

/// Runs `chronoshard-bench gen`.
pub fn run(args: &GenArgs) -> Result<(), GenError> {
    let cfg = config(args)?;
    let report = match &args.out {
        Some(path) => {
            let file = File::create(path).map_err(|source| GenError::Create {
                path: path.clone(),
                source,
            })?;
            generate(&cfg, file, &path.display().to_string())?
        }
        None => generate(&cfg, io::stdout().lock(), "stdout")?,
    };
    if !args.quiet {
        eprintln!("{}", report.text());
    }
    Ok(())
}

/// Writes all rows of `cfg` to `out`. A broken pipe ends the run early without an error.
pub fn generate<W: Write>(
    cfg: &TsbsConfig,
    mut out: W,
    target: &str,
) -> Result<GenReport, GenError> {
    let started = Instant::now();
    let mut generator = Generator::new(cfg)?;
    let mut buf = Vec::new();
    let (mut lines, mut bytes, mut closed_early) = (0u64, 0u64, false);
    let fail = |lines, source| GenError::Write {
        target: target.to_owned(),
        lines,
        source,
    };
    while generator.remaining() > 0 {
        buf.clear();
        let n = generator.fill(&mut buf, CHUNK_LINES);
        match out.write_all(&buf) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                closed_early = true;
                break;
            }
            Err(e) => return Err(fail(lines, e)),
        }
        lines += n as u64;
        bytes += buf.len() as u64;
    }
    match out.flush() {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => closed_early = true,
        Err(e) => return Err(fail(lines, e)),
    }
    Ok(GenReport {
        lines,
        bytes,
        elapsed: started.elapsed(),
        closed_early,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(rows: Option<u64>) -> GenArgs {
        GenArgs {
            scale: 3,
            seed: 1,
            start: "2016-01-01T00:00:00Z".into(),
            interval_s: 10,
            rows,
            out: None,
            quiet: true,
        }
    }

    #[test]
    fn writes_every_row_in_chunks() {
        let cfg = config(&args(Some(CHUNK_LINES as u64 * 2 + 5))).expect("config");
        let mut out = Vec::new();
        let report = generate(&cfg, &mut out, "memory").expect("generate");
        assert_eq!(report.lines, cfg.rows);
        assert_eq!(report.bytes, out.len() as u64);
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count() as u64, cfg.rows);
        let direct: Vec<String> = Generator::new(&cfg).expect("gen").collect();
        assert_eq!(
            String::from_utf8_lossy(&out).lines().collect::<Vec<_>>(),
            direct
        );
        assert!(
            report.text().starts_with("gen: 8197 lines, "),
            "{}",
            report.text()
        );
    }

    #[test]
    fn default_rows_are_one_day_and_bad_flags_fail() {
        assert_eq!(config(&args(None)).expect("config").rows, 3 * 8640);
        let mut bad = args(None);
        bad.start = "yesterday".into();
        assert!(matches!(
            config(&bad),
            Err(GenError::Config(TsbsError::Start { .. }))
        ));
        bad = args(None);
        bad.scale = 0;
        assert!(config(&bad).is_err());
    }

    #[test]
    fn writes_to_a_file_and_reports_write_errors() {
        let path = std::env::temp_dir().join(format!("chronoshard-gen-{}.lp", std::process::id()));
        let mut a = args(Some(10));
        a.out = Some(path.clone());
        run(&a).expect("run");
        let text = std::fs::read_to_string(&path).expect("read back");
        let _ = std::fs::remove_file(&path);
        assert_eq!(text.lines().count(), 10);
        a.out = Some(std::env::temp_dir().join("no-such-dir-chronoshard/x.lp"));
        assert!(matches!(run(&a), Err(GenError::Create { .. })));
        struct Full;
        impl Write for Full {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::new(io::ErrorKind::StorageFull, "full"))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        struct Closed;
        impl Write for Closed {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::new(io::ErrorKind::BrokenPipe, "closed"))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let cfg = config(&args(Some(10))).expect("config");
        let report = generate(&cfg, Closed, "pipe").expect("a closed pipe is not an error");
        assert!(report.closed_early && report.lines == 0);
        assert!(report.text().ends_with(" (output closed early)"));
        let err = generate(&cfg, Full, "disk").expect_err("full disk");
        assert!(
            err.to_string()
                .contains("cannot write to disk after 0 lines"),
            "{err}"
        );
    }
}

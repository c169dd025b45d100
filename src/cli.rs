//! The command line: `chronoshard serve` (alias `run`) and `chronoshard config`.
//!
//! Every serve flag has a `CHRONOSHARD_*` environment twin (clap resolves flag over env) and a key
//! in the TOML file; `resolve` layers them over the file and the defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};

use crate::config::{self, Config, ConfigError, WalMode};

#[derive(Debug, Parser)]
#[command(
    name = "chronoshard",
    version,
    about = "A thread-per-core time-series database"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the server (the default when no command is given).
    #[command(alias = "run")]
    Serve(ServeArgs),
    /// Print the default configuration, commented.
    Config,
}

#[derive(Debug, Default, Args)]
pub struct ServeArgs {
    /// TOML config file. Without it, DATA_DIR/chronoshard.toml is used (written on first start).
    #[arg(long, env = "CHRONOSHARD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8902].
    #[arg(long, env = "CHRONOSHARD_HTTP_ADDR")]
    pub http_addr: Option<SocketAddr>,
    /// Data directory, created on first start [default: ./data].
    #[arg(long, env = "CHRONOSHARD_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Number of shards [default: usable cores].
    #[arg(long, env = "CHRONOSHARD_SHARDS")]
    pub shards: Option<usize>,
    /// WAL mode: sync, interval or off [default: sync].
    #[arg(long, env = "CHRONOSHARD_WAL_MODE")]
    pub wal_mode: Option<WalMode>,
    /// Check passwords (`--auth` or `--auth=true|false`) [default: false].
    #[arg(long, env = "CHRONOSHARD_AUTH", num_args = 0..=1, default_missing_value = "true")]
    pub auth: Option<bool>,
}

/// Where the effective configuration came from, for the start-up log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    /// `--config` or `CHRONOSHARD_CONFIG`.
    Given(PathBuf),
    /// The data directory's own file, found there.
    DataDir(PathBuf),
    /// The data directory's own file, written just now with the defaults.
    Created(PathBuf),
}

impl ServeArgs {
    /// Builds the effective configuration: defaults < file < env < flags.
    ///
    /// Without `--config`, the data directory's `chronoshard.toml` is read, and written with the
    /// commented defaults if it does not exist yet (creating the data directory too).
    pub fn resolve(&self) -> Result<(Config, ConfigSource), ConfigError> {
        let (mut config, source) = match &self.config {
            Some(path) => (Config::from_file(path)?, ConfigSource::Given(path.clone())),
            None => {
                let data_dir = self
                    .data_dir
                    .clone()
                    .unwrap_or_else(|| Config::default().data_dir);
                load_or_create_in(&data_dir)?
            }
        };
        self.overlay(&mut config);
        config.validate()?;
        Ok((config, source))
    }

    fn overlay(&self, config: &mut Config) {
        if let Some(v) = self.http_addr {
            config.http_addr = v;
        }
        if let Some(v) = &self.data_dir {
            config.data_dir = v.clone();
        }
        if let Some(v) = self.shards {
            config.shards = v;
        }
        if let Some(v) = self.wal_mode {
            config.wal_mode = v;
        }
        if let Some(v) = self.auth {
            config.auth = v;
        }
    }
}

fn load_or_create_in(data_dir: &Path) -> Result<(Config, ConfigSource), ConfigError> {
    let path = data_dir.join(config::CONFIG_FILE_NAME);
    if path.exists() {
        return Ok((Config::from_file(&path)?, ConfigSource::DataDir(path)));
    }
    let write_err = |source| ConfigError::Write {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(data_dir).map_err(write_err)?;
    // The written file records the defaults; the data directory it names is the one in use.
    let text = config::default_toml().replace(
        &format!("data_dir = \"{}\"", Config::default().data_dir.display()),
        &format!("data_dir = {:?}", data_dir.display().to_string()),
    );
    std::fs::write(&path, text).map_err(write_err)?;
    Ok((Config::from_file(&path)?, ConfigSource::Created(path)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_beat_the_file_which_beats_defaults() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "shards = 3\nwal_mode = \"off\"\n").expect("write");
        let args = ServeArgs {
            config: Some(file),
            shards: Some(5),
            ..ServeArgs::default()
        };
        let (c, _) = args.resolve().expect("resolves");
        assert_eq!(c.shards, 5, "flag wins over file");
        assert_eq!(c.wal_mode, WalMode::Off, "file wins over default");
        assert_eq!(c.http_addr, Config::default().http_addr, "default kept");
    }

    #[test]
    fn first_start_writes_the_config_into_the_data_dir() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("fresh");
        let args = ServeArgs {
            data_dir: Some(data.clone()),
            ..ServeArgs::default()
        };
        let (c, source) = args.resolve().expect("resolves");
        assert_eq!(
            source,
            ConfigSource::Created(data.join(config::CONFIG_FILE_NAME))
        );
        assert_eq!(c.data_dir, data);
        let (again, source) = args.resolve().expect("resolves");
        assert_eq!(
            source,
            ConfigSource::DataDir(data.join(config::CONFIG_FILE_NAME))
        );
        assert_eq!(again, c);
    }
}

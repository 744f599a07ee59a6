//! Where the binary's settings come from: a flag, else its environment
//! variable, else the config file `rime.toml`, else the default.
//!
//! The config file is `--config PATH` if given (it must exist), else
//! `./rime.toml` if present. Its keys (all optional; an unknown key is an
//! error naming it):
//!
//! ```toml
//! data = "rime-data"            # data directory (relative: to the file's directory)
//! listen = "127.0.0.1:7878"     # rime serve's address
//! pool = "256MiB"               # buffer-pool size (units required)
//! durability = "sync"           # sync | group | group:2ms | nosync
//! token_file = "secrets/token"  # rime serve's bearer token, read from this file
//! ```

use crate::env::{self, Result};
use rime_storage::Durability;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The file looked up in the current directory when `--config` is absent.
pub const DEFAULT_CONFIG_FILE: &str = "rime.toml";

/// How long a `group` leader waits for more committers when the
/// durability setting names no delay: 1 ms is well under a commit's sync
/// on a disk that honours `fdatasync`, so the wait adds little latency.
pub const DEFAULT_GROUP_DELAY: Duration = Duration::from_millis(1);

/// The keys of `rime.toml`, as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data: Option<PathBuf>,
    listen: Option<String>,
    pool: Option<String>,
    durability: Option<String>,
    token_file: Option<PathBuf>,
}

/// The config file's settings, checked, relative paths resolved against
/// the file's directory. Empty without a file.
#[derive(Debug, Default, Clone)]
pub struct Config {
    pub data: Option<PathBuf>,
    pub listen: Option<SocketAddr>,
    pub pool_bytes: Option<usize>,
    pub durability: Option<Durability>,
    pub token_file: Option<PathBuf>,
}

impl Config {
    /// `--config PATH` (which must exist), else `./rime.toml` if present,
    /// else no file.
    pub fn load(flag: Option<&Path>) -> Result<Config> {
        let path = match flag {
            Some(p) => p.to_path_buf(),
            None => {
                let p = PathBuf::from(DEFAULT_CONFIG_FILE);
                if !p.is_file() {
                    return Ok(Config::default());
                }
                p
            }
        };
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("reading the config file {}: {e}", path.display()))?;
        Config::parse(&text, &path)
    }

    /// Parses the text of the config file at `path`.
    pub fn parse(text: &str, path: &Path) -> Result<Config> {
        let at = |e: String| format!("config file {}: {e}", path.display());
        let raw: FileConfig = toml::from_str(text).map_err(|e| at(e.message().to_string()))?;
        let base = path.parent().unwrap_or(Path::new(""));
        let listen = match raw.listen {
            Some(l) => Some(
                l.parse()
                    .map_err(|e| at(format!("listen = {l:?} is not an address ({e})")))?,
            ),
            None => None,
        };
        let pool_bytes = match raw.pool {
            Some(p) => Some(parse_pool(&p).map_err(|e| at(format!("pool: {e}")))?),
            None => None,
        };
        let durability = match raw.durability {
            Some(d) => Some(parse_durability(&d).map_err(|e| at(format!("durability: {e}")))?),
            None => None,
        };
        Ok(Config {
            data: raw.data.map(|d| base.join(d)),
            listen,
            pool_bytes,
            durability,
            token_file: raw.token_file.map(|t| base.join(t)),
        })
    }
}

/// The options every subcommand takes, before or after its name.
#[derive(clap::Args, Debug)]
pub struct GlobalArgs {
    /// Data directory. Default: `data` of the config file, else
    /// ./rime-data. Only `serve`, `demo` and `deploy` create it.
    #[arg(long, global = true, env = "RIME_DATA", value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Config file (docs/http.md, "Configuration"). Default: ./rime.toml
    /// if present.
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
}

/// Settings resolved from flags, environment, config file and defaults.
#[derive(Debug)]
pub struct Settings {
    pub data: PathBuf,
    pub file: Config,
}

impl Settings {
    pub fn resolve(g: &GlobalArgs) -> Result<Settings> {
        let file = Config::load(g.config.as_deref())?;
        let data = g
            .data
            .clone()
            .or_else(|| file.data.clone())
            .unwrap_or_else(env::default_data_dir);
        Ok(Settings { data, file })
    }

    /// The data directory for a command that must not create it: refused,
    /// naming the path, if it does not exist, or if it holds files but no
    /// database (an empty directory is one the user made for Rime).
    pub fn existing_data(&self) -> Result<&Path> {
        let dir = self.data.as_path();
        let hint = concat!(
            "`rime deploy`, `rime serve` or `rime demo` create one; ",
            "pick another with --data DIR, RIME_DATA or `data` in rime.toml"
        );
        if !dir.is_dir() {
            return Err(format!("data directory {} does not exist ({hint})", dir.display()).into());
        }
        let empty = std::fs::read_dir(dir)
            .map_err(|e| format!("reading data directory {}: {e}", dir.display()))?
            .next()
            .is_none();
        if !empty && !dir.join(rime_storage::dir::SUPERBLOCK_FILE).is_file() {
            return Err(format!(
                "{} is not a Rime data directory (no superblock; {hint})",
                dir.display()
            )
            .into());
        }
        Ok(dir)
    }

    /// [`Settings::db_options`] for a one-shot command (deploy, invoke,
    /// state, ...): new log segments at most [`env::ONE_SHOT_SEGMENT_BYTES`].
    pub fn one_shot_db_options(&self) -> rime_storage::Options {
        env::one_shot(self.db_options(None, None))
    }

    /// Storage options: the config file's pool size and durability unless
    /// `pool_bytes`/`durability` (flags) say otherwise.
    pub fn db_options(
        &self,
        pool_bytes: Option<usize>,
        durability: Option<Durability>,
    ) -> rime_storage::Options {
        env::db_options(
            pool_bytes.or(self.file.pool_bytes),
            durability.or(self.file.durability),
        )
    }
}

/// A buffer-pool size with units, as a `usize`.
pub fn parse_pool(s: &str) -> std::result::Result<usize, String> {
    let bytes = env::parse_size(s)?;
    usize::try_from(bytes).map_err(|_| format!("pool size {s:?} is too large"))
}

/// `sync`, `group` (a leader waits up to [`DEFAULT_GROUP_DELAY`] for more
/// committers), `group:DURATION`, or `nosync` (benchmarks only: a crash
/// loses acknowledged commits).
pub fn parse_durability(s: &str) -> std::result::Result<Durability, String> {
    match s.trim() {
        "sync" => Ok(Durability::Sync),
        "group" => Ok(Durability::Group {
            max_delay: DEFAULT_GROUP_DELAY,
        }),
        "nosync" => Ok(Durability::NoSync),
        other => match other.strip_prefix("group:") {
            Some(d) => Ok(Durability::Group {
                max_delay: env::parse_duration(d)?,
            }),
            None => Err(format!(
                "unknown durability {s:?} (use sync, group, group:DURATION such as group:2ms, or nosync)"
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config> {
        Config::parse(text, Path::new("/etc/rime/rime.toml"))
    }

    #[test]
    fn every_key_parses_and_paths_are_relative_to_the_file() {
        let c = parse(
            "data = \"d\"\nlisten = \"127.0.0.1:9000\"\npool = \"64MiB\"\n\
             durability = \"group:2ms\"\ntoken_file = \"/run/token\"\n",
        )
        .unwrap();
        assert_eq!(c.data, Some(PathBuf::from("/etc/rime/d")));
        assert_eq!(c.listen, Some("127.0.0.1:9000".parse().unwrap()));
        assert_eq!(c.pool_bytes, Some(64 << 20));
        assert_eq!(
            c.durability,
            Some(Durability::Group {
                max_delay: Duration::from_millis(2)
            })
        );
        assert_eq!(c.token_file, Some(PathBuf::from("/run/token")));
    }

    #[test]
    fn an_unknown_key_is_an_error_naming_it() {
        let e = parse("data = \"d\"\npool_size = \"1GiB\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `pool_size`"), "{e}");
        assert!(e.contains("/etc/rime/rime.toml"), "{e}");
    }

    #[test]
    fn bad_values_name_the_key() {
        let e = parse("pool = \"64\"\n").unwrap_err().to_string();
        assert!(e.contains("pool: size \"64\" needs a unit"), "{e}");
        let e = parse("durability = \"fast\"\n").unwrap_err().to_string();
        assert!(e.contains("unknown durability \"fast\""), "{e}");
        let e = parse("listen = \"here\"\n").unwrap_err().to_string();
        assert!(e.contains("listen = \"here\" is not an address"), "{e}");
    }
}

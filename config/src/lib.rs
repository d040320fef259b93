//! Layered configuration of Lumen's daemons, one rule for all of them:
//! defaults < `--config` file (YAML) < `LUMEN_*` environment < flags, with
//! the same kebab-case key everywhere (`--node-name`, `node-name:`,
//! `LUMEN_NODE_NAME`).
//!
//! The daemon's `clap::Parser` struct stays the one description of its
//! settings (names, defaults, value parsers, help). [`load`] reads the
//! environment from the map it is given, never from the process, and the
//! file through the function it is given, so tests pass their own
//! (linkerd2-proxy's injectable config source); only `main.rs` hands over
//! the real ones.

mod file;
mod print;

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Command};

use file::Shape;
pub use print::{Effective, Setting};

/// How a daemon names its environment variables.
#[derive(Clone, Copy, Debug)]
pub struct Spec {
    /// `LUMEN_` for the observer (`LUMEN_NODE_NAME`), `LUMEN_RELAY_` for the
    /// relay (`LUMEN_RELAY_PEER`): the two share flag names (`listen-address`,
    /// `tls-cert-file`) with different meanings, and may share a shell.
    pub env_prefix: &'static str,
    /// Older variable names still read, each with the key it sets; the
    /// current name wins when both are set.
    pub env_aliases: &'static [(&'static str, &'static str)],
    /// Switches that do something once (`--uninstall`) rather than set how
    /// the daemon runs: flags only, never keys of the file or variables.
    pub actions: &'static [&'static str],
}

impl Spec {
    /// The environment variable of `key`: `node-name` → `LUMEN_NODE_NAME`.
    pub fn env_var(&self, key: &str) -> String {
        format!("{}{}", self.env_prefix, key.to_ascii_uppercase().replace('-', "_"))
    }
}

/// The environment, as a map: `std::env::vars_os().collect()` in a binary,
/// a literal in a test.
#[derive(Clone, Debug, Default)]
pub struct Env(BTreeMap<OsString, OsString>);

impl<K: Into<OsString>, V: Into<OsString>> FromIterator<(K, V)> for Env {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Env {
        Env(iter.into_iter().map(|(k, v)| (k.into(), v.into())).collect())
    }
}

impl Env {
    pub fn get(&self, var: &str) -> Option<&OsStr> {
        self.0.get(OsStr::new(var)).map(OsString::as_os_str)
    }
}

/// Where a setting's value came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Default,
    File { path: PathBuf, line: usize },
    Env(String),
    Flag,
}

/// A parsed configuration and what `--print-config` shows of it.
#[derive(Debug)]
pub struct Loaded<C> {
    pub config: C,
    /// `--print-config` was given: print [`Loaded::effective`] and exit.
    pub print_config: bool,
    pub effective: Effective,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The command line itself, or `--help`/`--version`: clap renders and
    /// exits with its own codes (`err.exit()` in `main`).
    #[error("{0}")]
    Args(clap::Error),
    #[error("cannot read config file {}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{}:{line}: {message}", path.display())]
    Yaml {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{}:{line}: unknown key {key:?}{}", path.display(), suggestion.as_ref().map(|s| format!(" (did you mean {s:?}?)")).unwrap_or_default())]
    UnknownKey {
        path: PathBuf,
        line: usize,
        key: String,
        suggestion: Option<String>,
    },
    #[error("{}:{line}: key {key:?} is given twice", path.display())]
    DuplicateKey { path: PathBuf, line: usize, key: String },
    #[error("{}:{line}: {key}: invalid value {value:?}: {reason}", path.display())]
    FileValue {
        path: PathBuf,
        line: usize,
        key: String,
        value: String,
        reason: String,
    },
    #[error("environment variable {var}: invalid value {value:?}: {reason}")]
    EnvValue { var: String, value: String, reason: String },
}

const CONFIG: &str = "config";
const PRINT_CONFIG: &str = "print-config";

/// A setting the file and the environment may give: every flag that takes
/// a value and every switch (`--tls`: `true` or `false` there), except
/// hidden ones (test hooks), `--config` and `--print-config`.
struct Key {
    id: String,
    name: String,
    shape: Shape,
    switch: bool,
}

fn keys(spec: &Spec, cmd: &Command) -> Vec<Key> {
    cmd.get_arguments()
        .filter(|a| {
            let switch = matches!(a.get_action(), ArgAction::SetTrue);
            (a.get_action().takes_values() || switch)
                && !a.is_hide_set()
                && a.get_id() != CONFIG
                && a.get_id() != PRINT_CONFIG
                && !(switch && a.get_long().is_some_and(|l| spec.actions.contains(&l)))
        })
        .filter_map(|a| {
            Some(Key {
                id: a.get_id().to_string(),
                name: a.get_long()?.to_string(),
                shape: match a.get_action() {
                    ArgAction::Append => Shape::List,
                    _ => Shape::One,
                },
                switch: matches!(a.get_action(), ArgAction::SetTrue),
            })
        })
        .collect()
}

/// A switch's value in the file or the environment.
fn switch_value(value: &OsStr) -> Result<bool, String> {
    match value.to_str() {
        Some("true") => Ok(true),
        Some("false") => Ok(false),
        _ => Err("expected true or false".into()),
    }
}

/// The flags that give `key` its `values` (none for a switch that is off).
fn flags(key: &Key, values: &[impl AsRef<OsStr>]) -> Vec<OsString> {
    if key.switch {
        let on = values.iter().any(|v| switch_value(v.as_ref()) == Ok(true));
        return on
            .then(|| OsString::from(format!("--{}", key.name)))
            .into_iter()
            .collect();
    }
    values.iter().map(|v| flag(&key.name, v.as_ref())).collect()
}

/// `C`'s command with `--config` and `--print-config`, each key's variable
/// named in its help, and no `env` of clap's own (clap reads the process
/// environment; the layers below read the map they are given).
pub fn command<C: clap::CommandFactory>(spec: &Spec) -> Command {
    let cmd = C::command();
    let names: Vec<(String, String)> = keys(spec, &cmd).into_iter().map(|k| (k.id, k.name)).collect();
    let example = names.first().map(|(_, n)| n.clone()).unwrap_or_default();
    let cmd = cmd.mut_args(|a| {
        let a = a.env(None::<&str>);
        match names.iter().find(|(id, _)| id == a.get_id()) {
            Some((_, name)) => {
                let var = spec.env_var(name);
                let help = with_env(a.get_help(), &var);
                match a.get_long_help().map(|h| with_env(Some(h), &var)) {
                    Some(long) => a.help(help).long_help(long),
                    None => a.help(help),
                }
            }
            None => a,
        }
    });
    cmd.arg(
        Arg::new(CONFIG)
            .long(CONFIG)
            .value_name("FILE")
            .value_parser(clap::value_parser!(PathBuf))
            .help(format!(
                "YAML file of settings, keyed as the flags (`{example}: …`) [env: {}]",
                spec.env_var(CONFIG)
            )),
    )
    .arg(
        Arg::new(PRINT_CONFIG)
            .long(PRINT_CONFIG)
            .action(ArgAction::SetTrue)
            .help("Print every setting, its value and where it came from, and exit"),
    )
    .after_help(format!(
        "Every option can also be set in the --config file (`{example}: …`) or in the environment ({}); \
         flags override the environment, which overrides the file.",
        spec.env_var(&example)
    ))
}

fn with_env(help: Option<&clap::builder::StyledStr>, var: &str) -> String {
    match help.map(ToString::to_string).filter(|h| !h.is_empty()) {
        Some(h) => format!("{h} [env: {var}]"),
        None => format!("[env: {var}]"),
    }
}

/// Parses `args` (the program name first) over the environment `env` and
/// the file that `--config` (or its variable) names, read by `read_file`.
pub fn load<C: clap::Parser>(
    spec: &Spec,
    args: impl IntoIterator<Item = impl Into<OsString>>,
    env: &Env,
    read_file: impl FnOnce(&Path) -> std::io::Result<String>,
) -> Result<Loaded<C>, Error> {
    let cmd = command::<C>(spec);
    let keys = keys(spec, &cmd);
    let mut args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    if args.is_empty() {
        args.push(cmd.get_name().into());
    }
    // Which keys the flags set. Errors in the flags are left to the full
    // parse below, which reports them as clap always has.
    let given = cmd
        .clone()
        .ignore_errors(true)
        .try_get_matches_from(&args)
        .map_err(Error::Args)?;
    // Absent when the flags did not parse to the end.
    let print_config = given.get_one::<bool>(PRINT_CONFIG).copied().unwrap_or(false);
    let config_var = spec.env_var(CONFIG);
    let config_file = match given.value_source(CONFIG) {
        Some(ValueSource::CommandLine) => given.get_one::<PathBuf>(CONFIG).cloned(),
        _ => env.get(&config_var).map(PathBuf::from),
    };
    let entries = match &config_file {
        Some(path) => {
            let text = read_file(path).map_err(|source| Error::Read {
                path: path.clone(),
                source,
            })?;
            let shapes: Vec<(String, Shape)> = keys.iter().map(|k| (k.name.clone(), k.shape)).collect();
            file::parse(path, &text, &shapes)?
        }
        None => Vec::new(),
    };

    // The file is checked whole, also where the environment or a flag
    // overrides it: it is wrong either way.
    let path = config_file.clone().unwrap_or_default();
    for entry in &entries {
        let Some(key) = keys.iter().find(|k| k.name == entry.key) else {
            continue;
        };
        for value in entry.values.iter().flatten() {
            check(&cmd, key, OsStr::new(value)).map_err(|reason| Error::FileValue {
                path: path.clone(),
                line: entry.line,
                key: entry.key.clone(),
                value: value.clone(),
                reason,
            })?;
        }
    }

    let mut layered: Vec<OsString> = Vec::new();
    let mut sources: BTreeMap<String, Source> = BTreeMap::new();
    for key in &keys {
        let source = if given.value_source(&key.id) == Some(ValueSource::CommandLine) {
            Source::Flag
        } else if let Some((var, value)) = env_value(spec, env, &key.name) {
            // As clap did: a variable is read (and checked) only where no flag overrides it.
            check(&cmd, key, value).map_err(|reason| Error::EnvValue {
                var: var.clone(),
                value: value.to_string_lossy().into_owned(),
                reason,
            })?;
            layered.extend(flags(key, &[value]));
            Source::Env(var)
        } else if let Some((entry, values)) = entries
            .iter()
            .find(|e| e.key == key.name)
            .and_then(|e| Some((e, e.values.as_ref()?)))
        {
            layered.extend(flags(key, values));
            Source::File {
                path: path.clone(),
                line: entry.line,
            }
        } else {
            Source::Default
        };
        sources.insert(key.id.clone(), source);
    }

    // The file's and the environment's values go in as flags before the
    // real ones, so clap checks the whole (`requires`, `conflicts_with`).
    let argv = args[..1]
        .iter()
        .cloned()
        .chain(layered)
        .chain(args[1..].iter().cloned());
    let matches = cmd.clone().try_get_matches_from(argv).map_err(Error::Args)?;
    let config = C::from_arg_matches(&matches).map_err(Error::Args)?;
    let settings = keys
        .iter()
        .map(|key| Setting {
            key: key.name.clone(),
            values: match key.switch {
                true => vec![matches.get_flag(&key.id).to_string()],
                false => raw_values(&matches, &key.id),
            },
            list: key.shape == Shape::List,
            source: sources.remove(&key.id).unwrap_or(Source::Default),
        })
        .collect();
    Ok(Loaded {
        config,
        print_config,
        effective: Effective {
            program: cmd.get_name().to_string(),
            file: config_file,
            settings,
        },
    })
}

/// The variable that sets `key`, current name first, then older ones.
fn env_value<'e>(spec: &Spec, env: &'e Env, key: &str) -> Option<(String, &'e OsStr)> {
    let current = spec.env_var(key);
    let older = spec
        .env_aliases
        .iter()
        .filter(|(_, k)| *k == key)
        .map(|(var, _)| var.to_string());
    std::iter::once(current)
        .chain(older)
        .find_map(|var| env.get(&var).map(|value| (var, value)))
}

fn flag(key: &str, value: &OsStr) -> OsString {
    // `--key=value`, so that a value starting with `-` stays a value.
    let mut flag = OsString::from(format!("--{key}="));
    flag.push(value);
    flag
}

/// Whether the flag parser takes `value` for `key`, and if not, its reason.
fn check(cmd: &Command, key: &Key, value: &OsStr) -> Result<(), String> {
    if key.switch {
        return switch_value(value).map(|_| ());
    }
    let program = cmd.get_name().to_string();
    let Err(e) = cmd
        .clone()
        .try_get_matches_from([OsString::from(program), flag(&key.name, value)])
    else {
        return Ok(());
    };
    match e.kind() {
        // About other settings, which the full parse checks.
        ErrorKind::MissingRequiredArgument | ErrorKind::ArgumentConflict | ErrorKind::MissingSubcommand => Ok(()),
        ErrorKind::ValueValidation => Err(std::error::Error::source(&e)
            .map(ToString::to_string)
            .unwrap_or_else(|| first_line(&e))),
        ErrorKind::InvalidValue => match e.get(ContextKind::ValidValue) {
            Some(ContextValue::Strings(valid)) => Err(format!("expected one of {}", valid.join(", "))),
            _ => Err(first_line(&e)),
        },
        _ => Err(first_line(&e)),
    }
}

fn first_line(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let line = text.lines().next().unwrap_or_default();
    line.strip_prefix("error: ").unwrap_or(line).to_string()
}

fn raw_values(matches: &ArgMatches, id: &str) -> Vec<String> {
    matches
        .get_raw(id)
        .map(|values| values.map(|v| v.to_string_lossy().into_owned()).collect())
        .unwrap_or_default()
}

//! `lumen observe`'s filter flags, turned into Hubble `FlowFilter` lists the
//! way `hubble observe` builds them (see [`tracker`] for how one list is
//! built): `--not` sends the next filter flag to the deny list, and
//! `--allowlist`/`--denylist` add filters written in JSON.
//!
//! The order of `--not` relative to the other flags matters, so the filters
//! are built from clap's argument indices rather than from derived fields.

mod flags;
mod tracker;
mod values;

#[cfg(test)]
mod tests;

use clap::error::ErrorKind;
use clap::{ArgMatches, Args, Command, FromArgMatches};
use lumen_flow::format;
use lumen_proto::flow::FlowFilter;

use flags::{Value, FLAGS, SIDE_FLAGS};
use tracker::{Dir, Tracker};

/// The allow list and deny list the filter flags describe.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct FilterFlags {
    pub whitelist: Vec<FlowFilter>,
    pub blacklist: Vec<FlowFilter>,
}

/// What a filter flag does with a value: adds it to a list's filters, or
/// explains why it cannot.
type ApplyFn = Box<dyn Fn(&mut Tracker, &str) -> Result<(), String>>;

/// One filter flag on the command line: its name (as clap knows it), the
/// value it takes, and what it does with one.
struct Use {
    name: &'static str,
    value: Value,
    apply: ApplyFn,
}

fn leak(s: String) -> &'static str {
    // clap wants 'static ids for args built at run time; a few dozen short
    // strings once per process.
    Box::leak(s.into_boxed_str())
}

/// Every filter flag, the `--from-`/`--to-` forms spelled out.
fn uses() -> Vec<Use> {
    let mut all = Vec::new();
    for flag in SIDE_FLAGS {
        for (dir, name) in [
            (Dir::Either, flag.name.to_string()),
            (Dir::From, format!("from-{}", flag.name)),
            (Dir::To, format!("to-{}", flag.name)),
        ] {
            let apply = flag.apply;
            all.push(Use {
                name: leak(name),
                value: flag.value,
                apply: Box::new(move |t, v| apply(t, dir, v)),
            });
        }
    }
    for flag in FLAGS {
        all.push(Use {
            name: flag.name,
            value: flag.value,
            apply: Box::new(flag.apply),
        });
    }
    all
}

fn arg(name: &'static str, short: Option<char>, value: Value, help: String) -> clap::Arg {
    let arg = clap::Arg::new(name)
        .long(name)
        .help(help)
        .action(clap::ArgAction::Append)
        .help_heading("Filters");
    let arg = match short {
        Some(c) => arg.short(c),
        None => arg,
    };
    match value {
        Value::Named(v) => arg.value_name(v),
        Value::Switch(default) => arg
            .value_name(default)
            .num_args(0..=1)
            .require_equals(true)
            .default_missing_value(default),
    }
}

impl Args for FilterFlags {
    fn augment_args(mut cmd: Command) -> Command {
        for flag in SIDE_FLAGS {
            let help = |text: String| format!("{text}{}", flag.note);
            cmd = cmd
                .arg(arg(
                    flag.name,
                    flag.short,
                    flag.value,
                    help(format!("Flows from or to {}", flag.what)),
                ))
                .arg(arg(
                    leak(format!("from-{}", flag.name)),
                    None,
                    flag.value,
                    help(format!("Flows from {}", flag.what)),
                ))
                .arg(arg(
                    leak(format!("to-{}", flag.name)),
                    None,
                    flag.value,
                    help(format!("Flows to {}", flag.what)),
                ));
        }
        for flag in FLAGS {
            let mut a = arg(flag.name, flag.short, flag.value, flag.help.to_string());
            if let Some(alias) = flag.alias {
                a = a.visible_alias(alias);
            }
            cmd = cmd.arg(a);
        }
        cmd.arg(
            clap::Arg::new("not")
                .long("not")
                // Append keeps the position of every occurrence, which Count does not.
                .action(clap::ArgAction::Append)
                .num_args(0)
                .default_missing_value("true")
                .help("Negate the next filter flag: its flows are excluded (deny list), e.g. --not --from-ip 2.2.2.2")
                .help_heading("Filters"),
        )
        .arg(
            clap::Arg::new("allowlist")
                .long("allowlist")
                .value_name("JSON")
                .action(clap::ArgAction::Append)
                .help("Also allow flows these JSON FlowFilters match ('{\"source_pod\":[\"default/\"]}')")
                .help_heading("Raw filters"),
        )
        .arg(
            clap::Arg::new("denylist")
                .long("denylist")
                .value_name("JSON")
                .action(clap::ArgAction::Append)
                .help("Also deny flows these JSON FlowFilters match")
                .help_heading("Raw filters"),
        )
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        Self::augment_args(cmd)
    }
}

impl FilterFlags {
    /// The filters of flags typed as one line, as `lumen observe` takes
    /// them (`--verdict DROPPED --not --namespace kube-system`); quotes
    /// group words (`--allowlist '{"source_pod":["default/"]}'`).
    pub fn parse_line(line: &str) -> Result<FilterFlags, String> {
        let words = split_words(line)?;
        let cmd = FilterFlags::augment_args(Command::new("filter").no_binary_name(true).disable_help_flag(true));
        let first_line = |e: clap::Error| {
            let text = e.render().to_string();
            let line = text.lines().next().unwrap_or_default();
            line.strip_prefix("error: ").unwrap_or(line).to_string()
        };
        let matches = cmd.try_get_matches_from(words).map_err(first_line)?;
        FilterFlags::from_arg_matches(&matches).map_err(first_line)
    }
}

/// Words as a shell splits them: at spaces, with '…' and "…" quoting.
fn split_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut quote: Option<char> = None;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.get_or_insert_with(String::new).push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                word.get_or_insert_with(String::new);
            }
            (None, c) if c.is_whitespace() => words.extend(word.take()),
            (None, c) => word.get_or_insert_with(String::new).push(c),
        }
    }
    if let Some(q) = quote {
        return Err(format!("unclosed {q}"));
    }
    words.extend(word);
    Ok(words)
}

fn error(message: String) -> clap::Error {
    clap::Error::raw(ErrorKind::ValueValidation, message + "\n")
}

/// The filters of `--allowlist` or `--denylist` values.
fn raw(matches: &ArgMatches, name: &str) -> Result<Vec<FlowFilter>, clap::Error> {
    let mut filters = Vec::new();
    for value in matches.get_many::<String>(name).into_iter().flatten() {
        let parsed = format::parse_filters_json(value)
            .map_err(|e| error(format!("invalid value for --{name}: {e} (in {value:?})")))?;
        filters.extend(parsed);
    }
    Ok(filters)
}

impl FromArgMatches for FilterFlags {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let flags = uses();
        let mut given: Vec<(usize, &Use, &String)> = Vec::new();
        for flag in &flags {
            if let (Some(at), Some(values)) = (matches.indices_of(flag.name), matches.get_many::<String>(flag.name)) {
                given.extend(at.zip(values).map(|(at, v)| (at, flag, v)));
            }
        }
        given.sort_by_key(|g| g.0);
        let mut nots: Vec<usize> = match matches.value_source("not") {
            Some(clap::parser::ValueSource::CommandLine) => {
                matches.indices_of("not").map(Iterator::collect).unwrap_or_default()
            }
            _ => Vec::new(),
        };
        nots.sort_unstable();
        let (mut allow, mut deny) = (Tracker::default(), Tracker::default());
        let mut next_not = nots.iter().peekable();
        for (at, flag, value) in given {
            let mut negations = 0;
            while next_not.next_if(|n| **n < at).is_some() {
                negations += 1;
            }
            if negations > 1 {
                return Err(error(format!(
                    "--not --not: each --not negates only the filter flag after it (here --{})",
                    flag.name
                )));
            }
            let list = if negations == 1 { &mut deny } else { &mut allow };
            if let Value::Switch(only) = flag.value {
                if value != only {
                    return Err(error(format!(
                        "invalid value for --{}: it takes no value (or ={only})",
                        flag.name
                    )));
                }
            }
            list.use_flag(flag.name).map_err(error)?;
            (flag.apply)(list, value).map_err(|e| error(format!("invalid value for --{}: {e}", flag.name)))?;
            list.check().map_err(error)?;
        }
        if next_not.next().is_some() {
            return Err(error(
                "--not must come before the filter flag it negates, e.g. --not --verdict DROPPED".into(),
            ));
        }
        let mut whitelist = allow.filters();
        whitelist.extend(raw(matches, "allowlist")?);
        let mut blacklist = deny.filters();
        blacklist.extend(raw(matches, "denylist")?);
        Ok(FilterFlags { whitelist, blacklist })
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

//! The command line, built from the settings declaration: one flag per
//! setting (plus hidden deprecated ones), `--config`, and the subcommands.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Arg, ArgAction, ArgMatches, Command as ClapCommand};

use super::SETTINGS;
use super::declare::FlagValue;

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Migrate, then serve (the default).
    Serve,
    /// Apply pending migrations and exit.
    Migrate,
    /// Print the effective configuration, secrets redacted.
    ConfigPrint,
    /// Print the settings reference (docs/configuration.md).
    ConfigReference,
    /// Break-glass, on the configured database: clear a user's lockout.
    AdminUnlock { username: String },
    /// Break-glass: set a user's password, read from `password_file` or
    /// standard input (never a flag), and clear their lockout.
    AdminResetPassword {
        username: String,
        password_file: Option<PathBuf>,
    },
    /// Walk the audit chain; exit non-zero at the first record that does
    /// not match. `anchors`: `SEQ:HASH` heads from the log.
    AuditVerify { anchors: Vec<String> },
}

/// A parsed command line: kept, so SIGHUP can load the settings again the
/// same way.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub command: Command,
    pub config_file: Option<PathBuf>,
    flags: Vec<(&'static str, String, String)>,
}

impl Invocation {
    pub(super) fn flags(&self) -> Vec<FlagValue> {
        self.flags
            .iter()
            .map(|(key, flag, value)| FlagValue {
                key,
                flag: flag.clone(),
                value: value.clone(),
            })
            .collect()
    }
}

const CONFIG_ARG: &str = "config-file";

fn command() -> ClapCommand {
    let mut cmd = ClapCommand::new("authzd")
        .version(env!("CARGO_PKG_VERSION"))
        .about("Accounts, users, roles and credential checks over gRPC")
        .long_about(
            "Accounts, users, roles and credential checks over gRPC.\n\n\
             With no subcommand authzd migrates the database and serves. Settings come \
             from the YAML file (--config), then AUTHZD_* environment variables, then \
             flags; `authzd config reference` lists them all.",
        )
        .arg(
            Arg::new(CONFIG_ARG)
                .long("config")
                .value_name("FILE")
                .global(true)
                .help("YAML configuration file [env: AUTHZD_CONFIG]"),
        )
        .subcommand(
            ClapCommand::new("serve").about("Migrate the database, then serve (the default)"),
        )
        .subcommand(ClapCommand::new("migrate").about("Apply pending migrations and exit"))
        .subcommand(
            ClapCommand::new("config")
                .about("Inspect the configuration")
                .subcommand_required(true)
                .subcommand(
                    ClapCommand::new("print")
                        .about("Print the effective settings and where each came from"),
                )
                .subcommand(
                    ClapCommand::new("reference").about("Print the settings reference (Markdown)"),
                ),
        )
        .subcommand(
            ClapCommand::new("audit")
                .about("The audit trail, read locally from the configured database")
                .subcommand_required(true)
                .subcommand(
                    ClapCommand::new("verify")
                        .about(
                            "Check every record's hash and link; report the first that does not match",
                        )
                        .arg(
                            Arg::new("anchor")
                                .long("anchor")
                                .value_name("SEQ:HASH")
                                .action(ArgAction::Append)
                                .help(
                                    "A head the log holds (`audit chain head` lines): record SEQ \
                                     must still have HASH, unless purged by retention",
                                ),
                        ),
                ),
        )
        .subcommand(
            ClapCommand::new("admin")
                .about("Break-glass, run locally against the configured database")
                .subcommand_required(true)
                .subcommand(
                    ClapCommand::new("unlock")
                        .about("Clear a user's password failures and lock")
                        .arg(Arg::new("username").required(true)),
                )
                .subcommand(
                    ClapCommand::new("reset-password")
                        .about(
                            "Set a user's password (read from --password-file or standard input) \
                             and clear their lock",
                        )
                        .arg(Arg::new("username").required(true))
                        .arg(
                            Arg::new("password-file")
                                .long("password-file")
                                .value_name("FILE")
                                .help("Read the new password from FILE instead of standard input"),
                        ),
                ),
        );
    for def in SETTINGS {
        cmd = cmd.arg(
            Arg::new(def.key)
                .long(def.flag())
                .value_name("VALUE")
                .action(ArgAction::Set)
                .global(true)
                .help(format!("{} [env: {}]", def.summary(), def.env())),
        );
        for (i, old) in def.old_flags().into_iter().enumerate() {
            cmd = cmd.arg(
                Arg::new(format!("{}#old{i}", def.key))
                    .long(old)
                    .action(ArgAction::Set)
                    .global(true)
                    .hide(true),
            );
        }
    }
    cmd
}

/// Parses the arguments (including the program name). Help, version and
/// usage errors come back as `clap::Error`, which prints and exits with 2.
pub fn parse<I, T>(args: I, env: &dyn Fn(&str) -> Option<String>) -> Result<Invocation, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let matches = command().try_get_matches_from(args)?;
    Ok(from_matches(&matches, env))
}

fn from_matches(matches: &ArgMatches, env: &dyn Fn(&str) -> Option<String>) -> Invocation {
    let command = match matches.subcommand() {
        Some(("migrate", _)) => Command::Migrate,
        Some(("admin", sub)) => {
            let (name, args) = sub.subcommand().unwrap_or(("unlock", sub));
            let username = args
                .get_one::<String>("username")
                .cloned()
                .unwrap_or_default();
            if name == "reset-password" {
                Command::AdminResetPassword {
                    username,
                    password_file: args.get_one::<String>("password-file").map(PathBuf::from),
                }
            } else {
                Command::AdminUnlock { username }
            }
        }
        Some(("audit", sub)) => Command::AuditVerify {
            anchors: sub
                .subcommand()
                .and_then(|(_, args)| args.get_many::<String>("anchor"))
                .map(|values| values.cloned().collect())
                .unwrap_or_default(),
        },
        Some(("config", sub)) => match sub.subcommand_name() {
            Some("reference") => Command::ConfigReference,
            _ => Command::ConfigPrint,
        },
        _ => Command::Serve,
    };
    // Global flags may follow the subcommand: read them where they landed.
    let scope = match matches.subcommand() {
        Some(("config" | "admin" | "audit", sub)) => sub.subcommand().map_or(sub, |(_, m)| m),
        Some((_, sub)) => sub,
        None => matches,
    };
    let get = |id: &str| {
        scope
            .get_one::<String>(id)
            .or_else(|| matches.get_one::<String>(id))
            .cloned()
    };
    let config_file = get(CONFIG_ARG)
        .or_else(|| env("AUTHZD_CONFIG").filter(|v| !v.is_empty()))
        .map(PathBuf::from);
    let mut flags = Vec::new();
    for def in SETTINGS {
        for (i, old) in def.old_flags().into_iter().enumerate() {
            if let Some(value) = get(&format!("{}#old{i}", def.key)) {
                flags.push((def.key, old, value));
            }
        }
        if let Some(value) = get(def.key) {
            flags.push((def.key, def.flag(), value));
        }
    }
    Invocation {
        command,
        config_file,
        flags,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        command().debug_assert();
    }

    #[test]
    fn flags_may_come_before_or_after_the_subcommand() {
        let none = |_: &str| None;
        let inv = parse(
            ["authzd", "--server-listen", "127.0.0.1:1", "migrate"],
            &none,
        )
        .unwrap();
        assert_eq!(inv.command, Command::Migrate);
        assert_eq!(inv.flags[0].2, "127.0.0.1:1");
        let inv = parse(["authzd", "config", "print", "--log-level", "debug"], &none).unwrap();
        assert_eq!(inv.command, Command::ConfigPrint);
        assert_eq!(inv.flags[0].0, "log.level");
        let inv = parse(["authzd", "--listen", "127.0.0.1:2"], &none).unwrap();
        assert_eq!(
            inv.flags[0],
            (
                "server.listen",
                "listen".to_owned(),
                "127.0.0.1:2".to_owned()
            )
        );
    }
}

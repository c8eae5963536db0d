//! The machinery behind the one declaration of every setting: what a
//! declared setting knows about itself (`Def`), where a value came from
//! (`Source`), and the layering of default, file, environment and flags.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use serde_yaml_ng::{Mapping, Value as Yaml};

use super::ConfigError;
use super::value::SettingValue;

/// A declared setting. Its environment variable and flag follow from its
/// key (`cache.ttl_seconds` → `AUTHZD_CACHE_TTL_SECONDS`, `--cache-ttl-seconds`).
#[derive(Debug)]
pub struct Def {
    pub section: &'static str,
    /// `section.name`, as in the file.
    pub key: &'static str,
    pub doc: &'static str,
    pub kind: &'static str,
    pub secret: bool,
    /// Re-read on SIGHUP; every other setting needs a restart.
    pub reload: bool,
    /// The declared default, as the file would spell it ("" when unset).
    pub default: fn() -> String,
    /// Other accepted environment variables (e.g. `DATABASE_URL`).
    pub env_aliases: &'static [&'static str],
    /// Pre-1.0 flat names, accepted with a warning: the file key, and
    /// `AUTHZD_<NAME>` and `--<name>` derived from it.
    pub old: &'static [&'static str],
    /// Pre-1.0 environment variables that do not follow from `old`.
    pub old_env: &'static [&'static str],
}

impl Def {
    pub fn env(&self) -> String {
        format!("AUTHZD_{}", self.key.replace('.', "_").to_ascii_uppercase())
    }

    pub fn flag(&self) -> String {
        self.key.replace(['.', '_'], "-")
    }

    /// Deprecated environment variables and flags, without those that are
    /// spelled like the current ones.
    pub fn old_envs(&self) -> Vec<String> {
        let current = self.env();
        self.old
            .iter()
            .map(|old| format!("AUTHZD_{}", old.to_ascii_uppercase()))
            .chain(self.old_env.iter().map(|e| (*e).to_owned()))
            .filter(|e| *e != current)
            .collect()
    }

    pub fn old_flags(&self) -> Vec<String> {
        let current = self.flag();
        self.old
            .iter()
            .map(|old| old.replace('_', "-"))
            .filter(|f| *f != current)
            .collect()
    }

    /// The first line of the doc comment.
    pub fn summary(&self) -> &'static str {
        self.doc.lines().next().unwrap_or_default()
    }
}

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Default,
    File(String),
    Env(String),
    Flag(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Default => f.write_str("default"),
            Self::File(path) => write!(f, "file {path}"),
            Self::Env(name) => write!(f, "environment {name}"),
            Self::Flag(name) => write!(f, "flag --{name}"),
        }
    }
}

enum Raw {
    Yaml(Yaml),
    Text(String),
}

/// A flag given on the command line: the setting's key, the flag as typed
/// (without dashes) and its value.
pub struct FlagValue {
    pub key: &'static str,
    pub flag: String,
    pub value: String,
}

/// The winning raw value of each setting, before it is typed.
pub struct Layers {
    found: HashMap<&'static str, (Raw, Source)>,
    pub sources: Vec<(&'static str, Source)>,
    pub warnings: Vec<String>,
}

fn bad(message: String) -> ConfigError {
    ConfigError(message)
}

fn deprecated(old: &str, def: &Def) -> String {
    format!(
        "{old} is deprecated and will be removed in 1.0; use {} ({}, --{})",
        def.key,
        def.env(),
        def.flag()
    )
}

impl Layers {
    /// Gathers the layers, lowest precedence first, so each later one
    /// overwrites: default < file < environment < flags. Within a layer,
    /// the current name wins over a deprecated one.
    pub fn gather(
        defs: &'static [Def],
        file: Option<(&Path, Yaml)>,
        env: &dyn Fn(&str) -> Option<String>,
        flags: Vec<FlagValue>,
    ) -> Result<Self, ConfigError> {
        let mut layers = Self {
            found: HashMap::new(),
            sources: Vec::new(),
            warnings: Vec::new(),
        };
        if let Some((path, yaml)) = file {
            layers.read_file(defs, path, yaml)?;
        }
        for def in defs {
            let old = def.old_envs().into_iter().rev().find_map(|name| {
                env(&name)
                    .filter(|v| !v.is_empty())
                    .map(|value| (name, value))
            });
            let current = std::iter::once(def.env())
                .chain(def.env_aliases.iter().map(|a| (*a).to_owned()))
                .find_map(|name| env(&name).filter(|v| !v.is_empty()).map(|v| (name, v)));
            match (current, old) {
                (Some((name, value)), _) => {
                    layers.set(def.key, Raw::Text(value), Source::Env(name));
                }
                (None, Some((name, value))) => {
                    layers.warnings.push(deprecated(&name, def));
                    layers.set(def.key, Raw::Text(value), Source::Env(name));
                }
                (None, None) => {}
            }
        }
        // Deprecated flags first, so a current one given too wins.
        let (current, old): (Vec<_>, Vec<_>) = flags
            .into_iter()
            .partition(|f| defs.iter().any(|d| d.key == f.key && d.flag() == f.flag));
        for flag in old {
            if let Some(def) = defs.iter().find(|d| d.key == flag.key) {
                layers
                    .warnings
                    .push(deprecated(&format!("--{}", flag.flag), def));
            }
            layers.set(flag.key, Raw::Text(flag.value), Source::Flag(flag.flag));
        }
        for flag in current {
            layers.set(flag.key, Raw::Text(flag.value), Source::Flag(flag.flag));
        }
        Ok(layers)
    }

    fn set(&mut self, key: &'static str, raw: Raw, source: Source) {
        self.found.insert(key, (raw, source));
    }

    /// Unknown keys are refused, naming them: a typo must not silently
    /// leave a default in place.
    fn read_file(
        &mut self,
        defs: &'static [Def],
        path: &Path,
        yaml: Yaml,
    ) -> Result<(), ConfigError> {
        let shown = path.display().to_string();
        let top = match yaml {
            Yaml::Mapping(m) => m,
            Yaml::Null => Mapping::new(),
            _ => return Err(bad(format!("{shown}: must be a mapping of settings"))),
        };
        let mut old_values = Vec::new();
        for (key, value) in top {
            let Some(name) = key.as_str() else {
                return Err(bad(format!("{shown}: setting names must be text")));
            };
            if defs.iter().any(|d| d.section == name) {
                let section = match value {
                    Yaml::Mapping(m) => m,
                    Yaml::Null => Mapping::new(),
                    _ => return Err(bad(format!("{shown}: {name}: must be a mapping"))),
                };
                // Anchore nests some settings one level deeper
                // (`user_authentication.oauth.enabled`): a mapping that is
                // not a setting itself stands for `<inner>_<key>` settings.
                let mut flat = Vec::new();
                for (inner, value) in section {
                    let inner = inner.as_str().unwrap_or_default().to_owned();
                    match value {
                        Yaml::Mapping(nested)
                            if !defs.iter().any(|d| d.key == format!("{name}.{inner}")) =>
                        {
                            for (key, value) in nested {
                                let key = key.as_str().unwrap_or_default();
                                flat.push((format!("{inner}_{key}"), value));
                            }
                        }
                        value => flat.push((inner, value)),
                    }
                }
                for (inner, value) in flat {
                    let full = format!("{name}.{inner}");
                    let def = defs
                        .iter()
                        .find(|d| d.key == full)
                        .ok_or_else(|| bad(format!("{shown}: unknown setting {full:?}")))?;
                    self.set(def.key, Raw::Yaml(value), Source::File(shown.clone()));
                }
            } else if let Some(def) = defs.iter().find(|d| d.old.contains(&name)) {
                old_values.push((name.to_owned(), def, value));
            } else {
                return Err(bad(format!("{shown}: unknown setting {name:?}")));
            }
        }
        for (name, def, value) in old_values {
            self.warnings
                .push(deprecated(&format!("{name} (in {shown})"), def));
            if !self.found.contains_key(def.key) {
                self.set(def.key, Raw::Yaml(value), Source::File(shown.clone()));
            }
        }
        Ok(())
    }

    /// The typed value of `key`, or its default.
    pub fn take<T: SettingValue>(
        &mut self,
        key: &'static str,
        default: impl FnOnce() -> T,
        check: fn(&T) -> Result<(), String>,
    ) -> Result<T, ConfigError> {
        let (value, source) = match self.found.remove(key) {
            Some((raw, source)) => {
                let parsed = match &raw {
                    Raw::Yaml(y) => T::from_yaml(y),
                    Raw::Text(t) => T::from_text(t),
                };
                let value = parsed.map_err(|e| bad(format!("{key}: {e} (from {source})")))?;
                (value, source)
            }
            None => (default(), Source::Default),
        };
        check(&value).map_err(|e| bad(format!("{key}: {e} (from {source})")))?;
        self.sources.push((key, source));
        Ok(value)
    }
}

/// Declares the settings: one entry per setting, with its doc comment, type,
/// default and, optionally, other environment names, deprecated names, a
/// check, and whether SIGHUP reloads it. Generates the section structs, the
/// `Config` made of them, and `SETTINGS`, from which the flags, the
/// environment names, `config print` and the reference all come.
macro_rules! settings {
    ($(
        $(#[doc = $sdoc:literal])*
        $section:ident : $Section:ident {
            $(
                $(#[doc = $doc:literal])*
                $field:ident : $ty:ty = $default:expr
                    $(, env = [$($env:literal),* $(,)?])?
                    $(, old = [$($old:literal),* $(,)?])?
                    $(, old_env = [$($old_env:literal),* $(,)?])?
                    $(, check = $check:expr)?
                    $(, reload = $reload:literal)?
                ;
            )*
        }
    )*) => {
        $(
            $(#[doc = $sdoc])*
            #[derive(Debug, Clone)]
            pub struct $Section {
                $( $(#[doc = $doc])* pub $field: $ty, )*
            }

            impl Default for $Section {
                fn default() -> Self {
                    Self { $( $field: $default, )* }
                }
            }
        )*

        /// The whole configuration, one field per section.
        #[derive(Debug, Clone, Default)]
        pub struct Config {
            $( $(#[doc = $sdoc])* pub $section: $Section, )*
        }

        /// Every setting, in declaration order.
        pub static SETTINGS: &[$crate::config::declare::Def] = &[$($(
            $crate::config::declare::Def {
                section: stringify!($section),
                key: concat!(stringify!($section), ".", stringify!($field)),
                doc: concat!($($doc, "\n"),*),
                kind: <$ty as $crate::config::value::SettingValue>::KIND,
                secret: <$ty as $crate::config::value::SettingValue>::SECRET,
                reload: false $(|| $reload)?,
                default: || <$ty as $crate::config::value::SettingValue>::show(&$default),
                env_aliases: &[$($($env),*)?],
                old: &[$($($old),*)?],
                old_env: &[$($($old_env),*)?],
            },
        )*)*];

        /// The doc comment of each section.
        pub static SECTIONS: &[(&str, &str)] = &[$(
            (stringify!($section), concat!($($sdoc, "\n"),*)),
        )*];

        impl Config {
            fn resolve(
                layers: &mut $crate::config::declare::Layers,
            ) -> Result<Self, $crate::config::ConfigError> {
                Ok(Self {$(
                    $section: $Section {$(
                        $field: {
                            #[allow(unused_variables)]
                            let check: fn(&$ty) -> Result<(), String> = |_| Ok(());
                            $( let check: fn(&$ty) -> Result<(), String> = $check; )?
                            layers.take(
                                concat!(stringify!($section), ".", stringify!($field)),
                                || $default,
                                check,
                            )?
                        },
                    )*},
                )*})
            }

            /// Each setting's key and value as `config print` shows it.
            pub fn shown(&self) -> Vec<(&'static str, String)> {
                vec![$($(
                    (
                        concat!(stringify!($section), ".", stringify!($field)),
                        $crate::config::value::SettingValue::show(&self.$section.$field),
                    ),
                )*)*]
            }
        }
    };
}

pub(crate) use settings;

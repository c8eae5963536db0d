//! How a setting's value is read from the file (YAML), from an environment
//! variable or a flag (text), and shown back (`config print`, the reference).

use std::net::SocketAddr;
use std::path::PathBuf;

use serde_yaml_ng::Value as Yaml;

use crate::domain::secret::Secret;

/// A type a setting may have.
pub trait SettingValue: Sized {
    /// Shown as `<redacted>` by `config print`.
    const SECRET: bool = false;
    /// What the reference says the value is.
    const KIND: &'static str;

    fn from_text(text: &str) -> Result<Self, String>;

    /// Scalars are read as their text; lists and maps are refused unless
    /// the type takes them.
    fn from_yaml(value: &Yaml) -> Result<Self, String> {
        match value {
            Yaml::String(s) => Self::from_text(s),
            Yaml::Number(n) => Self::from_text(&n.to_string()),
            Yaml::Bool(b) => Self::from_text(&b.to_string()),
            Yaml::Null => Self::from_text(""),
            _ => Err(format!("must be {}", Self::KIND)),
        }
    }

    /// The value as the file would spell it.
    fn show(&self) -> String;
}

macro_rules! number {
    ($($t:ty => $kind:literal),* $(,)?) => {$(
        impl SettingValue for $t {
            const KIND: &'static str = $kind;
            fn from_text(text: &str) -> Result<Self, String> {
                text.trim().parse().map_err(|_| format!("must be {}", $kind))
            }
            fn show(&self) -> String {
                self.to_string()
            }
        }
    )*};
}

number!(u32 => "a whole number", u64 => "a whole number", usize => "a whole number", i64 => "an integer", f64 => "a number");

impl SettingValue for bool {
    const KIND: &'static str = "true or false";
    fn from_text(text: &str) -> Result<Self, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            _ => Err("must be true or false".to_owned()),
        }
    }
    fn show(&self) -> String {
        self.to_string()
    }
}

impl SettingValue for String {
    const KIND: &'static str = "text";
    fn from_text(text: &str) -> Result<Self, String> {
        Ok(text.to_owned())
    }
    fn show(&self) -> String {
        self.clone()
    }
}

impl SettingValue for SocketAddr {
    const KIND: &'static str = "an address such as 127.0.0.1:50051";
    fn from_text(text: &str) -> Result<Self, String> {
        text.trim()
            .parse()
            .map_err(|_| format!("{text:?} is not an address such as 127.0.0.1:50051"))
    }
    fn show(&self) -> String {
        self.to_string()
    }
}

impl SettingValue for PathBuf {
    const KIND: &'static str = "a file path";
    fn from_text(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Err("must be a file path".to_owned());
        }
        Ok(PathBuf::from(text))
    }
    fn show(&self) -> String {
        self.display().to_string()
    }
}

impl SettingValue for Secret {
    const SECRET: bool = true;
    const KIND: &'static str = "a secret";
    fn from_text(text: &str) -> Result<Self, String> {
        Ok(Secret::new(text))
    }
    fn show(&self) -> String {
        "<redacted>".to_owned()
    }
}

/// Lists: a YAML sequence in the file, comma-separated elsewhere.
impl<T: SettingValue> SettingValue for Vec<T> {
    const SECRET: bool = T::SECRET;
    const KIND: &'static str = "a list (comma-separated outside the file)";
    fn from_text(text: &str) -> Result<Self, String> {
        text.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(T::from_text)
            .collect()
    }
    fn from_yaml(value: &Yaml) -> Result<Self, String> {
        match value {
            Yaml::Sequence(items) => items
                .iter()
                .enumerate()
                .map(|(i, v)| T::from_yaml(v).map_err(|e| format!("[{i}]: {e}")))
                .collect(),
            Yaml::Null => Ok(Vec::new()),
            other => T::from_yaml(other).map(|one| vec![one]),
        }
    }
    fn show(&self) -> String {
        if T::SECRET && !self.is_empty() {
            return format!("<redacted: {}>", self.len());
        }
        format!(
            "[{}]",
            self.iter().map(T::show).collect::<Vec<_>>().join(", ")
        )
    }
}

/// Unset: an empty value, or YAML null.
impl<T: SettingValue> SettingValue for Option<T> {
    const SECRET: bool = T::SECRET;
    const KIND: &'static str = T::KIND;
    fn from_text(text: &str) -> Result<Self, String> {
        if text.trim().is_empty() {
            return Ok(None);
        }
        T::from_text(text).map(Some)
    }
    fn from_yaml(value: &Yaml) -> Result<Self, String> {
        match value {
            Yaml::Null => Ok(None),
            other => T::from_yaml(other).map(Some),
        }
    }
    fn show(&self) -> String {
        match self {
            Some(v) => v.show(),
            None => String::new(),
        }
    }
}

/// The database URL: secret, but shown with its password masked, since the
/// host and database are what an operator checks.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct DatabaseUrl(pub Secret);

impl DatabaseUrl {
    pub fn new(url: impl Into<String>) -> Self {
        Self(Secret::new(url))
    }

    pub fn expose(&self) -> &str {
        self.0.expose()
    }

    /// `scheme://user:***@host/db`.
    pub fn masked(&self) -> String {
        let url = self.0.expose();
        let Some((scheme, rest)) = url.split_once("://") else {
            return url.to_owned();
        };
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(authority_end);
        match authority.rsplit_once('@') {
            Some((userinfo, host)) => {
                let user = userinfo.split(':').next().unwrap_or_default();
                let masked = if userinfo.contains(':') {
                    format!("{user}:***")
                } else {
                    user.to_owned()
                };
                format!("{scheme}://{masked}@{host}{tail}")
            }
            None => url.to_owned(),
        }
    }
}

impl SettingValue for DatabaseUrl {
    const SECRET: bool = true;
    const KIND: &'static str = "a URL: postgres://… or sqlite://path?mode=rwc";
    fn from_text(text: &str) -> Result<Self, String> {
        let url = text.trim();
        if url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://")
        {
            Ok(Self::new(url))
        } else {
            Err("must start with postgres://, postgresql:// or sqlite:".to_owned())
        }
    }
    fn show(&self) -> String {
        self.masked()
    }
}

/// Log output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl SettingValue for LogFormat {
    const KIND: &'static str = "text or json";
    fn from_text(text: &str) -> Result<Self, String> {
        match text.trim() {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            _ => Err("must be text or json".to_owned()),
        }
    }
    fn show(&self) -> String {
        match self {
            Self::Text => "text",
            Self::Json => "json",
        }
        .to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_yaml_read_the_same_values() {
        assert_eq!(u32::from_text("12"), Ok(12));
        assert!(u32::from_text("-1").is_err());
        assert_eq!(bool::from_text("on"), Ok(true));
        assert_eq!(
            <Vec<String>>::from_text("a, b,,c").unwrap(),
            ["a", "b", "c"]
        );
        let yaml: Yaml = serde_yaml_ng::from_str("[a, b]").unwrap();
        assert_eq!(<Vec<String>>::from_yaml(&yaml).unwrap(), ["a", "b"]);
        assert_eq!(<Option<u64>>::from_text(""), Ok(None));
        assert_eq!(<Option<u64>>::from_yaml(&Yaml::Null), Ok(None));
    }

    #[test]
    fn secrets_never_show() {
        assert_eq!(Secret::new("hunter42").show(), "<redacted>");
        let keys = vec![
            Secret::new("key-one-0123456789"),
            Secret::new("key-two-0123456789"),
        ];
        assert_eq!(keys.show(), "<redacted: 2>");
        let url = DatabaseUrl::new("postgres://authzd:hunter42@db:5432/authzd?sslmode=require");
        assert_eq!(
            url.show(),
            "postgres://authzd:***@db:5432/authzd?sslmode=require"
        );
        assert_eq!(
            DatabaseUrl::new("sqlite://authzd.db?mode=rwc").show(),
            "sqlite://authzd.db?mode=rwc"
        );
    }
}

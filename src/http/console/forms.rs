//! Posted forms, read once into name/value pairs (checkbox groups repeat a
//! name, which a struct extractor would drop).

use axum::body::Body;
use axum::response::Response;

use crate::domain::input::{self, Field};
use crate::error::Error;

/// A posted `application/x-www-form-urlencoded` body.
#[derive(Debug, Default)]
pub struct Form(Vec<(String, String)>);

impl Form {
    pub async fn read(body: Body, limit: usize) -> Result<Self, Response> {
        let bytes = axum::body::to_bytes(body, limit)
            .await
            .map_err(|_| super::views::bad_form("the form is too large"))?;
        serde_urlencoded::from_bytes::<Vec<(String, String)>>(&bytes)
            .map(Form)
            .map_err(|_| super::views::bad_form("the form is not form-encoded"))
    }

    /// The first value of `name`, or "".
    pub fn get(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    }

    /// Every value of `name`, in order.
    pub fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    }

    pub fn has(&self, name: &str) -> bool {
        self.0.iter().any(|(k, _)| k == name)
    }

    /// The RPCs' input rules, applied to every field before anything reads
    /// it: lengths, control characters, and in text shown to people no
    /// bidirectional overrides or zero-width characters.
    pub fn check(&self) -> Result<(), Error> {
        if self.0.len() > input::MAX_ITEMS {
            return Err(Error::invalid("form", "has too many fields"));
        }
        if self.all("roles").len() > input::MAX_ROLES {
            return Err(Error::invalid(
                "roles",
                format!("must hold at most {} items", input::MAX_ROLES),
            ));
        }
        for (name, value) in &self.0 {
            if name != "csrf" {
                form_field(name).check(name, value)?;
            }
        }
        Ok(())
    }
}

/// The kind of a console form's field, by its name.
fn form_field(name: &str) -> Field {
    match name {
        "authorization" | "api_key" | "token" | "refresh_token" => Field::Credential,
        "current_password" => Field::LoginPassword,
        "password" => Field::NewPassword,
        "description" => Field::Description,
        "email" => Field::Email,
        // API key names are text shown to people, the strictest reading of
        // `name`; names of accounts and groups are checked again by their
        // own parsers.
        "name" | "new_name" => Field::ShownName,
        "page_token" => Field::PageToken,
        _ => Field::Name,
    }
}

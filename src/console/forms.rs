//! Posted forms, read once into name/value pairs (checkbox groups repeat a
//! name, which a struct extractor would drop).

use axum::body::Body;
use axum::response::Response;

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
}

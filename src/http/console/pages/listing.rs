//! What every list page shares: a name-prefix search box, the count of
//! what matches, and Previous / Next links (keyset pages both ways).

use maud::{Markup, html};
use serde::Deserialize;

use super::super::views::enc;
use crate::domain::page::{self, Page, PageRequest};
use crate::error::Result;

/// Rows a console page shows.
pub const PAGE_SIZE: u64 = 100;

/// The query of a list page: `q` a name prefix, `page` / `before` the
/// tokens of the Next / Previous links.
#[derive(Deserialize, Default, Debug, Clone)]
pub struct ListQuery {
    #[serde(default)]
    pub q: String,
    #[serde(default)]
    pub page: String,
    #[serde(default)]
    pub before: String,
}

impl ListQuery {
    /// The page to read; `parts` is how many key columns the listing has.
    pub fn request(&self, parts: usize) -> Result<PageRequest> {
        PageRequest::window(PAGE_SIZE, &self.page, &self.before, &self.q, parts)
    }
}

/// One list on a page: where its links go and what they keep.
pub struct Listing<'a> {
    /// The page's path (already encoded).
    pub path: &'a str,
    /// Query parameters every link keeps (the keys page's owner, …).
    pub keep: Vec<(&'a str, &'a str)>,
    /// `id` prefix of the controls, unique on the page.
    pub id: &'a str,
    /// What is counted, plural ("accounts").
    pub noun: &'a str,
    pub query: &'a ListQuery,
}

impl Listing<'_> {
    /// This list's page with the search kept, plus `extra`.
    pub fn link(&self, extra: &[(&str, &str)]) -> String {
        self.address(self.query.q.trim(), extra)
    }

    fn address(&self, prefix: &str, extra: &[(&str, &str)]) -> String {
        let pairs: Vec<String> = self
            .keep
            .iter()
            .copied()
            .chain((!prefix.is_empty()).then_some(("q", prefix)))
            .chain(extra.iter().copied())
            .map(|(k, v)| format!("{k}={}", enc(v)))
            .collect();
        if pairs.is_empty() {
            self.path.to_owned()
        } else {
            format!("{}?{}", self.path, pairs.join("&"))
        }
    }

    /// The search box: a GET form, so a search is an address like any other.
    pub fn search(&self) -> Markup {
        let field = format!("{}-q", self.id);
        html! {
            form method="get" action=(self.path) class="search" role="search" {
                @for (k, v) in &self.keep { input type="hidden" name=(k) value=(v); }
                label for=(field) { "Names starting with" }
                " "
                input type="search" id=(field) name="q" value=(self.query.q.trim()) size="16";
                " "
                button type="submit" id={ (self.id) "-search" } { "Search" }
                @if !self.query.q.trim().is_empty() {
                    " " a href=(self.address("", &[])) id={ (self.id) "-clear" } { "Clear search" }
                }
            }
        }
    }

    /// The count, and Previous / Next where there is more that way.
    pub fn pager<T>(
        &self,
        request: &PageRequest,
        rows: &Page<T>,
        total: u64,
        key: impl Fn(&T) -> Vec<&str>,
    ) -> Markup {
        let backwards = request.before.is_some();
        let first = rows.items.first().map(|r| page::encode(&key(r)));
        let last = rows.items.last().map(|r| page::encode(&key(r)));
        let more = (!rows.next_page_token.is_empty()).then(|| rows.next_page_token.clone());
        let (previous, next) = if backwards {
            // Read backwards: the token points further back, and the rows
            // this page came from follow it.
            (more.map(|t| ("before", t)), last.map(|t| ("page", t)))
        } else {
            // A page reached by Next has rows before it; if they all went
            // meanwhile, Previous is the first page.
            let previous = match (&request.after, first) {
                (None, _) => None,
                (Some(_), Some(first)) => Some(("before", first)),
                (Some(_), None) => Some(("", String::new())),
            };
            (previous, more.map(|t| ("page", t)))
        };
        let link = |to: &(&str, String)| {
            if to.0.is_empty() {
                self.link(&[])
            } else {
                self.link(&[(to.0, to.1.as_str())])
            }
        };
        let matching = if self.query.q.trim().is_empty() {
            String::new()
        } else {
            format!(" starting with “{}”", self.query.q.trim())
        };
        // Every noun is a plural in -s.
        let noun = if total == 1 {
            self.noun.strip_suffix('s').unwrap_or(self.noun)
        } else {
            self.noun
        };
        html! {
            nav class="pager" aria-label={ "Pages of " (self.noun) } {
                span class="count" id={ (self.id) "-count" } { (total) " " (noun) (matching) }
                @if let Some(to) = &previous {
                    " " a href=(link(to)) rel="prev" id={ (self.id) "-prev" } { "Previous" }
                }
                @if let Some(to) = &next {
                    " " a href=(link(to)) rel="next" id={ (self.id) "-next" } { "Next" }
                }
            }
        }
    }
}

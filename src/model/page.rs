//! Keyset pagination: a page token is the opaque, versioned key of the last
//! row returned, so pages stay stable while rows are added.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::error::{Error, Result};

pub const DEFAULT_PAGE_SIZE: u64 = 100;
pub const MAX_PAGE_SIZE: u64 = 1000;
const TOKEN_PREFIX: &str = "v1\u{1f}";
/// ASCII unit separator: no name may contain a control character.
const SEPARATOR: char = '\u{1f}';

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PageRequest {
    pub limit: u64,
    /// The key parts of the last row of the previous page.
    pub after: Option<Vec<String>>,
    /// The key parts of the first row of the page after this one: the
    /// console's "Previous" walks backwards, and the listing's token then
    /// points further back (to the first row), not forwards.
    pub before: Option<Vec<String>>,
    /// Only rows whose name starts with this (the console's search box).
    pub prefix: String,
}

impl PageRequest {
    /// `parts` is how many key columns the listing sorts by.
    pub fn parse(page_size: i32, page_token: &str, parts: usize) -> Result<Self> {
        let limit = match page_size {
            0 => DEFAULT_PAGE_SIZE,
            n if n < 0 => return Err(Error::invalid("page_size", "must not be negative")),
            n => u64::try_from(n).unwrap_or(MAX_PAGE_SIZE).min(MAX_PAGE_SIZE),
        };
        let after = if page_token.is_empty() {
            None
        } else {
            Some(decode(page_token, parts).ok_or_else(|| {
                Error::invalid("page_token", "is not a token this listing returned")
            })?)
        };
        Ok(Self {
            limit,
            after,
            before: None,
            prefix: String::new(),
        })
    }

    /// A console listing: `after` or `before` (tokens this listing
    /// returned, at most one of them), and a name prefix.
    pub fn window(
        limit: u64,
        after: &str,
        before: &str,
        prefix: &str,
        parts: usize,
    ) -> Result<Self> {
        let token = |field: &str, token: &str| {
            if token.is_empty() {
                Ok(None)
            } else {
                decode(token, parts)
                    .map(Some)
                    .ok_or_else(|| Error::invalid(field, "is not a token this listing returned"))
            }
        };
        let prefix = prefix.trim();
        // The prefix goes into SQL as a name would, with a name's limits.
        if prefix.chars().count() > 128 || prefix.chars().any(char::is_control) {
            return Err(Error::invalid("q", "is not the beginning of a name"));
        }
        Ok(Self {
            limit: limit.clamp(1, MAX_PAGE_SIZE),
            after: token("page", after)?,
            before: if after.is_empty() {
                token("before", before)?
            } else {
                None
            },
            prefix: prefix.to_owned(),
        })
    }

    /// The key to start from and whether rows are read backwards (by
    /// descending key): `before` if set, else `after`.
    pub fn cursor(&self) -> (Option<&[String]>, bool) {
        match &self.before {
            Some(key) => (Some(key.as_slice()), true),
            None => (self.after.as_deref(), false),
        }
    }
}

fn decode(token: &str, parts: usize) -> Option<Vec<String>> {
    let bytes = URL_SAFE_NO_PAD.decode(token).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let body = text.strip_prefix(TOKEN_PREFIX)?;
    let key: Vec<String> = body.split(SEPARATOR).map(str::to_owned).collect();
    // The token is the caller's to forge: its parts go into SQL as names,
    // so they must look like names (Postgres refuses NUL in text).
    let names = key
        .iter()
        .all(|k| k.chars().count() <= 128 && !k.chars().any(char::is_control));
    (key.len() == parts && names).then_some(key)
}

pub fn encode(key: &[&str]) -> String {
    URL_SAFE_NO_PAD.encode(format!(
        "{TOKEN_PREFIX}{}",
        key.join(&SEPARATOR.to_string())
    ))
}

/// One page of results and the token for the next, if there is more.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_page_token: String,
}

impl<T> Page<T> {
    /// `rows` was fetched with `limit + 1` so we know whether more follow.
    pub fn from_rows<'a>(mut rows: Vec<T>, limit: u64, key: impl Fn(&T) -> Vec<&str>) -> Self
    where
        T: 'a,
    {
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let next_page_token = if rows.len() > limit {
            rows.truncate(limit);
            rows.last()
                .map(|last| encode(&key(last)))
                .unwrap_or_default()
        } else {
            String::new()
        };
        Self {
            items: rows,
            next_page_token,
        }
    }

    /// As `from_rows`, for rows read in `page`'s direction: a backward
    /// page is put back in ascending order, and its token (when more rows
    /// precede it) is the key of its first row.
    pub fn from_window<'a>(rows: Vec<T>, page: &PageRequest, key: impl Fn(&T) -> Vec<&str>) -> Self
    where
        T: 'a,
    {
        let mut page_of = Self::from_rows(rows, page.limit, key);
        if page.before.is_some() {
            page_of.items.reverse();
        }
        page_of
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_garbage_is_refused_by_field() {
        let token = encode(&["acct", "user"]);
        let request = PageRequest::parse(10, &token, 2).ok();
        assert_eq!(
            request.and_then(|r| r.after),
            Some(vec!["acct".to_owned(), "user".to_owned()])
        );
        for bad in ["%%%", "bm9wZQ", &encode(&["only-one"])] {
            match PageRequest::parse(10, bad, 2) {
                Err(Error::InvalidArgument { field, .. }) => assert_eq!(field, "page_token"),
                other => panic!("{bad}: {other:?}"),
            }
        }
        assert!(PageRequest::parse(-1, "", 1).is_err());
        assert_eq!(
            PageRequest::parse(5000, "", 1).map(|r| r.limit).ok(),
            Some(MAX_PAGE_SIZE)
        );
    }

    #[test]
    fn a_full_page_carries_a_next_token() {
        let page = Page::from_rows(vec!["a", "b", "c"], 2, |s| vec![*s]);
        assert_eq!(page.items, vec!["a", "b"]);
        assert_eq!(page.next_page_token, encode(&["b"]));
        let last = Page::from_rows(vec!["a"], 2, |s| vec![*s]);
        assert!(last.next_page_token.is_empty());
    }

    #[test]
    fn a_backward_page_reads_ascending_and_points_further_back() {
        let request = PageRequest::window(2, "", &encode(&["d"]), "", 1).ok();
        let Some(request) = request else {
            panic!("a window");
        };
        assert_eq!(request.cursor(), (Some(["d".to_owned()].as_slice()), true));
        // Rows before "d", read descending.
        let page = Page::from_window(vec!["c", "b", "a"], &request, |s| vec![*s]);
        assert_eq!(page.items, vec!["b", "c"]);
        assert_eq!(page.next_page_token, encode(&["b"]));
        assert!(PageRequest::window(2, "", "", "a\u{0}", 1).is_err());
    }
}

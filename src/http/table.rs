//! A route group's table: each route added once, with the name its
//! requests are audited under, so the router and the audit names cannot
//! disagree (a new page cannot be served under another page's name).

use std::collections::HashMap;
use std::convert::Infallible;

use axum::Router;
use axum::handler::Handler;
use axum::http::Method;
use axum::routing::{MethodRouter, get, post};

/// The audit names of every route of the face, by method and route
/// template (axum's `MatchedPath`).
#[derive(Debug, Default, Clone)]
pub struct Names {
    by_route: HashMap<(Method, &'static str), &'static str>,
}

impl Names {
    /// The name a request is audited under; `fallback` for a route no
    /// table knows (an unmatched path).
    pub fn of(&self, method: &Method, route: Option<&str>, fallback: &'static str) -> &'static str {
        // HEAD is answered by the GET route.
        let method = if method == Method::HEAD {
            &Method::GET
        } else {
            method
        };
        route
            .and_then(|route| self.by_route.get(&(method.clone(), route)))
            .copied()
            .unwrap_or(fallback)
    }

    pub fn merge(mut self, other: &Names) -> Self {
        self.by_route
            .extend(other.by_route.iter().map(|(k, v)| (k.clone(), *v)));
        self
    }
}

/// Routes of one group and their audit names.
pub struct Table<S> {
    router: Router<S>,
    names: Names,
    /// The name of the group's pages (GETs): they change nothing, so one
    /// name serves all of them.
    page: &'static str,
}

impl<S: Clone + Send + Sync + 'static> Table<S> {
    pub fn new(page: &'static str) -> Self {
        Self {
            router: Router::new(),
            names: Names::default(),
            page,
        }
    }

    /// A page (GET, and HEAD through it), audited under the group's page
    /// name.
    pub fn get<H, T>(self, path: &'static str, handler: H) -> Self
    where
        H: Handler<T, S>,
        T: 'static,
    {
        let page = self.page;
        self.add(Method::GET, path, page, get(handler))
    }

    /// A form or API call (POST), audited under `name`.
    pub fn post<H, T>(self, path: &'static str, name: &'static str, handler: H) -> Self
    where
        H: Handler<T, S>,
        T: 'static,
    {
        self.add(Method::POST, path, name, post(handler))
    }

    /// A route for any other method (PUT, PATCH, DELETE), audited under
    /// `name`.
    pub fn route(
        self,
        method: Method,
        path: &'static str,
        name: &'static str,
        route: MethodRouter<S, Infallible>,
    ) -> Self {
        self.add(method, path, name, route)
    }

    fn add(
        mut self,
        method: Method,
        path: &'static str,
        name: &'static str,
        route: MethodRouter<S, Infallible>,
    ) -> Self {
        // axum merges the methods of one path added twice.
        self.router = self.router.route(path, route);
        self.names.by_route.insert((method, path), name);
        self
    }

    /// Another table's routes, added to this one's.
    pub fn merge(mut self, other: Table<S>) -> Self {
        self.router = self.router.merge(other.router);
        self.names = self.names.merge(&other.names);
        self
    }

    pub fn into_parts(self) -> (Router<S>, Names) {
        (self.router, self.names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_the_route_that_was_added() {
        let table: Table<()> = Table::new("t:Page")
            .get("/things", || async { "list" })
            .post("/things", "t:CreateThing", || async { "made" })
            .merge(
                Table::new("t:Page")
                    .post("/things/{id}/delete", "t:DeleteThing", || async { "gone" }),
            );
        let (_, names) = table.into_parts();
        assert_eq!(names.of(&Method::GET, Some("/things"), "x"), "t:Page");
        assert_eq!(names.of(&Method::HEAD, Some("/things"), "x"), "t:Page");
        assert_eq!(
            names.of(&Method::POST, Some("/things"), "x"),
            "t:CreateThing"
        );
        assert_eq!(
            names.of(&Method::POST, Some("/things/{id}/delete"), "x"),
            "t:DeleteThing"
        );
        // A method the route does not serve, and no route at all.
        assert_eq!(
            names.of(&Method::GET, Some("/things/{id}/delete"), "x"),
            "x"
        );
        assert_eq!(names.of(&Method::POST, None, "x"), "x");
    }
}

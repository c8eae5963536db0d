//! What the console's listings add to a keyset page: a name prefix and
//! reading backwards from a key.

use sea_orm::sea_query::{Expr, ExprTrait, Func, IntoColumnRef, SimpleExpr};
use sea_orm::{Condition, Order};

use crate::model::page::PageRequest;

/// Rows whose `column` starts with `prefix`, case-sensitively on both
/// backends (SQLite's `LIKE` folds case, and `LIKE` would need `%` and `_`
/// escaped); the lower bound lets an index on the column seek to the first
/// match.
pub fn starts_with(column: impl IntoColumnRef + Clone, prefix: &str) -> Condition {
    let length = i32::try_from(prefix.chars().count()).unwrap_or(i32::MAX);
    Condition::all()
        .add(Expr::col(column.clone()).gte(prefix))
        .add(
            Expr::expr(
                Func::cust("substr")
                    .arg(Expr::col(column))
                    .arg(1)
                    .arg(length),
            )
            .eq(prefix),
        )
}

/// The prefix condition of `page`, if it has one.
pub fn prefix_of(column: impl IntoColumnRef + Clone, page: &PageRequest) -> Option<Condition> {
    (!page.prefix.is_empty()).then(|| starts_with(column, &page.prefix))
}

/// The order to read rows in: descending when the page goes backwards.
pub fn order_of(page: &PageRequest) -> Order {
    if page.cursor().1 {
        Order::Desc
    } else {
        Order::Asc
    }
}

/// `column` past `key` in the page's direction.
pub fn past(column: impl IntoColumnRef, key: &str, page: &PageRequest) -> SimpleExpr {
    if page.cursor().1 {
        Expr::col(column).lt(key)
    } else {
        Expr::col(column).gt(key)
    }
}

//! A SQL statement with its arguments, made once from a [`crate::Write`] and run by either
//! executor: sqlx's (PostgreSQL, and everything on SQLite but the writer) or rusqlite's (the
//! SQLite writer's own thread, see `sqlite_writer`). Making the statements apart from running
//! them is what lets the two executors share every SQL text instead of each writing its own.

use std::borrow::Cow;

use sqlx::{Any, Transaction};

use crate::{Backend, StoreError};

/// One bound argument. The types are the ones the store binds; a NULL keeps its type because
/// PostgreSQL types each parameter of a statement.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Arg {
    Int(Option<i64>),
    Text(Option<String>),
}

impl From<i64> for Arg {
    fn from(value: i64) -> Self {
        Arg::Int(Some(value))
    }
}

impl From<Option<i64>> for Arg {
    fn from(value: Option<i64>) -> Self {
        Arg::Int(value)
    }
}

impl From<String> for Arg {
    fn from(value: String) -> Self {
        Arg::Text(Some(value))
    }
}

impl From<Option<String>> for Arg {
    fn from(value: Option<String>) -> Self {
        Arg::Text(value)
    }
}

impl From<&str> for Arg {
    fn from(value: &str) -> Self {
        Arg::Text(Some(value.to_owned()))
    }
}

/// SQL text with its arguments, numbered as the text's `$n` say, or in order for plain `?`s.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Statement {
    pub(crate) sql: Cow<'static, str>,
    pub(crate) args: Vec<Arg>,
}

impl Statement {
    pub(crate) fn new(sql: impl Into<Cow<'static, str>>) -> Self {
        Statement {
            sql: sql.into(),
            args: Vec::new(),
        }
    }

    /// Adds the next argument.
    pub(crate) fn bind(mut self, arg: impl Into<Arg>) -> Self {
        self.args.push(arg.into());
        self
    }
}

/// Runs `statement` in `tx` through sqlx.
pub(crate) async fn execute(
    tx: &mut Transaction<'static, Any>,
    statement: Statement,
) -> Result<(), StoreError> {
    let mut query = sqlx::query(sqlx::AssertSqlSafe(statement.sql));
    for arg in statement.args {
        query = match arg {
            Arg::Int(value) => query.bind(value),
            Arg::Text(value) => query.bind(value),
        };
    }
    query.execute(&mut **tx).await?;
    Ok(())
}

/// `prefix` followed by `rows` tuples; a column given as a literal in `literals` takes no
/// parameter.
/// Parameters are `$n` on PostgreSQL and `?` on SQLite: SQLite finds a named parameter by a
/// linear search, so binding a statement of hundreds of `$n`s costs time quadratic in their
/// number, while plain `?`s bind in order.
pub(crate) fn values_sql(backend: Backend, prefix: &str, rows: usize, literals: &[&str]) -> String {
    let mut sql = String::with_capacity(prefix.len() + rows * literals.len() * 6);
    sql.push_str(prefix);
    let mut parameter = 0;
    for row in 0..rows {
        if row > 0 {
            sql.push(',');
        }
        sql.push('(');
        for (column, literal) in literals.iter().enumerate() {
            if column > 0 {
                sql.push(',');
            }
            if literal.is_empty() {
                parameter += 1;
                sql.push_str(&placeholder(backend, parameter));
            } else {
                sql.push_str(literal);
            }
        }
        sql.push(')');
    }
    sql
}

/// The `number`th parameter of a statement (from 1): `$n` on PostgreSQL, a plain `?` on
/// SQLite, which binds them in order (see [`values_sql`]).
pub(crate) fn placeholder(backend: Backend, number: usize) -> String {
    match backend {
        Backend::Postgres => format!("${number}"),
        Backend::Sqlite => "?".to_owned(),
    }
}

/// `(…)` of `count` parameters numbered from `first`, for `IN` lists.
pub(crate) fn placeholder_list(backend: Backend, first: usize, count: usize) -> String {
    let placeholders: Vec<String> = (first..first + count)
        .map(|number| placeholder(backend, number))
        .collect();
    format!("({})", placeholders.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_sql_numbers_parameters_and_keeps_literals() {
        assert_eq!(
            values_sql(
                Backend::Postgres,
                "INSERT INTO t VALUES ",
                2,
                &["", "'x'", ""]
            ),
            "INSERT INTO t VALUES ($1,'x',$2),($3,'x',$4)"
        );
        assert_eq!(
            values_sql(
                Backend::Sqlite,
                "INSERT INTO t VALUES ",
                2,
                &["", "'x'", ""]
            ),
            "INSERT INTO t VALUES (?,'x',?),(?,'x',?)"
        );
    }
}

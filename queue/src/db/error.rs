//! The layer's one error, and reading rows so that a bad stored value names where it is.

use std::fmt::Display;

use sqlx::{ColumnIndex, Decode, Row, Type};

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database error: {0}")]
    Sqlx(#[from] sqlx::Error),
    /// A stored value this code cannot read (written by hand, or by a newer jobq): the row
    /// alone is refused, never read as a default.
    #[error("{table} row {row}: column {column} holds a value jobq cannot read: {detail}")]
    Corrupt {
        table: &'static str,
        row: String,
        column: &'static str,
        detail: String,
    },
}

impl DbError {
    /// The database refused the data itself (a value it cannot store, a constraint): trying the
    /// same statement again cannot help, unlike a lost connection or a busy database.
    pub fn is_bad_data(&self) -> bool {
        let DbError::Sqlx(sqlx::Error::Database(error)) = self else {
            return false;
        };
        let code = error.code().unwrap_or_default();
        // PostgreSQL SQLSTATE classes 22 (data exception) and 23 (integrity constraint);
        // SQLite primary codes 19 (constraint), 20 (type mismatch) and 25 (range).
        code.starts_with("22")
            || code.starts_with("23")
            || matches!(code.parse::<i32>().map(|c| c & 0xff), Ok(19 | 20 | 25))
    }
}

/// One row of `table`, read column by column: a value that does not decode, or that the
/// domain refuses, is a [`DbError::Corrupt`] naming the table, the row and the column.
pub struct Fields<'r, R> {
    row: &'r R,
    table: &'static str,
    id: String,
}

impl<'r, R: Row> Fields<'r, R>
where
    &'static str: ColumnIndex<R>,
{
    /// `id` names the row in messages (its id, or its key).
    pub fn new(row: &'r R, table: &'static str, id: impl Display) -> Self {
        Fields {
            row,
            table,
            id: id.to_string(),
        }
    }

    pub fn get<T>(&self, column: &'static str) -> Result<T, DbError>
    where
        T: Decode<'r, R::Database> + Type<R::Database>,
    {
        self.row.try_get(column).map_err(|error| match error {
            sqlx::Error::ColumnDecode { source, .. } => self.corrupt(column, source),
            other => DbError::Sqlx(other),
        })
    }

    /// A column's value turned into a domain value by `parse`; its refusal is corruption.
    pub fn parse<T, V, E: Display>(
        &self,
        column: &'static str,
        parse: impl FnOnce(T) -> Result<V, E>,
    ) -> Result<V, DbError>
    where
        T: Decode<'r, R::Database> + Type<R::Database>,
    {
        parse(self.get(column)?).map_err(|e| self.corrupt(column, e))
    }

    pub fn corrupt(&self, column: &'static str, detail: impl Display) -> DbError {
        DbError::Corrupt {
            table: self.table,
            row: self.id.clone(),
            column,
            detail: detail.to_string(),
        }
    }
}

/// The id column of a row, read before anything else so that later errors can name the row.
pub fn row_id<'r, R: Row>(row: &'r R, table: &'static str) -> Result<i64, DbError>
where
    &'static str: ColumnIndex<R>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
{
    Fields::new(row, table, "?").get("id")
}

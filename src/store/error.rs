//! The store's error type: what callers can act on (missing row, uniqueness conflict, bad input)
//! kept apart from opaque database failures. It must not carry secret material or row contents
//! beyond identifiers.

/// Every failure a [`crate::store::Store`] method can return.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The row does not exist, or belongs to another tenant (the two are indistinguishable on
    /// purpose, so a tenant cannot probe for another tenant's ids).
    #[error("{what} not found")]
    NotFound { what: String },
    /// A uniqueness or reference rule refused the write (duplicate phone number, duplicate name,
    /// a row still referenced by another).
    #[error("conflict: {what}")]
    Conflict { what: String },
    /// Input rejected before it reached the database.
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    /// A stored value that the current code cannot interpret (written by a newer version, or edited
    /// by hand).
    #[error("corrupt stored value in {what}: {reason}")]
    Corrupt { what: &'static str, reason: String },
    /// The embedded migrations could not be applied.
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Any other database failure (connection, syntax, I/O).
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
}

impl StoreError {
    pub(crate) fn not_found(what: impl Into<String>) -> Self {
        Self::NotFound { what: what.into() }
    }

    pub(crate) fn conflict(what: impl Into<String>) -> Self {
        Self::Conflict { what: what.into() }
    }

    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field,
            reason: reason.into(),
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        match err {
            sqlx::Error::RowNotFound => Self::not_found("row"),
            other => Self::Database(other),
        }
    }
}

/// What kind of constraint refused a write, the same on both backends.
pub(crate) enum WriteFailure {
    Unique,
    ForeignKey,
    Other(sqlx::Error),
}

pub(crate) fn classify(err: sqlx::Error) -> WriteFailure {
    if let sqlx::Error::Database(db) = &err {
        if db.is_unique_violation() {
            return WriteFailure::Unique;
        }
        if db.is_foreign_key_violation() {
            return WriteFailure::ForeignKey;
        }
    }
    WriteFailure::Other(err)
}

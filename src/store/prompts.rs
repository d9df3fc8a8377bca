//! Rows of per-tenant prompts: every version of every prompt a tenant writes, the current text
//! being the highest version. A roll-back is a new version carrying an older text, so history is
//! append-only.
//!
//! It must not check template variables or read prompt files (that is [`crate::admin`]); it
//! stores rows. Methods are inherent on [`SqlStore`] like the outbox; every method takes the
//! [`TenantId`] and filters by it, so no tenant can read or name another tenant's prompt.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::error::{WriteFailure, classify};
use super::sql::{now_ms, timestamp};
use super::{SqlStore, StoreError, StoreResult, TenantId};

/// Largest prompt text kept, in bytes (what a speech model's instructions reasonably hold).
pub const MAX_PROMPT_BYTES: usize = 32 * 1024;
/// Versions kept per prompt; writing past it is refused rather than silently dropping history.
pub const MAX_PROMPT_VERSIONS: i64 = 1000;

/// One version of a tenant's prompt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PromptVersion {
    pub name: String,
    /// 1 for the first text, +1 for each update or roll-back.
    pub version: i64,
    pub body: String,
    pub created_at: jiff::Timestamp,
}

fn prompt_from_row(row: &AnyRow) -> StoreResult<PromptVersion> {
    Ok(PromptVersion {
        name: row.try_get("name")?,
        version: row.try_get("version")?,
        body: row.try_get("body")?,
        created_at: timestamp(row, "created_at")?,
    })
}

/// A prompt name: 1 to 64 letters, digits, `-` and `_` (`default` is the server's own prompt).
pub fn validate_prompt_name(name: &str) -> StoreResult<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !ok {
        return Err(StoreError::invalid(
            "prompt name",
            "must be 1 to 64 characters of letters, digits, '-' and '_'",
        ));
    }
    if name == "default" {
        return Err(StoreError::invalid(
            "prompt name",
            "`default` is the server's built-in prompt; choose another name",
        ));
    }
    Ok(())
}

impl SqlStore {
    /// Writes `body` as the next version of the tenant's prompt `name` (version 1 when new).
    pub async fn put_prompt(
        &self,
        tenant: &TenantId,
        name: &str,
        body: &str,
    ) -> StoreResult<PromptVersion> {
        validate_prompt_name(name)?;
        if body.trim().is_empty() {
            return Err(StoreError::invalid("prompt text", "must not be empty"));
        }
        if body.len() > MAX_PROMPT_BYTES {
            return Err(StoreError::invalid(
                "prompt text",
                format!("is {} bytes; the limit is {MAX_PROMPT_BYTES}", body.len()),
            ));
        }
        let mut tx = self.pool().begin().await?;
        let latest: Option<i64> =
            sqlx::query("SELECT MAX(version) AS v FROM prompts WHERE tenant_id = $1 AND name = $2")
                .bind(tenant.as_str())
                .bind(name)
                .fetch_one(&mut *tx)
                .await?
                .try_get("v")?;
        let version = latest.unwrap_or(0) + 1;
        if version > MAX_PROMPT_VERSIONS {
            return Err(StoreError::conflict(format!(
                "prompt {name:?} already has {MAX_PROMPT_VERSIONS} versions"
            )));
        }
        let row = sqlx::query(
            "INSERT INTO prompts (tenant_id, name, version, body, created_at) \
             VALUES ($1, $2, $3, $4, $5) RETURNING name, version, body, created_at",
        )
        .bind(tenant.as_str())
        .bind(name)
        .bind(version)
        .bind(body)
        .bind(now_ms())
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| match classify(e) {
            WriteFailure::ForeignKey => StoreError::not_found(format!("tenant {tenant}")),
            // Two writers raced for the same version: the caller retries on the new latest.
            WriteFailure::Unique => {
                StoreError::conflict(format!("prompt {name:?} was updated concurrently; retry"))
            }
            WriteFailure::Other(e) => StoreError::Database(e),
        })?;
        let written = prompt_from_row(&row)?;
        tx.commit().await?;
        Ok(written)
    }

    /// The tenant's prompt `name`: the given version, or the current one.
    pub async fn prompt(
        &self,
        tenant: &TenantId,
        name: &str,
        version: Option<i64>,
    ) -> StoreResult<PromptVersion> {
        let row = match version {
            Some(v) => {
                sqlx::query(
                    "SELECT name, version, body, created_at FROM prompts \
                     WHERE tenant_id = $1 AND name = $2 AND version = $3",
                )
                .bind(tenant.as_str())
                .bind(name)
                .bind(v)
                .fetch_optional(self.pool())
                .await?
            }
            None => {
                sqlx::query(
                    "SELECT name, version, body, created_at FROM prompts \
                     WHERE tenant_id = $1 AND name = $2 ORDER BY version DESC LIMIT 1",
                )
                .bind(tenant.as_str())
                .bind(name)
                .fetch_optional(self.pool())
                .await?
            }
        };
        match row {
            Some(row) => prompt_from_row(&row),
            None => Err(StoreError::not_found(match version {
                Some(v) => format!("prompt {name:?} version {v}"),
                None => format!("prompt {name:?}"),
            })),
        }
    }

    /// The current version of each of the tenant's prompts, by name.
    pub async fn list_prompts(&self, tenant: &TenantId) -> StoreResult<Vec<PromptVersion>> {
        let rows = sqlx::query(
            "SELECT p.name, p.version, p.body, p.created_at FROM prompts p \
             WHERE p.tenant_id = $1 AND p.version = \
             (SELECT MAX(q.version) FROM prompts q WHERE q.tenant_id = p.tenant_id AND q.name = p.name) \
             ORDER BY p.name",
        )
        .bind(tenant.as_str())
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(prompt_from_row).collect()
    }

    /// Every version of the tenant's prompt `name`, oldest first; NotFound when it has none.
    pub async fn prompt_versions(
        &self,
        tenant: &TenantId,
        name: &str,
    ) -> StoreResult<Vec<PromptVersion>> {
        let rows = sqlx::query(
            "SELECT name, version, body, created_at FROM prompts \
             WHERE tenant_id = $1 AND name = $2 ORDER BY version",
        )
        .bind(tenant.as_str())
        .bind(name)
        .fetch_all(self.pool())
        .await?;
        if rows.is_empty() {
            return Err(StoreError::not_found(format!("prompt {name:?}")));
        }
        rows.iter().map(prompt_from_row).collect()
    }
}

//! Post-call analysis rows: each agent's analysis settings (goal, JSON Schema of the structured
//! fields, model) and each analysed call's queue entry and result (migration 0014).
//!
//! It stores and leases rows; it must not call a model or validate a reply against the schema
//! (that is `analysis/`). Every method takes the [`TenantId`] and filters by it, except the
//! queue's claim, which serves every tenant (the worker's housekeeping) and returns the tenant of
//! what it claimed.

use serde_json::Value;
use sqlx::Row;

use super::error::{WriteFailure, classify};
use super::model::validate_text;
use super::sql::now_ms;
use super::{SqlStore, StoreError, StoreResult, TenantId};

const MAX_GOAL_CHARS: usize = 2_000;
const MAX_SCHEMA_BYTES: usize = 16 * 1024;

/// What to compute after each of an agent's calls.
#[derive(Clone, Debug, PartialEq)]
pub struct AnalysisSettings {
    /// The stated goal the call is evaluated against ("book an appointment").
    pub goal: String,
    /// JSON Schema (an object schema) of the structured fields.
    pub fields_schema: Value,
    /// A model other than the deployment's default.
    pub model: Option<String>,
}

/// Where a call's analysis stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnalysisStatus {
    Pending,
    Done,
    Failed,
}

impl AnalysisStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Done => "done",
            Self::Failed => "failed",
        }
    }

    fn parse(raw: &str) -> StoreResult<Self> {
        match raw {
            "pending" => Ok(Self::Pending),
            "done" => Ok(Self::Done),
            "failed" => Ok(Self::Failed),
            other => Err(StoreError::invalid("analysis status", other)),
        }
    }
}

/// One call's analysis.
#[derive(Clone, Debug, PartialEq)]
pub struct CallAnalysis {
    pub call_id: String,
    pub status: AnalysisStatus,
    pub attempts: u32,
    /// `{"summary", "fields", "success": {"achieved", "reason"}}` when done.
    pub result: Option<Value>,
    /// Why it failed.
    pub error: Option<String>,
    pub model: Option<String>,
}

/// A queued analysis the worker leased.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimedAnalysis {
    pub tenant: TenantId,
    pub call_id: String,
    /// Attempts already made (requests to the model in earlier leases).
    pub attempts: u32,
}

/// What a worker learned about a leased analysis.
#[derive(Debug, Clone, Copy)]
pub struct SettledAnalysis<'a> {
    pub status: AnalysisStatus,
    /// Requests made to the model so far.
    pub attempts: u32,
    /// The validated result, or why there is none.
    pub outcome: Result<&'a Value, &'a str>,
    pub model: &'a str,
    /// When a pending analysis may be leased again (ms since the epoch; 0 otherwise).
    pub retry_at_ms: i64,
}

/// Checks settings before they are stored: a goal, an object schema of bounded size.
pub fn validate_settings(settings: &AnalysisSettings) -> StoreResult<()> {
    validate_text("analysis goal", &settings.goal, MAX_GOAL_CHARS)?;
    if settings.goal.trim().is_empty() {
        return Err(StoreError::invalid("analysis goal", "must not be empty"));
    }
    if settings.fields_schema["type"] != "object"
        || !settings.fields_schema["properties"].is_object()
    {
        return Err(StoreError::invalid(
            "analysis fields_schema",
            "must be a JSON Schema with \"type\": \"object\" and \"properties\"",
        ));
    }
    if settings.fields_schema.to_string().len() > MAX_SCHEMA_BYTES {
        return Err(StoreError::invalid(
            "analysis fields_schema",
            format!("longer than {MAX_SCHEMA_BYTES} bytes"),
        ));
    }
    if let Some(model) = &settings.model {
        validate_text("analysis model", model, 100)?;
    }
    Ok(())
}

fn analysis_from_row(row: &sqlx::any::AnyRow) -> StoreResult<CallAnalysis> {
    let status: String = row.try_get("status")?;
    let result: Option<String> = row.try_get("result")?;
    let attempts: i64 = row.try_get("attempts")?;
    Ok(CallAnalysis {
        call_id: row.try_get("call_id")?,
        status: AnalysisStatus::parse(&status)?,
        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
        result: result.and_then(|r| serde_json::from_str(&r).ok()),
        error: row.try_get("error")?,
        model: row.try_get("model")?,
    })
}

impl SqlStore {
    /// The agent's analysis settings; `None` when the agent has none (no analysis).
    pub async fn analysis_settings(
        &self,
        tenant: &TenantId,
        agent_id: &str,
    ) -> StoreResult<Option<AnalysisSettings>> {
        let row = sqlx::query(
            "SELECT goal, fields_schema, model FROM agent_analysis \
             WHERE tenant_id = $1 AND agent_id = $2",
        )
        .bind(tenant.as_str())
        .bind(agent_id)
        .fetch_optional(self.pool())
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let schema: String = row.try_get("fields_schema")?;
        Ok(Some(AnalysisSettings {
            goal: row.try_get("goal")?,
            fields_schema: serde_json::from_str(&schema)
                .map_err(|e| StoreError::invalid("analysis fields_schema", e.to_string()))?,
            model: row.try_get("model")?,
        }))
    }

    /// Sets (creates or replaces) the agent's analysis settings.
    pub async fn put_analysis_settings(
        &self,
        tenant: &TenantId,
        agent_id: &str,
        settings: &AnalysisSettings,
    ) -> StoreResult<()> {
        validate_settings(settings)?;
        sqlx::query(
            "INSERT INTO agent_analysis (tenant_id, agent_id, goal, fields_schema, model, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tenant_id, agent_id) DO UPDATE SET \
             goal = $3, fields_schema = $4, model = $5, updated_at = $6",
        )
        .bind(tenant.as_str())
        .bind(agent_id)
        .bind(settings.goal.as_str())
        .bind(settings.fields_schema.to_string())
        .bind(settings.model.as_deref())
        .bind(now_ms())
        .execute(self.pool())
        .await
        .map_err(|err| match classify(err) {
            WriteFailure::ForeignKey => StoreError::not_found(format!("agent {agent_id}")),
            WriteFailure::Unique => StoreError::conflict("analysis settings"),
            WriteFailure::Other(err) => StoreError::Database(err),
        })?;
        Ok(())
    }

    /// Turns the agent's analysis off. `true` when it was on.
    pub async fn delete_analysis_settings(
        &self,
        tenant: &TenantId,
        agent_id: &str,
    ) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM agent_analysis WHERE tenant_id = $1 AND agent_id = $2")
            .bind(tenant.as_str())
            .bind(agent_id)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Queues the analysis of an ended call (once: a second call is a no-op). `true` when queued now.
    pub async fn queue_analysis(&self, tenant: &TenantId, call_id: &str) -> StoreResult<bool> {
        let now = now_ms();
        let done = sqlx::query(
            "INSERT INTO call_analyses (tenant_id, call_id, status, attempts, lease_until, \
             created_at, updated_at) VALUES ($1, $2, 'pending', 0, 0, $3, $3) \
             ON CONFLICT (tenant_id, call_id) DO NOTHING",
        )
        .bind(tenant.as_str())
        .bind(call_id)
        .bind(now)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Leases the oldest pending analysis whose lease is free, for `lease_ms`; across nodes only
    /// one worker gets each (the update is conditional on the lease it read).
    pub async fn claim_analysis(&self, lease_ms: i64) -> StoreResult<Option<ClaimedAnalysis>> {
        let now = now_ms();
        for _ in 0..3 {
            let row = sqlx::query(
                "SELECT tenant_id, call_id, attempts, lease_until FROM call_analyses \
                 WHERE status = 'pending' AND lease_until <= $1 ORDER BY created_at LIMIT 1",
            )
            .bind(now)
            .fetch_optional(self.pool())
            .await?;
            let Some(row) = row else {
                return Ok(None);
            };
            let tenant: String = row.try_get("tenant_id")?;
            let call_id: String = row.try_get("call_id")?;
            let attempts: i64 = row.try_get("attempts")?;
            let lease: i64 = row.try_get("lease_until")?;
            let taken = sqlx::query(
                "UPDATE call_analyses SET lease_until = $1, updated_at = $2 \
                 WHERE tenant_id = $3 AND call_id = $4 AND status = 'pending' AND lease_until = $5",
            )
            .bind(now + lease_ms)
            .bind(now)
            .bind(&tenant)
            .bind(&call_id)
            .bind(lease)
            .execute(self.pool())
            .await?;
            if taken.rows_affected() == 1 {
                return Ok(Some(ClaimedAnalysis {
                    tenant: TenantId::parse(&tenant)?,
                    call_id,
                    attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
                }));
            }
        }
        Ok(None)
    }

    /// Records the outcome of a leased analysis: done with a result, failed with an error, or still
    /// pending (a transient failure) with its lease pushed to `retry_at_ms`.
    pub async fn settle_analysis(
        &self,
        tenant: &TenantId,
        call_id: &str,
        settled: &SettledAnalysis<'_>,
    ) -> StoreResult<()> {
        let (status, attempts, model, retry_at_ms) = (
            settled.status,
            settled.attempts,
            settled.model,
            settled.retry_at_ms,
        );
        let (result, error) = match settled.outcome {
            Ok(result) => (Some(result.to_string()), None),
            Err(error) => (None, Some(error.chars().take(1_000).collect::<String>())),
        };
        sqlx::query(
            "UPDATE call_analyses SET status = $1, attempts = $2, result = $3, error = $4, \
             model = $5, lease_until = $6, updated_at = $7 WHERE tenant_id = $8 AND call_id = $9",
        )
        .bind(status.as_str())
        .bind(i64::from(attempts))
        .bind(result)
        .bind(error)
        .bind(model)
        .bind(retry_at_ms)
        .bind(now_ms())
        .bind(tenant.as_str())
        .bind(call_id)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The call's analysis, if one was queued.
    pub async fn call_analysis(
        &self,
        tenant: &TenantId,
        call_id: &str,
    ) -> StoreResult<Option<CallAnalysis>> {
        let row = sqlx::query(
            "SELECT call_id, status, attempts, result, error, model FROM call_analyses \
             WHERE tenant_id = $1 AND call_id = $2",
        )
        .bind(tenant.as_str())
        .bind(call_id)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(analysis_from_row).transpose()
    }
}

//! Post-call analysis for the API: an agent's analysis settings (goal, JSON Schema of the
//! structured fields, model) and a call's analysis result. Turns requests into store calls and
//! rows into views; it must not run an analysis (that is `call/analysis.rs`).
//!
//! Scoping: another tenant's agent or call answers NotFound, like every tenant route.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::info;
use utoipa::ToSchema;

use super::{AdminService, Principal, ServiceError};
use crate::store::{AnalysisSettings, CallAnalysis};

/// What is computed after each of the agent's calls.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AnalysisSettingsDoc {
    /// The goal the call is evaluated against ("The caller books an appointment"), 1 to 2000
    /// characters.
    pub goal: String,
    /// A JSON Schema with `"type": "object"` and `properties`: the structured fields
    /// (`reason`, `appointment_booked`, `callback_requested`, …).
    #[schema(value_type = Object)]
    pub fields_schema: Value,
    /// A model other than the deployment's default (`CALLBRIDGE_ANALYSIS_MODEL`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

/// A call's analysis.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
pub struct CallAnalysisDoc {
    pub call_id: String,
    /// `pending` (queued or being computed), `done` or `failed`.
    pub status: String,
    /// Requests made to the model so far.
    pub attempts: u32,
    /// Two to four sentences (done only).
    pub summary: Option<String>,
    /// The structured fields, valid against the agent's schema (done only).
    #[schema(value_type = Object)]
    pub fields: Option<Value>,
    /// `{"achieved": bool, "reason": "…"}` against the agent's goal (done only).
    #[schema(value_type = Object)]
    pub success: Option<Value>,
    /// Why it failed (or why the last attempt did, while pending).
    pub error: Option<String>,
    pub model: Option<String>,
    /// The write-back to the tenant's CRM (done only, when the bridge writes back): `written`,
    /// `no_contact`, `no_crm` or `failed: …`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crm_note: Option<String>,
}

impl From<CallAnalysis> for CallAnalysisDoc {
    fn from(a: CallAnalysis) -> Self {
        let result = a.result.unwrap_or(Value::Null);
        let pick = |key: &str| Some(result[key].clone()).filter(|v| !v.is_null());
        Self {
            call_id: a.call_id,
            status: a.status.as_str().to_owned(),
            attempts: a.attempts,
            summary: result["summary"].as_str().map(str::to_owned),
            fields: pick("fields"),
            success: pick("success"),
            error: a.error,
            model: a.model,
            crm_note: result["crm_note"].as_str().map(str::to_owned),
        }
    }
}

impl AdminService {
    pub async fn analysis_settings(
        &self,
        who: &Principal,
        tenant: &str,
        agent: &str,
    ) -> Result<AnalysisSettingsDoc, ServiceError> {
        let id = self.tenant_scope(who, tenant).await?;
        let settings = self
            .store
            .analysis_settings(&id, agent)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("analysis settings of agent {agent}")))?;
        Ok(AnalysisSettingsDoc {
            goal: settings.goal,
            fields_schema: settings.fields_schema,
            model: settings.model,
        })
    }

    /// Sets the agent's analysis settings; its calls are analysed from the next one on.
    pub async fn put_analysis_settings(
        &self,
        who: &Principal,
        tenant: &str,
        agent: &str,
        req: AnalysisSettingsDoc,
    ) -> Result<AnalysisSettingsDoc, ServiceError> {
        let id = self.tenant_scope(who, tenant).await?;
        let settings = AnalysisSettings {
            goal: req.goal.trim().to_owned(),
            fields_schema: req.fields_schema,
            model: req.model.filter(|m| !m.trim().is_empty()),
        };
        // The schema must compile: a reply can only be checked against a working schema.
        let envelope = crate::call::analysis::envelope_schema(&settings.fields_schema);
        if let Err(e) = jsonschema::validator_for(&envelope) {
            return Err(ServiceError::invalid("fields_schema", e.to_string()));
        }
        self.store
            .put_analysis_settings(&id, agent, &settings)
            .await?;
        info!(tenant = %id, agent, "analysis settings set");
        self.analysis_settings(who, tenant, agent).await
    }

    pub async fn delete_analysis_settings(
        &self,
        who: &Principal,
        tenant: &str,
        agent: &str,
    ) -> Result<(), ServiceError> {
        let id = self.tenant_scope(who, tenant).await?;
        if !self.store.delete_analysis_settings(&id, agent).await? {
            return Err(ServiceError::NotFound(format!(
                "analysis settings of agent {agent}"
            )));
        }
        info!(tenant = %id, agent, "analysis settings removed");
        Ok(())
    }

    pub async fn call_analysis(
        &self,
        who: &Principal,
        tenant: &str,
        call: &str,
    ) -> Result<CallAnalysisDoc, ServiceError> {
        let id = self.tenant_scope(who, tenant).await?;
        let analysis = self
            .store
            .call_analysis(&id, call)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("analysis of call {call}")))?;
        Ok(analysis.into())
    }
}

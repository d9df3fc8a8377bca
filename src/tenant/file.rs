//! Tenant files: a tenant with its agents and numbers described in TOML (see
//! `fixtures/tenants/`), validated and created in one transaction. It must not carry secrets —
//! credentials go through the vault — and does not update existing tenants.

use serde::Deserialize;

use crate::store::{
    Agent, AgentProvision, AgentSpec, E164, NewTenant, Store, StoreError, Tenant, TenantId,
    Voicemail,
};

/// Why a tenant file was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TenantFileError {
    #[error("tenant file is not valid TOML for a tenant: {0}")]
    Parse(#[from] toml::de::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The parsed file, before validation.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TenantFile {
    pub tenant: TenantSection,
    #[serde(default)]
    pub agents: Vec<AgentSection>,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TenantSection {
    pub id: String,
    pub name: String,
    pub time_zone: String,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AgentSection {
    pub name: String,
    pub provider: String,
    pub model: String,
    pub voice: String,
    pub prompt_template: String,
    #[serde(default)]
    pub enabled_tools: Vec<String>,
    pub max_duration_s: u32,
    pub silence_timeout_s: u32,
    #[serde(default)]
    pub recording: bool,
    /// `hangup` or `message` (with `voicemail_message`); absent: no answering machine detection.
    #[serde(default)]
    pub voicemail_action: Option<String>,
    #[serde(default)]
    pub voicemail_message: Option<String>,
    #[serde(default)]
    pub numbers: Vec<String>,
}

impl TenantFile {
    pub fn parse(text: &str) -> Result<Self, TenantFileError> {
        Ok(toml::from_str(text)?)
    }

    /// Validates ids and numbers (the store validates the rest when applying).
    pub fn to_provision(&self) -> Result<(NewTenant, Vec<AgentProvision>), StoreError> {
        let tenant = NewTenant {
            id: TenantId::parse(&self.tenant.id)?,
            name: self.tenant.name.clone(),
            time_zone: self.tenant.time_zone.clone(),
        };
        let agents = self
            .agents
            .iter()
            .map(|a| {
                Ok(AgentProvision {
                    spec: AgentSpec {
                        name: a.name.clone(),
                        provider: a.provider.clone(),
                        model: a.model.clone(),
                        voice: a.voice.clone(),
                        prompt_template: a.prompt_template.clone(),
                        enabled_tools: a.enabled_tools.clone(),
                        max_duration_s: a.max_duration_s,
                        silence_timeout_s: a.silence_timeout_s,
                        recording: a.recording,
                        voicemail: Voicemail::from_columns(
                            a.voicemail_action.as_deref(),
                            a.voicemail_message.clone(),
                        )
                        .map_err(|_| {
                            StoreError::invalid(
                                "agent voicemail_action",
                                "must be hangup, or message with voicemail_message",
                            )
                        })?,
                    },
                    numbers: a
                        .numbers
                        .iter()
                        .map(|n| E164::parse(n))
                        .collect::<Result<_, _>>()?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok((tenant, agents))
    }

    /// Creates the tenant, its agents and numbers, all or nothing.
    pub async fn apply<S: Store>(
        &self,
        store: &S,
    ) -> Result<(Tenant, Vec<Agent>), TenantFileError> {
        let (tenant, agents) = self.to_provision()?;
        Ok(store.provision_tenant(&tenant, &agents).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        [tenant]
        id = "acme"
        name = "Acme"
        time_zone = "UTC"

        [[agents]]
        name = "desk"
        provider = "openai"
        model = "gpt-realtime"
        voice = "marin"
        prompt_template = "receptionist"
        max_duration_s = 600
        silence_timeout_s = 20
        numbers = ["+14155550100"]
    "#;

    #[test]
    fn parses_and_converts_a_minimal_file() {
        let file = TenantFile::parse(MINIMAL).expect("parse");
        let (tenant, agents) = file.to_provision().expect("valid");
        assert_eq!(tenant.id.as_str(), "acme");
        assert_eq!(agents.len(), 1);
        assert!(!agents[0].spec.recording);
        assert_eq!(agents[0].numbers[0].as_str(), "+14155550100");
    }

    #[test]
    fn rejects_unknown_fields_bad_numbers_and_bad_ids() {
        let unknown = MINIMAL.replace("voice = \"marin\"", "voice = \"marin\"\napi_key = \"x\"");
        assert!(matches!(
            TenantFile::parse(&unknown),
            Err(TenantFileError::Parse(_))
        ));
        let bad_number = MINIMAL.replace("+14155550100", "415-555-0100");
        let file = TenantFile::parse(&bad_number).expect("parse");
        assert!(matches!(
            file.to_provision(),
            Err(StoreError::Invalid {
                field: "phone number",
                ..
            })
        ));
        let bad_id = MINIMAL.replace("id = \"acme\"", "id = \"Acme Inc\"");
        let file = TenantFile::parse(&bad_id).expect("parse");
        assert!(matches!(
            file.to_provision(),
            Err(StoreError::Invalid { .. })
        ));
        assert!(TenantFile::parse("not toml [").is_err());
    }
}

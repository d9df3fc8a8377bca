//! Transfer destinations for the API and the CLI: read and replace the list of people an agent's
//! `transfer_call` may hand a caller to. It turns requests into store calls
//! (`store::transfer_destinations`, which validates every field) and rows into views; it must not
//! redirect calls or decide opening hours (that is `call/transfer.rs`).
//!
//! Scoping: like every agent route, another tenant's agent answers NotFound.

use serde::{Deserialize, Serialize};
use tracing::info;
use utoipa::ToSchema;

use super::{AdminService, Principal, ServiceError};
use crate::store::{CallerIdPolicy, OpenHours, TransferDestination};

/// One opening window, in the tenant's time zone.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct OpenHoursDoc {
    /// Days it applies to: `mon`, `tue`, `wed`, `thu`, `fri`, `sat`, `sun`.
    pub days: Vec<String>,
    /// Opening time, `HH:MM` (24 h).
    pub open: String,
    /// Closing time, `HH:MM` (24 h, up to `24:00`), after `open`.
    pub close: String,
}

/// Where `transfer_call` may send the caller.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TransferDestinationDoc {
    /// What the model names (`front-desk`): lower-case letters, digits, `-` and `_`.
    pub name: String,
    /// An E.164 number (`+15551234567`) or a `sip:`/`sips:` URI.
    pub target: String,
    /// Read by the model: who is there and when to transfer to them.
    pub description: String,
    /// Number shown to the person called: `agent` (the number the caller dialled, default) or
    /// `caller` (the caller's own).
    #[serde(default = "default_caller_id")]
    pub caller_id: String,
    /// Opening hours; empty or omitted means always open.
    #[serde(default)]
    pub hours: Vec<OpenHoursDoc>,
}

fn default_caller_id() -> String {
    "agent".into()
}

/// The whole list, in the order the model should read it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TransferDestinationsDoc {
    pub destinations: Vec<TransferDestinationDoc>,
}

impl From<TransferDestination> for TransferDestinationDoc {
    fn from(d: TransferDestination) -> Self {
        Self {
            name: d.name,
            target: d.target,
            description: d.description,
            caller_id: d.caller_id.as_str().to_owned(),
            hours: d
                .hours
                .into_iter()
                .map(|h| OpenHoursDoc {
                    days: h.days,
                    open: h.open,
                    close: h.close,
                })
                .collect(),
        }
    }
}

impl TryFrom<TransferDestinationDoc> for TransferDestination {
    type Error = ServiceError;

    fn try_from(d: TransferDestinationDoc) -> Result<Self, ServiceError> {
        let caller_id = match d.caller_id.as_str() {
            "agent" => CallerIdPolicy::Agent,
            "caller" => CallerIdPolicy::Caller,
            other => {
                return Err(ServiceError::invalid(
                    "caller_id",
                    format!("{other:?} is not one of agent, caller"),
                ));
            }
        };
        Ok(Self {
            name: d.name,
            target: d.target,
            description: d.description,
            caller_id,
            hours: d
                .hours
                .into_iter()
                .map(|h| OpenHours {
                    days: h.days,
                    open: h.open,
                    close: h.close,
                })
                .collect(),
        })
    }
}

fn doc(list: Vec<TransferDestination>) -> TransferDestinationsDoc {
    TransferDestinationsDoc {
        destinations: list.into_iter().map(Into::into).collect(),
    }
}

impl AdminService {
    pub async fn transfer_destinations(
        &self,
        who: &Principal,
        tenant: &str,
        agent: &str,
    ) -> Result<TransferDestinationsDoc, ServiceError> {
        let id = self.tenant_scope(who, tenant).await?;
        Ok(doc(self.store.transfer_destinations(&id, agent).await?))
    }

    /// Replaces the agent's destinations (all or nothing).
    pub async fn put_transfer_destinations(
        &self,
        who: &Principal,
        tenant: &str,
        agent: &str,
        req: TransferDestinationsDoc,
    ) -> Result<TransferDestinationsDoc, ServiceError> {
        let id = self.tenant_scope(who, tenant).await?;
        let list = req
            .destinations
            .into_iter()
            .map(TransferDestination::try_from)
            .collect::<Result<Vec<_>, _>>()?;
        let stored = self
            .store
            .put_transfer_destinations(&id, agent, &list)
            .await?;
        info!(tenant = %id, agent, count = stored.len(), "transfer destinations replaced");
        Ok(doc(stored))
    }
}

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

// --- live calls ----------------------------------------------------------------------------------

use crate::call::live::{LiveCallView, LiveCalls, LiveError};
use crate::call::session::OperatorCommand;
use crate::store::Store as _;

/// A tenant's live calls: those this node runs, then those other nodes run (from the store).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LiveCallsDoc {
    /// The node that answered.
    pub node: String,
    pub calls: Vec<LiveCallDoc>,
}

/// One live call.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LiveCallDoc {
    pub call_id: String,
    pub agent_id: String,
    pub twilio_call_sid: Option<String>,
    pub from: String,
    pub to: String,
    /// The node running it (`null` when none was recorded).
    pub node: Option<String>,
    pub started_at: String,
    /// True when this node runs it (commands are accepted here).
    pub local: bool,
}

impl From<LiveCallView> for LiveCallDoc {
    fn from(v: LiveCallView) -> Self {
        Self {
            call_id: v.call_id,
            agent_id: v.agent_id,
            twilio_call_sid: Some(v.twilio_call_sid),
            from: v.from,
            to: v.to,
            node: Some(v.node),
            started_at: v.started_at,
            local: true,
        }
    }
}

/// How many recent calls are read to find those live on other nodes.
const LIVE_SCAN: u32 = 500;

impl AdminService {
    pub async fn live_calls(
        &self,
        who: &Principal,
        live: &LiveCalls,
        tenant: &str,
    ) -> Result<LiveCallsDoc, ServiceError> {
        let id = self.tenant_scope(who, tenant).await?;
        let mut calls: Vec<LiveCallDoc> =
            live.list(id.as_str()).into_iter().map(Into::into).collect();
        for call in self.store.list_calls(&id, LIVE_SCAN).await? {
            let running =
                call.ended_at.is_none() && call.status == crate::store::CallStatus::InProgress;
            if !running || calls.iter().any(|c| c.call_id == call.id) {
                continue;
            }
            let node = self.store.call_node(&id, &call.id).await?;
            calls.push(LiveCallDoc {
                call_id: call.id,
                agent_id: call.agent_id,
                twilio_call_sid: call.twilio_call_sid,
                from: call.from,
                to: call.to,
                node,
                started_at: call.started_at.to_string(),
                local: false,
            });
        }
        Ok(LiveCallsDoc {
            node: live.node().to_owned(),
            calls,
        })
    }

    /// Delivers a supervisor's command to a live call, or says precisely why not: unknown call
    /// (404), ended, or live on another node (409 naming the node).
    pub async fn command_live_call(
        &self,
        who: &Principal,
        live: &LiveCalls,
        tenant: &str,
        call_id: &str,
        command: OperatorCommand,
    ) -> Result<(), ServiceError> {
        let id = self.tenant_scope(who, tenant).await?;
        if let OperatorCommand::Inject { instruction } = &command
            && (instruction.trim().is_empty() || instruction.chars().count() > 2_000)
        {
            return Err(ServiceError::invalid(
                "instruction",
                "must be 1 to 2000 characters",
            ));
        }
        let transfer_to = match &command {
            OperatorCommand::Transfer { destination }
            | OperatorCommand::WarmTransfer { destination, .. } => Some(destination),
            _ => None,
        };
        if let (Some(destination), Some(view)) = (transfer_to, live.view(id.as_str(), call_id)) {
            let known = self
                .store
                .transfer_destinations(&id, &view.agent_id)
                .await?;
            if !known.iter().any(|d| &d.name == destination) {
                let names: Vec<&str> = known.iter().map(|d| d.name.as_str()).collect();
                return Err(ServiceError::invalid(
                    "destination",
                    format!(
                        "{destination:?} is not one of the agent's destinations ({})",
                        names.join(", ")
                    ),
                ));
            }
        }
        match live.command(id.as_str(), call_id, command) {
            Ok(()) => {
                info!(tenant = %id, call = call_id, "supervisor command delivered");
                Ok(())
            }
            Err(LiveError::NotHere(_)) => Err(self.not_here(&id, call_id, live).await),
            Err(e) => Err(ServiceError::Conflict(e.to_string())),
        }
    }

    /// The precise reason a call is not live on this node.
    async fn not_here(
        &self,
        id: &crate::store::TenantId,
        call_id: &str,
        live: &LiveCalls,
    ) -> ServiceError {
        let call = match self.store.call(id, call_id).await {
            Ok(call) => call,
            Err(crate::store::StoreError::NotFound { .. }) => {
                return ServiceError::NotFound(format!("call {call_id:?}"));
            }
            Err(e) => return e.into(),
        };
        if call.ended_at.is_some() || call.status != crate::store::CallStatus::InProgress {
            return ServiceError::Conflict(LiveError::Ended(call_id.to_owned()).to_string());
        }
        match self.store.call_node(id, call_id).await {
            Ok(Some(node)) if node != live.node() => ServiceError::Conflict(
                LiveError::OtherNode {
                    call: call_id.to_owned(),
                    node,
                }
                .to_string(),
            ),
            Ok(_) => ServiceError::Conflict(format!(
                "call {call_id} is not running on any node (it may be starting or ending)"
            )),
            Err(e) => e.into(),
        }
    }

    /// Checks the caller may watch the call; the stream itself comes from the registry.
    pub async fn live_call_scope(
        &self,
        who: &Principal,
        live: &LiveCalls,
        tenant: &str,
        call_id: &str,
    ) -> Result<tokio::sync::broadcast::Receiver<serde_json::Value>, ServiceError> {
        let id = self.tenant_scope(who, tenant).await?;
        match live.subscribe(id.as_str(), call_id) {
            Some(rx) => Ok(rx),
            None => Err(self.not_here(&id, call_id, live).await),
        }
    }
}

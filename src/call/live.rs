//! Live calls on this node: a registry of the calls this process is running, each with a handle
//! into its call actor (operator commands) and a broadcast of its journal (transcript, tools,
//! transfers) for server-sent-event consoles.
//!
//! Owns the map and the routing of operator commands: a command for a call this node runs goes
//! into that call's actor queue; one for a call another node runs is refused naming that node
//! (from the store's call record); one for an ended call is refused as ended — never silently
//! dropped. It must not decide anything about the call itself (the session does), and holds its
//! lock only for map reads and writes, never across an `.await`.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

use serde::Serialize;
use serde_json::Value;
use tokio::sync::{broadcast, mpsc};

use super::session::{Input, OperatorCommand};

/// Journal entries kept for a slow SSE reader before it starts missing some.
pub const LIVE_EVENTS: usize = 256;

/// A call's journal as a live feed for consoles. The broadcast (and its [`LIVE_EVENTS`] slots,
/// about 16 KiB) is made when the first console subscribes: most calls are never watched.
#[derive(Clone, Default)]
pub struct LiveFeed(Arc<OnceLock<broadcast::Sender<Value>>>);

impl LiveFeed {
    /// A receiver of the call's journal entries from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Value> {
        self.0
            .get_or_init(|| broadcast::channel(LIVE_EVENTS).0)
            .subscribe()
    }

    /// Whether a console listens (an entry is built for the feed only then).
    pub fn has_listeners(&self) -> bool {
        self.0.get().is_some_and(|feed| feed.receiver_count() > 0)
    }

    /// Sends `entry` to the consoles listening, if any.
    pub fn send(&self, entry: Value) {
        if let Some(feed) = self.0.get() {
            let _ = feed.send(entry);
        }
    }
}

/// What a console sees of one live call.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LiveCallView {
    pub call_id: String,
    pub tenant_id: String,
    pub agent_id: String,
    pub twilio_call_sid: String,
    pub from: String,
    pub to: String,
    /// The node running the call.
    pub node: String,
    /// RFC 3339.
    pub started_at: String,
}

struct LiveCall {
    view: LiveCallView,
    actor: mpsc::Sender<Input>,
    events: LiveFeed,
}

/// Why an operator command was not delivered.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LiveError {
    #[error("call {0} is not live on this node")]
    NotHere(String),
    #[error("call {call} is live on node {node}; send the command to that node")]
    OtherNode { call: String, node: String },
    #[error("call {0} has ended")]
    Ended(String),
    #[error("call {0} is busy; try again")]
    Busy(String),
}

/// The registry. Cheap to share (`Arc`).
pub struct LiveCalls {
    node: String,
    calls: RwLock<HashMap<String, Arc<LiveCall>>>,
    /// Warm transfers in progress on this node (the caller on hold, the destination rung).
    pub warm: super::warm::WarmTransfers,
}

impl std::fmt::Debug for LiveCalls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveCalls")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

/// Removes the call from the registry when the call ends (however it ends).
pub struct Registration {
    registry: Arc<LiveCalls>,
    call_id: String,
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Ok(mut calls) = self.registry.calls.write() {
            calls.remove(&self.call_id);
        }
    }
}

impl LiveCalls {
    /// A registry for the node called `node`.
    pub fn new(node: impl Into<String>) -> Self {
        Self {
            node: node.into(),
            calls: RwLock::new(HashMap::new()),
            warm: super::warm::WarmTransfers::default(),
        }
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    /// Registers a call; it stays listed until the returned guard is dropped.
    pub fn register(
        self: &Arc<Self>,
        mut view: LiveCallView,
        actor: mpsc::Sender<Input>,
        events: LiveFeed,
    ) -> Registration {
        view.node = self.node.clone();
        let call_id = view.call_id.clone();
        if let Ok(mut calls) = self.calls.write() {
            calls.insert(
                call_id.clone(),
                Arc::new(LiveCall {
                    view,
                    actor,
                    events,
                }),
            );
        }
        Registration {
            registry: self.clone(),
            call_id,
        }
    }

    fn get(&self, tenant: &str, call_id: &str) -> Option<Arc<LiveCall>> {
        let calls = self.calls.read().ok()?;
        calls
            .get(call_id)
            .filter(|c| c.view.tenant_id == tenant)
            .cloned()
    }

    /// The tenant's calls live on this node, oldest first.
    pub fn list(&self, tenant: &str) -> Vec<LiveCallView> {
        let mut views: Vec<LiveCallView> = self
            .calls
            .read()
            .map(|calls| {
                calls
                    .values()
                    .filter(|c| c.view.tenant_id == tenant)
                    .map(|c| c.view.clone())
                    .collect()
            })
            .unwrap_or_default();
        views.sort_by(|a, b| a.started_at.cmp(&b.started_at));
        views
    }

    /// Delivers `command` to the call's actor, if the call is live here.
    pub fn command(
        &self,
        tenant: &str,
        call_id: &str,
        command: OperatorCommand,
    ) -> Result<(), LiveError> {
        let call = self
            .get(tenant, call_id)
            .ok_or_else(|| LiveError::NotHere(call_id.to_owned()))?;
        call.actor
            .try_send(Input::Operator(command))
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => LiveError::Busy(call_id.to_owned()),
                mpsc::error::TrySendError::Closed(_) => LiveError::Ended(call_id.to_owned()),
            })
    }

    /// A receiver of the call's journal entries from now on, if the call is live here.
    pub fn subscribe(&self, tenant: &str, call_id: &str) -> Option<broadcast::Receiver<Value>> {
        self.get(tenant, call_id).map(|c| c.events.subscribe())
    }

    /// The call's view, if live here.
    pub fn view(&self, tenant: &str, call_id: &str) -> Option<LiveCallView> {
        self.get(tenant, call_id).map(|c| c.view.clone())
    }
}

/// What the registry needs to know of a starting call.
pub struct CallFacts<'a> {
    pub route: &'a super::plan::Route,
    /// The call's record; `None` when it keeps none (then it is not listed).
    pub call_id: Option<&'a str>,
    pub call_sid: &'a str,
    pub from: &'a str,
    pub to: &'a str,
}

/// Lists a starting tenant call on this node (and records the node on its record); the call
/// stays listed until the returned registration is dropped.
pub async fn register_call(
    deps: &super::driver::CallDeps,
    facts: CallFacts<'_>,
    events: LiveFeed,
    actor: &mpsc::Sender<Input>,
) -> Option<Registration> {
    let super::plan::Route::Agent { tenant, agent_id } = facts.route else {
        return None;
    };
    let call_id = facts.call_id?;
    if let Err(e) = deps
        .store
        .set_call_node(tenant, call_id, deps.live.node())
        .await
    {
        deps.metrics.error("store_write_failed");
        tracing::warn!(error = %e, "cannot record the node of the call");
    }
    let started_at = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    Some(deps.live.register(
        LiveCallView {
            call_id: call_id.to_owned(),
            tenant_id: tenant.as_str().to_owned(),
            agent_id: agent_id.clone(),
            twilio_call_sid: facts.call_sid.to_owned(),
            from: facts.from.to_owned(),
            to: facts.to.to_owned(),
            node: String::new(),
            started_at,
        },
        actor.clone(),
        events,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(call: &str, tenant: &str) -> LiveCallView {
        LiveCallView {
            call_id: call.into(),
            tenant_id: tenant.into(),
            agent_id: "ag".into(),
            twilio_call_sid: "CA1".into(),
            from: "+1".into(),
            to: "+2".into(),
            node: String::new(),
            started_at: "2026-12-03T08:00:00Z".into(),
        }
    }

    #[test]
    fn commands_reach_the_actor_and_are_tenant_scoped() {
        let registry = Arc::new(LiveCalls::new("node-a"));
        let (tx, mut rx) = mpsc::channel(1);
        let events = LiveFeed::default();
        assert!(!events.has_listeners());
        let guard = registry.register(view("c1", "acme"), tx, events.clone());
        let mut console = registry.subscribe("acme", "c1").expect("live here");
        assert!(events.has_listeners());
        events.send(serde_json::json!({"kind": "transcript"}));
        assert_eq!(
            console.try_recv().ok(),
            Some(serde_json::json!({"kind": "transcript"}))
        );
        assert!(registry.subscribe("globex", "c1").is_none());
        assert_eq!(registry.list("acme")[0].node, "node-a");
        assert!(registry.list("globex").is_empty());
        assert_eq!(
            registry.command("globex", "c1", OperatorCommand::HangUp { goodbye: false }),
            Err(LiveError::NotHere("c1".into()))
        );
        registry
            .command("acme", "c1", OperatorCommand::HangUp { goodbye: false })
            .unwrap();
        assert!(matches!(rx.try_recv(), Ok(Input::Operator(_))));
        registry
            .command("acme", "c1", OperatorCommand::HangUp { goodbye: true })
            .unwrap();
        assert_eq!(
            registry.command("acme", "c1", OperatorCommand::HangUp { goodbye: true }),
            Err(LiveError::Busy("c1".into())),
            "a full queue is reported, not dropped"
        );
        drop(rx);
        assert_eq!(
            registry.command("acme", "c1", OperatorCommand::HangUp { goodbye: true }),
            Err(LiveError::Ended("c1".into()))
        );
        drop(guard);
        assert!(registry.list("acme").is_empty());
    }
}

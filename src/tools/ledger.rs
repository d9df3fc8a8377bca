//! The tool-call ledger: makes a side effect (a booking, a note) happen once per tool call.
//!
//! Owns: recognising a repeated tool call — the same tool-call id, or the same tool with the
//! same arguments replayed within the same call (after a provider reconnect the model issues a
//! new id) — and handing the repeat the first call's result, waiting for it if still running.
//! It also hands out the stable idempotency key a connector sends to the vendor. It must not run
//! tools or talk to vendors.
//!
//! [`InMemoryLedger`] is the real implementation for a single node. The store-backed ledger that
//! several bridge nodes share comes with the store and implements the same trait.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tokio::time::Instant;

/// One tool invocation as the ledger sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolInvocation {
    pub tenant: String,
    /// The phone call this tool call belongs to (Twilio call SID or our call id).
    pub call_id: String,
    /// The model's id for this tool call.
    pub tool_call_id: String,
    pub tool: String,
    /// [`args_hash`] of the arguments.
    pub args_hash: String,
}

/// Stored result of a finished tool call, handed to repeats.
#[derive(Debug, Clone, PartialEq)]
pub enum ToolOutcome {
    Succeeded(Value),
    /// A failure the model may speak about; a repeat after it runs again.
    Failed(String),
}

/// What [`ToolLedger::begin`] found.
#[derive(Debug)]
pub enum Begin {
    /// First time: run the tool, then call `complete` or `fail` with this key.
    Fresh { idempotency_key: String },
    /// Another caller is running it; wait for its result.
    InProgress(Waiter),
    /// Already done: here is the first result.
    Done(ToolOutcome),
}

/// Waits for the outcome of a tool call someone else is running.
#[derive(Debug)]
pub struct Waiter {
    receiver: watch::Receiver<Option<ToolOutcome>>,
}

impl Waiter {
    /// The outcome, or [`LedgerError::WaitTimedOut`] at `deadline`.
    pub async fn wait(mut self, deadline: Instant) -> Result<ToolOutcome, LedgerError> {
        let waited =
            tokio::time::timeout_at(deadline, self.receiver.wait_for(Option::is_some)).await;
        match waited {
            Ok(Ok(outcome)) => outcome.clone().ok_or(LedgerError::Abandoned),
            Ok(Err(_)) => Err(LedgerError::Abandoned),
            Err(_) => Err(LedgerError::WaitTimedOut),
        }
    }
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum LedgerError {
    #[error("no tool call is in progress under idempotency key {0}")]
    UnknownKey(String),
    #[error("the first run of this tool call did not finish before the deadline")]
    WaitTimedOut,
    #[error("the first run of this tool call was abandoned without a result")]
    Abandoned,
    #[error("ledger storage failed: {0}")]
    Storage(String),
}

/// Makes side effects happen once. Implementations: [`InMemoryLedger`] (single node); the
/// store-backed one (many nodes) comes with the store.
#[async_trait::async_trait]
pub trait ToolLedger: Send + Sync {
    async fn begin(&self, invocation: &ToolInvocation) -> Result<Begin, LedgerError>;
    async fn complete(&self, idempotency_key: &str, result: Value) -> Result<(), LedgerError>;
    async fn fail(&self, idempotency_key: &str, error: &str) -> Result<(), LedgerError>;
}

/// Run `tool` at most once for `invocation`: a repeat gets the first outcome (waiting until
/// `deadline` if the first run is still going). `tool` receives the idempotency key to send to
/// the vendor.
pub async fn run_once<F, Fut>(
    ledger: &dyn ToolLedger,
    invocation: &ToolInvocation,
    deadline: Instant,
    tool: F,
) -> Result<ToolOutcome, LedgerError>
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = Result<Value, String>>,
{
    match ledger.begin(invocation).await? {
        Begin::Done(outcome) => Ok(outcome),
        Begin::InProgress(waiter) => waiter.wait(deadline).await,
        Begin::Fresh { idempotency_key } => match tool(idempotency_key.clone()).await {
            Ok(value) => {
                ledger.complete(&idempotency_key, value.clone()).await?;
                Ok(ToolOutcome::Succeeded(value))
            }
            Err(message) => {
                ledger.fail(&idempotency_key, &message).await?;
                Ok(ToolOutcome::Failed(message))
            }
        },
    }
}

/// Stable hash of a tool's arguments: object keys sorted, so `{"a":1,"b":2}` and
/// `{"b":2,"a":1}` hash alike.
pub fn args_hash(args: &Value) -> String {
    let mut canonical = String::new();
    write_canonical(args, &mut canonical);
    hex(&Sha256::digest(canonical.as_bytes()))
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (index, key) in keys.into_iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                if let Some(inner) = map.get(key) {
                    write_canonical(inner, out);
                }
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, byte| {
            let _ = write!(out, "{byte:02x}");
            out
        })
}

/// The idempotency key for an invocation: derived from what makes two calls "the same side
/// effect" (tenant, phone call, tool, arguments), so a replay after a reconnect maps to the
/// same vendor-side key as the first attempt.
fn idempotency_key_for(invocation: &ToolInvocation) -> String {
    let mut hasher = Sha256::new();
    for part in [
        &invocation.tenant,
        &invocation.call_id,
        &invocation.tool,
        &invocation.args_hash,
    ] {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    // 32 hex chars = 128 bits: plenty against collisions, short enough for every vendor header.
    hex(&hasher.finalize()[..16])
}

struct Entry {
    outcome: watch::Sender<Option<ToolOutcome>>,
    expires: Instant,
}

#[derive(Default)]
struct LedgerMaps {
    by_key: HashMap<String, Entry>,
    /// (tenant, tool_call_id) → idempotency key, so the same call id finds the entry even if
    /// the model changed the arguments' formatting.
    /// (tenant, phone call, model's tool call id) → idempotency key: tool call ids are only unique
    /// within one phone call.
    by_call_id: HashMap<(String, String, String), String>,
}

/// In-process ledger for a single bridge node. Entries live for `retention` after they start
/// (long enough to cover a call and its reconnects), then are dropped.
pub struct InMemoryLedger {
    maps: Mutex<LedgerMaps>,
    retention: Duration,
}

impl InMemoryLedger {
    pub fn new(retention: Duration) -> Self {
        Self {
            maps: Mutex::new(LedgerMaps::default()),
            retention,
        }
    }

    fn maps(&self) -> std::sync::MutexGuard<'_, LedgerMaps> {
        // Plain maps mutated without awaiting: a poisoned guard still holds consistent data.
        self.maps
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn finish(&self, idempotency_key: &str, outcome: ToolOutcome) -> Result<(), LedgerError> {
        let maps = self.maps();
        let entry = maps
            .by_key
            .get(idempotency_key)
            .ok_or_else(|| LedgerError::UnknownKey(idempotency_key.to_owned()))?;
        entry.outcome.send_replace(Some(outcome));
        Ok(())
    }
}

impl Default for InMemoryLedger {
    fn default() -> Self {
        // A phone call rarely lasts longer; a replay after that is a new intent.
        Self::new(Duration::from_secs(2 * 60 * 60))
    }
}

#[async_trait::async_trait]
impl ToolLedger for InMemoryLedger {
    async fn begin(&self, invocation: &ToolInvocation) -> Result<Begin, LedgerError> {
        let now = Instant::now();
        let mut maps = self.maps();
        maps.by_key.retain(|_, entry| entry.expires > now);
        let LedgerMaps { by_key, by_call_id } = &mut *maps;
        by_call_id.retain(|_, key| by_key.contains_key(key));

        let call_id_key = (
            invocation.tenant.clone(),
            invocation.call_id.clone(),
            invocation.tool_call_id.clone(),
        );
        let key = by_call_id
            .get(&call_id_key)
            .cloned()
            .unwrap_or_else(|| idempotency_key_for(invocation));
        by_call_id.insert(call_id_key, key.clone());

        if let Some(entry) = by_key.get(&key) {
            let current = entry.outcome.borrow().clone();
            match current {
                Some(ToolOutcome::Succeeded(value)) => {
                    return Ok(Begin::Done(ToolOutcome::Succeeded(value)));
                }
                None => {
                    return Ok(Begin::InProgress(Waiter {
                        receiver: entry.outcome.subscribe(),
                    }));
                }
                // A failed first run may be retried, under the same vendor idempotency key.
                Some(ToolOutcome::Failed(_)) => {
                    entry.outcome.send_replace(None);
                    return Ok(Begin::Fresh {
                        idempotency_key: key,
                    });
                }
            }
        }
        let (sender, _) = watch::channel(None);
        by_key.insert(
            key.clone(),
            Entry {
                outcome: sender,
                expires: now + self.retention,
            },
        );
        Ok(Begin::Fresh {
            idempotency_key: key,
        })
    }

    async fn complete(&self, idempotency_key: &str, result: Value) -> Result<(), LedgerError> {
        self.finish(idempotency_key, ToolOutcome::Succeeded(result))
    }

    async fn fail(&self, idempotency_key: &str, error: &str) -> Result<(), LedgerError> {
        self.finish(idempotency_key, ToolOutcome::Failed(error.to_owned()))
    }
}

/// A ledger shared by the tasks of one node.
pub type SharedLedger = Arc<dyn ToolLedger>;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn invocation(call_id: &str, tool_call_id: &str, args: &Value) -> ToolInvocation {
        ToolInvocation {
            tenant: "acme".into(),
            call_id: call_id.into(),
            tool_call_id: tool_call_id.into(),
            tool: "book_appointment".into(),
            args_hash: args_hash(args),
        }
    }

    #[test]
    fn args_hash_ignores_key_order_but_not_values() {
        let a = json!({"slot": "2025-03-04T10:00:00Z", "name": {"first": "Ann", "last": "Lee"}});
        let b = json!({"name": {"last": "Lee", "first": "Ann"}, "slot": "2025-03-04T10:00:00Z"});
        let c = json!({"name": {"last": "Lee", "first": "Ann"}, "slot": "2025-03-04T11:00:00Z"});
        assert_eq!(args_hash(&a), args_hash(&b));
        assert_ne!(args_hash(&a), args_hash(&c));
    }

    #[tokio::test]
    async fn same_call_id_gets_the_first_result() {
        let ledger = InMemoryLedger::default();
        let args = json!({"slot": "10:00"});
        let first = ledger
            .begin(&invocation("CA1", "t1", &args))
            .await
            .expect("begin");
        let Begin::Fresh { idempotency_key } = first else {
            panic!("expected fresh, got {first:?}")
        };
        ledger
            .complete(&idempotency_key, json!({"booking": "b-1"}))
            .await
            .expect("complete");
        let again = ledger
            .begin(&invocation("CA1", "t1", &args))
            .await
            .expect("begin");
        assert!(
            matches!(again, Begin::Done(ToolOutcome::Succeeded(v)) if v == json!({"booking": "b-1"}))
        );
    }

    #[tokio::test]
    async fn the_same_tool_call_id_in_another_phone_call_is_a_different_call() {
        let ledger = InMemoryLedger::default();
        let Begin::Fresh { idempotency_key } = ledger
            .begin(&invocation("CA1", "call_1", &json!({"slot": "10:00"})))
            .await
            .expect("begin")
        else {
            panic!("expected fresh")
        };
        ledger
            .complete(&idempotency_key, json!({"booking": "b-1"}))
            .await
            .expect("complete");
        // Another phone call reusing the model's id "call_1" for a different booking.
        let other = ledger
            .begin(&invocation("CA2", "call_1", &json!({"slot": "15:00"})))
            .await
            .expect("begin");
        assert!(matches!(other, Begin::Fresh { .. }), "{other:?}");
    }

    #[tokio::test]
    async fn replay_with_new_call_id_same_args_is_deduplicated_within_the_call_only() {
        let ledger = InMemoryLedger::default();
        let args = json!({"slot": "10:00"});
        let Begin::Fresh { idempotency_key } = ledger
            .begin(&invocation("CA1", "t1", &args))
            .await
            .expect("begin")
        else {
            panic!("expected fresh")
        };
        let replay = ledger
            .begin(&invocation("CA1", "t2-after-reconnect", &args))
            .await
            .expect("begin");
        assert!(matches!(replay, Begin::InProgress(_)));
        ledger
            .complete(&idempotency_key, json!("ok"))
            .await
            .expect("complete");

        let other_call = ledger
            .begin(&invocation("CA2", "t9", &args))
            .await
            .expect("begin");
        assert!(matches!(other_call, Begin::Fresh { .. }));
    }

    #[tokio::test]
    async fn a_failed_run_may_run_again_with_the_same_key() {
        let ledger = InMemoryLedger::default();
        let args = json!({});
        let Begin::Fresh {
            idempotency_key: first,
        } = ledger
            .begin(&invocation("CA1", "t1", &args))
            .await
            .expect("begin")
        else {
            panic!("expected fresh")
        };
        ledger.fail(&first, "vendor down").await.expect("fail");
        let Begin::Fresh {
            idempotency_key: second,
        } = ledger
            .begin(&invocation("CA1", "t1", &args))
            .await
            .expect("begin")
        else {
            panic!("expected fresh after failure")
        };
        assert_eq!(first, second);
    }

    #[tokio::test]
    async fn unknown_keys_are_an_error_not_a_panic() {
        let ledger = InMemoryLedger::default();
        assert_eq!(
            ledger.complete("nope", json!(1)).await,
            Err(LedgerError::UnknownKey("nope".into()))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn entries_expire_after_retention() {
        let ledger = InMemoryLedger::new(Duration::from_secs(60));
        let args = json!({});
        let Begin::Fresh { idempotency_key } = ledger
            .begin(&invocation("CA1", "t1", &args))
            .await
            .expect("begin")
        else {
            panic!("expected fresh")
        };
        ledger
            .complete(&idempotency_key, json!(1))
            .await
            .expect("complete");
        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(matches!(
            ledger
                .begin(&invocation("CA1", "t1", &args))
                .await
                .expect("begin"),
            Begin::Fresh { .. }
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_times_out_at_its_deadline() {
        let ledger = InMemoryLedger::default();
        let args = json!({});
        let _first = ledger
            .begin(&invocation("CA1", "t1", &args))
            .await
            .expect("begin");
        let Begin::InProgress(waiter) = ledger
            .begin(&invocation("CA1", "t2", &args))
            .await
            .expect("begin")
        else {
            panic!("expected in progress")
        };
        let deadline = Instant::now() + Duration::from_secs(1);
        assert_eq!(waiter.wait(deadline).await, Err(LedgerError::WaitTimedOut));
    }
}

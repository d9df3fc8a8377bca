//! The tool-call ledger over the store's `tool_ledger` table, so duplicates are caught across
//! provider reconnects, bridge restarts and nodes sharing one database.
//!
//! Owns: mapping [`ToolLedger`] onto the store's race-safe insert-if-absent claim. It keeps the
//! in-memory ledger's semantics: the same tool-call id, or the same tool with the same arguments
//! within the same phone call, is one side effect; a repeat gets the first result; a failed run may
//! run again under the same vendor idempotency key. It must not run tools or talk to vendors.
//!
//! # Rows
//!
//! - `run` rows, keyed by [`idempotency_key_for`] (tenant, phone call, tool, arguments hash), hold
//!   the outcome. The store lets a row go from pending to done once, so a rerun after a failure
//!   claims the next row `{key}.2`, `{key}.3`, … (at most [`MAX_RUNS`]) while the key handed to
//!   the vendor stays the same.
//! - `alias` rows, keyed by (phone call, tool, tool-call id), remember the arguments hash the
//!   tool-call id was first seen with, so a repeat of the same id finds the same run rows even if
//!   the model changed the arguments.
//!
//! A run someone else is doing is awaited by polling the row (the store has no notifications),
//! up to the ledger's wait limit; a run pending for longer than `stale_after` belongs to a node
//! that died and is marked failed, so the call can proceed.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::ledger::{Begin, LedgerError, ToolInvocation, ToolLedger, ToolOutcome};
use crate::store::{
    LedgerClaim, LedgerEntry, LedgerStatus, NewLedgerEntry, Store, StoreError, TenantId,
};

/// Runs of one side effect before the ledger gives up and reports the last failure.
pub const MAX_RUNS: u32 = 5;

/// [`ToolLedger`] over a [`Store`].
pub struct StoreLedger<S> {
    store: S,
    wait_limit: Duration,
    poll_interval: Duration,
    stale_after: Duration,
    /// Idempotency key handed out → (tenant, row being run), for `complete`/`fail`.
    in_flight: Mutex<HashMap<String, (TenantId, String)>>,
}

impl<S> std::fmt::Debug for StoreLedger<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreLedger")
            .field("wait_limit", &self.wait_limit)
            .field("stale_after", &self.stale_after)
            .finish_non_exhaustive()
    }
}

impl<S: Store> StoreLedger<S> {
    /// Waits up to 30 s for a run in progress elsewhere, polling every 100 ms; a run pending for
    /// 5 minutes is considered abandoned.
    pub fn new(store: S) -> Self {
        Self {
            store,
            wait_limit: Duration::from_secs(30),
            poll_interval: Duration::from_millis(100),
            stale_after: Duration::from_secs(5 * 60),
            in_flight: Mutex::new(HashMap::new()),
        }
    }

    /// How long `begin` waits for a run in progress elsewhere before [`LedgerError::WaitTimedOut`]
    /// (the tool's own deadline usually ends the wait first).
    pub fn with_wait_limit(mut self, wait_limit: Duration, poll_interval: Duration) -> Self {
        self.wait_limit = wait_limit;
        self.poll_interval = poll_interval.max(Duration::from_millis(1));
        self
    }

    /// After how long a pending run is taken to be abandoned by a dead node.
    pub fn with_stale_after(mut self, stale_after: Duration) -> Self {
        self.stale_after = stale_after;
        self
    }

    fn in_flight(&self) -> std::sync::MutexGuard<'_, HashMap<String, (TenantId, String)>> {
        // A plain map mutated without awaiting: a poisoned guard still holds consistent data.
        self.in_flight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The arguments hash this tool-call id was first seen with (recording it if new).
    async fn first_arguments_hash(
        &self,
        tenant: &TenantId,
        invocation: &ToolInvocation,
    ) -> Result<String, LedgerError> {
        let alias = NewLedgerEntry {
            idempotency_key: alias_key(invocation),
            tool: invocation.tool.clone(),
            arguments_hash: invocation.args_hash.clone(),
        };
        match self.store.ledger_claim(tenant, &alias).await {
            Ok(LedgerClaim::Claimed(_)) => {
                // The alias carries no outcome; closing it keeps it out of "pending" listings.
                let _ = self
                    .store
                    .ledger_complete(
                        tenant,
                        &alias.idempotency_key,
                        LedgerStatus::Succeeded,
                        Some(&json!({ "alias": true })),
                    )
                    .await;
                Ok(invocation.args_hash.clone())
            }
            Ok(LedgerClaim::Existing(entry)) => Ok(entry.arguments_hash),
            // Same id, other arguments: the first ones define the side effect.
            Err(StoreError::Conflict { .. }) => self
                .store
                .ledger_entry(tenant, &alias.idempotency_key)
                .await
                .map(|entry| entry.arguments_hash)
                .map_err(storage),
            Err(err) => Err(storage(err)),
        }
    }

    fn is_stale(&self, entry: &LedgerEntry) -> bool {
        let age_ms = jiff::Timestamp::now().as_millisecond() - entry.created_at.as_millisecond();
        u128::try_from(age_ms).is_ok_and(|age| age > self.stale_after.as_millis())
    }

    /// Polls a pending row until it is done or the wait limit passes.
    async fn wait_for(&self, tenant: &TenantId, row_key: &str) -> Result<LedgerEntry, LedgerError> {
        let give_up = tokio::time::Instant::now() + self.wait_limit;
        loop {
            let entry = self
                .store
                .ledger_entry(tenant, row_key)
                .await
                .map_err(storage)?;
            if entry.status != LedgerStatus::Pending {
                return Ok(entry);
            }
            if tokio::time::Instant::now() + self.poll_interval > give_up {
                return Err(LedgerError::WaitTimedOut);
            }
            tokio::time::sleep(self.poll_interval).await;
        }
    }

    async fn finish(
        &self,
        idempotency_key: &str,
        status: LedgerStatus,
        result: &Value,
    ) -> Result<(), LedgerError> {
        let Some((tenant, row_key)) = self.in_flight().remove(idempotency_key) else {
            return Err(LedgerError::UnknownKey(idempotency_key.to_owned()));
        };
        self.store
            .ledger_complete(&tenant, &row_key, status, Some(result))
            .await
            .map(|_| ())
            .map_err(storage)
    }
}

fn storage(err: StoreError) -> LedgerError {
    LedgerError::Storage(err.to_string())
}

fn failure_message(entry: &LedgerEntry) -> String {
    entry
        .result
        .as_ref()
        .and_then(|result| result.get("error"))
        .and_then(Value::as_str)
        .unwrap_or("The first attempt failed.")
        .to_owned()
}

fn hash_parts(label: &str, parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(label.as_bytes());
    for part in parts {
        hasher.update([0]);
        hasher.update(part.as_bytes());
    }
    // 32 hex chars = 128 bits: plenty against collisions, short enough for every vendor header.
    hasher.finalize()[..16]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// The key of one side effect: tenant, phone call, tool and arguments. Also the key sent to the
/// vendor, so a replay after a reconnect carries the first attempt's key.
pub fn idempotency_key_for(invocation: &ToolInvocation, args_hash: &str) -> String {
    hash_parts(
        "run",
        &[
            &invocation.tenant,
            &invocation.call_id,
            &invocation.tool,
            args_hash,
        ],
    )
}

fn alias_key(invocation: &ToolInvocation) -> String {
    format!(
        "id-{}",
        hash_parts(
            "tool-call-id",
            &[
                &invocation.call_id,
                &invocation.tool,
                &invocation.tool_call_id
            ]
        )
    )
}

fn run_key(base: &str, run: u32) -> String {
    if run == 1 {
        base.to_owned()
    } else {
        format!("{base}.{run}")
    }
}

#[async_trait::async_trait]
impl<S: Store> ToolLedger for StoreLedger<S> {
    async fn begin(&self, invocation: &ToolInvocation) -> Result<Begin, LedgerError> {
        let tenant = TenantId::parse(&invocation.tenant).map_err(storage)?;
        let args_hash = self.first_arguments_hash(&tenant, invocation).await?;
        let key = idempotency_key_for(invocation, &args_hash);
        let mut last_failure = None;
        let mut run = 1;
        while run <= MAX_RUNS {
            let row_key = run_key(&key, run);
            let claim = NewLedgerEntry {
                idempotency_key: row_key.clone(),
                tool: invocation.tool.clone(),
                arguments_hash: args_hash.clone(),
            };
            let mut entry = match self
                .store
                .ledger_claim(&tenant, &claim)
                .await
                .map_err(storage)?
            {
                LedgerClaim::Claimed(_) => {
                    self.in_flight()
                        .insert(key.clone(), (tenant.clone(), row_key));
                    return Ok(Begin::Fresh {
                        idempotency_key: key,
                    });
                }
                LedgerClaim::Existing(entry) => entry,
            };
            if entry.status == LedgerStatus::Pending {
                if self.is_stale(&entry) {
                    let abandoned = json!({ "error": "The first attempt was abandoned." });
                    // Losing this race means the run just finished: read what it recorded.
                    let _ = self
                        .store
                        .ledger_complete(&tenant, &row_key, LedgerStatus::Failed, Some(&abandoned))
                        .await;
                    entry = self
                        .store
                        .ledger_entry(&tenant, &row_key)
                        .await
                        .map_err(storage)?;
                } else {
                    entry = self.wait_for(&tenant, &row_key).await?;
                    if entry.status == LedgerStatus::Failed {
                        // Whoever was waited for failed: hand that over, as the first run's outcome.
                        return Ok(Begin::Done(ToolOutcome::Failed(failure_message(&entry))));
                    }
                }
            }
            match entry.status {
                LedgerStatus::Succeeded => {
                    return Ok(Begin::Done(ToolOutcome::Succeeded(
                        entry.result.unwrap_or(Value::Null),
                    )));
                }
                LedgerStatus::Failed => {
                    last_failure = Some(failure_message(&entry));
                    run += 1;
                }
                LedgerStatus::Pending => return Err(LedgerError::WaitTimedOut),
            }
        }
        Ok(Begin::Done(ToolOutcome::Failed(
            last_failure.unwrap_or_else(|| "It failed too many times.".to_owned()),
        )))
    }

    async fn complete(&self, idempotency_key: &str, result: Value) -> Result<(), LedgerError> {
        self.finish(idempotency_key, LedgerStatus::Succeeded, &result)
            .await
    }

    async fn fail(&self, idempotency_key: &str, error: &str) -> Result<(), LedgerError> {
        self.finish(
            idempotency_key,
            LedgerStatus::Failed,
            &json!({ "error": error }),
        )
        .await
    }
}

//! The persistent store: tenants, agents, phone numbers, connector configurations, sealed secrets,
//! API keys, calls, call events and the tool-call ledger, on SQLite (the embedded default) or
//! PostgreSQL (many bridge nodes sharing one database).
//!
//! It must not encrypt or decrypt anything (that is [`crate::tenant::vault`]), hash API keys, or
//! know about HTTP. Every read that takes a [`TenantId`] filters by it, so no method returns another
//! tenant's row given a tenant id; the few methods without a tenant id say why in their docs.
//!
//! # One code path: `sqlx::Any` with portable SQL
//!
//! [`SqlStore`] runs every query through `sqlx::Any`, so SQLite and PostgreSQL share the same query
//! text, row mapping, transaction boundaries and error mapping — a bug cannot hide in "the other
//! implementation", and the single test suite exercises the one path twice. The price is a portable
//! subset of SQL, which this data fits: `$n` placeholders (SQLite accepts them), `BIGINT` Unix
//! milliseconds for time, `TEXT` for JSON, `0/1` for booleans, `ON CONFLICT … DO UPDATE` and
//! `RETURNING` (both backends have them). Only the DDL differs (`BLOB` vs `BYTEA`), so there is one
//! migration directory per backend, embedded with `sqlx::migrate!` and applied at open. Queries are
//! runtime queries: the `query!` macros check against a single database and do not combine with
//! `Any`. If a backend-specific statement is ever needed (`FOR UPDATE SKIP LOCKED` for campaigns),
//! branch on [`SqlStore::backend`] at that one query.
//!
//! # Polled queries
//!
//! The background workers (dispatcher, outboxes, inbound events, exports, recovery, retention)
//! run their claim queries every few seconds whether or not there is work. In those queries
//! the `LIMIT` is an integer literal written into the text, not a `$n` parameter. SQLite's
//! planner reads a bound `LIMIT`. Because of that, rebinding the parameter expires the prepared
//! statement, so each run re-parsed and re-planned the query. That cost about 200 000
//! instructions per query (callgrind: 66 of 105 `sqlite3_step`s in a 5 s window re-prepared, a
//! quarter of an idle bridge's instructions). The value is always one of our own integers,
//! never input. Queries a person triggers (API listings) keep the bound `LIMIT`.
//!
//! # The trait
//!
//! [`Store`] is the seam the rest of the bridge programs against (and can fake in its own tests).
//! Its methods are declared as `fn … -> impl Future<Output = …> + Send`, implemented with plain
//! `async fn`: native async in traits, no `async_trait` boxing per call, and the `+ Send` bound lets
//! generic callers spawn the futures on the multi-threaded runtime (axum handlers, call actors).
//! The cost is that the trait is not object-safe: hold a concrete store or a generic `S: Store`, not
//! `dyn Store`.

mod analysis;
mod call_exports;
mod campaigns;
mod coupons;
mod crm_meetings;
mod error;
mod inbound;
mod mcp_servers;
mod messaging;
mod model;
mod oauth;
mod oauth_apps;
mod outbound;
mod outbox;
mod prompts;
mod retention;
mod sql;
mod stream_claims;
mod transfer_destinations;

use std::future::Future;

pub use analysis::{
    AnalysisSettings, AnalysisStatus, CallAnalysis, ClaimedAnalysis, SettledAnalysis,
    validate_settings as validate_analysis_settings,
};
pub use call_exports::{CallExportJob, CallExportState, ExportOutcome};
pub use campaigns::{
    CallToCheck, Campaign, CampaignContact, CampaignCounts, CampaignSpec, CampaignStatus,
    ClaimCandidate, ClaimResult, ClaimedContact, ContactState, Eligibility, ExpiredDial,
    FinishedAttempt, LeasedAttempt, MAX_CAMPAIGN_CONTACTS, NewContact, RejectedRow, Settlement,
    TenantDialLimits, WindowSpec,
};
pub use crm_meetings::CrmMeetingLink;
pub use error::StoreError;
pub use inbound::{
    Enrolment, InboundAction, InboundEvent, InboundRule, InboundSource, InboundStatus,
    MAX_INBOUND_PAYLOAD, NewInboundEvent, validate_source_id,
};
pub use mcp_servers::{MAX_MCP_SERVERS, MAX_MCP_TOOLS, McpServerSpec, validate_mcp_servers};
pub use messaging::{
    DEFAULT_DEDUP_TTL_SECS, DEFAULT_PER_CALL_LIMIT, DEFAULT_PER_TENANT_DAILY_LIMIT,
    MessagingSettings, NewNotification, NotificationMessage, NotificationRule, SlotReservation,
    StaffRecipient, TemplateSetting,
};
pub use model::MachineAction;
pub use model::{
    Agent, AgentProvision, AgentSpec, ApiKey, ApiKeyCredential, Call, CallDirection, CallEnd,
    CallEvent, CallEventKind, CallStatus, ConnectorConfig, ConnectorSpec, E164, LedgerClaim,
    LedgerEntry, LedgerStatus, NewCall, NewLedgerEntry, NewSealedSecret, NewTenant, PhoneNumber,
    ResealedSecret, SealedSecret, SecretInfo, Tenant, TenantId, Voicemail,
};
pub use oauth::{
    ClaimedOAuthState, ConnectionStatus, ConnectionUpdate, NewOAuthState, OAuthConnection,
    StateRefusal,
};
pub use oauth_apps::{AppScope, StoredOAuthApp};
pub use outbound::{DoNotCallEntry, OutboundCall, is_final, status_rank};
pub use outbox::{
    NewOutboxMessage, OutboxMessage, OutboxStatus, WebhookSettings, WebhookSettingsSpec,
    enqueue_outbox,
};
pub use prompts::{MAX_PROMPT_BYTES, MAX_PROMPT_VERSIONS, PromptVersion, validate_prompt_name};
pub use retention::{ExpiredCall, MAX_RETENTION_DAYS};
pub use sql::{Backend, SqlStore, StoreOptions};
pub use stream_claims::BRIDGE_RESTART;
pub use transfer_destinations::{
    CallerIdPolicy, MAX_TRANSFER_DESTINATIONS, OpenHours, TransferDestination, day_index,
    validate_destinations,
};

/// Shorthand for the futures the trait returns.
pub type StoreResult<T> = Result<T, StoreError>;

/// Repository methods over every entity of the store. See the module docs for the design.
pub trait Store: Clone + Send + Sync + 'static {
    // --- tenants -------------------------------------------------------------------------------

    /// Creates a tenant. Duplicate id → [`StoreError::Conflict`].
    fn create_tenant(&self, tenant: &NewTenant)
    -> impl Future<Output = StoreResult<Tenant>> + Send;
    fn tenant(&self, id: &TenantId) -> impl Future<Output = StoreResult<Tenant>> + Send;
    /// All tenants, by id (operator view).
    fn list_tenants(&self) -> impl Future<Output = StoreResult<Vec<Tenant>>> + Send;
    fn update_tenant(
        &self,
        id: &TenantId,
        name: &str,
        time_zone: &str,
    ) -> impl Future<Output = StoreResult<Tenant>> + Send;
    /// Deletes the tenant and everything it owns (agents, numbers, secrets, calls, …).
    fn delete_tenant(&self, id: &TenantId) -> impl Future<Output = StoreResult<()>> + Send;
    /// Creates a tenant with its agents and their numbers in one transaction: any conflict or
    /// invalid field and nothing is written.
    fn provision_tenant(
        &self,
        tenant: &NewTenant,
        agents: &[AgentProvision],
    ) -> impl Future<Output = StoreResult<(Tenant, Vec<Agent>)>> + Send;

    // --- agents and phone numbers --------------------------------------------------------------

    /// Creates an agent and routes `numbers` to it, all in one transaction: a duplicate name or a
    /// number already taken (by any tenant) → [`StoreError::Conflict`] and nothing is written.
    fn create_agent(
        &self,
        tenant: &TenantId,
        spec: &AgentSpec,
        numbers: &[E164],
    ) -> impl Future<Output = StoreResult<Agent>> + Send;
    fn agent(
        &self,
        tenant: &TenantId,
        agent_id: &str,
    ) -> impl Future<Output = StoreResult<Agent>> + Send;
    fn list_agents(
        &self,
        tenant: &TenantId,
    ) -> impl Future<Output = StoreResult<Vec<Agent>>> + Send;
    fn update_agent(
        &self,
        tenant: &TenantId,
        agent_id: &str,
        spec: &AgentSpec,
    ) -> impl Future<Output = StoreResult<Agent>> + Send;
    /// Deletes an agent. Still routed from a phone number → [`StoreError::Conflict`].
    fn delete_agent(
        &self,
        tenant: &TenantId,
        agent_id: &str,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// Adds a number routed to one of the tenant's agents. Taken by any tenant → Conflict.
    fn add_number(
        &self,
        tenant: &TenantId,
        number: &E164,
        agent_id: &str,
    ) -> impl Future<Output = StoreResult<PhoneNumber>> + Send;
    /// Routes an existing number of the tenant to another of its agents.
    fn route_number(
        &self,
        tenant: &TenantId,
        number: &E164,
        agent_id: &str,
    ) -> impl Future<Output = StoreResult<PhoneNumber>> + Send;
    fn list_numbers(
        &self,
        tenant: &TenantId,
    ) -> impl Future<Output = StoreResult<Vec<PhoneNumber>>> + Send;
    fn remove_number(
        &self,
        tenant: &TenantId,
        number: &E164,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// The lookup on every inbound call: which tenant and agent answer `number`. Takes no tenant id
    /// because the dialled number is what identifies the tenant.
    fn number_route(
        &self,
        number: &E164,
    ) -> impl Future<Output = StoreResult<Option<(Tenant, Agent)>>> + Send;

    // --- connectors ----------------------------------------------------------------------------

    /// Creates or replaces the tenant's configuration for `spec.vendor`. A `secret_name` that is not
    /// one of this tenant's secrets → Conflict.
    fn put_connector(
        &self,
        tenant: &TenantId,
        spec: &ConnectorSpec,
    ) -> impl Future<Output = StoreResult<ConnectorConfig>> + Send;
    fn connector(
        &self,
        tenant: &TenantId,
        vendor: &str,
    ) -> impl Future<Output = StoreResult<ConnectorConfig>> + Send;
    fn list_connectors(
        &self,
        tenant: &TenantId,
    ) -> impl Future<Output = StoreResult<Vec<ConnectorConfig>>> + Send;
    fn delete_connector(
        &self,
        tenant: &TenantId,
        vendor: &str,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    // --- sealed secrets (the vault is the only intended caller) --------------------------------

    /// Creates or replaces a secret's ciphertext.
    fn put_sealed_secret(
        &self,
        tenant: &TenantId,
        secret: &NewSealedSecret,
    ) -> impl Future<Output = StoreResult<SecretInfo>> + Send;
    fn sealed_secret(
        &self,
        tenant: &TenantId,
        name: &str,
    ) -> impl Future<Output = StoreResult<SealedSecret>> + Send;
    /// Name, vendor, last4 and timestamps only.
    fn list_secrets(
        &self,
        tenant: &TenantId,
    ) -> impl Future<Output = StoreResult<Vec<SecretInfo>>> + Send;
    /// Deletes a secret. Still referenced by a connector configuration → Conflict.
    fn delete_secret(
        &self,
        tenant: &TenantId,
        name: &str,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// Up to `limit` secrets of any tenant not sealed under `key_id`: key rotation works across
    /// tenants by design, and the ciphertext it reads is useless without the master key.
    fn sealed_secrets_not_under_key(
        &self,
        key_id: &str,
        limit: u32,
    ) -> impl Future<Output = StoreResult<Vec<SealedSecret>>> + Send;
    /// Writes a batch of re-encrypted secrets in one transaction. Each row is updated only if it is
    /// still under its `old_key_id` (a concurrent `put` wins); returns how many rows were updated.
    fn reseal_secrets(
        &self,
        batch: &[ResealedSecret],
    ) -> impl Future<Output = StoreResult<u64>> + Send;

    // --- API keys (the tenant module hashes and verifies) --------------------------------------

    /// Stores a new key's lookup prefix and hash. Duplicate prefix → Conflict.
    fn create_api_key(
        &self,
        tenant: &TenantId,
        prefix: &str,
        key_hash: &[u8],
    ) -> impl Future<Output = StoreResult<ApiKey>> + Send;
    /// Authentication lookup. Takes no tenant id because the presented key is what identifies the
    /// tenant; the caller must compare the hash before trusting the row.
    fn api_key_by_prefix(
        &self,
        prefix: &str,
    ) -> impl Future<Output = StoreResult<Option<ApiKeyCredential>>> + Send;
    fn list_api_keys(
        &self,
        tenant: &TenantId,
    ) -> impl Future<Output = StoreResult<Vec<ApiKey>>> + Send;
    /// Marks the key revoked (idempotent: revoking twice keeps the first time).
    fn revoke_api_key(
        &self,
        tenant: &TenantId,
        key_id: &str,
    ) -> impl Future<Output = StoreResult<ApiKey>> + Send;

    // --- calls and their events ----------------------------------------------------------------

    /// Records a call that starts now. The agent must belong to the tenant.
    fn create_call(&self, call: &NewCall) -> impl Future<Output = StoreResult<Call>> + Send;
    fn call(
        &self,
        tenant: &TenantId,
        call_id: &str,
    ) -> impl Future<Output = StoreResult<Call>> + Send;
    fn call_by_twilio_sid(
        &self,
        tenant: &TenantId,
        call_sid: &str,
    ) -> impl Future<Output = StoreResult<Call>> + Send;
    /// The tenant's most recent calls, newest first.
    fn list_calls(
        &self,
        tenant: &TenantId,
        limit: u32,
    ) -> impl Future<Output = StoreResult<Vec<Call>>> + Send;
    fn set_call_status(
        &self,
        tenant: &TenantId,
        call_id: &str,
        status: CallStatus,
    ) -> impl Future<Output = StoreResult<Call>> + Send;
    /// Sets the end time (now), final status, reason and recording path.
    fn finish_call(
        &self,
        tenant: &TenantId,
        call_id: &str,
        end: &CallEnd,
    ) -> impl Future<Output = StoreResult<Call>> + Send;
    /// Appends an event with the next sequence number of the call.
    fn append_call_event(
        &self,
        tenant: &TenantId,
        call_id: &str,
        kind: CallEventKind,
        payload: &serde_json::Value,
    ) -> impl Future<Output = StoreResult<CallEvent>> + Send;
    /// The call's events in sequence order.
    fn call_events(
        &self,
        tenant: &TenantId,
        call_id: &str,
    ) -> impl Future<Output = StoreResult<Vec<CallEvent>>> + Send;

    // --- tool-call ledger ----------------------------------------------------------------------

    /// Insert-if-absent on (tenant, idempotency key), race-safe across tasks and nodes: exactly one
    /// concurrent caller gets [`LedgerClaim::Claimed`]. The same key with other arguments → Conflict.
    fn ledger_claim(
        &self,
        tenant: &TenantId,
        entry: &NewLedgerEntry,
    ) -> impl Future<Output = StoreResult<LedgerClaim>> + Send;
    fn ledger_entry(
        &self,
        tenant: &TenantId,
        idempotency_key: &str,
    ) -> impl Future<Output = StoreResult<LedgerEntry>> + Send;
    /// Records the outcome of a pending claim. Already completed → Conflict.
    fn ledger_complete(
        &self,
        tenant: &TenantId,
        idempotency_key: &str,
        status: LedgerStatus,
        result: Option<&serde_json::Value>,
    ) -> impl Future<Output = StoreResult<LedgerEntry>> + Send;
}

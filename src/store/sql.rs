//! [`SqlStore`]: the one [`Store`] implementation, over `sqlx::Any` with portable SQL (see the
//! module docs of [`crate::store`] for why). It owns the pool, the connection settings and the
//! embedded migrations; it must not hold plaintext secrets or make policy decisions beyond
//! validating input and enforcing tenant scoping.

use std::time::Duration;

use jiff::Timestamp;
use sqlx::AnyPool;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::Migrator;
use sqlx::{Executor, Row};

use super::error::{WriteFailure, classify};
use super::model::{
    parse_call_status, parse_direction, parse_event_kind, parse_ledger_status, validate_agent,
    validate_connector, validate_new_tenant, validate_secret_name, validate_slug, validate_text,
    validate_time_zone,
};
use super::{
    Agent, AgentProvision, AgentSpec, ApiKey, ApiKeyCredential, Call, CallEnd, CallEvent,
    CallEventKind, CallStatus, ConnectorConfig, ConnectorSpec, E164, LedgerClaim, LedgerEntry,
    LedgerStatus, NewCall, NewLedgerEntry, NewSealedSecret, NewTenant, PhoneNumber, ResealedSecret,
    SealedSecret, SecretInfo, Store, StoreError, StoreResult, Tenant, TenantId, Voicemail,
};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("src/store/migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("src/store/migrations/postgres");

/// How often an event append is retried when a concurrent writer took the same sequence number
/// (possible on PostgreSQL only; SQLite serialises writers).
const EVENT_APPEND_ATTEMPTS: usize = 5;

/// Which database a URL points at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// Picks the backend from the URL scheme (`sqlite:`, `postgres:` or `postgresql:`).
    pub fn from_url(url: &str) -> StoreResult<Self> {
        if url.starts_with("sqlite:") {
            Ok(Self::Sqlite)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Ok(Self::Postgres)
        } else {
            // The URL itself is not echoed: it may carry a password.
            Err(StoreError::invalid(
                "database URL",
                "must start with sqlite: or postgres: (e.g. sqlite://callbridge.db?mode=rwc)",
            ))
        }
    }
}

fn is_sqlite_memory(url: &str) -> bool {
    url.contains(":memory:") || url.contains("mode=memory")
}

/// An SQLite file URL without a `mode` opens read-write-create, as the default URL does: the
/// file is created on first start whichever way the operator spelled the URL. An explicit mode
/// (`ro`, `rw`, `memory`) is kept.
fn sqlite_url_with_create(url: &str) -> std::borrow::Cow<'_, str> {
    if is_sqlite_memory(url) || url.contains("mode=") {
        return std::borrow::Cow::Borrowed(url);
    }
    let separator = if url.contains('?') { '&' } else { '?' };
    std::borrow::Cow::Owned(format!("{url}{separator}mode=rwc"))
}

/// Pool settings for [`SqlStore::open_with`].
#[derive(Clone, Debug)]
pub struct StoreOptions {
    pub max_connections: u32,
    /// How long a query waits for a free connection before failing.
    pub acquire_timeout: Duration,
    /// How long SQLite waits on a locked database before returning "database is locked".
    pub sqlite_busy_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            max_connections: 10,
            acquire_timeout: Duration::from_secs(10),
            sqlite_busy_timeout: Duration::from_secs(10),
        }
    }
}

/// The store over a connection pool. Cheap to clone (the pool is shared).
#[derive(Clone, Debug)]
pub struct SqlStore {
    pool: AnyPool,
    backend: Backend,
}

impl SqlStore {
    /// Opens (creating a SQLite file when the URL says `mode=rwc`) and migrates the database.
    pub async fn open(url: &str) -> StoreResult<Self> {
        Self::open_with(url, StoreOptions::default()).await
    }

    /// [`SqlStore::open`] with explicit pool settings.
    pub async fn open_with(url: &str, options: StoreOptions) -> StoreResult<Self> {
        sqlx::any::install_default_drivers();
        let backend = Backend::from_url(url)?;
        let mut pool_options = AnyPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(options.acquire_timeout);
        if backend == Backend::Sqlite && is_sqlite_memory(url) {
            // Every connection to `:memory:` is its own empty database: keep exactly one, forever.
            pool_options = pool_options
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None);
        }
        if backend == Backend::Sqlite {
            let busy_ms =
                u64::try_from(options.sqlite_busy_timeout.as_millis()).unwrap_or(u64::MAX);
            pool_options = pool_options.after_connect(move |conn, _meta| {
                Box::pin(async move {
                    // WAL lets readers proceed while one writer commits; foreign keys are off by
                    // default in SQLite and every tenant rule here leans on them.
                    conn.execute("PRAGMA journal_mode = WAL").await?;
                    conn.execute("PRAGMA foreign_keys = ON").await?;
                    conn.execute("PRAGMA synchronous = NORMAL").await?;
                    let busy = format!("PRAGMA busy_timeout = {busy_ms}");
                    conn.execute(sqlx::AssertSqlSafe(busy)).await?;
                    Ok(())
                })
            });
        }
        let url = match backend {
            Backend::Sqlite => sqlite_url_with_create(url),
            Backend::Postgres => std::borrow::Cow::Borrowed(url),
        };
        let pool = pool_options
            .connect(&url)
            .await
            .map_err(StoreError::Database)?;
        match backend {
            Backend::Sqlite => SQLITE_MIGRATIONS.run(&pool).await?,
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&pool).await?,
        }
        Ok(Self { pool, backend })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The underlying pool, for modules with their own tables (campaigns) that must share
    /// connections and transactions with the store.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Waits for in-flight queries and closes every connection.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

// --- column lists, shared by every query that returns the row -------------------------------------

macro_rules! tenant_cols {
    ($p:literal) => {
        concat!(
            $p,
            "id, ",
            $p,
            "name, ",
            $p,
            "time_zone, ",
            $p,
            "created_at"
        )
    };
}

macro_rules! agent_cols {
    ($p:literal) => {
        concat!(
            $p,
            "id, ",
            $p,
            "tenant_id, ",
            $p,
            "name, ",
            $p,
            "provider, ",
            $p,
            "model, ",
            $p,
            "voice, ",
            $p,
            "prompt_template, ",
            $p,
            "enabled_tools, ",
            $p,
            "max_duration_s, ",
            $p,
            "silence_timeout_s, ",
            $p,
            "recording, ",
            $p,
            "voicemail_action, ",
            $p,
            "voicemail_message, ",
            $p,
            "created_at, ",
            $p,
            "updated_at"
        )
    };
}

macro_rules! number_cols {
    () => {
        "e164, tenant_id, agent_id, created_at"
    };
}

macro_rules! connector_cols {
    () => {
        "tenant_id, vendor, base_url, secret_name, updated_at"
    };
}

macro_rules! secret_info_cols {
    () => {
        "tenant_id, name, vendor, last4, created_at, updated_at"
    };
}

macro_rules! sealed_secret_cols {
    () => {
        "tenant_id, name, vendor, ciphertext, key_id, last4, created_at, updated_at"
    };
}

macro_rules! api_key_cols {
    () => {
        "id, tenant_id, prefix, created_at, revoked_at"
    };
}

macro_rules! call_cols {
    () => {
        "id, tenant_id, agent_id, direction, from_number, to_number, twilio_call_sid, started_at, \
         ended_at, status, end_reason, recording_path"
    };
}

macro_rules! ledger_cols {
    () => {
        "tenant_id, idempotency_key, tool, arguments_hash, status, result, created_at, updated_at"
    };
}

// --- row mapping ------------------------------------------------------------------------------------

pub(super) fn now_ms() -> i64 {
    Timestamp::now().as_millisecond()
}

/// The per-tenant lock rows that serialise a count-then-insert reservation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ReservationLock {
    /// `create_coupon`'s daily slots (migration 0019).
    Coupons,
    /// Message slots of `send_message` and inbound `message` rules (migration 0026).
    Messages,
}

/// Writes `tenant`'s lock row of `lock` as the first statement of a reservation's transaction.
/// The write serialises the tenant's reservations — PostgreSQL holds the row lock until the
/// transaction ends, SQLite takes its write lock at once (so a later write never has to upgrade
/// a stale read) — and the counts read after it are current when the insert follows, on any
/// number of nodes.
pub(super) async fn lock_reservations(
    conn: &mut sqlx::AnyConnection,
    lock: ReservationLock,
    tenant: &TenantId,
    now: i64,
) -> StoreResult<()> {
    let sql = match lock {
        ReservationLock::Coupons => {
            "INSERT INTO coupon_reservation_locks (tenant_id, last_reserved_at) VALUES ($1, $2) \
             ON CONFLICT (tenant_id) DO UPDATE SET last_reserved_at = excluded.last_reserved_at"
        }
        ReservationLock::Messages => {
            "INSERT INTO message_reservation_locks (tenant_id, last_reserved_at) VALUES ($1, $2) \
             ON CONFLICT (tenant_id) DO UPDATE SET last_reserved_at = excluded.last_reserved_at"
        }
    };
    sqlx::query(sql)
        .bind(tenant.as_str())
        .bind(now)
        .execute(conn)
        .await?;
    Ok(())
}

pub(super) fn timestamp(row: &AnyRow, column: &'static str) -> StoreResult<Timestamp> {
    let ms: i64 = row.try_get(column)?;
    Timestamp::from_millisecond(ms).map_err(|e| StoreError::Corrupt {
        what: column,
        reason: e.to_string(),
    })
}

pub(super) fn optional_timestamp(
    row: &AnyRow,
    column: &'static str,
) -> StoreResult<Option<Timestamp>> {
    let ms: Option<i64> = row.try_get(column)?;
    ms.map(|ms| {
        Timestamp::from_millisecond(ms).map_err(|e| StoreError::Corrupt {
            what: column,
            reason: e.to_string(),
        })
    })
    .transpose()
}

pub(super) fn tenant_id(row: &AnyRow, column: &'static str) -> StoreResult<TenantId> {
    let raw: String = row.try_get(column)?;
    TenantId::parse(&raw).map_err(|e| StoreError::Corrupt {
        what: column,
        reason: e.to_string(),
    })
}

fn tenant_from_row(row: &AnyRow) -> StoreResult<Tenant> {
    Ok(Tenant {
        id: tenant_id(row, "id")?,
        name: row.try_get("name")?,
        time_zone: row.try_get("time_zone")?,
        created_at: timestamp(row, "created_at")?,
    })
}

fn seconds(row: &AnyRow, column: &'static str) -> StoreResult<u32> {
    let raw: i64 = row.try_get(column)?;
    u32::try_from(raw).map_err(|_| StoreError::Corrupt {
        what: column,
        reason: format!("{raw} is out of range"),
    })
}

fn agent_from_row(row: &AnyRow) -> StoreResult<Agent> {
    let tools: String = row.try_get("enabled_tools")?;
    let enabled_tools: Vec<String> =
        serde_json::from_str(&tools).map_err(|e| StoreError::Corrupt {
            what: "agents.enabled_tools",
            reason: e.to_string(),
        })?;
    let recording: i64 = row.try_get("recording")?;
    let voicemail_action: Option<String> = row.try_get("voicemail_action")?;
    let voicemail = Voicemail::from_columns(
        voicemail_action.as_deref(),
        row.try_get("voicemail_message")?,
    )?;
    Ok(Agent {
        id: row.try_get("id")?,
        tenant_id: tenant_id(row, "tenant_id")?,
        spec: AgentSpec {
            name: row.try_get("name")?,
            provider: row.try_get("provider")?,
            model: row.try_get("model")?,
            voice: row.try_get("voice")?,
            prompt_template: row.try_get("prompt_template")?,
            enabled_tools,
            max_duration_s: seconds(row, "max_duration_s")?,
            silence_timeout_s: seconds(row, "silence_timeout_s")?,
            recording: recording != 0,
            voicemail,
        },
        created_at: timestamp(row, "created_at")?,
        updated_at: timestamp(row, "updated_at")?,
    })
}

fn number_from_row(row: &AnyRow) -> StoreResult<PhoneNumber> {
    let raw: String = row.try_get("e164")?;
    Ok(PhoneNumber {
        e164: E164::parse(&raw).map_err(|e| StoreError::Corrupt {
            what: "phone_numbers.e164",
            reason: e.to_string(),
        })?,
        tenant_id: tenant_id(row, "tenant_id")?,
        agent_id: row.try_get("agent_id")?,
        created_at: timestamp(row, "created_at")?,
    })
}

fn connector_from_row(row: &AnyRow) -> StoreResult<ConnectorConfig> {
    Ok(ConnectorConfig {
        tenant_id: tenant_id(row, "tenant_id")?,
        spec: ConnectorSpec {
            vendor: row.try_get("vendor")?,
            base_url: row.try_get("base_url")?,
            secret_name: row.try_get("secret_name")?,
        },
        updated_at: timestamp(row, "updated_at")?,
    })
}

fn secret_info_from_row(row: &AnyRow) -> StoreResult<SecretInfo> {
    Ok(SecretInfo {
        tenant_id: tenant_id(row, "tenant_id")?,
        name: row.try_get("name")?,
        vendor: row.try_get("vendor")?,
        last4: row.try_get("last4")?,
        created_at: timestamp(row, "created_at")?,
        updated_at: timestamp(row, "updated_at")?,
    })
}

fn sealed_secret_from_row(row: &AnyRow) -> StoreResult<SealedSecret> {
    Ok(SealedSecret {
        tenant_id: tenant_id(row, "tenant_id")?,
        name: row.try_get("name")?,
        vendor: row.try_get("vendor")?,
        ciphertext: row.try_get("ciphertext")?,
        key_id: row.try_get("key_id")?,
        last4: row.try_get("last4")?,
        created_at: timestamp(row, "created_at")?,
        updated_at: timestamp(row, "updated_at")?,
    })
}

fn api_key_from_row(row: &AnyRow) -> StoreResult<ApiKey> {
    Ok(ApiKey {
        id: row.try_get("id")?,
        tenant_id: tenant_id(row, "tenant_id")?,
        prefix: row.try_get("prefix")?,
        created_at: timestamp(row, "created_at")?,
        revoked_at: optional_timestamp(row, "revoked_at")?,
    })
}

pub(super) fn call_from_row(row: &AnyRow) -> StoreResult<Call> {
    let direction: String = row.try_get("direction")?;
    let status: String = row.try_get("status")?;
    Ok(Call {
        id: row.try_get("id")?,
        tenant_id: tenant_id(row, "tenant_id")?,
        agent_id: row.try_get("agent_id")?,
        direction: parse_direction(&direction)?,
        from: row.try_get("from_number")?,
        to: row.try_get("to_number")?,
        twilio_call_sid: row.try_get("twilio_call_sid")?,
        started_at: timestamp(row, "started_at")?,
        ended_at: optional_timestamp(row, "ended_at")?,
        status: parse_call_status(&status)?,
        end_reason: row.try_get("end_reason")?,
        recording_path: row.try_get("recording_path")?,
    })
}

fn json_column(
    row: &AnyRow,
    column: &'static str,
    what: &'static str,
) -> StoreResult<Option<serde_json::Value>> {
    let raw: Option<String> = row.try_get(column)?;
    raw.map(|text| {
        serde_json::from_str(&text).map_err(|e| StoreError::Corrupt {
            what,
            reason: e.to_string(),
        })
    })
    .transpose()
}

fn event_from_row(row: &AnyRow) -> StoreResult<CallEvent> {
    let kind: String = row.try_get("kind")?;
    Ok(CallEvent {
        call_id: row.try_get("call_id")?,
        seq: row.try_get("seq")?,
        at: timestamp(row, "at")?,
        kind: parse_event_kind(&kind)?,
        payload: json_column(row, "payload", "call_events.payload")?
            .unwrap_or(serde_json::Value::Null),
    })
}

fn ledger_from_row(row: &AnyRow) -> StoreResult<LedgerEntry> {
    let status: String = row.try_get("status")?;
    Ok(LedgerEntry {
        tenant_id: tenant_id(row, "tenant_id")?,
        idempotency_key: row.try_get("idempotency_key")?,
        tool: row.try_get("tool")?,
        arguments_hash: row.try_get("arguments_hash")?,
        status: parse_ledger_status(&status)?,
        result: json_column(row, "result", "tool_ledger.result")?,
        created_at: timestamp(row, "created_at")?,
        updated_at: timestamp(row, "updated_at")?,
    })
}

/// Writes a call record on `conn` (which may be a transaction: campaigns write it together with
/// the contact's claim). Inserts only if the agent belongs to the tenant, else NotFound.
pub(super) async fn insert_call(
    conn: &mut sqlx::AnyConnection,
    call: &NewCall,
) -> StoreResult<Call> {
    validate_id("agent id", &call.agent_id)?;
    validate_text("call from", &call.from, 256)?;
    validate_text("call to", &call.to, 256)?;
    if let Some(sid) = &call.twilio_call_sid {
        validate_text("Twilio call SID", sid, 64)?;
    }
    let id = new_id("call");
    // One statement: inserts only if the agent belongs to the tenant.
    let row = sqlx::query(concat!(
        "INSERT INTO calls (id, tenant_id, agent_id, direction, from_number, to_number, \
         twilio_call_sid, started_at, status) \
         SELECT $1, a.tenant_id, a.id, $4, $5, $6, $7, $8, $9 FROM agents a \
         WHERE a.tenant_id = $2 AND a.id = $3 \
         RETURNING ",
        call_cols!()
    ))
    .bind(&id)
    .bind(call.tenant_id.as_str())
    .bind(&call.agent_id)
    .bind(call.direction.as_str())
    .bind(&call.from)
    .bind(&call.to)
    .bind(call.twilio_call_sid.as_deref())
    .bind(now_ms())
    .bind(call.status.as_str())
    .fetch_optional(&mut *conn)
    .await
    .map_err(|e| match classify(e) {
        WriteFailure::Unique => StoreError::conflict(format!(
            "a call with Twilio SID {:?} already exists",
            call.twilio_call_sid.as_deref().unwrap_or_default()
        )),
        WriteFailure::ForeignKey => tenant_not_found(&call.tenant_id),
        WriteFailure::Other(e) => StoreError::Database(e),
    })?;
    row.map(|r| call_from_row(&r)).transpose()?.ok_or_else(|| {
        StoreError::not_found(format!(
            "agent {} of tenant {}",
            call.agent_id, call.tenant_id
        ))
    })
}

pub(super) fn collect<T>(
    rows: Vec<AnyRow>,
    map: fn(&AnyRow) -> StoreResult<T>,
) -> StoreResult<Vec<T>> {
    rows.iter().map(map).collect()
}

/// A fresh random id with a readable type prefix (`ag_3f9a…`); 128 bits, so collisions are not a
/// practical concern even across nodes.
pub(super) fn new_id(prefix: &str) -> String {
    let bytes: [u8; 16] = rand::random();
    let mut id = String::with_capacity(prefix.len() + 1 + 32);
    id.push_str(prefix);
    id.push('_');
    for b in bytes {
        id.push_str(&format!("{b:02x}"));
    }
    id
}

fn tools_json(spec: &AgentSpec) -> StoreResult<String> {
    serde_json::to_string(&spec.enabled_tools)
        .map_err(|e| StoreError::invalid("agent enabled tools", e.to_string()))
}

fn json_text(field: &'static str, value: &serde_json::Value) -> StoreResult<String> {
    serde_json::to_string(value).map_err(|e| StoreError::invalid(field, e.to_string()))
}

fn tenant_not_found(tenant: &TenantId) -> StoreError {
    StoreError::not_found(format!("tenant {tenant}"))
}

fn validate_id(field: &'static str, raw: &str) -> StoreResult<()> {
    validate_text(field, raw, 128)
}

impl Store for SqlStore {
    // --- tenants -------------------------------------------------------------------------------

    async fn create_tenant(&self, tenant: &NewTenant) -> StoreResult<Tenant> {
        validate_new_tenant(tenant)?;
        let created_at = now_ms();
        sqlx::query(
            "INSERT INTO tenants (id, name, time_zone, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(tenant.id.as_str())
        .bind(&tenant.name)
        .bind(&tenant.time_zone)
        .bind(created_at)
        .execute(&self.pool)
        .await
        .map_err(|e| match classify(e) {
            WriteFailure::Unique => {
                StoreError::conflict(format!("tenant {} already exists", tenant.id))
            }
            WriteFailure::ForeignKey => StoreError::conflict("tenant reference"),
            WriteFailure::Other(e) => StoreError::Database(e),
        })?;
        Ok(Tenant {
            id: tenant.id.clone(),
            name: tenant.name.clone(),
            time_zone: tenant.time_zone.clone(),
            created_at: Timestamp::from_millisecond(created_at)
                .unwrap_or_else(|_| Timestamp::now()),
        })
    }

    async fn tenant(&self, id: &TenantId) -> StoreResult<Tenant> {
        let row = sqlx::query(concat!(
            "SELECT ",
            tenant_cols!(""),
            " FROM tenants WHERE id = $1"
        ))
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| tenant_from_row(&r))
            .transpose()?
            .ok_or_else(|| tenant_not_found(id))
    }

    async fn list_tenants(&self) -> StoreResult<Vec<Tenant>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            tenant_cols!(""),
            " FROM tenants ORDER BY id"
        ))
        .fetch_all(&self.pool)
        .await?;
        collect(rows, tenant_from_row)
    }

    async fn update_tenant(
        &self,
        id: &TenantId,
        name: &str,
        time_zone: &str,
    ) -> StoreResult<Tenant> {
        validate_text("tenant name", name, 200)?;
        validate_time_zone(time_zone)?;
        let row = sqlx::query(concat!(
            "UPDATE tenants SET name = $2, time_zone = $3 WHERE id = $1 RETURNING ",
            tenant_cols!("")
        ))
        .bind(id.as_str())
        .bind(name)
        .bind(time_zone)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| tenant_from_row(&r))
            .transpose()?
            .ok_or_else(|| tenant_not_found(id))
    }

    async fn delete_tenant(&self, id: &TenantId) -> StoreResult<()> {
        let done = sqlx::query("DELETE FROM tenants WHERE id = $1")
            .bind(id.as_str())
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(tenant_not_found(id));
        }
        Ok(())
    }

    async fn provision_tenant(
        &self,
        tenant: &NewTenant,
        agents: &[AgentProvision],
    ) -> StoreResult<(Tenant, Vec<Agent>)> {
        validate_new_tenant(tenant)?;
        let mut prepared = Vec::with_capacity(agents.len());
        for agent in agents {
            validate_agent(&agent.spec)?;
            prepared.push((agent, new_id("ag"), tools_json(&agent.spec)?));
        }
        let now = now_ms();
        let at = Timestamp::from_millisecond(now).unwrap_or_else(|_| Timestamp::now());
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO tenants (id, name, time_zone, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(tenant.id.as_str())
        .bind(&tenant.name)
        .bind(&tenant.time_zone)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(|e| match classify(e) {
            WriteFailure::Unique => {
                StoreError::conflict(format!("tenant {} already exists", tenant.id))
            }
            WriteFailure::ForeignKey => StoreError::conflict("tenant reference"),
            WriteFailure::Other(e) => StoreError::Database(e),
        })?;
        let mut created = Vec::with_capacity(prepared.len());
        for (agent, id, tools) in prepared {
            insert_agent(&mut tx, &tenant.id, &agent.spec, &id, &tools, now).await?;
            for number in &agent.numbers {
                insert_number(&mut tx, &tenant.id, number, &id, now).await?;
            }
            created.push(Agent {
                id,
                tenant_id: tenant.id.clone(),
                spec: agent.spec.clone(),
                created_at: at,
                updated_at: at,
            });
        }
        tx.commit().await?;
        let row = Tenant {
            id: tenant.id.clone(),
            name: tenant.name.clone(),
            time_zone: tenant.time_zone.clone(),
            created_at: at,
        };
        Ok((row, created))
    }

    // --- agents and phone numbers --------------------------------------------------------------

    async fn create_agent(
        &self,
        tenant: &TenantId,
        spec: &AgentSpec,
        numbers: &[E164],
    ) -> StoreResult<Agent> {
        validate_agent(spec)?;
        let tools = tools_json(spec)?;
        let id = new_id("ag");
        let now = now_ms();
        // Writes only, agent first: on SQLite a transaction that reads before it writes can fail
        // to upgrade its lock under concurrency, and the foreign key already proves the tenant.
        let mut tx = self.pool.begin().await?;
        insert_agent(&mut tx, tenant, spec, &id, &tools, now).await?;
        for number in numbers {
            insert_number(&mut tx, tenant, number, &id, now).await?;
        }
        tx.commit().await?;
        let at = Timestamp::from_millisecond(now).unwrap_or_else(|_| Timestamp::now());
        Ok(Agent {
            id,
            tenant_id: tenant.clone(),
            spec: spec.clone(),
            created_at: at,
            updated_at: at,
        })
    }

    async fn agent(&self, tenant: &TenantId, agent_id: &str) -> StoreResult<Agent> {
        let row = sqlx::query(concat!(
            "SELECT ",
            agent_cols!(""),
            " FROM agents WHERE tenant_id = $1 AND id = $2"
        ))
        .bind(tenant.as_str())
        .bind(agent_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| agent_from_row(&r))
            .transpose()?
            .ok_or_else(|| StoreError::not_found(format!("agent {agent_id} of tenant {tenant}")))
    }

    async fn list_agents(&self, tenant: &TenantId) -> StoreResult<Vec<Agent>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            agent_cols!(""),
            " FROM agents WHERE tenant_id = $1 ORDER BY name"
        ))
        .bind(tenant.as_str())
        .fetch_all(&self.pool)
        .await?;
        collect(rows, agent_from_row)
    }

    async fn update_agent(
        &self,
        tenant: &TenantId,
        agent_id: &str,
        spec: &AgentSpec,
    ) -> StoreResult<Agent> {
        validate_agent(spec)?;
        let tools = tools_json(spec)?;
        let row = sqlx::query(concat!(
            "UPDATE agents SET name = $3, provider = $4, model = $5, voice = $6, \
             prompt_template = $7, enabled_tools = $8, max_duration_s = $9, \
             silence_timeout_s = $10, recording = $11, updated_at = $12, \
             voicemail_action = $13, voicemail_message = $14 \
             WHERE tenant_id = $1 AND id = $2 RETURNING ",
            agent_cols!("")
        ))
        .bind(tenant.as_str())
        .bind(agent_id)
        .bind(&spec.name)
        .bind(&spec.provider)
        .bind(&spec.model)
        .bind(&spec.voice)
        .bind(&spec.prompt_template)
        .bind(&tools)
        .bind(i64::from(spec.max_duration_s))
        .bind(i64::from(spec.silence_timeout_s))
        .bind(i64::from(spec.recording))
        .bind(now_ms())
        .bind(spec.voicemail.as_ref().map(|v| v.action().as_str()))
        .bind(spec.voicemail.as_ref().and_then(Voicemail::message))
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| match classify(e) {
            WriteFailure::Unique => StoreError::conflict(format!(
                "agent named {:?} already exists in tenant {tenant}",
                spec.name
            )),
            WriteFailure::ForeignKey => StoreError::conflict("agent reference"),
            WriteFailure::Other(e) => StoreError::Database(e),
        })?;
        row.map(|r| agent_from_row(&r))
            .transpose()?
            .ok_or_else(|| StoreError::not_found(format!("agent {agent_id} of tenant {tenant}")))
    }

    async fn delete_agent(&self, tenant: &TenantId, agent_id: &str) -> StoreResult<()> {
        let done = sqlx::query("DELETE FROM agents WHERE tenant_id = $1 AND id = $2")
            .bind(tenant.as_str())
            .bind(agent_id)
            .execute(&self.pool)
            .await
            .map_err(|e| match classify(e) {
                WriteFailure::ForeignKey => StoreError::conflict(format!(
                    "agent {agent_id} is still routed from phone numbers; route or remove them first"
                )),
                WriteFailure::Unique => StoreError::conflict("agent"),
                WriteFailure::Other(e) => StoreError::Database(e),
            })?;
        if done.rows_affected() == 0 {
            return Err(StoreError::not_found(format!(
                "agent {agent_id} of tenant {tenant}"
            )));
        }
        Ok(())
    }

    async fn add_number(
        &self,
        tenant: &TenantId,
        number: &E164,
        agent_id: &str,
    ) -> StoreResult<PhoneNumber> {
        validate_id("agent id", agent_id)?;
        let now = now_ms();
        let mut conn = self.pool.acquire().await?;
        insert_number(&mut conn, tenant, number, agent_id, now).await?;
        Ok(PhoneNumber {
            e164: number.clone(),
            tenant_id: tenant.clone(),
            agent_id: agent_id.to_owned(),
            created_at: Timestamp::from_millisecond(now).unwrap_or_else(|_| Timestamp::now()),
        })
    }

    async fn route_number(
        &self,
        tenant: &TenantId,
        number: &E164,
        agent_id: &str,
    ) -> StoreResult<PhoneNumber> {
        validate_id("agent id", agent_id)?;
        let row = sqlx::query(concat!(
            "UPDATE phone_numbers SET agent_id = $3 WHERE tenant_id = $1 AND e164 = $2 RETURNING ",
            number_cols!()
        ))
        .bind(tenant.as_str())
        .bind(number.as_str())
        .bind(agent_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| match classify(e) {
            WriteFailure::ForeignKey => {
                StoreError::not_found(format!("agent {agent_id} of tenant {tenant}"))
            }
            WriteFailure::Unique => {
                StoreError::conflict(format!("phone number {number} is not available"))
            }
            WriteFailure::Other(e) => StoreError::Database(e),
        })?;
        row.map(|r| number_from_row(&r))
            .transpose()?
            .ok_or_else(|| {
                StoreError::not_found(format!("phone number {number} of tenant {tenant}"))
            })
    }

    async fn list_numbers(&self, tenant: &TenantId) -> StoreResult<Vec<PhoneNumber>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            number_cols!(),
            " FROM phone_numbers WHERE tenant_id = $1 ORDER BY e164"
        ))
        .bind(tenant.as_str())
        .fetch_all(&self.pool)
        .await?;
        collect(rows, number_from_row)
    }

    async fn remove_number(&self, tenant: &TenantId, number: &E164) -> StoreResult<()> {
        let done = sqlx::query("DELETE FROM phone_numbers WHERE tenant_id = $1 AND e164 = $2")
            .bind(tenant.as_str())
            .bind(number.as_str())
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::not_found(format!(
                "phone number {number} of tenant {tenant}"
            )));
        }
        Ok(())
    }

    async fn number_route(&self, number: &E164) -> StoreResult<Option<(Tenant, Agent)>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            agent_cols!("a."),
            ", t.name AS tenant_name, t.time_zone AS tenant_time_zone, \
             t.created_at AS tenant_created_at \
             FROM phone_numbers p \
             JOIN agents a ON a.tenant_id = p.tenant_id AND a.id = p.agent_id \
             JOIN tenants t ON t.id = p.tenant_id \
             WHERE p.e164 = $1"
        ))
        .bind(number.as_str())
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let agent = agent_from_row(&row)?;
        let tenant = Tenant {
            id: agent.tenant_id.clone(),
            name: row.try_get("tenant_name")?,
            time_zone: row.try_get("tenant_time_zone")?,
            created_at: timestamp(&row, "tenant_created_at")?,
        };
        Ok(Some((tenant, agent)))
    }

    // --- connectors ----------------------------------------------------------------------------

    async fn put_connector(
        &self,
        tenant: &TenantId,
        spec: &ConnectorSpec,
    ) -> StoreResult<ConnectorConfig> {
        validate_connector(spec)?;
        let row = sqlx::query(concat!(
            "INSERT INTO connector_configs (tenant_id, vendor, base_url, secret_name, updated_at) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (tenant_id, vendor) DO UPDATE SET base_url = excluded.base_url, \
             secret_name = excluded.secret_name, updated_at = excluded.updated_at \
             RETURNING ",
            connector_cols!()
        ))
        .bind(tenant.as_str())
        .bind(&spec.vendor)
        .bind(spec.base_url.as_deref())
        .bind(spec.secret_name.as_deref())
        .bind(now_ms())
        .fetch_one(&self.pool)
        .await
        .map_err(|e| match classify(e) {
            WriteFailure::ForeignKey => match &spec.secret_name {
                Some(secret) => StoreError::conflict(format!(
                    "connector {}: tenant {tenant} has no secret named {secret:?}",
                    spec.vendor
                )),
                None => tenant_not_found(tenant),
            },
            WriteFailure::Unique => StoreError::conflict(format!("connector {}", spec.vendor)),
            WriteFailure::Other(e) => StoreError::Database(e),
        })?;
        connector_from_row(&row)
    }

    async fn connector(&self, tenant: &TenantId, vendor: &str) -> StoreResult<ConnectorConfig> {
        let row = sqlx::query(concat!(
            "SELECT ",
            connector_cols!(),
            " FROM connector_configs WHERE tenant_id = $1 AND vendor = $2"
        ))
        .bind(tenant.as_str())
        .bind(vendor)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| connector_from_row(&r))
            .transpose()?
            .ok_or_else(|| StoreError::not_found(format!("connector {vendor} of tenant {tenant}")))
    }

    async fn list_connectors(&self, tenant: &TenantId) -> StoreResult<Vec<ConnectorConfig>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            connector_cols!(),
            " FROM connector_configs WHERE tenant_id = $1 ORDER BY vendor"
        ))
        .bind(tenant.as_str())
        .fetch_all(&self.pool)
        .await?;
        collect(rows, connector_from_row)
    }

    async fn delete_connector(&self, tenant: &TenantId, vendor: &str) -> StoreResult<()> {
        let done =
            sqlx::query("DELETE FROM connector_configs WHERE tenant_id = $1 AND vendor = $2")
                .bind(tenant.as_str())
                .bind(vendor)
                .execute(&self.pool)
                .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::not_found(format!(
                "connector {vendor} of tenant {tenant}"
            )));
        }
        Ok(())
    }

    // --- sealed secrets ------------------------------------------------------------------------

    async fn put_sealed_secret(
        &self,
        tenant: &TenantId,
        secret: &NewSealedSecret,
    ) -> StoreResult<SecretInfo> {
        validate_secret_name(&secret.name)?;
        validate_slug("secret vendor", &secret.vendor, 64)?;
        validate_text("secret key id", &secret.key_id, 64)?;
        if secret.last4.chars().count() > 4 {
            return Err(StoreError::invalid("secret last4", "at most 4 characters"));
        }
        let row = sqlx::query(concat!(
            "INSERT INTO secrets (tenant_id, name, vendor, ciphertext, key_id, last4, created_at, \
             updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7) \
             ON CONFLICT (tenant_id, name) DO UPDATE SET vendor = excluded.vendor, \
             ciphertext = excluded.ciphertext, key_id = excluded.key_id, last4 = excluded.last4, \
             updated_at = excluded.updated_at \
             RETURNING ",
            secret_info_cols!()
        ))
        .bind(tenant.as_str())
        .bind(&secret.name)
        .bind(&secret.vendor)
        .bind(secret.ciphertext.as_slice())
        .bind(&secret.key_id)
        .bind(&secret.last4)
        .bind(now_ms())
        .fetch_one(&self.pool)
        .await
        .map_err(|e| match classify(e) {
            WriteFailure::ForeignKey => tenant_not_found(tenant),
            WriteFailure::Unique => StoreError::conflict(format!("secret {:?}", secret.name)),
            WriteFailure::Other(e) => StoreError::Database(e),
        })?;
        secret_info_from_row(&row)
    }

    async fn sealed_secret(&self, tenant: &TenantId, name: &str) -> StoreResult<SealedSecret> {
        let row = sqlx::query(concat!(
            "SELECT ",
            sealed_secret_cols!(),
            " FROM secrets WHERE tenant_id = $1 AND name = $2"
        ))
        .bind(tenant.as_str())
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| sealed_secret_from_row(&r))
            .transpose()?
            .ok_or_else(|| StoreError::not_found(format!("secret {name:?} of tenant {tenant}")))
    }

    async fn list_secrets(&self, tenant: &TenantId) -> StoreResult<Vec<SecretInfo>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            secret_info_cols!(),
            " FROM secrets WHERE tenant_id = $1 ORDER BY name"
        ))
        .bind(tenant.as_str())
        .fetch_all(&self.pool)
        .await?;
        collect(rows, secret_info_from_row)
    }

    async fn delete_secret(&self, tenant: &TenantId, name: &str) -> StoreResult<()> {
        let done = sqlx::query("DELETE FROM secrets WHERE tenant_id = $1 AND name = $2")
            .bind(tenant.as_str())
            .bind(name)
            .execute(&self.pool)
            .await
            .map_err(|e| match classify(e) {
                WriteFailure::ForeignKey => StoreError::conflict(format!(
                    "secret {name:?} is still used by a connector configuration or the webhook \
                     settings"
                )),
                WriteFailure::Unique => StoreError::conflict(format!("secret {name:?}")),
                WriteFailure::Other(e) => StoreError::Database(e),
            })?;
        if done.rows_affected() == 0 {
            return Err(StoreError::not_found(format!(
                "secret {name:?} of tenant {tenant}"
            )));
        }
        Ok(())
    }

    async fn sealed_secrets_not_under_key(
        &self,
        key_id: &str,
        limit: u32,
    ) -> StoreResult<Vec<SealedSecret>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            sealed_secret_cols!(),
            " FROM secrets WHERE key_id <> $1 ORDER BY tenant_id, name LIMIT $2"
        ))
        .bind(key_id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        collect(rows, sealed_secret_from_row)
    }

    async fn reseal_secrets(&self, batch: &[ResealedSecret]) -> StoreResult<u64> {
        let mut tx = self.pool.begin().await?;
        let mut updated = 0;
        for secret in batch {
            // `updated_at` is left alone: the secret's value did not change.
            let done = sqlx::query(
                "UPDATE secrets SET ciphertext = $1, key_id = $2 \
                 WHERE tenant_id = $3 AND name = $4 AND key_id = $5",
            )
            .bind(secret.ciphertext.as_slice())
            .bind(&secret.key_id)
            .bind(secret.tenant_id.as_str())
            .bind(&secret.name)
            .bind(&secret.old_key_id)
            .execute(&mut *tx)
            .await?;
            updated += done.rows_affected();
        }
        tx.commit().await?;
        Ok(updated)
    }

    // --- API keys ------------------------------------------------------------------------------

    async fn create_api_key(
        &self,
        tenant: &TenantId,
        prefix: &str,
        key_hash: &[u8],
    ) -> StoreResult<ApiKey> {
        validate_text("API key prefix", prefix, 64)?;
        if key_hash.is_empty() {
            return Err(StoreError::invalid("API key hash", "must not be empty"));
        }
        let id = new_id("key");
        let now = now_ms();
        sqlx::query(
            "INSERT INTO api_keys (id, tenant_id, prefix, key_hash, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&id)
        .bind(tenant.as_str())
        .bind(prefix)
        .bind(key_hash)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(|e| match classify(e) {
            WriteFailure::Unique => {
                StoreError::conflict(format!("API key prefix {prefix:?} already exists"))
            }
            WriteFailure::ForeignKey => tenant_not_found(tenant),
            WriteFailure::Other(e) => StoreError::Database(e),
        })?;
        Ok(ApiKey {
            id,
            tenant_id: tenant.clone(),
            prefix: prefix.to_owned(),
            created_at: Timestamp::from_millisecond(now).unwrap_or_else(|_| Timestamp::now()),
            revoked_at: None,
        })
    }

    async fn api_key_by_prefix(&self, prefix: &str) -> StoreResult<Option<ApiKeyCredential>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            api_key_cols!(),
            ", key_hash FROM api_keys WHERE prefix = $1"
        ))
        .bind(prefix)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(ApiKeyCredential {
                key: api_key_from_row(&r)?,
                key_hash: r.try_get("key_hash")?,
            })
        })
        .transpose()
    }

    async fn list_api_keys(&self, tenant: &TenantId) -> StoreResult<Vec<ApiKey>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            api_key_cols!(),
            " FROM api_keys WHERE tenant_id = $1 ORDER BY created_at, id"
        ))
        .bind(tenant.as_str())
        .fetch_all(&self.pool)
        .await?;
        collect(rows, api_key_from_row)
    }

    async fn revoke_api_key(&self, tenant: &TenantId, key_id: &str) -> StoreResult<ApiKey> {
        let row = sqlx::query(concat!(
            "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $3) \
             WHERE tenant_id = $1 AND id = $2 RETURNING ",
            api_key_cols!()
        ))
        .bind(tenant.as_str())
        .bind(key_id)
        .bind(now_ms())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| api_key_from_row(&r))
            .transpose()?
            .ok_or_else(|| StoreError::not_found(format!("API key {key_id} of tenant {tenant}")))
    }

    // --- calls and their events ----------------------------------------------------------------

    async fn create_call(&self, call: &NewCall) -> StoreResult<Call> {
        let mut conn = self.pool.acquire().await?;
        insert_call(&mut conn, call).await
    }

    async fn call(&self, tenant: &TenantId, call_id: &str) -> StoreResult<Call> {
        let row = sqlx::query(concat!(
            "SELECT ",
            call_cols!(),
            " FROM calls WHERE tenant_id = $1 AND id = $2"
        ))
        .bind(tenant.as_str())
        .bind(call_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| call_from_row(&r))
            .transpose()?
            .ok_or_else(|| StoreError::not_found(format!("call {call_id} of tenant {tenant}")))
    }

    async fn call_by_twilio_sid(&self, tenant: &TenantId, call_sid: &str) -> StoreResult<Call> {
        let row = sqlx::query(concat!(
            "SELECT ",
            call_cols!(),
            " FROM calls WHERE tenant_id = $1 AND twilio_call_sid = $2"
        ))
        .bind(tenant.as_str())
        .bind(call_sid)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| call_from_row(&r)).transpose()?.ok_or_else(|| {
            StoreError::not_found(format!("call with SID {call_sid:?} of tenant {tenant}"))
        })
    }

    async fn list_calls(&self, tenant: &TenantId, limit: u32) -> StoreResult<Vec<Call>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            call_cols!(),
            " FROM calls WHERE tenant_id = $1 ORDER BY started_at DESC, id DESC LIMIT $2"
        ))
        .bind(tenant.as_str())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        collect(rows, call_from_row)
    }

    async fn set_call_status(
        &self,
        tenant: &TenantId,
        call_id: &str,
        status: CallStatus,
    ) -> StoreResult<Call> {
        let row = sqlx::query(concat!(
            "UPDATE calls SET status = $3 WHERE tenant_id = $1 AND id = $2 RETURNING ",
            call_cols!()
        ))
        .bind(tenant.as_str())
        .bind(call_id)
        .bind(status.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| call_from_row(&r))
            .transpose()?
            .ok_or_else(|| StoreError::not_found(format!("call {call_id} of tenant {tenant}")))
    }

    async fn finish_call(
        &self,
        tenant: &TenantId,
        call_id: &str,
        end: &CallEnd,
    ) -> StoreResult<Call> {
        validate_slug("call end reason", &end.end_reason, 64)?;
        if let Some(path) = &end.recording_path {
            validate_text("recording path", path, 1024)?;
        }
        let row = sqlx::query(concat!(
            "UPDATE calls SET ended_at = $3, status = $4, end_reason = $5, recording_path = $6 \
             WHERE tenant_id = $1 AND id = $2 RETURNING ",
            call_cols!()
        ))
        .bind(tenant.as_str())
        .bind(call_id)
        .bind(now_ms())
        .bind(end.status.as_str())
        .bind(&end.end_reason)
        .bind(end.recording_path.as_deref())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| call_from_row(&r))
            .transpose()?
            .ok_or_else(|| StoreError::not_found(format!("call {call_id} of tenant {tenant}")))
    }

    async fn append_call_event(
        &self,
        tenant: &TenantId,
        call_id: &str,
        kind: CallEventKind,
        payload: &serde_json::Value,
    ) -> StoreResult<CallEvent> {
        let text = json_text("call event payload", payload)?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let at = now_ms();
            // One statement: the tenant check and the next sequence number come from the same
            // snapshot as the insert; a concurrent writer that took the number fails on the
            // primary key and is retried.
            let result = sqlx::query(
                "INSERT INTO call_events (call_id, seq, at, kind, payload) \
                 SELECT c.id, COALESCE((SELECT MAX(e.seq) FROM call_events e \
                 WHERE e.call_id = c.id), 0) + 1, $3, $4, $5 \
                 FROM calls c WHERE c.tenant_id = $1 AND c.id = $2 \
                 RETURNING call_id, seq, at, kind, payload",
            )
            .bind(tenant.as_str())
            .bind(call_id)
            .bind(at)
            .bind(kind.as_str())
            .bind(&text)
            .fetch_optional(&self.pool)
            .await;
            match result {
                Ok(Some(row)) => return event_from_row(&row),
                Ok(None) => {
                    return Err(StoreError::not_found(format!(
                        "call {call_id} of tenant {tenant}"
                    )));
                }
                Err(e) => match classify(e) {
                    WriteFailure::Unique if attempt < EVENT_APPEND_ATTEMPTS => continue,
                    WriteFailure::Unique => {
                        return Err(StoreError::conflict(format!(
                            "call {call_id}: event sequence contended {attempt} times"
                        )));
                    }
                    WriteFailure::ForeignKey => {
                        return Err(StoreError::not_found(format!("call {call_id}")));
                    }
                    WriteFailure::Other(e) => return Err(StoreError::Database(e)),
                },
            }
        }
    }

    async fn call_events(&self, tenant: &TenantId, call_id: &str) -> StoreResult<Vec<CallEvent>> {
        // Distinguish "no such call for this tenant" from "no events yet".
        self.call(tenant, call_id).await?;
        let rows = sqlx::query(
            "SELECT e.call_id, e.seq, e.at, e.kind, e.payload FROM call_events e \
             JOIN calls c ON c.id = e.call_id \
             WHERE c.tenant_id = $1 AND e.call_id = $2 ORDER BY e.seq",
        )
        .bind(tenant.as_str())
        .bind(call_id)
        .fetch_all(&self.pool)
        .await?;
        collect(rows, event_from_row)
    }

    // --- tool-call ledger ----------------------------------------------------------------------

    async fn ledger_claim(
        &self,
        tenant: &TenantId,
        entry: &NewLedgerEntry,
    ) -> StoreResult<LedgerClaim> {
        validate_text("idempotency key", &entry.idempotency_key, 256)?;
        validate_slug("tool", &entry.tool, 64)?;
        validate_text("arguments hash", &entry.arguments_hash, 128)?;
        let now = now_ms();
        // Insert first and let the primary key arbitrate: check-then-insert would race between
        // nodes, and `ON CONFLICT DO NOTHING` would hide which caller won.
        let inserted = sqlx::query(
            "INSERT INTO tool_ledger (tenant_id, idempotency_key, tool, arguments_hash, status, \
             created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $6)",
        )
        .bind(tenant.as_str())
        .bind(&entry.idempotency_key)
        .bind(&entry.tool)
        .bind(&entry.arguments_hash)
        .bind(LedgerStatus::Pending.as_str())
        .bind(now)
        .execute(&self.pool)
        .await;
        match inserted {
            Ok(_) => {
                let at = Timestamp::from_millisecond(now).unwrap_or_else(|_| Timestamp::now());
                Ok(LedgerClaim::Claimed(LedgerEntry {
                    tenant_id: tenant.clone(),
                    idempotency_key: entry.idempotency_key.clone(),
                    tool: entry.tool.clone(),
                    arguments_hash: entry.arguments_hash.clone(),
                    status: LedgerStatus::Pending,
                    result: None,
                    created_at: at,
                    updated_at: at,
                }))
            }
            Err(e) => match classify(e) {
                WriteFailure::Unique => {
                    let existing = self.ledger_entry(tenant, &entry.idempotency_key).await?;
                    if existing.tool != entry.tool
                        || existing.arguments_hash != entry.arguments_hash
                    {
                        return Err(StoreError::conflict(format!(
                            "idempotency key {:?} was already used for another tool call",
                            entry.idempotency_key
                        )));
                    }
                    Ok(LedgerClaim::Existing(existing))
                }
                WriteFailure::ForeignKey => Err(tenant_not_found(tenant)),
                WriteFailure::Other(e) => Err(StoreError::Database(e)),
            },
        }
    }

    async fn ledger_entry(
        &self,
        tenant: &TenantId,
        idempotency_key: &str,
    ) -> StoreResult<LedgerEntry> {
        let row = sqlx::query(concat!(
            "SELECT ",
            ledger_cols!(),
            " FROM tool_ledger WHERE tenant_id = $1 AND idempotency_key = $2"
        ))
        .bind(tenant.as_str())
        .bind(idempotency_key)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| ledger_from_row(&r))
            .transpose()?
            .ok_or_else(|| {
                StoreError::not_found(format!(
                    "ledger entry {idempotency_key:?} of tenant {tenant}"
                ))
            })
    }

    async fn ledger_complete(
        &self,
        tenant: &TenantId,
        idempotency_key: &str,
        status: LedgerStatus,
        result: Option<&serde_json::Value>,
    ) -> StoreResult<LedgerEntry> {
        if status == LedgerStatus::Pending {
            return Err(StoreError::invalid(
                "ledger status",
                "completion must be succeeded or failed",
            ));
        }
        let result = result
            .map(|value| json_text("ledger result", value))
            .transpose()?;
        let row = sqlx::query(concat!(
            "UPDATE tool_ledger SET status = $3, result = $4, updated_at = $5 \
             WHERE tenant_id = $1 AND idempotency_key = $2 AND status = 'pending' RETURNING ",
            ledger_cols!()
        ))
        .bind(tenant.as_str())
        .bind(idempotency_key)
        .bind(status.as_str())
        .bind(result)
        .bind(now_ms())
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(row) => ledger_from_row(&row),
            None => {
                // Either absent (NotFound from here) or no longer pending.
                let existing = self.ledger_entry(tenant, idempotency_key).await?;
                Err(StoreError::conflict(format!(
                    "ledger entry {idempotency_key:?} is already {}",
                    existing.status.as_str()
                )))
            }
        }
    }
}

/// Inserts one agent row on `conn`.
async fn insert_agent(
    conn: &mut sqlx::AnyConnection,
    tenant: &TenantId,
    spec: &AgentSpec,
    id: &str,
    tools: &str,
    now: i64,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO agents (id, tenant_id, name, provider, model, voice, prompt_template, \
         enabled_tools, max_duration_s, silence_timeout_s, recording, created_at, updated_at, \
         voicemail_action, voicemail_message) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12, $13, $14)",
    )
    .bind(id)
    .bind(tenant.as_str())
    .bind(&spec.name)
    .bind(&spec.provider)
    .bind(&spec.model)
    .bind(&spec.voice)
    .bind(&spec.prompt_template)
    .bind(tools)
    .bind(i64::from(spec.max_duration_s))
    .bind(i64::from(spec.silence_timeout_s))
    .bind(i64::from(spec.recording))
    .bind(now)
    .bind(spec.voicemail.as_ref().map(|v| v.action().as_str()))
    .bind(spec.voicemail.as_ref().and_then(Voicemail::message))
    .execute(conn)
    .await
    .map_err(|e| match classify(e) {
        WriteFailure::Unique => StoreError::conflict(format!(
            "agent named {:?} already exists in tenant {tenant}",
            spec.name
        )),
        WriteFailure::ForeignKey => tenant_not_found(tenant),
        WriteFailure::Other(e) => StoreError::Database(e),
    })?;
    Ok(())
}

/// Inserts one phone number on `conn` (a transaction or a pooled connection).
async fn insert_number(
    conn: &mut sqlx::AnyConnection,
    tenant: &TenantId,
    number: &E164,
    agent_id: &str,
    now: i64,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO phone_numbers (e164, tenant_id, agent_id, created_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(number.as_str())
    .bind(tenant.as_str())
    .bind(agent_id)
    .bind(now)
    .execute(conn)
    .await
    .map_err(|e| match classify(e) {
        // Neutral on purpose: the same words whether this tenant or another holds it, so a
        // tenant cannot learn that a number is another tenant's.
        WriteFailure::Unique => {
            StoreError::conflict(format!("phone number {number} is not available"))
        }
        WriteFailure::ForeignKey => {
            StoreError::not_found(format!("agent {agent_id} of tenant {tenant}"))
        }
        WriteFailure::Other(e) => StoreError::Database(e),
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_is_chosen_by_scheme_and_url_is_not_echoed() {
        assert_eq!(
            Backend::from_url("sqlite://x.db?mode=rwc").ok(),
            Some(Backend::Sqlite)
        );
        assert_eq!(
            Backend::from_url("postgres://u:p@h/db").ok(),
            Some(Backend::Postgres)
        );
        assert_eq!(
            Backend::from_url("postgresql://h/db").ok(),
            Some(Backend::Postgres)
        );
        let err = Backend::from_url("mysql://user:hunter2@h/db").map(|_| ());
        let text = format!("{err:?}");
        assert!(err.is_err());
        assert!(!text.contains("hunter2"), "{text}");
    }

    #[tokio::test]
    async fn a_sqlite_file_url_without_mode_creates_the_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("fresh.db");
        let url = format!("sqlite://{}", path.display());
        let store = SqlStore::open(&url).await.expect("opens and creates");
        drop(store);
        assert!(path.exists());
        assert_eq!(
            sqlite_url_with_create("sqlite://a.db?mode=ro"),
            "sqlite://a.db?mode=ro"
        );
        assert_eq!(
            sqlite_url_with_create("sqlite://a.db?cache=shared"),
            "sqlite://a.db?cache=shared&mode=rwc"
        );
        assert_eq!(sqlite_url_with_create("sqlite::memory:"), "sqlite::memory:");
    }

    #[test]
    fn ids_are_prefixed_and_unique() {
        let a = new_id("ag");
        let b = new_id("ag");
        assert!(a.starts_with("ag_"));
        assert_eq!(a.len(), 3 + 32);
        assert_ne!(a, b);
    }
}

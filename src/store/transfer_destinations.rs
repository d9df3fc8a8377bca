//! Per-agent transfer destinations, and the node running each live call: the people `transfer_call` may hand a caller to (name, E.164
//! number or SIP URI, a description the model sees, caller-ID policy, opening hours).
//!
//! It validates and stores rows; it must not decide whether a destination is open now or build
//! TwiML (that is `call/transfer.rs`). Methods are inherent on [`SqlStore`] like the other
//! feature tables, and every one takes the [`TenantId`] and filters by it.

use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::error::{WriteFailure, classify};
use super::model::{validate_slug, validate_text};
use super::{E164, SqlStore, StoreError, StoreResult, TenantId};

/// Most destinations one agent may have (the model reads all of them).
pub const MAX_TRANSFER_DESTINATIONS: usize = 20;
const MAX_DESCRIPTION_CHARS: usize = 300;
const MAX_SIP_URI_CHARS: usize = 255;
const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// Whose number the person being transferred to sees.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallerIdPolicy {
    /// The number the caller dialled (the business's own number; always allowed by Twilio).
    #[default]
    Agent,
    /// The caller's own number (Twilio allows it for forwarded calls).
    Caller,
}

impl CallerIdPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Agent => "agent",
            Self::Caller => "caller",
        }
    }
}

/// One opening window: on `days`, from `open` to `close` (`HH:MM`, 24 h, local time).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenHours {
    pub days: Vec<String>,
    pub open: String,
    pub close: String,
}

impl OpenHours {
    /// `open` and `close` as minutes since midnight.
    pub fn minutes(&self) -> Option<(u32, u32)> {
        Some((hhmm(&self.open)?, hhmm(&self.close)?))
    }
}

fn hhmm(raw: &str) -> Option<u32> {
    let (h, m) = raw.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60)
        .then_some(h * 60 + m)
        .or((h == 24 && m == 0).then_some(24 * 60))
}

/// Day index (0 = Monday) of a day name as stored.
pub fn day_index(day: &str) -> Option<usize> {
    DAYS.iter().position(|d| *d == day)
}

/// Where an agent may transfer a caller.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransferDestination {
    /// What the model passes to `transfer_call` (`sales`, `billing`).
    pub name: String,
    /// An E.164 number or a `sip:`/`sips:` URI.
    pub target: String,
    /// Told to the model: who is there and when to transfer to them.
    pub description: String,
    #[serde(default)]
    pub caller_id: CallerIdPolicy,
    /// Opening hours in the tenant's time zone; empty means always open.
    #[serde(default)]
    pub hours: Vec<OpenHours>,
}

impl TransferDestination {
    /// True when the target is a SIP URI rather than a phone number.
    pub fn is_sip(&self) -> bool {
        self.target.starts_with("sip:") || self.target.starts_with("sips:")
    }

    /// Checks every field, with an error naming the field.
    pub fn validate(&self) -> StoreResult<()> {
        validate_slug("transfer destination name", &self.name, 64)?;
        validate_text(
            "transfer destination description",
            &self.description,
            MAX_DESCRIPTION_CHARS,
        )?;
        if self.is_sip() {
            let rest = self.target.split_once(':').map_or("", |(_, r)| r);
            let ok = self.target.len() <= MAX_SIP_URI_CHARS
                && rest.contains('@')
                && !rest.starts_with('@')
                && !rest.ends_with('@')
                && rest
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && !matches!(b, b'<' | b'>' | b'"' | b'&'));
            if !ok {
                return Err(StoreError::invalid(
                    "transfer destination target",
                    format!(
                        "{:?} is not a SIP URI like sip:desk@example.com",
                        self.target
                    ),
                ));
            }
        } else {
            E164::parse(&self.target).map_err(|_| {
                StoreError::invalid(
                    "transfer destination target",
                    format!(
                        "{:?} must be an E.164 number (+15551234567) or a sip:/sips: URI",
                        self.target
                    ),
                )
            })?;
        }
        for window in &self.hours {
            if window.days.is_empty() {
                return Err(StoreError::invalid(
                    "transfer destination hours",
                    "each window needs at least one day",
                ));
            }
            if let Some(day) = window.days.iter().find(|d| day_index(d).is_none()) {
                return Err(StoreError::invalid(
                    "transfer destination hours",
                    format!("{day:?} is not a day (use mon, tue, wed, thu, fri, sat, sun)"),
                ));
            }
            match window.minutes() {
                Some((open, close)) if open < close => {}
                Some(_) => {
                    return Err(StoreError::invalid(
                        "transfer destination hours",
                        format!("{} must be before {}", window.open, window.close),
                    ));
                }
                None => {
                    return Err(StoreError::invalid(
                        "transfer destination hours",
                        format!(
                            "{:?}/{:?} must be HH:MM (24 h, 00:00 to 24:00)",
                            window.open, window.close
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Checks a whole list: each destination, unique names, the size cap.
pub fn validate_destinations(list: &[TransferDestination]) -> StoreResult<()> {
    if list.len() > MAX_TRANSFER_DESTINATIONS {
        return Err(StoreError::invalid(
            "transfer destinations",
            format!("at most {MAX_TRANSFER_DESTINATIONS} per agent"),
        ));
    }
    for (i, destination) in list.iter().enumerate() {
        destination.validate()?;
        if list[..i].iter().any(|d| d.name == destination.name) {
            return Err(StoreError::invalid(
                "transfer destination name",
                format!("{:?} appears twice", destination.name),
            ));
        }
    }
    Ok(())
}

fn from_row(row: &AnyRow) -> StoreResult<TransferDestination> {
    let caller_id: String = row.try_get("caller_id")?;
    let hours: String = row.try_get("hours")?;
    Ok(TransferDestination {
        name: row.try_get("name")?,
        target: row.try_get("target")?,
        description: row.try_get("description")?,
        caller_id: match caller_id.as_str() {
            "caller" => CallerIdPolicy::Caller,
            "agent" => CallerIdPolicy::Agent,
            other => {
                return Err(StoreError::Corrupt {
                    what: "transfer_destinations.caller_id",
                    reason: format!("unknown policy {other:?}"),
                });
            }
        },
        hours: serde_json::from_str(&hours).map_err(|e| StoreError::Corrupt {
            what: "transfer_destinations.hours",
            reason: e.to_string(),
        })?,
    })
}

impl SqlStore {
    /// The agent's destinations in the order they were given. Unknown agent (or another
    /// tenant's) → [`StoreError::NotFound`].
    pub async fn transfer_destinations(
        &self,
        tenant: &TenantId,
        agent_id: &str,
    ) -> StoreResult<Vec<TransferDestination>> {
        use super::Store as _;
        self.agent(tenant, agent_id).await?;
        let rows = sqlx::query(
            "SELECT name, target, description, caller_id, hours FROM transfer_destinations \
             WHERE tenant_id = $1 AND agent_id = $2 ORDER BY position",
        )
        .bind(tenant.as_str())
        .bind(agent_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(from_row).collect()
    }

    /// Replaces the agent's destinations with `list` (validated first; all or nothing).
    pub async fn put_transfer_destinations(
        &self,
        tenant: &TenantId,
        agent_id: &str,
        list: &[TransferDestination],
    ) -> StoreResult<Vec<TransferDestination>> {
        validate_destinations(list)?;
        let mut tx = self.pool().begin().await?;
        sqlx::query("DELETE FROM transfer_destinations WHERE tenant_id = $1 AND agent_id = $2")
            .bind(tenant.as_str())
            .bind(agent_id)
            .execute(&mut *tx)
            .await?;
        for (position, destination) in list.iter().enumerate() {
            let hours = serde_json::to_string(&destination.hours)
                .map_err(|e| StoreError::invalid("transfer destination hours", e.to_string()))?;
            sqlx::query(
                "INSERT INTO transfer_destinations (tenant_id, agent_id, name, position, target, \
                 description, caller_id, hours) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(tenant.as_str())
            .bind(agent_id)
            .bind(destination.name.as_str())
            .bind(position as i64)
            .bind(destination.target.as_str())
            .bind(destination.description.as_str())
            .bind(destination.caller_id.as_str())
            .bind(hours)
            .execute(&mut *tx)
            .await
            .map_err(|err| match classify(err) {
                WriteFailure::ForeignKey => StoreError::not_found(format!("agent {agent_id}")),
                WriteFailure::Unique => StoreError::conflict("transfer destination name"),
                WriteFailure::Other(err) => StoreError::Database(err),
            })?;
        }
        tx.commit().await?;
        // An unknown agent with an empty list inserted nothing: still answer not found.
        self.transfer_destinations(tenant, agent_id).await
    }
}

impl SqlStore {
    /// Records that `node` runs the live call `call_id`.
    pub async fn set_call_node(
        &self,
        tenant: &TenantId,
        call_id: &str,
        node: &str,
    ) -> StoreResult<()> {
        validate_text("node id", node, 128)?;
        sqlx::query("UPDATE calls SET node_id = $3 WHERE tenant_id = $1 AND id = $2")
            .bind(tenant.as_str())
            .bind(call_id)
            .bind(node)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// The node recorded for the call (`None`: none recorded). Unknown call → NotFound.
    pub async fn call_node(&self, tenant: &TenantId, call_id: &str) -> StoreResult<Option<String>> {
        let row = sqlx::query("SELECT node_id FROM calls WHERE tenant_id = $1 AND id = $2")
            .bind(tenant.as_str())
            .bind(call_id)
            .fetch_optional(self.pool())
            .await?
            .ok_or_else(|| StoreError::not_found(format!("call {call_id}")))?;
        Ok(row.try_get("node_id")?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desk(target: &str) -> TransferDestination {
        TransferDestination {
            name: "front-desk".into(),
            target: target.into(),
            description: "Reception, for anything the agent cannot do.".into(),
            caller_id: CallerIdPolicy::Agent,
            hours: vec![OpenHours {
                days: vec!["mon".into(), "fri".into()],
                open: "09:00".into(),
                close: "17:30".into(),
            }],
        }
    }

    #[test]
    fn numbers_and_sip_uris_are_accepted_anything_else_is_named() {
        desk("+15551234567").validate().unwrap();
        desk("sip:desk@pbx.example.com").validate().unwrap();
        for bad in ["5551234567", "sip:nohost", "sip:a@b<script>", "tel:+1555"] {
            let err = desk(bad).validate().unwrap_err().to_string();
            assert!(err.contains("target"), "{bad}: {err}");
        }
    }

    #[test]
    fn hours_are_checked() {
        let mut d = desk("+15551234567");
        d.hours[0].days = vec!["monday".into()];
        assert!(d.validate().unwrap_err().to_string().contains("\"monday\""));
        let mut d = desk("+15551234567");
        d.hours[0].open = "18:00".into();
        assert!(d.validate().unwrap_err().to_string().contains("before"));
        let mut d = desk("+15551234567");
        d.hours[0].close = "25:00".into();
        assert!(d.validate().unwrap_err().to_string().contains("HH:MM"));
        assert_eq!(desk("+15551234567").hours[0].minutes(), Some((540, 1050)));
    }

    #[test]
    fn duplicate_names_are_refused() {
        let list = vec![desk("+15551234567"), desk("+15557654321")];
        let err = validate_destinations(&list).unwrap_err().to_string();
        assert!(err.contains("twice"), "{err}");
    }
}

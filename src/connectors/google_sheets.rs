//! Google Sheets as a lightweight [`Crm`]: a tenant's spreadsheet holds a contacts tab (a header
//! row naming the columns: `first_name`, `last_name`, `email`, `phone`, any order, others left
//! alone), a call-notes tab and a meetings tab that the connector appends to.
//!
//! Built from the discovery document `vendor-specs/google-sheets/sheets__v4.json` (rootUrl
//! `https://sheets.googleapis.com/`, paths `v4/spreadsheets/{spreadsheetId}/values/{range}`,
//! `…:append`). Auth is Google's: the tenant's OAuth connection, a refresh token or a
//! service-account key ([`google_token_source`]). Values are always written `RAW`, so a caller's
//! "=IMPORTXML(…)" stays text and is never evaluated as a formula. Appends are not idempotent at
//! Google, so they are never replayed (the ledger makes each tool call happen once); row updates
//! are PUTs of a fixed range and may be. It must not hold state about calls, nor read more than
//! [`MAX_ROWS`] contact rows.

use std::sync::Arc;

use reqwest::{Method, Url};
use serde::Deserialize;
use serde_json::{Value, json};

use super::client::{Auth, TokenSource, VendorClient, map_error};
use super::kit::{
    BuildContext, BuildFailure, Built, Capability, SecretField, SecretShape, Vendor,
};
use super::oauth::{GOOGLE_CLIENT_FIELDS, GOOGLE_SHEETS_SCOPE, google_oauth, google_token_source};
use super::{
    CallLog, CallNote, CallOutcome, CallRecord, Contact, ContactInput, ContactLookup, ConnectorError, Crm, CrmMeeting,
    MeetingChange, rfc3339,
};
use crate::connectors::http::{ConnectorProfile, HttpPolicy, Replay, RequestContext};

pub const CONNECTOR: &str = "google_sheets";
pub const DEFAULT_BASE_URL: &str = "https://sheets.googleapis.com/v4/";
/// Most contact rows read per lookup (a sheet used as a CRM is small; a bigger one wants a CRM).
pub const MAX_ROWS: usize = 5_000;
/// Columns read from the contacts tab (A to Z).
const LAST_COLUMN: &str = "Z";
const MAX_SHEET_NAME: usize = 100;

/// Per-tenant settings.
#[derive(Debug, Clone)]
pub struct GoogleSheetsConfig {
    /// `https://sheets.googleapis.com/v4/` unless overridden (tests).
    pub base_url: Url,
    pub spreadsheet_id: String,
    pub contacts_sheet: String,
    pub notes_sheet: String,
    pub meetings_sheet: String,
    /// The tab a row per finished call is appended to, when set, with these columns.
    pub call_log: Option<(String, Vec<CallColumn>)>,
}

/// A column of the per-call row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallColumn {
    CallId,
    Agent,
    Direction,
    From,
    To,
    StartedAt,
    EndedAt,
    DurationSeconds,
    Status,
    EndReason,
    Transcript,
}

impl CallColumn {
    pub const ALL: [CallColumn; 11] = [
        Self::CallId,
        Self::Agent,
        Self::Direction,
        Self::From,
        Self::To,
        Self::StartedAt,
        Self::EndedAt,
        Self::DurationSeconds,
        Self::Status,
        Self::EndReason,
        Self::Transcript,
    ];
    /// The columns of a tenant that names none.
    pub const DEFAULT: [CallColumn; 7] = [
        Self::StartedAt,
        Self::From,
        Self::To,
        Self::Direction,
        Self::DurationSeconds,
        Self::EndReason,
        Self::CallId,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::CallId => "call_id",
            Self::Agent => "agent",
            Self::Direction => "direction",
            Self::From => "from",
            Self::To => "to",
            Self::StartedAt => "started_at",
            Self::EndedAt => "ended_at",
            Self::DurationSeconds => "duration_s",
            Self::Status => "status",
            Self::EndReason => "end_reason",
            Self::Transcript => "transcript",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.name() == name)
    }

    fn cell(self, call: &CallRecord) -> Value {
        match self {
            Self::CallId => json!(call.call_id),
            Self::Agent => json!(call.agent_id),
            Self::Direction => json!(call.direction),
            Self::From => json!(call.from),
            Self::To => json!(call.to),
            Self::StartedAt => json!(rfc3339(&call.started_at)),
            Self::EndedAt => json!(call.ended_at.as_ref().map(rfc3339).unwrap_or_default()),
            Self::DurationSeconds => match call.ended_at {
                Some(end) => json!((end - call.started_at).num_seconds().max(0)),
                None => json!(""),
            },
            Self::Status => json!(call.status),
            Self::EndReason => json!(call.end_reason.clone().unwrap_or_default()),
            // A cell holds at most 50,000 characters.
            Self::Transcript => json!(call.transcript.chars().take(49_000).collect::<String>()),
        }
    }
}

impl GoogleSheetsConfig {
    pub fn new(base_url: Url, spreadsheet_id: impl Into<String>) -> Self {
        Self {
            base_url,
            spreadsheet_id: spreadsheet_id.into(),
            contacts_sheet: "Contacts".into(),
            notes_sheet: "Call notes".into(),
            meetings_sheet: "Meetings".into(),
            call_log: None,
        }
    }
}

pub struct GoogleSheets {
    client: VendorClient,
    config: GoogleSheetsConfig,
}

#[derive(Deserialize)]
struct ValueRange {
    #[serde(default)]
    values: Vec<Vec<Value>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AppendResponse {
    #[serde(default)]
    updates: Option<UpdateResponse>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UpdateResponse {
    #[serde(default)]
    updated_range: Option<String>,
}

/// A sheet name as A1 notation wants it: quoted (with `'` doubled) unless plain.
pub fn quote_sheet(name: &str) -> String {
    if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        name.to_owned()
    } else {
        format!("'{}'", name.replace('\'', "''"))
    }
}

/// The sheet and first row of an A1 range Google answered (`'Call notes'!A7:E7` → 7).
pub fn range_row(range: &str) -> Option<(String, u32)> {
    let (sheet, cells) = range.rsplit_once('!')?;
    let digits: String = cells
        .chars()
        .skip_while(char::is_ascii_alphabetic)
        .take_while(char::is_ascii_digit)
        .collect();
    let row = digits.parse().ok().filter(|row| *row > 0)?;
    let sheet = match sheet.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')) {
        Some(inner) => inner.replace("''", "'"),
        None => sheet.to_owned(),
    };
    Some((sheet, row))
}

fn cell_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) if !text.trim().is_empty() => Some(text.trim().to_owned()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Which column holds which contact field, from the header row.
#[derive(Debug, Default, Clone, Copy)]
struct Columns {
    first_name: Option<usize>,
    last_name: Option<usize>,
    email: Option<usize>,
    phone: Option<usize>,
}

impl Columns {
    fn from_header(header: &[Value]) -> Self {
        let mut columns = Self::default();
        for (index, cell) in header.iter().enumerate() {
            let name = cell_text(cell)
                .unwrap_or_default()
                .to_ascii_lowercase()
                .replace([' ', '-'], "_");
            let slot = match name.as_str() {
                "first_name" | "firstname" | "given_name" => &mut columns.first_name,
                "last_name" | "lastname" | "family_name" | "surname" => &mut columns.last_name,
                "email" | "e_mail" | "email_address" => &mut columns.email,
                "phone" | "phone_number" | "mobile" | "telephone" => &mut columns.phone,
                _ => continue,
            };
            slot.get_or_insert(index);
        }
        columns
    }

    fn width(&self) -> usize {
        [self.first_name, self.last_name, self.email, self.phone]
            .into_iter()
            .flatten()
            .max()
            .map_or(0, |last| last + 1)
    }

    fn get(row: &[Value], column: Option<usize>) -> Option<String> {
        column.and_then(|c| row.get(c)).and_then(cell_text)
    }

    fn contact(&self, sheet_row: usize, row: &[Value]) -> Contact {
        Contact {
            company: None,
            id: format!("row:{sheet_row}"),
            first_name: Self::get(row, self.first_name),
            last_name: Self::get(row, self.last_name),
            email: Self::get(row, self.email),
            phone: Self::get(row, self.phone),
        }
    }

    fn matches(&self, row: &[Value], lookup: &ContactLookup) -> bool {
        match lookup {
            ContactLookup::Email(email) => Self::get(row, self.email)
                .is_some_and(|cell| cell.eq_ignore_ascii_case(email.trim())),
            ContactLookup::Phone(phone) => {
                let wanted = super::phone_digits(phone);
                // At least 7 digits on both sides: a short cell must not match every caller.
                wanted.len() >= 7
                    && Self::get(row, self.phone).is_some_and(|cell| super::phone_digits(&cell) == wanted)
            }
        }
    }

    /// The row written for `input`, over `existing` (cells of other columns kept).
    fn row(&self, input: &ContactInput, existing: &[Value]) -> Vec<Value> {
        let mut row: Vec<Value> = existing.to_vec();
        row.resize(self.width().max(existing.len()), Value::String(String::new()));
        for (column, value) in [
            (self.first_name, &input.first_name),
            (self.last_name, &input.last_name),
            (self.email, &input.email),
            (self.phone, &input.phone),
        ] {
            if let (Some(column), Some(value)) = (column, value) {
                row[column] = Value::String(value.clone());
            }
        }
        row
    }
}

impl GoogleSheets {
    /// A spreadsheet whose requests carry tokens from `tokens` (any [`TokenSource`]).
    pub fn new(policy: HttpPolicy, config: GoogleSheetsConfig, tokens: Arc<dyn TokenSource>) -> Self {
        Self {
            client: VendorClient::new(
                policy,
                profile(),
                config.base_url.clone(),
                Auth::OAuth(tokens),
            ),
            config,
        }
    }

    /// `sheet!cells` in A1 notation.
    fn a1(sheet: &str, cells: &str) -> String {
        format!("{}!{cells}", quote_sheet(sheet))
    }

    /// operationId: sheets.spreadsheets.values.get
    async fn read(&self, ctx: &RequestContext, range: &str) -> Result<Vec<Vec<Value>>, ConnectorError> {
        let answer: ValueRange = self
            .client
            .get(&["spreadsheets", &self.config.spreadsheet_id, "values", range])
            .query("majorDimension", "ROWS")
            .query("valueRenderOption", "UNFORMATTED_VALUE")
            .send_json(ctx, "sheet")
            .await?;
        Ok(answer.values)
    }

    /// Appends one row to `sheet`; returns the range Google wrote.
    /// operationId: sheets.spreadsheets.values.append
    pub async fn append_row(
        &self,
        ctx: &RequestContext,
        sheet: &str,
        row: Vec<Value>,
    ) -> Result<String, ConnectorError> {
        let range = Self::a1(sheet, "A1");
        let append = format!("{range}:append");
        let answer: AppendResponse = self
            .client
            .post(&["spreadsheets", &self.config.spreadsheet_id, "values", &append])
            .query("valueInputOption", "RAW")
            .query("insertDataOption", "INSERT_ROWS")
            .json(json!({ "range": range, "majorDimension": "ROWS", "values": [row] }))
            // An append is not idempotent at Google: never sent twice.
            .replay(Replay::Never)
            .send_json(ctx, "sheet")
            .await?;
        answer
            .updates
            .and_then(|u| u.updated_range)
            .ok_or_else(|| ConnectorError::UnexpectedResponse("append answer lacks updatedRange".into()))
    }

    /// Writes `row` at `range` (a fixed range: may be replayed).
    /// operationId: sheets.spreadsheets.values.update
    async fn write(&self, ctx: &RequestContext, range: &str, row: Vec<Value>) -> Result<(), ConnectorError> {
        self.client
            .request(
                Method::PUT,
                &["spreadsheets", &self.config.spreadsheet_id, "values", range],
            )
            .query("valueInputOption", "RAW")
            .json(json!({ "range": range, "majorDimension": "ROWS", "values": [row] }))
            .replay(Replay::Idempotent)
            .send(ctx, "sheet")
            .await
            .map(|_| ())
    }

    /// The header's columns and the data rows (sheet row number, cells) of the contacts tab.
    async fn contacts(
        &self,
        ctx: &RequestContext,
    ) -> Result<(Columns, Vec<(usize, Vec<Value>)>), ConnectorError> {
        let range = Self::a1(
            &self.config.contacts_sheet,
            &format!("A1:{LAST_COLUMN}{}", MAX_ROWS + 1),
        );
        let mut rows = self.read(ctx, &range).await?.into_iter();
        let header = rows.next().unwrap_or_default();
        let columns = Columns::from_header(&header);
        if columns.email.is_none() && columns.phone.is_none() {
            return Err(ConnectorError::Config(format!(
                "the {:?} tab's first row names no `email` or `phone` column",
                self.config.contacts_sheet
            )));
        }
        Ok((columns, rows.enumerate().map(|(i, row)| (i + 2, row)).collect()))
    }

    async fn find_row(
        &self,
        ctx: &RequestContext,
        lookup: &ContactLookup,
    ) -> Result<(Columns, Option<(usize, Vec<Value>)>), ConnectorError> {
        let (columns, rows) = self.contacts(ctx).await?;
        let found = rows.into_iter().find(|(_, row)| columns.matches(row, lookup));
        Ok((columns, found))
    }

    fn meeting_range(&self, meeting_id: &str) -> Result<(String, u32), ConnectorError> {
        let (sheet, row) = range_row(meeting_id)
            .filter(|(sheet, _)| *sheet == self.config.meetings_sheet)
            .ok_or_else(|| ConnectorError::InvalidInput("not a meeting row of this sheet".into()))?;
        Ok((sheet, row))
    }
}

fn contact_row_id(contact_id: &str) -> Result<usize, ConnectorError> {
    contact_id
        .strip_prefix("row:")
        .and_then(|n| n.parse().ok())
        .filter(|n| *n >= 2)
        .ok_or_else(|| ConnectorError::InvalidInput("not a contact of this sheet".into()))
}

#[async_trait::async_trait]
impl Crm for GoogleSheets {
    async fn find_contact(
        &self,
        ctx: &RequestContext,
        lookup: &ContactLookup,
    ) -> Result<Option<Contact>, ConnectorError> {
        let (columns, found) = self.find_row(ctx, lookup).await?;
        Ok(found.map(|(n, row)| columns.contact(n, &row)))
    }

    async fn upsert_contact(
        &self,
        ctx: &RequestContext,
        contact: &ContactInput,
        _idempotency_key: &str,
    ) -> Result<Contact, ConnectorError> {
        let lookups = [
            contact.email.clone().map(ContactLookup::Email),
            contact.phone.clone().map(ContactLookup::Phone),
        ];
        let (columns, rows) = self.contacts(ctx).await?;
        let existing = lookups
            .iter()
            .flatten()
            .find_map(|lookup| rows.iter().find(|(_, row)| columns.matches(row, lookup)));
        if let Some((n, row)) = existing {
            let merged = columns.row(contact, row);
            let range = Self::a1(&self.config.contacts_sheet, &format!("A{n}"));
            self.write(ctx, &range, merged.clone()).await?;
            return Ok(columns.contact(*n, &merged));
        }
        let row = columns.row(contact, &[]);
        let written = self
            .append_row(ctx, &self.config.contacts_sheet, row.clone())
            .await?;
        let (_, n) = range_row(&written).ok_or_else(|| {
            ConnectorError::UnexpectedResponse("append answer's range has no row".into())
        })?;
        Ok(columns.contact(n as usize, &row))
    }

    async fn log_call_note(
        &self,
        ctx: &RequestContext,
        contact_id: &str,
        note: &CallNote,
        idempotency_key: &str,
    ) -> Result<String, ConnectorError> {
        contact_row_id(contact_id)?;
        self.append_row(
            ctx,
            &self.config.notes_sheet,
            vec![
                json!(rfc3339(&note.at)),
                json!(contact_id),
                json!(note.body),
                json!(idempotency_key),
                // The call's length in seconds and its outcome; empty when unknown.
                json!(note.duration_secs.map(|s| s.to_string()).unwrap_or_default()),
                json!(note.outcome.map(CallOutcome::label).unwrap_or_default()),
            ],
        )
        .await
    }

    async fn record_meeting(
        &self,
        ctx: &RequestContext,
        contact_id: &str,
        meeting: &CrmMeeting,
        idempotency_key: &str,
    ) -> Result<String, ConnectorError> {
        contact_row_id(contact_id)?;
        // Columns: title, start, end, status, contact, details, key (B–D are updated later).
        self.append_row(
            ctx,
            &self.config.meetings_sheet,
            vec![
                json!(meeting.title),
                json!(rfc3339(&meeting.start)),
                json!(rfc3339(&meeting.end)),
                json!("scheduled"),
                json!(contact_id),
                json!(meeting.body),
                json!(idempotency_key),
            ],
        )
        .await
    }

    async fn update_meeting(
        &self,
        ctx: &RequestContext,
        meeting_id: &str,
        change: &MeetingChange,
    ) -> Result<(), ConnectorError> {
        let (sheet, row) = self.meeting_range(meeting_id)?;
        let (cells, values) = match change {
            MeetingChange::Moved { start, end } => (
                format!("B{row}:D{row}"),
                vec![json!(rfc3339(start)), json!(rfc3339(end)), json!("scheduled")],
            ),
            MeetingChange::Cancelled => (format!("D{row}"), vec![json!("cancelled")]),
        };
        self.write(ctx, &Self::a1(&sheet, &cells), values)
            .await
            .map_err(|err| map_error(err, "meeting"))
    }

    async fn health_check(&self, ctx: &RequestContext) -> Result<(), ConnectorError> {
        // The contacts tab's header row: proves the token, the spreadsheet and the tab.
        self.read(ctx, &Self::a1(&self.config.contacts_sheet, "A1:Z1"))
            .await
            .map(|_| ())
    }
}

#[async_trait::async_trait]
impl CallLog for GoogleSheets {
    async fn log_call(
        &self,
        ctx: &RequestContext,
        call: &CallRecord,
        _idempotency_key: &str,
    ) -> Result<(), ConnectorError> {
        let Some((sheet, columns)) = &self.config.call_log else {
            return Ok(());
        };
        let row = columns.iter().map(|column| column.cell(call)).collect();
        self.append_row(ctx, sheet, row).await.map(|_| ())
    }
}

fn sheet_setting(ctx: &BuildContext<'_>, name: &str, default: &str) -> Result<String, BuildFailure> {
    let value = ctx.credentials.text(name).unwrap_or(default).trim().to_owned();
    if value.is_empty() || value.len() > MAX_SHEET_NAME || value.contains(['!', '[', ']', '*', '?', '/', '\\', ':']) {
        return Err(BuildFailure::Config(format!(
            "{name}: a sheet tab name of 1 to {MAX_SHEET_NAME} characters without ! [ ] * ? / \\ :"
        )));
    }
    Ok(value)
}

/// The vendor descriptor, registered in [`super::registry`].
pub static VENDOR: Vendor = Vendor {
    id: CONNECTOR,
    name: "Google Sheets",
    spec: "google-sheets/",
    default_base_url: Some(DEFAULT_BASE_URL),
    capabilities: &[Capability::Crm],
    secret: SecretShape {
        bare_token: false,
        fields: &[
            SecretField {
                name: "spreadsheet_id",
                aliases: &[],
                required: true,
                doc: "the spreadsheet's id (from its URL: /spreadsheets/d/<id>/)",
            },
            SecretField {
                name: "contacts_sheet",
                aliases: &[],
                required: false,
                doc: "tab of contacts, first row naming first_name, last_name, email, phone (default `Contacts`)",
            },
            SecretField {
                name: "notes_sheet",
                aliases: &[],
                required: false,
                doc: "tab call notes are appended to (default `Call notes`)",
            },
            SecretField {
                name: "meetings_sheet",
                aliases: &[],
                required: false,
                doc: "tab booked meetings are appended to (default `Meetings`)",
            },
            SecretField {
                name: "call_log_sheet",
                aliases: &[],
                required: false,
                doc: "tab a row per finished call is appended to (off unless set)",
            },
            SecretField {
                name: "call_log_columns",
                aliases: &[],
                required: false,
                doc: "the call row's columns, in order: call_id, agent, direction, from, to, started_at, ended_at, duration_s, status, end_reason, transcript (default: started_at, from, to, direction, duration_s, end_reason, call_id)",
            },
            GOOGLE_CLIENT_FIELDS[0],
            GOOGLE_CLIENT_FIELDS[1],
            GOOGLE_CLIENT_FIELDS[2],
        ],
        note: "or a service-account key file as downloaded (`\"type\": \"service_account\"`, the spreadsheet shared with its `client_email`), plus `spreadsheet_id`; or connect with OAuth and keep only the settings here",
    },
    oauth: Some(google_oauth(&[(Capability::Crm, &[GOOGLE_SHEETS_SCOPE])])),
    webhooks: None,
    profile,
    build,
};

/// The policy profile (no vendor-specific rules).
pub fn profile() -> ConnectorProfile {
    ConnectorProfile::new(CONNECTOR)
}

fn build(ctx: BuildContext<'_>) -> Result<Built, BuildFailure> {
    let tokens: Arc<dyn TokenSource> = match &ctx.oauth {
        Some(grant) => grant.tokens.clone(),
        None => Arc::new(google_token_source(
            &ctx.credentials,
            &ctx.policy,
            CONNECTOR,
            GOOGLE_SHEETS_SCOPE,
        )?),
    };
    let spreadsheet_id = ctx.credentials.required_text("spreadsheet_id")?;
    if !spreadsheet_id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(BuildFailure::Config(
            "spreadsheet_id: letters, digits, `-` and `_` only (the id from the sheet's URL)".into(),
        ));
    }
    let mut config = GoogleSheetsConfig::new(ctx.base_url()?, spreadsheet_id);
    config.contacts_sheet = sheet_setting(&ctx, "contacts_sheet", "Contacts")?;
    config.notes_sheet = sheet_setting(&ctx, "notes_sheet", "Call notes")?;
    config.meetings_sheet = sheet_setting(&ctx, "meetings_sheet", "Meetings")?;
    if ctx.credentials.text("call_log_sheet").is_some() {
        let sheet = sheet_setting(&ctx, "call_log_sheet", "Calls")?;
        config.call_log = Some((sheet, call_columns(&ctx)?));
    }
    let sheets = Arc::new(GoogleSheets::new(ctx.policy, config, tokens));
    Ok(Built {
        crm: Some(sheets.clone()),
        call_log: sheets
            .config
            .call_log
            .is_some()
            .then(|| sheets.clone() as Arc<dyn CallLog>),
        ..Built::default()
    })
}

/// `call_log_columns`: a list of column names (`started_at`, `from`, …), or the default set.
fn call_columns(ctx: &BuildContext<'_>) -> Result<Vec<CallColumn>, BuildFailure> {
    let Some(list) = ctx.credentials.list("call_log_columns") else {
        return Ok(CallColumn::DEFAULT.to_vec());
    };
    let names = CallColumn::ALL.map(CallColumn::name).join(", ");
    let columns = list
        .iter()
        .map(|name| {
            name.as_str().and_then(CallColumn::parse).ok_or_else(|| {
                BuildFailure::Config(format!("call_log_columns: each one of {names}"))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if columns.is_empty() || columns.len() > 26 {
        return Err(BuildFailure::Config(
            "call_log_columns: 1 to 26 column names".into(),
        ));
    }
    Ok(columns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sheet_names_are_quoted_when_needed() {
        assert_eq!(quote_sheet("Contacts"), "Contacts");
        assert_eq!(quote_sheet("Call notes"), "'Call notes'");
        assert_eq!(quote_sheet("Ann's"), "'Ann''s'");
    }

    #[test]
    fn updated_ranges_give_sheet_and_row() {
        assert_eq!(range_row("Contacts!A7:D7"), Some(("Contacts".into(), 7)));
        assert_eq!(
            range_row("'Ann''s notes'!A12:G12"),
            Some(("Ann's notes".into(), 12))
        );
        assert_eq!(range_row("Contacts!A:D"), None);
        assert_eq!(range_row("no range"), None);
    }

    #[test]
    fn header_columns_and_matching() {
        let header = [json!("Phone Number"), json!("First name"), json!("EMAIL"), json!("notes")];
        let columns = Columns::from_header(&header);
        assert_eq!(columns.phone, Some(0));
        assert_eq!(columns.email, Some(2));
        let row = [json!("+1 (415) 555-0100"), json!("Ann"), json!("Ann@Example.com")];
        assert!(columns.matches(&row, &ContactLookup::Phone("+14155550100".into())));
        assert!(columns.matches(&row, &ContactLookup::Email("ann@example.com".into())));
        assert!(!columns.matches(&row, &ContactLookup::Phone("+14155550199".into())));
        // A short cell matches nobody.
        let short = [json!("1"), json!("x")];
        assert!(!columns.matches(&short, &ContactLookup::Phone("1".into())));
        let contact = columns.contact(5, &row);
        assert_eq!(contact.id, "row:5");
        assert_eq!(contact.first_name.as_deref(), Some("Ann"));
        // An update keeps the cells of other columns.
        let existing = [json!("+14155550100"), json!("Ann"), json!(""), json!("VIP")];
        let input = ContactInput {
            first_name: None,
            last_name: None,
            email: Some("new@example.com".into()),
            phone: None,
        };
        let merged = columns.row(&input, &existing);
        assert_eq!(merged[2], json!("new@example.com"));
        assert_eq!(merged[3], json!("VIP"));
    }
}

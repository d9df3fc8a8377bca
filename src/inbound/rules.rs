//! A tenant's rules, as data: "on (source, event type, filter on fields) do action", the filter's
//! conditions and the actions with their field mappings (`{{var.name}}` from
//! `properties.firstname`). Pure: matching and mapping read an event's JSON; carrying an action
//! out belongs to [`super::worker`].
//!
//! It must not store, dial or send.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::event::{text_at, value_at};

/// Most conditions per rule and variables per action.
pub const MAX_CONDITIONS: usize = 16;
pub const MAX_MAPPED_VARIABLES: usize = 32;

/// One condition on a field of the event; every operator given must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    /// Dotted path into the event (`payload.status`, `properties.lifecyclestage`).
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_equals: Option<String>,
    /// Case-insensitive substring.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contains: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub one_of: Option<Vec<String>>,
    /// The field is present (true) or absent (false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exists: Option<bool>,
}

impl Condition {
    pub fn holds(&self, event: &Value) -> bool {
        let text = text_at(event, &self.path);
        if let Some(exists) = self.exists
            && value_at(event, &self.path).is_some_and(|v| !v.is_null()) != exists
        {
            return false;
        }
        if let Some(want) = &self.equals
            && text.as_deref() != Some(want.as_str())
        {
            return false;
        }
        if let Some(unwanted) = &self.not_equals
            && text.as_deref() == Some(unwanted.as_str())
        {
            return false;
        }
        if let Some(part) = &self.contains
            && !text
                .as_deref()
                .is_some_and(|t| t.to_lowercase().contains(&part.to_lowercase()))
        {
            return false;
        }
        if let Some(options) = &self.one_of
            && !text
                .as_deref()
                .is_some_and(|t| options.iter().any(|o| o == t))
        {
            return false;
        }
        true
    }

    fn check(&self) -> Result<(), String> {
        if self.path.trim().is_empty() {
            return Err("a condition needs a path".into());
        }
        if self.equals.is_none()
            && self.not_equals.is_none()
            && self.contains.is_none()
            && self.one_of.is_none()
            && self.exists.is_none()
        {
            return Err(format!(
                "condition on {:?} has no operator (equals, not_equals, contains, one_of, exists)",
                self.path
            ));
        }
        Ok(())
    }
}

/// Where an action reads the contact from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactMapping {
    /// Path of the phone number (E.164 with `+`).
    pub phone: String,
    /// Prompt variables: `{{var.NAME}}` ← the text at the path (`{"name": "properties.firstname"}`).
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    /// Path of an IANA time zone for the calling window; else the number's country decides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
}

/// What a rule does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Action {
    /// Call the contact now with `agent_id` — within the recipient's calling window (else at its
    /// next opening), never a number on the do-not-call list, within the tenant's dial limits.
    /// Carried by the rule's own campaign (created with the rule).
    Call {
        agent_id: String,
        #[serde(flatten)]
        contact: ContactMapping,
        /// Recipient-local hours, `09:00-20:00` by default.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        hours: Option<String>,
        /// `mon-sat` by default.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        days: Option<String>,
        /// Attempts (the first included), 1 by default.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_attempts: Option<u32>,
        /// Set when the rule is created: the campaign that carries its calls.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        campaign_id: Option<String>,
    },
    /// Add the contact to an existing campaign of the tenant.
    Enrol {
        campaign_id: String,
        #[serde(flatten)]
        contact: ContactMapping,
    },
    /// Cancel the contact's pending calls in every campaign (a booking was cancelled).
    CancelCalls { phone: String },
    /// Put the contact on the do-not-call list and cancel its pending calls (an opt-out).
    DoNotCall {
        phone: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Send a message through the notification outbox (durable, once per event and rule): to the
    /// contact read from the event (`to`), or to a member of staff (`staff`: a name from the
    /// messaging settings, or a number / address; nothing for Slack and Teams, which post to the
    /// connector's channel). Never to a number on the do-not-call list; within the tenant's
    /// message limits.
    Message {
        /// `sms`, `whatsapp`, `email`, `slack` or `teams`.
        channel: String,
        /// Path of the contact's number (SMS, WhatsApp) or email address in the event.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        staff: Option<String>,
        /// The text; `{{var.NAME}}` is replaced by the mapped variables.
        text: String,
        /// The email subject (templated like the text).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        subject: Option<String>,
        /// `{{var.NAME}}` ← the text at the path.
        #[serde(default)]
        variables: BTreeMap<String, String>,
    },
}

/// Longest message text of a rule.
pub const MAX_MESSAGE_TEXT: usize = 1600;

impl Action {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Call { .. } => "call",
            Self::Enrol { .. } => "enrol",
            Self::CancelCalls { .. } => "cancel_calls",
            Self::DoNotCall { .. } => "do_not_call",
            Self::Message { .. } => "message",
        }
    }

    /// The path the contact's number is read from (none for a message, which reads `to`).
    pub fn phone_path(&self) -> Option<&str> {
        match self {
            Self::Call { contact, .. } | Self::Enrol { contact, .. } => Some(&contact.phone),
            Self::CancelCalls { phone } | Self::DoNotCall { phone, .. } => Some(phone),
            Self::Message { .. } => None,
        }
    }

    /// The variables mapped from the event (`{{var.NAME}}` ← path).
    pub fn variable_paths(&self) -> Option<&BTreeMap<String, String>> {
        match self {
            Self::Call { contact, .. } | Self::Enrol { contact, .. } => Some(&contact.variables),
            Self::Message { variables, .. } => Some(variables),
            _ => None,
        }
    }

    pub fn contact(&self) -> Option<&ContactMapping> {
        match self {
            Self::Call { contact, .. } | Self::Enrol { contact, .. } => Some(contact),
            _ => None,
        }
    }
}

/// A rule's filter and action as written by the tenant, checked.
pub fn check_rule(filter: &[Condition], action: &Action) -> Result<(), String> {
    if filter.len() > MAX_CONDITIONS {
        return Err(format!("at most {MAX_CONDITIONS} conditions"));
    }
    for condition in filter {
        condition.check()?;
    }
    if action.phone_path().is_some_and(|p| p.trim().is_empty()) {
        return Err("the action needs the path of the phone number (phone)".into());
    }
    if let Action::Message {
        channel,
        to,
        staff,
        text,
        ..
    } = action
    {
        check_message(channel, to.as_deref(), staff.as_deref(), text)?;
    }
    if let Some(mapped) = action.variable_paths() {
        if mapped.len() > MAX_MAPPED_VARIABLES {
            return Err(format!("at most {MAX_MAPPED_VARIABLES} variables"));
        }
        for (name, path) in mapped {
            if name.is_empty()
                || name.len() > 64
                || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                return Err(format!(
                    "variable {name:?}: names are 1 to 64 letters, digits and _"
                ));
            }
            if path.trim().is_empty() {
                return Err(format!("variable {name:?} needs a path"));
            }
        }
    }
    if let Action::Call {
        max_attempts: Some(n),
        ..
    } = action
        && !(1..=20).contains(n)
    {
        return Err("max_attempts must be 1 to 20".into());
    }
    Ok(())
}

fn check_message(
    channel: &str,
    to: Option<&str>,
    staff: Option<&str>,
    text: &str,
) -> Result<(), String> {
    use crate::connectors::messages::Channel;
    let channel = Channel::parse(channel).ok_or_else(|| {
        format!(
            "channel must be one of {}",
            Channel::ALL.map(Channel::as_str).join(", ")
        )
    })?;
    let to = to.filter(|t| !t.trim().is_empty());
    let staff = staff.filter(|s| !s.trim().is_empty());
    match (to, staff) {
        (Some(_), Some(_)) => return Err("a message goes to `to` or to `staff`, not both".into()),
        (Some(_), None) if channel.is_team_chat() => {
            return Err(format!(
                "{channel} posts to the connector's channel: give no `to`"
            ));
        }
        (None, None) if !channel.is_team_chat() => {
            return Err(
                "a message needs `to` (the path of the contact's number or address) or `staff`"
                    .into(),
            );
        }
        _ => {}
    }
    if text.trim().is_empty() || text.chars().count() > MAX_MESSAGE_TEXT {
        return Err(format!(
            "the message text must be 1 to {MAX_MESSAGE_TEXT} characters"
        ));
    }
    Ok(())
}

/// `template` with `{{var.NAME}}` replaced by `variables` (unknown names render empty).
pub fn render(template: &str, variables: &BTreeMap<String, String>) -> String {
    let keys: Vec<(String, &str)> = variables
        .iter()
        .map(|(k, v)| (format!("var.{k}"), v.as_str()))
        .collect();
    let values: Vec<(&str, &str)> = keys.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    crate::config::render_template(template, &values)
}

/// Whether every condition holds for `event`.
pub fn matches(filter: &[Condition], event: &Value) -> bool {
    filter.iter().all(|c| c.holds(event))
}

/// The prompt variables an action maps from `event` (absent fields are left out; values are cut
/// to 500 characters without control characters, the dialer's limits).
pub fn variables(contact: &ContactMapping, event: &Value) -> BTreeMap<String, String> {
    mapped(&contact.variables, event)
}

/// The values at each variable's path (see [`variables`]).
pub fn mapped(paths: &BTreeMap<String, String>, event: &Value) -> BTreeMap<String, String> {
    paths
        .iter()
        .filter_map(|(name, path)| {
            let text: String = text_at(event, path)?
                .chars()
                .filter(|c| !c.is_control())
                .take(500)
                .collect();
            Some((name.clone(), text))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn conditions_combine_operators() {
        let event = json!({"payload": {"status": "active", "name": "Ana Lima"}});
        let c = |v: Value| serde_json::from_value::<Condition>(v).expect("condition");
        assert!(matches(
            &[c(json!({"path": "payload.status", "equals": "active"}))],
            &event
        ));
        assert!(!matches(
            &[c(json!({"path": "payload.status", "equals": "canceled"}))],
            &event
        ));
        assert!(matches(
            &[c(json!({"path": "payload.name", "contains": "lima"}))],
            &event
        ));
        assert!(matches(
            &[c(json!({"path": "payload.x", "exists": false}))],
            &event
        ));
        assert!(matches(
            &[c(
                json!({"path": "payload.status", "one_of": ["a", "active"]})
            )],
            &event
        ));
        assert!(!matches(
            &[c(json!({"path": "payload.status", "not_equals": "active"}))],
            &event
        ));
        assert!(
            check_rule(
                &[Condition {
                    path: "a".into(),
                    ..Condition::default()
                }],
                &Action::CancelCalls { phone: "p".into() }
            )
            .is_err()
        );
    }

    #[test]
    fn actions_read_their_json_and_map_variables() {
        let action: Action = serde_json::from_value(json!({
            "type": "call", "agent_id": "ag_1", "phone": "properties.phone",
            "variables": {"name": "properties.firstname", "missing": "properties.nope"}
        }))
        .expect("action");
        assert_eq!(action.kind(), "call");
        let event = json!({"properties": {"phone": "+14155552671", "firstname": "Ana\n"}});
        let contact = action.contact().expect("contact");
        let vars = variables(contact, &event);
        assert_eq!(vars.get("name").map(String::as_str), Some("Ana"));
        assert!(!vars.contains_key("missing"));
        assert!(serde_json::from_value::<Action>(json!({"type": "send_message"})).is_err());
    }

    #[test]
    fn message_actions_are_checked_and_templated() {
        let action: Action = serde_json::from_value(json!({
            "type": "message", "channel": "sms", "to": "properties.phone",
            "text": "Hi {{var.name}}, thanks{{var.missing}}!",
            "variables": {"name": "properties.firstname"}
        }))
        .expect("action");
        assert_eq!(action.kind(), "message");
        assert!(check_rule(&[], &action).is_ok());
        let event = json!({"properties": {"firstname": "Ana"}});
        let Action::Message {
            text, variables, ..
        } = &action
        else {
            panic!("not a message");
        };
        assert_eq!(render(text, &mapped(variables, &event)), "Hi Ana, thanks!");
        let bad = |v: Value| {
            check_rule(&[], &serde_json::from_value::<Action>(v).expect("action")).is_err()
        };
        assert!(bad(
            json!({"type": "message", "channel": "fax", "to": "p", "text": "x"})
        ));
        assert!(bad(
            json!({"type": "message", "channel": "sms", "text": "x"})
        ));
        assert!(bad(
            json!({"type": "message", "channel": "sms", "to": "p", "staff": "desk", "text": "x"})
        ));
        assert!(bad(
            json!({"type": "message", "channel": "slack", "to": "p", "text": "x"})
        ));
        assert!(bad(
            json!({"type": "message", "channel": "sms", "to": "p", "text": " "})
        ));
        assert!(!bad(
            json!({"type": "message", "channel": "slack", "text": "New lead"})
        ));
    }
}

//! Reading a verified delivery: its body as JSON (Twilio's form as an object of its fields), split
//! into events when the vendor batches them, each with the vendor's event id and type per the
//! source's [`WebhookSpec`]; and the dotted paths rules use to read fields (`properties.phone`,
//! `entry.0.id`).
//!
//! It must not be called before the signature is verified, and must not store anything.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::connectors::kit::{WebhookField, WebhookScheme, WebhookSpec};

use super::verify::{Delivery, Rejection, hex};

/// One event of a delivery.
#[derive(Clone, Debug, PartialEq)]
pub struct Extracted {
    pub vendor_event_id: String,
    pub event_type: String,
    /// The event as JSON text.
    pub payload: String,
}

/// The events of a verified delivery.
pub fn extract(spec: &WebhookSpec, delivery: &Delivery<'_>) -> Result<Vec<Extracted>, Rejection> {
    let body = if spec.scheme == WebhookScheme::TwilioSha1 {
        let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(delivery.body)
            .map_err(|_| Rejection::Malformed("the body is not a form".into()))?;
        let mut object = Map::new();
        for (key, value) in fields {
            object.insert(key, Value::String(value));
        }
        Value::Object(object)
    } else {
        serde_json::from_slice(delivery.body)
            .map_err(|_| Rejection::Malformed("the body is not JSON".into()))?
    };
    let items = if spec.batched {
        match body {
            Value::Array(items) => items,
            other => vec![other],
        }
    } else {
        vec![body]
    };
    items
        .into_iter()
        .map(|item| {
            if !item.is_object() {
                return Err(Rejection::Malformed("an event is not a JSON object".into()));
            }
            let payload = item.to_string();
            let read = |field: &WebhookField| -> Option<String> {
                match field {
                    WebhookField::Header(name) => delivery
                        .header(name)
                        .map(str::trim)
                        .filter(|v| !v.is_empty())
                        .map(str::to_owned),
                    WebhookField::Json(path) => text_at(&item, path),
                    WebhookField::Const(value) => Some((*value).to_owned()),
                }
            };
            let parts: Option<Vec<String>> = spec.event_id.iter().map(read).collect();
            let vendor_event_id = match parts {
                Some(parts) if !parts.is_empty() => parts.join(":"),
                // No id from the vendor: the content names the event.
                _ => format!("sha256:{}", hex(&Sha256::digest(payload.as_bytes()))),
            };
            let vendor_event_id: String = vendor_event_id.chars().take(300).collect();
            let event_type: String = read(&spec.event_type)
                .unwrap_or_else(|| "unknown".into())
                .chars()
                .take(200)
                .collect();
            Ok(Extracted {
                vendor_event_id,
                event_type,
                payload,
            })
        })
        .collect()
}

/// The value at a dotted `path` (`properties.firstname`, `entry.0.changes.0.field`).
pub fn value_at<'v>(value: &'v Value, path: &str) -> Option<&'v Value> {
    let mut current = value;
    for segment in path.split('.').filter(|s| !s.is_empty()) {
        current = match current {
            Value::Object(map) => map.get(segment)?,
            Value::Array(items) => items.get(segment.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(current)
}

/// The value at `path` as text: strings as they are, numbers and booleans printed; HubSpot's
/// `{"value": …}` property wrappers are looked through. Objects, arrays and null are no text.
pub fn text_at(value: &Value, path: &str) -> Option<String> {
    let found = value_at(value, path)?;
    let found = match found {
        Value::Object(map) => map.get("value")?,
        other => other,
    };
    match found {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inbound::specs::{STANDARD, TWILIO};
    use serde_json::json;

    fn delivery<'a>(headers: &'a [(String, String)], body: &'a [u8]) -> Delivery<'a> {
        Delivery {
            method: "POST",
            url: "https://bridge.example/hooks/acme/x",
            headers,
            body,
        }
    }

    #[test]
    fn ids_and_types_come_from_the_spec() {
        let headers = vec![("Webhook-Id".to_owned(), "msg_1".to_owned())];
        let body = br#"{"type":"lead.created","data":{"phone":"+14155552671"}}"#;
        let events = extract(&STANDARD, &delivery(&headers, body)).expect("events");
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].vendor_event_id, "msg_1");
        assert_eq!(events[0].event_type, "lead.created");
    }

    #[test]
    fn a_missing_id_falls_back_to_the_content_hash() {
        let events = extract(&STANDARD, &delivery(&[], br#"{"type":"x"}"#)).expect("events");
        assert!(events[0].vendor_event_id.starts_with("sha256:"));
        let again = extract(&STANDARD, &delivery(&[], br#"{"type":"x"}"#)).expect("events");
        assert_eq!(events[0].vendor_event_id, again[0].vendor_event_id);
    }

    #[test]
    fn batches_split_and_forms_read_as_objects() {
        let hubspot = crate::inbound::specs::spec_for(crate::inbound::SourceKind::Hubspot);
        let body = br#"[{"eventId":1,"subscriptionType":"contact.creation"},{"eventId":2,"subscriptionType":"contact.deletion"}]"#;
        let events = extract(&hubspot, &delivery(&[], body)).expect("events");
        assert_eq!(events.len(), 2);
        assert_eq!(events[1].vendor_event_id, "2");
        assert_eq!(events[1].event_type, "contact.deletion");
        let sms = extract(
            &TWILIO,
            &delivery(&[], b"MessageSid=SM1&Body=STOP&From=%2B14155552671"),
        )
        .expect("events");
        assert_eq!(sms[0].vendor_event_id, "SM1");
        assert_eq!(sms[0].event_type, "message.received");
        assert!(extract(&STANDARD, &delivery(&[], b"not json")).is_err());
    }

    #[test]
    fn paths_read_nested_fields_and_property_wrappers() {
        let v =
            json!({"properties": {"firstname": {"value": "Ana"}, "age": 41}, "list": ["a", "b"]});
        assert_eq!(text_at(&v, "properties.firstname").as_deref(), Some("Ana"));
        assert_eq!(text_at(&v, "properties.age").as_deref(), Some("41"));
        assert_eq!(text_at(&v, "list.1").as_deref(), Some("b"));
        assert_eq!(text_at(&v, "list.9"), None);
        assert_eq!(text_at(&v, "properties"), None);
    }
}

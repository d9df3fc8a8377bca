//! The `call.ended` payload, in the Standard Webhooks envelope `{"type", "timestamp", "data"}`.
//! Pure: built from a stored call and its events, no I/O. It must not include the recording path
//! (a server-local file name) or anything from the vault.

use serde_json::{Map, Value, json};

use crate::store::{Call, CallEvent, CallEventKind};

use super::CALL_ENDED;

/// Builds the event. `data.transcript` holds the transcript events and `data.tool_calls` the
/// tool call and result events, each as its stored payload plus `seq` and `at`; the stored
/// payload's own fields (`role`, `text`, `name`, `arguments`, …) are passed through unchanged.
pub fn call_ended_payload(call: &Call, events: &[CallEvent]) -> Value {
    let duration_ms = call
        .ended_at
        .map(|end| (end.as_millisecond() - call.started_at.as_millisecond()).max(0));
    let mut transcript = Vec::new();
    let mut tool_calls = Vec::new();
    // The transfer's latest state: started, then redirected or failed.
    let mut transfer = Value::Null;
    for event in events {
        match event.kind {
            CallEventKind::Transcript => transcript.push(event_entry(event, None)),
            CallEventKind::ToolCall => tool_calls.push(event_entry(event, Some("call"))),
            CallEventKind::ToolResult => tool_calls.push(event_entry(event, Some("result"))),
            CallEventKind::Transfer => transfer = event_entry(event, None),
            _ => {}
        }
    }
    let timestamp = call.ended_at.unwrap_or(call.started_at);
    json!({
        "type": CALL_ENDED,
        "timestamp": timestamp.to_string(),
        "data": {
            "call_id": call.id,
            "tenant_id": call.tenant_id.as_str(),
            "agent_id": call.agent_id,
            "direction": call.direction.as_str(),
            "from": call.from,
            "to": call.to,
            "twilio_call_sid": call.twilio_call_sid,
            "started_at": call.started_at.to_string(),
            "ended_at": call.ended_at.map(|t| t.to_string()),
            "duration_ms": duration_ms,
            "duration_seconds": duration_ms.map(|ms| ms / 1000),
            "status": call.status.as_str(),
            "end_reason": call.end_reason,
            "transcript": transcript,
            "tool_calls": tool_calls,
            "transfer": transfer,
            // Filled by `enqueue_call_ended` when the agent has post-call analysis.
            "analysis": null,
        }
    })
}

/// The `data.analysis` of `call.ended`: `{status, summary, fields, success, error, model}`, and
/// `crm_note` when the analysis was written back to a CRM
/// (`status` `done` with the result, or `failed` with why; nothing is invented).
pub fn analysis_entry(analysis: &crate::store::CallAnalysis) -> Value {
    let result = analysis.result.as_ref();
    let mut entry = json!({
        "status": analysis.status.as_str(),
        "summary": result.map(|r| r["summary"].clone()),
        "fields": result.map(|r| r["fields"].clone()),
        "success": result.map(|r| r["success"].clone()),
        "error": analysis.error,
        "model": analysis.model,
    });
    // The CRM write-back's outcome, when the bridge writes back (`written`, `no_crm`, …).
    if let Some(note) = result.and_then(|r| r.get("crm_note")) {
        entry["crm_note"] = note.clone();
    }
    entry
}

fn event_entry(event: &CallEvent, kind: Option<&str>) -> Value {
    let mut entry = Map::new();
    entry.insert("seq".into(), json!(event.seq));
    entry.insert("at".into(), json!(event.at.to_string()));
    if let Some(kind) = kind {
        entry.insert("kind".into(), json!(kind));
    }
    match &event.payload {
        Value::Object(fields) => {
            for (key, value) in fields {
                entry.entry(key.clone()).or_insert_with(|| value.clone());
            }
        }
        Value::Null => {}
        other => {
            entry.insert("value".into(), other.clone());
        }
    }
    Value::Object(entry)
}

#[cfg(test)]
mod tests {
    use jiff::Timestamp;

    use super::*;
    use crate::store::{CallDirection, CallStatus, TenantId};

    fn call() -> Call {
        Call {
            id: "call_1".into(),
            tenant_id: TenantId::parse("acme").unwrap(),
            agent_id: "ag_1".into(),
            direction: CallDirection::Inbound,
            from: "+14155550100".into(),
            to: "+14155550199".into(),
            twilio_call_sid: Some("CA1".into()),
            started_at: Timestamp::from_millisecond(1_700_000_000_000).unwrap(),
            ended_at: Some(Timestamp::from_millisecond(1_700_000_065_500).unwrap()),
            status: CallStatus::Completed,
            end_reason: Some("caller_hangup".into()),
            recording_path: Some("/srv/recordings/call_1.wav".into()),
        }
    }

    fn event(seq: i64, kind: CallEventKind, payload: Value) -> CallEvent {
        CallEvent {
            call_id: "call_1".into(),
            seq,
            at: Timestamp::from_millisecond(1_700_000_001_000 + seq).unwrap(),
            kind,
            payload,
        }
    }

    #[test]
    fn carries_ids_numbers_duration_reason_transcript_and_tools() {
        let events = [
            event(
                1,
                CallEventKind::Transcript,
                json!({"role": "agent", "text": "Hello"}),
            ),
            event(2, CallEventKind::BargeIn, json!({})),
            event(
                3,
                CallEventKind::ToolCall,
                json!({"name": "book", "arguments": {"day": "mon"}}),
            ),
            event(
                4,
                CallEventKind::ToolResult,
                json!({"name": "book", "ok": true}),
            ),
            event(
                5,
                CallEventKind::Transcript,
                json!({"role": "caller", "text": "Thanks", "seq": 99}),
            ),
        ];
        let payload = call_ended_payload(&call(), &events);
        assert_eq!(payload["type"], "call.ended");
        let data = &payload["data"];
        assert_eq!(data["call_id"], "call_1");
        assert_eq!(data["tenant_id"], "acme");
        assert_eq!(data["from"], "+14155550100");
        assert_eq!(data["duration_ms"], 65_500);
        assert_eq!(data["duration_seconds"], 65);
        assert_eq!(data["end_reason"], "caller_hangup");
        assert_eq!(data["transcript"].as_array().map(Vec::len), Some(2));
        assert_eq!(data["transcript"][1]["text"], "Thanks");
        // The stored sequence number wins over a field of the same name in the payload.
        assert_eq!(data["transcript"][1]["seq"], 5);
        assert_eq!(data["tool_calls"][0]["kind"], "call");
        assert_eq!(data["tool_calls"][1]["kind"], "result");
        assert!(!payload.to_string().contains("/srv/recordings"));
    }
}

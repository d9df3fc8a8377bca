//! Vendor answers several connector tests need, mounted on a 127.0.0.1 wiremock server.

use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// Cal.com's `GET /v2/event-types/{id}` (`EventTypeOutput_2024_06_14`): `lengths` empty is a
/// single-length event type of `default_length` minutes; otherwise the selectable lengths.
pub async fn calcom_event_type(server: &MockServer, id: u64, default_length: u32, lengths: &[u32]) {
    let mut data = json!({
        "id": id, "lengthInMinutes": default_length, "title": "Consultation", "slug": "consultation",
    });
    if !lengths.is_empty() {
        data["lengthInMinutesOptions"] = json!(lengths);
    }
    Mock::given(method("GET"))
        .and(path(format!("/v2/event-types/{id}")))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"status": "success", "data": data})),
        )
        .mount(server)
        .await;
}

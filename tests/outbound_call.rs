//! One outbound call end to end, in process: `POST /api/v1/calls` on the real bridge places the
//! call on the fake Twilio REST server (which checks the request against Twilio's spec), the fake
//! answers through the signed voice webhook, then posts status callbacks (out of order) and an AMD
//! result. Everything runs on 127.0.0.1.

use callbridge::store::{CallDirection, CallStatus, E164, Store, Voicemail};
use callbridge_testkit::fake_twilio_rest::{FakeTwilioRest, calls_spec};
use callbridge_testkit::{ACCOUNT_SID, AUTH_TOKEN, CALLED_NUMBER, TestBridge, agent_spec};
use serde_json::{Value, json};

const ADMIN_KEY: &str = "admin-key-0123456789abcdefghij";

struct Setup {
    fake: FakeTwilioRest,
    bridge: TestBridge,
    client: reqwest::Client,
    tenant: callbridge::store::TenantId,
}

async fn setup() -> anyhow::Result<Setup> {
    let fake = FakeTwilioRest::start(&calls_spec()?, ACCOUNT_SID, AUTH_TOKEN).await?;
    // SAFETY: the only test in this binary that reads or writes the environment.
    unsafe { std::env::set_var("TWILIO_API_BASE", &fake.base_url) };
    let bridge = TestBridge::start("ws://127.0.0.1:9/v1/realtime", |args| {
        args.admin_key = Some(ADMIN_KEY.into());
    })
    .await;
    let tenant = callbridge_testkit::provision_agent(
        &bridge.store,
        "acme",
        agent_spec("openai", "gpt-realtime", "alloy"),
    )
    .await;
    let _ = rustls::crypto::ring::default_provider().install_default();
    Ok(Setup {
        fake,
        bridge,
        client: reqwest::Client::new(),
        tenant,
    })
}

impl Setup {
    async fn place(&self, body: Value) -> anyhow::Result<(u16, Value)> {
        let response = self
            .client
            .post(format!("http://{}/api/v1/calls", self.bridge.addr))
            .bearer_auth(ADMIN_KEY)
            .json(&body)
            .send()
            .await?;
        let status = response.status().as_u16();
        Ok((status, response.json().await.unwrap_or(Value::Null)))
    }
}

#[tokio::test]
async fn outbound_call_lifecycle() -> anyhow::Result<()> {
    let s = setup().await?;

    // Invalid numbers and do-not-call numbers are refused before anything reaches Twilio.
    let (status, body) = s
        .place(json!({"tenant": "acme", "to": "+1555", "agent": "front-desk"}))
        .await?;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["field"], "to");
    let blocked = E164::parse("+14155550199")?;
    s.bridge
        .store
        .add_do_not_call(&s.tenant, &blocked, "asked not to be called")
        .await?;
    let (status, body) = s
        .place(json!({"tenant": "acme", "to": "+14155550199", "agent": "front-desk"}))
        .await?;
    assert_eq!(status, 409, "{body}");
    assert!(s.fake.calls().is_empty());

    // A valid call: the record exists (outbound, queued) and carries Twilio's SID.
    let (status, placed) = s
        .place(json!({
            "tenant": "acme", "to": "+1 415 555 2671", "agent": "front-desk",
            "variables": {"name": "Ana"},
            "voicemail": {"action": "message", "message": "Hi Ana, please call us back."}
        }))
        .await?;
    assert_eq!(status, 201, "{placed}");
    let call_id = placed["call_id"].as_str().unwrap_or_default().to_owned();
    let sid = placed["twilio_call_sid"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(placed["to"], "+14155552671");
    assert_eq!(placed["from"], CALLED_NUMBER);
    assert_eq!(s.fake.violations(), Vec::<String>::new());
    let call = s.bridge.store.call(&s.tenant, &call_id).await?;
    assert_eq!(call.direction, CallDirection::Outbound);
    assert_eq!(call.status, CallStatus::Queued);
    assert_eq!(call.twilio_call_sid.as_deref(), Some(sid.as_str()));
    let outbound = s.bridge.store.outbound_call(&call_id).await?;
    assert_eq!(
        outbound.variables.get("name").map(String::as_str),
        Some("Ana")
    );

    // Answering: the webhook routes by the signed reference and opens a stream to the agent.
    let (status, twiml) = s.fake.answer(&sid).await?;
    assert_eq!(status, 200, "{twiml}");
    let stream = callbridge_testkit::fake_twilio::parse_stream_twiml(&twiml)?;
    assert!(
        stream
            .parameters
            .contains(&("tenant".to_owned(), "acme".to_owned()))
    );

    // Status callbacks out of order: ringing after in-progress does not move the call back, and
    // nothing moves it out of a final status.
    assert_eq!(s.fake.send_status(&sid, "initiated", 0, &[]).await?, 204);
    assert_eq!(s.fake.send_status(&sid, "in-progress", 2, &[]).await?, 204);
    assert_eq!(s.fake.send_status(&sid, "ringing", 1, &[]).await?, 204);
    assert_eq!(
        s.bridge.store.call(&s.tenant, &call_id).await?.status,
        CallStatus::InProgress
    );

    // A machine answered and its greeting ended: the agent's message is left after the beep.
    assert_eq!(s.fake.send_amd(&sid, "machine_end_beep").await?, 204);
    let updates = &s.fake.calls()[0].updates;
    assert_eq!(updates.len(), 1);
    let twiml = updates[0]
        .iter()
        .find(|(k, _)| k == "Twiml")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    assert!(twiml.contains("please call us back"), "{twiml}");
    let outbound = s.bridge.store.outbound_call(&call_id).await?;
    assert_eq!(outbound.amd_outcome.as_deref(), Some("voicemail_left"));

    assert_eq!(
        s.fake
            .send_status(&sid, "completed", 4, &[("CallDuration", "31")])
            .await?,
        204
    );
    assert_eq!(s.fake.send_status(&sid, "ringing", 3, &[]).await?, 204);
    let ended = s.bridge.store.call(&s.tenant, &call_id).await?;
    assert_eq!(ended.status, CallStatus::Completed);
    assert!(ended.ended_at.is_some());
    assert_eq!(s.fake.violations(), Vec::<String>::new());

    // A forged reference is refused even with a valid Twilio signature.
    let forged = format!("/twilio/status?ref={call_id}.00");
    let params = vec![
        ("AccountSid".to_owned(), ACCOUNT_SID.to_owned()),
        ("CallSid".to_owned(), sid.clone()),
        ("CallStatus".to_owned(), "failed".to_owned()),
    ];
    let url = format!("{}{forged}", s.bridge.public_url);
    let signature = callbridge::twilio::signature::compute(AUTH_TOKEN, &url, &params);
    let (status, _) = callbridge_testkit::fake_twilio::http_post(
        s.bridge.addr,
        &forged,
        Some(&signature),
        &serde_urlencoded::to_string(&params)?,
    )
    .await?;
    assert_eq!(status, 400);
    // And an unsigned callback is refused outright.
    let (status, _) = callbridge_testkit::fake_twilio::http_post(
        s.bridge.addr,
        &forged,
        None,
        &serde_urlencoded::to_string(&params)?,
    )
    .await?;
    assert_eq!(status, 403);

    // The agent's own voicemail setting applies when a call does not set one; `none` turns
    // detection off for one call.
    let mut agent = s.bridge.store.list_agents(&s.tenant).await?.remove(0);
    agent.spec.voicemail = Some(Voicemail::LeaveMessage(
        "Hi, this is Acme calling back.".into(),
    ));
    s.bridge
        .store
        .update_agent(&s.tenant, &agent.id, &agent.spec)
        .await?;
    let (status, body) = s
        .place(json!({"tenant": "acme", "to": "+14155552672", "agent": "front-desk"}))
        .await?;
    assert_eq!(status, 201, "{body}");
    let defaulted = s.fake.calls().last().cloned().expect("placed");
    assert_eq!(
        defaulted.param("MachineDetection"),
        Some("DetectMessageEnd")
    );
    let record = s
        .bridge
        .store
        .outbound_call(body["call_id"].as_str().unwrap_or_default())
        .await?;
    assert_eq!(
        record.voicemail_text.as_deref(),
        Some("Hi, this is Acme calling back.")
    );
    let (status, body) = s
        .place(
            json!({"tenant": "acme", "to": "+14155552673", "agent": "front-desk",
                      "voicemail": {"action": "none"}}),
        )
        .await?;
    assert_eq!(status, 201, "{body}");
    let plain = s.fake.calls().last().cloned().expect("placed");
    assert_eq!(plain.param("MachineDetection"), None);

    // Twilio placed the call but its answer was lost: the bridge finds the call instead of
    // recording a failure, and the record follows the real call.
    s.fake.lose_next_answers(1);
    let (status, body) = s
        .place(json!({"tenant": "acme", "to": "+14155552674", "agent": "front-desk"}))
        .await?;
    assert_eq!(status, 201, "{body}");
    let lost = s.fake.calls().last().cloned().expect("placed");
    assert_eq!(body["twilio_call_sid"], lost.sid.as_str());
    let record = s
        .bridge
        .store
        .call(&s.tenant, body["call_id"].as_str().unwrap_or_default())
        .await?;
    assert_eq!(record.twilio_call_sid.as_deref(), Some(lost.sid.as_str()));
    assert_eq!(record.status, CallStatus::Queued);
    assert_eq!(s.fake.violations(), Vec::<String>::new());
    Ok(())
}

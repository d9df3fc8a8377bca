//! The Twilio REST client against the fake REST server, which validates every request against the
//! Calls operations of Twilio's OpenAPI spec (`fixtures/vendors/twilio/calls_openapi.json`).

use std::time::Duration;

use callbridge::connectors::twilio_rest::{
    Amd, CreateCall, Hangup, Instructions, MachineDetection, StatusEvent, TwilioError, TwilioRest,
    UpdateCall,
};
use callbridge_testkit::fake_twilio_rest::{FakeTwilioRest, calls_spec};
use callbridge_testkit::{ACCOUNT_SID, AUTH_TOKEN};

fn full_request() -> CreateCall {
    CreateCall {
        to: "+14155551234".into(),
        from: "+15005550006".into(),
        instructions: Instructions::Url("http://127.0.0.1:9/twilio/voice?ref=x".into()),
        status_callback: Some("http://127.0.0.1:9/twilio/status".into()),
        status_events: StatusEvent::ALL.to_vec(),
        timeout_secs: Some(30),
        amd: Some(Amd {
            mode: MachineDetection::DetectMessageEnd,
            async_callback: Some("http://127.0.0.1:9/twilio/amd".into()),
        }),
    }
}

#[tokio::test]
async fn create_update_fetch_pass_the_spec() -> anyhow::Result<()> {
    let fake = FakeTwilioRest::start(&calls_spec()?, ACCOUNT_SID, AUTH_TOKEN).await?;
    let client = TwilioRest::new(
        &callbridge_testkit::loopback_policy(),
        &fake.base_url,
        ACCOUNT_SID,
        AUTH_TOKEN,
    )?;
    let call = client.create_call(&full_request()).await?;
    assert!(call.sid.starts_with("CA"));
    assert_eq!(call.status, "queued");
    assert_eq!(call.direction.as_deref(), Some("outbound-api"));
    let redirected = client
        .update_call(
            &call.sid,
            &UpdateCall::Redirect(Instructions::Twiml(
                "<Response><Say>Hi</Say></Response>".into(),
            )),
        )
        .await?;
    assert_eq!(redirected.sid, call.sid);
    let ended = client
        .update_call(&call.sid, &UpdateCall::Hangup(Hangup::Canceled))
        .await?;
    assert_eq!(ended.status, "canceled");
    assert_eq!(client.fetch_call(&call.sid).await?.status, "canceled");
    assert_eq!(fake.violations(), Vec::<String>::new());
    let recorded = &fake.calls()[0];
    assert_eq!(
        recorded
            .form
            .iter()
            .filter(|(k, _)| k == "StatusCallbackEvent")
            .count(),
        4
    );
    Ok(())
}

#[tokio::test]
async fn the_fake_rejects_what_the_spec_forbids() -> anyhow::Result<()> {
    // Guards the guard: a request outside the spec must fail, or the test above proves nothing.
    let spec = calls_spec()?;
    let fake = FakeTwilioRest::start(&spec, ACCOUNT_SID, AUTH_TOKEN).await?;
    // Building our client installs the TLS crypto provider reqwest needs.
    let _ = TwilioRest::new(
        &callbridge_testkit::loopback_policy(),
        &fake.base_url,
        ACCOUNT_SID,
        AUTH_TOKEN,
    )?;
    let http = reqwest::Client::new();
    let response = http
        .post(format!(
            "{}/2010-04-01/Accounts/{ACCOUNT_SID}/Calls.json",
            fake.base_url
        ))
        .basic_auth(ACCOUNT_SID, Some(AUTH_TOKEN))
        .form(&[("To", "+1415"), ("Frum", "+1500"), ("Timeout", "soon")])
        .send()
        .await?;
    assert_eq!(response.status().as_u16(), 400);
    let violations = fake.violations();
    assert!(
        violations
            .iter()
            .any(|v| v.contains("unknown parameter Frum"))
    );
    assert!(
        violations
            .iter()
            .any(|v| v.contains("missing required parameter From"))
    );
    assert!(violations.iter().any(|v| v.contains("Timeout")));
    Ok(())
}

#[tokio::test]
async fn twilio_errors_become_typed_errors() -> anyhow::Result<()> {
    let fake = FakeTwilioRest::start(&calls_spec()?, ACCOUNT_SID, AUTH_TOKEN).await?;
    let client = TwilioRest::new(
        &callbridge_testkit::loopback_policy(),
        &fake.base_url,
        ACCOUNT_SID,
        AUTH_TOKEN,
    )?;
    fake.fail_next_create(
        400,
        r#"{"code":21211,"message":"Invalid 'To' Phone Number: +1555","more_info":"https://www.twilio.com/docs/errors/21211","status":400}"#,
        None,
    );
    assert!(matches!(
        client.create_call(&full_request()).await,
        Err(TwilioError::InvalidNumber { .. })
    ));
    fake.fail_next_create(
        429,
        r#"{"code":20429,"message":"Too Many Requests","status":429}"#,
        Some("7"),
    );
    match client.create_call(&full_request()).await {
        Err(TwilioError::RateLimited { retry_after }) => {
            assert_eq!(retry_after, Some(Duration::from_secs(7)))
        }
        other => panic!("expected rate limit, got {other:?}"),
    }
    // CreateCall is never retried, so exactly the one successful call exists afterwards.
    client.create_call(&full_request()).await?;
    assert_eq!(fake.calls().len(), 1);
    let wrong = TwilioRest::new(
        &callbridge_testkit::loopback_policy(),
        &fake.base_url,
        ACCOUNT_SID,
        "not-the-token",
    )?;
    assert!(matches!(
        wrong.create_call(&full_request()).await,
        Err(TwilioError::Auth { .. })
    ));
    assert!(matches!(
        client
            .fetch_call("CA00000000000000000000000000000999")
            .await,
        Err(TwilioError::NotFound { .. })
    ));
    Ok(())
}

/// A call record whose `CreateCall` failed says what happened: bad credentials and an
/// unreachable Twilio are told apart (not both "rejected").
#[tokio::test]
async fn a_call_not_placed_records_why() -> anyhow::Result<()> {
    use callbridge::campaign::{Dialer, OutboundRequest};
    use callbridge::store::{SqlStore, Store};
    let fake = FakeTwilioRest::start(&calls_spec()?, ACCOUNT_SID, AUTH_TOKEN).await?;
    let dir = tempfile::tempdir()?;
    let store = SqlStore::open(&format!("sqlite://{}", dir.path().join("cb.db").display())).await?;
    let tenant = callbridge_testkit::provision_agent(
        &store,
        "acme",
        callbridge_testkit::agent_spec("openai", "gpt-realtime", "alloy"),
    )
    .await;
    let agent_id = store.list_agents(&tenant).await?[0].id.clone();
    let request = OutboundRequest {
        tenant: tenant.clone(),
        agent_id,
        to: "+14155550123".into(),
        variables: Default::default(),
        voicemail: None,
    };
    let policy = callbridge_testkit::loopback_policy();
    for (base, token, reason) in [
        (fake.base_url.clone(), "not-the-token", "twilio_auth_failed"),
        // Nothing listens on the discard port.
        (
            "http://127.0.0.1:9".to_owned(),
            AUTH_TOKEN,
            "twilio_unreachable",
        ),
    ] {
        let rest = TwilioRest::new(&policy, &base, ACCOUNT_SID, token)?;
        let dialer = Dialer::new(rest, "http://127.0.0.1:9", token);
        assert!(dialer.place(&store, &request).await.is_err());
        let calls = store.list_calls(&tenant, 1).await?;
        assert_eq!(calls[0].end_reason.as_deref(), Some(reason), "{base}");
    }
    Ok(())
}

//! `callbridge call …` places a call through the same service as the API: against the fake
//! Twilio REST server (spec-validated) and a temporary SQLite database.

use std::process::Command;

use callbridge::store::{CallDirection, SqlStore, Store};
use callbridge_testkit::fake_twilio_rest::{FakeTwilioRest, calls_spec};
use callbridge_testkit::{ACCOUNT_SID, AUTH_TOKEN, CALLED_NUMBER, agent_spec, provision_agent};

#[tokio::test(flavor = "multi_thread")]
async fn call_command_places_a_call_with_variables() -> anyhow::Result<()> {
    let fake = FakeTwilioRest::start(&calls_spec()?, ACCOUNT_SID, AUTH_TOKEN).await?;
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("cb.db").display());
    let store = SqlStore::open(&url).await?;
    let tenant = provision_agent(
        &store,
        "acme",
        agent_spec("openai", "gpt-realtime", "alloy"),
    )
    .await;
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_callbridge"))
            .args(args)
            .env("DATABASE_URL", &url)
            .env("TWILIO_API_BASE", &fake.base_url)
            .env(
                "CALLBRIDGE_EGRESS_ALLOW",
                callbridge_testkit::LOOPBACK_EGRESS,
            )
            .env("PUBLIC_URL", "https://bridge.example.com")
            .env("TWILIO_ACCOUNT_SID", ACCOUNT_SID)
            .env("TWILIO_AUTH_TOKEN", AUTH_TOKEN)
            .output()
    };
    let out = run(&[
        "call",
        "+14155552671",
        "--tenant",
        "acme",
        "--agent",
        "front-desk",
        "--var",
        "name=Ana",
        "--voicemail-hangup",
    ])?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let placed: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let call_id = placed["call_id"].as_str().unwrap_or_default();
    let call = store.call(&tenant, call_id).await?;
    assert_eq!(call.direction, CallDirection::Outbound);
    assert_eq!(call.from, CALLED_NUMBER);
    let outbound = store.outbound_call(call_id).await?;
    assert_eq!(
        outbound.variables.get("name").map(String::as_str),
        Some("Ana")
    );
    let sent = &fake.calls()[0];
    assert_eq!(sent.param("MachineDetection"), Some("Enable"));
    assert!(
        sent.param("Url")
            .is_some_and(|u| u.starts_with("https://bridge.example.com/twilio/voice?ref="))
    );
    assert_eq!(fake.violations(), Vec::<String>::new());

    let bad = run(&["call", "12345", "--tenant", "acme", "--agent", "front-desk"])?;
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("invalid to"));
    assert_eq!(fake.calls().len(), 1);
    Ok(())
}

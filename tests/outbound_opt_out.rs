//! The built-in `opt_out` tool puts the person's number (not the tenant's own) on the tenant's
//! do-not-call list at once, and the dialer then refuses that number.

use std::collections::BTreeMap;

use callbridge::campaign::{DialError, Dialer, OutboundRequest};
use callbridge::connectors::twilio_rest::TwilioRest;
use callbridge::store::{E164, SqlStore};
use callbridge::tools::{ToolContext, ToolRegistry, opt_out};
use callbridge_testkit::{CALLED_NUMBER, agent_spec, provision_agent};

#[tokio::test]
async fn opt_out_blocks_the_person_for_this_tenant_only() -> anyhow::Result<()> {
    let store = SqlStore::open("sqlite::memory:").await?;
    let tenant = provision_agent(
        &store,
        "acme",
        agent_spec("openai", "gpt-realtime", "alloy"),
    )
    .await;
    let mut registry = ToolRegistry::new(std::time::Duration::from_secs(2));
    registry.register(opt_out(store.clone(), tenant.clone()));
    // An outbound call: Twilio's From is the tenant's number, To is the person.
    let context = ToolContext {
        call_sid: "CA1".into(),
        caller: CALLED_NUMBER.into(),
        called: "+14155552671".into(),
        tool_call_id: "t1".into(),
        call_started: None,
        inbound: None,
    };
    let (output, label) = registry.run(context, "opt_out", "{}").await;
    assert_eq!(label, "ok", "{output}");
    let person = E164::parse("+14155552671")?;
    assert!(store.is_do_not_call(&tenant, &person).await?);
    assert!(
        !store
            .is_do_not_call(&tenant, &E164::parse(CALLED_NUMBER)?)
            .await?
    );

    // The dialer refuses the number before any request (the REST base is unreachable on purpose).
    let rest = TwilioRest::new(
        &callbridge_testkit::loopback_policy(),
        "http://127.0.0.1:9",
        "AC1",
        "token",
    )?;
    let dialer = Dialer::new(rest, "https://bridge.example.com", "token");
    let refused = dialer
        .place(
            &store,
            &OutboundRequest {
                tenant: tenant.clone(),
                agent_id: store_agent_id(&store, &tenant).await?,
                to: "+14155552671".into(),
                variables: BTreeMap::new(),
                voicemail: None,
            },
        )
        .await;
    assert!(
        matches!(refused, Err(DialError::DoNotCall(_))),
        "{refused:?}"
    );
    Ok(())
}

async fn store_agent_id(
    store: &SqlStore,
    tenant: &callbridge::store::TenantId,
) -> anyhow::Result<String> {
    use callbridge::store::Store;
    Ok(store.list_agents(tenant).await?.remove(0).id)
}

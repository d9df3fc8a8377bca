//! The store suite: every case is written once, generic over [`Store`], and run against SQLite and
//! PostgreSQL by `backend_suite!` (see `store_harness`).

#[macro_use]
mod store_harness;

use std::collections::BTreeSet;

use callbridge::store::{
    AgentSpec, CallDirection, CallEnd, CallEventKind, CallStatus, ConnectorSpec, E164, LedgerClaim,
    LedgerStatus, NewCall, NewLedgerEntry, NewSealedSecret, NewTenant, SqlStore, Store, StoreError,
    TenantId,
};
use serde_json::json;

backend_suite!(
    tenant_crud,
    tenant_delete_cascades,
    agent_crud,
    numbers_validate_route_and_reassign,
    duplicate_number_across_tenants_is_conflict,
    connector_crud_and_secret_reference_stays_in_tenant,
    sealed_secret_crud,
    api_key_crud,
    calls_and_events,
    concurrent_event_appends_get_distinct_sequence_numbers,
    ledger_claim_complete_and_mismatch,
    ledger_claim_under_concurrency_has_one_winner,
    tenant_isolation_for_every_getter,
    multi_row_write_rolls_back_on_error,
    tenant_file_fixture_provisions_atomically,
    crm_meetings_record_replace_and_move,
    crm_meetings_stay_in_their_tenant,
    stream_claims_are_single_use_under_concurrency,
    orphaned_calls_are_those_of_dead_nodes_and_settle_once,
    mcp_servers_replace_in_order_and_stay_in_their_tenant,
    coupon_reservations_admit_exactly_the_cap_under_concurrency,
    coupon_reservations_replay_release_and_stay_in_their_tenant,
    message_reservations_never_exceed_the_limits_under_concurrency,
);

fn tid(raw: &str) -> TenantId {
    TenantId::parse(raw).expect("valid tenant id")
}

fn num(raw: &str) -> E164 {
    E164::parse(raw).expect("valid E.164")
}

async fn tenant<S: Store>(store: &S, id: &str) -> TenantId {
    let id = tid(id);
    store
        .create_tenant(&NewTenant {
            id: id.clone(),
            name: format!("{id} Inc."),
            time_zone: "Europe/Paris".into(),
        })
        .await
        .expect("create tenant");
    id
}

fn spec(name: &str) -> AgentSpec {
    AgentSpec {
        name: name.into(),
        provider: "openai".into(),
        model: "gpt-realtime".into(),
        voice: "marin".into(),
        prompt_template: "receptionist".into(),
        enabled_tools: vec!["check_availability".into(), "book_appointment".into()],
        max_duration_s: 600,
        silence_timeout_s: 20,
        recording: true,
        voicemail: None,
    }
}

fn sealed(name: &str, key_id: &str) -> NewSealedSecret {
    NewSealedSecret {
        name: name.into(),
        vendor: "hubspot".into(),
        ciphertext: vec![1, 2, 3, 4, 5, 6, 7, 8],
        key_id: key_id.into(),
        last4: "wxyz".into(),
    }
}

fn new_call(tenant: &TenantId, agent_id: &str, sid: &str) -> NewCall {
    NewCall {
        tenant_id: tenant.clone(),
        agent_id: agent_id.into(),
        direction: CallDirection::Inbound,
        from: "+14155550100".into(),
        to: "+14155550199".into(),
        twilio_call_sid: Some(sid.into()),
        status: CallStatus::InProgress,
    }
}

fn ledger(key: &str, args: &str) -> NewLedgerEntry {
    NewLedgerEntry {
        idempotency_key: key.into(),
        tool: "book_appointment".into(),
        arguments_hash: args.into(),
    }
}

#[track_caller]
fn assert_not_found<T: std::fmt::Debug>(result: Result<T, StoreError>) {
    match result {
        Err(StoreError::NotFound { .. }) => {}
        other => panic!("expected NotFound, got {other:?}"),
    }
}

#[track_caller]
fn assert_conflict<T: std::fmt::Debug>(result: Result<T, StoreError>) {
    match result {
        Err(StoreError::Conflict { .. }) => {}
        other => panic!("expected Conflict, got {other:?}"),
    }
}

#[track_caller]
fn assert_invalid<T: std::fmt::Debug>(result: Result<T, StoreError>, expected_field: &str) {
    match result {
        Err(StoreError::Invalid { field, .. }) => assert_eq!(field, expected_field),
        other => panic!("expected Invalid({expected_field}), got {other:?}"),
    }
}

async fn tenant_crud<S: Store>(store: &S) {
    let acme = tenant(store, "acme").await;
    let fetched = store.tenant(&acme).await.expect("get");
    assert_eq!(fetched.name, "acme Inc.");
    assert_eq!(fetched.time_zone, "Europe/Paris");

    assert_conflict(
        store
            .create_tenant(&NewTenant {
                id: acme.clone(),
                name: "again".into(),
                time_zone: "UTC".into(),
            })
            .await,
    );
    assert_invalid(
        store
            .create_tenant(&NewTenant {
                id: tid("other"),
                name: "Other".into(),
                time_zone: "Nowhere/Special".into(),
            })
            .await,
        "time zone",
    );
    assert_invalid(
        store
            .create_tenant(&NewTenant {
                id: tid("other"),
                name: "  ".into(),
                time_zone: "UTC".into(),
            })
            .await,
        "tenant name",
    );

    let updated = store
        .update_tenant(&acme, "Acme Dental", "America/New_York")
        .await
        .expect("update");
    assert_eq!(updated.name, "Acme Dental");
    assert_eq!(updated.created_at, fetched.created_at);
    assert_eq!(
        store.tenant(&acme).await.expect("get").time_zone,
        "America/New_York"
    );

    tenant(store, "beta").await;
    let ids: Vec<String> = store
        .list_tenants()
        .await
        .expect("list")
        .into_iter()
        .map(|t| t.id.to_string())
        .collect();
    assert_eq!(ids, ["acme", "beta"]);

    store.delete_tenant(&acme).await.expect("delete");
    assert_not_found(store.tenant(&acme).await);
    assert_not_found(store.delete_tenant(&acme).await);
    assert_not_found(store.update_tenant(&acme, "x", "UTC").await);
}

async fn tenant_delete_cascades<S: Store>(store: &S) {
    let acme = tenant(store, "acme").await;
    let agent = store
        .create_agent(&acme, &spec("front desk"), &[num("+14155550100")])
        .await
        .expect("agent");
    store
        .put_sealed_secret(&acme, &sealed("hubspot-token", "k1"))
        .await
        .expect("secret");
    store
        .put_connector(
            &acme,
            &ConnectorSpec {
                vendor: "hubspot".into(),
                base_url: None,
                secret_name: Some("hubspot-token".into()),
            },
        )
        .await
        .expect("connector");
    let call = store
        .create_call(&new_call(&acme, &agent.id, "CA1"))
        .await
        .expect("call");
    store
        .append_call_event(
            &acme,
            &call.id,
            CallEventKind::Transcript,
            &json!({"text": "hi"}),
        )
        .await
        .expect("event");
    store
        .ledger_claim(&acme, &ledger("k", "h"))
        .await
        .expect("claim");
    store
        .create_api_key(&acme, "cbk_acme0001", &[9; 32])
        .await
        .expect("api key");

    store.delete_tenant(&acme).await.expect("delete cascades");
    assert_eq!(
        store
            .number_route(&num("+14155550100"))
            .await
            .expect("route"),
        None
    );
    assert!(
        store
            .api_key_by_prefix("cbk_acme0001")
            .await
            .expect("lookup")
            .is_none()
    );
    // The number is free again for a new tenant.
    let beta = tenant(store, "beta").await;
    store
        .create_agent(&beta, &spec("desk"), &[num("+14155550100")])
        .await
        .expect("number reusable after the owner is deleted");
}

async fn agent_crud<S: Store>(store: &S) {
    let acme = tenant(store, "acme").await;
    let agent = store
        .create_agent(&acme, &spec("front desk"), &[])
        .await
        .expect("create");
    assert_eq!(agent.spec, spec("front desk"));
    assert_eq!(store.agent(&acme, &agent.id).await.expect("get"), agent);

    assert_conflict(store.create_agent(&acme, &spec("front desk"), &[]).await);
    let mut bad = spec("x");
    bad.max_duration_s = 0;
    assert_invalid(
        store.create_agent(&acme, &bad, &[]).await,
        "agent max duration",
    );
    let mut bad = spec("x");
    bad.enabled_tools = vec!["Book Appointment".into()];
    assert_invalid(
        store.create_agent(&acme, &bad, &[]).await,
        "agent enabled tool",
    );
    assert_not_found(store.create_agent(&tid("ghost"), &spec("x"), &[]).await);

    let mut changed = spec("after hours");
    changed.voice = "cedar".into();
    changed.enabled_tools = vec![];
    changed.recording = false;
    changed.max_duration_s = 120;
    let updated = store
        .update_agent(&acme, &agent.id, &changed)
        .await
        .expect("update");
    assert_eq!(updated.spec, changed);
    assert_eq!(updated.created_at, agent.created_at);
    assert_eq!(
        store.agent(&acme, &agent.id).await.expect("get").spec,
        changed
    );

    let second = store
        .create_agent(&acme, &spec("billing"), &[])
        .await
        .expect("second");
    assert_conflict(store.update_agent(&acme, &second.id, &changed).await);
    let names: Vec<String> = store
        .list_agents(&acme)
        .await
        .expect("list")
        .into_iter()
        .map(|a| a.spec.name)
        .collect();
    assert_eq!(names, ["after hours", "billing"]);

    store.delete_agent(&acme, &second.id).await.expect("delete");
    assert_not_found(store.agent(&acme, &second.id).await);
    assert_not_found(store.delete_agent(&acme, &second.id).await);
    assert_not_found(store.update_agent(&acme, &second.id, &spec("z")).await);
}

async fn numbers_validate_route_and_reassign<S: Store>(store: &S) {
    assert_invalid(E164::parse("4155550100"), "phone number");
    assert_invalid(E164::parse("+1 415 555 0100"), "phone number");
    assert_invalid(E164::parse("+1234567"), "phone number");

    let acme = tenant(store, "acme").await;
    let desk = store
        .create_agent(&acme, &spec("desk"), &[num("+14155550100")])
        .await
        .expect("desk");
    let billing = store
        .create_agent(&acme, &spec("billing"), &[])
        .await
        .expect("billing");
    let added = store
        .add_number(&acme, &num("+14155550101"), &billing.id)
        .await
        .expect("add");
    assert_eq!(added.agent_id, billing.id);
    assert_not_found(
        store
            .add_number(&acme, &num("+14155550102"), "ag_missing")
            .await,
    );

    let listed: Vec<(String, String)> = store
        .list_numbers(&acme)
        .await
        .expect("list")
        .into_iter()
        .map(|n| (n.e164.to_string(), n.agent_id))
        .collect();
    assert_eq!(
        listed,
        [
            ("+14155550100".to_owned(), desk.id.clone()),
            ("+14155550101".to_owned(), billing.id.clone())
        ]
    );

    let (routed_tenant, routed_agent) = store
        .number_route(&num("+14155550101"))
        .await
        .expect("route")
        .expect("routed");
    assert_eq!(routed_tenant.id, acme);
    assert_eq!(routed_tenant.time_zone, "Europe/Paris");
    assert_eq!(routed_agent, billing);
    assert_eq!(
        store
            .number_route(&num("+14155550199"))
            .await
            .expect("route"),
        None
    );

    let moved = store
        .route_number(&acme, &num("+14155550101"), &desk.id)
        .await
        .expect("reroute");
    assert_eq!(moved.agent_id, desk.id);
    let (_, routed_agent) = store
        .number_route(&num("+14155550101"))
        .await
        .expect("route")
        .expect("routed");
    assert_eq!(routed_agent.id, desk.id);
    assert_not_found(
        store
            .route_number(&acme, &num("+14155550101"), "ag_missing")
            .await,
    );
    assert_not_found(
        store
            .route_number(&acme, &num("+14155550177"), &desk.id)
            .await,
    );

    assert_conflict(store.delete_agent(&acme, &desk.id).await);
    store
        .remove_number(&acme, &num("+14155550101"))
        .await
        .expect("remove");
    assert_not_found(store.remove_number(&acme, &num("+14155550101")).await);
    store
        .remove_number(&acme, &num("+14155550100"))
        .await
        .expect("remove");
    store
        .delete_agent(&acme, &desk.id)
        .await
        .expect("delete once unrouted");
}

async fn duplicate_number_across_tenants_is_conflict<S: Store>(store: &S) {
    let acme = tenant(store, "acme").await;
    let beta = tenant(store, "beta").await;
    store
        .create_agent(&acme, &spec("desk"), &[num("+33123456789")])
        .await
        .expect("acme desk");
    let beta_desk = store
        .create_agent(&beta, &spec("desk"), &[])
        .await
        .expect("beta desk");
    let err = store
        .add_number(&beta, &num("+33123456789"), &beta_desk.id)
        .await
        .expect_err("taken");
    match &err {
        StoreError::Conflict { what } => {
            assert!(what.contains("+33123456789"), "{what}");
            assert!(!what.contains("acme"), "must not reveal the owner: {what}");
        }
        other => panic!("expected Conflict, got {other:?}"),
    }
    assert_conflict(
        store
            .create_agent(&beta, &spec("other"), &[num("+33123456789")])
            .await,
    );
    // Neutral: the answer is word for word the one acme gets for its own number, so beta cannot
    // tell that another tenant holds it.
    let acme_desk = store.list_agents(&acme).await.expect("agents")[0]
        .id
        .clone();
    let own = store
        .add_number(&acme, &num("+33123456789"), &acme_desk)
        .await
        .expect_err("already acme's");
    assert_eq!(own.to_string(), err.to_string());
    assert_eq!(
        store
            .number_route(&num("+33123456789"))
            .await
            .expect("route")
            .map(|(t, _)| t.id),
        Some(acme)
    );
}

async fn connector_crud_and_secret_reference_stays_in_tenant<S: Store>(store: &S) {
    let acme = tenant(store, "acme").await;
    let beta = tenant(store, "beta").await;
    store
        .put_sealed_secret(&acme, &sealed("calcom-key", "k1"))
        .await
        .expect("secret");
    let spec_v1 = ConnectorSpec {
        vendor: "calcom".into(),
        base_url: Some("https://cal.acme.test/api/v2".into()),
        secret_name: Some("calcom-key".into()),
    };
    let created = store.put_connector(&acme, &spec_v1).await.expect("create");
    assert_eq!(created.spec, spec_v1);
    assert_eq!(
        store.connector(&acme, "calcom").await.expect("get").spec,
        spec_v1
    );

    let spec_v2 = ConnectorSpec {
        base_url: None,
        ..spec_v1.clone()
    };
    store.put_connector(&acme, &spec_v2).await.expect("replace");
    assert_eq!(
        store.connector(&acme, "calcom").await.expect("get").spec,
        spec_v2
    );
    assert_eq!(store.list_connectors(&acme).await.expect("list").len(), 1);

    // Beta cannot point at acme's secret: the reference is (tenant, name).
    assert_conflict(store.put_connector(&beta, &spec_v1).await);
    assert_conflict(store.delete_secret(&acme, "calcom-key").await);
    assert_invalid(
        store
            .put_connector(
                &acme,
                &ConnectorSpec {
                    vendor: "hubspot".into(),
                    base_url: Some("file:///etc/passwd".into()),
                    secret_name: None,
                },
            )
            .await,
        "connector base URL",
    );

    store
        .delete_connector(&acme, "calcom")
        .await
        .expect("delete");
    assert_not_found(store.connector(&acme, "calcom").await);
    assert_not_found(store.delete_connector(&acme, "calcom").await);
    store
        .delete_secret(&acme, "calcom-key")
        .await
        .expect("secret free once unreferenced");
}

async fn sealed_secret_crud<S: Store>(store: &S) {
    let acme = tenant(store, "acme").await;
    let info = store
        .put_sealed_secret(&acme, &sealed("hubspot-token", "k1"))
        .await
        .expect("put");
    assert_eq!(info.last4, "wxyz");
    let row = store
        .sealed_secret(&acme, "hubspot-token")
        .await
        .expect("get");
    assert_eq!(row.ciphertext, vec![1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(row.key_id, "k1");

    let mut replacement = sealed("hubspot-token", "k2");
    replacement.ciphertext = vec![42; 40];
    replacement.last4 = "1234".into();
    let replaced = store
        .put_sealed_secret(&acme, &replacement)
        .await
        .expect("replace");
    assert_eq!(replaced.created_at, info.created_at);
    assert_eq!(replaced.last4, "1234");
    let row = store
        .sealed_secret(&acme, "hubspot-token")
        .await
        .expect("get");
    assert_eq!((row.ciphertext.len(), row.key_id.as_str()), (40, "k2"));

    assert_invalid(
        store
            .put_sealed_secret(&acme, &sealed("Bad Name", "k1"))
            .await,
        "secret name",
    );
    assert_not_found(
        store
            .put_sealed_secret(&tid("ghost"), &sealed("x", "k1"))
            .await,
    );
    assert_eq!(
        store.list_secrets(&acme).await.expect("list"),
        vec![replaced]
    );
    assert_eq!(
        store
            .sealed_secrets_not_under_key("k2", 10)
            .await
            .expect("scan")
            .len(),
        0
    );
    assert_eq!(
        store
            .sealed_secrets_not_under_key("k3", 10)
            .await
            .expect("scan")
            .len(),
        1
    );
    store
        .delete_secret(&acme, "hubspot-token")
        .await
        .expect("delete");
    assert_not_found(store.sealed_secret(&acme, "hubspot-token").await);
}

async fn api_key_crud<S: Store>(store: &S) {
    let acme = tenant(store, "acme").await;
    let key = store
        .create_api_key(&acme, "cbk_aaaa1111", &[7; 32])
        .await
        .expect("create");
    assert_eq!(key.revoked_at, None);
    assert_conflict(store.create_api_key(&acme, "cbk_aaaa1111", &[8; 32]).await);

    let found = store
        .api_key_by_prefix("cbk_aaaa1111")
        .await
        .expect("lookup")
        .expect("present");
    assert_eq!(found.key, key);
    assert_eq!(found.key_hash, vec![7; 32]);
    assert!(
        store
            .api_key_by_prefix("cbk_nope")
            .await
            .expect("lookup")
            .is_none()
    );

    let revoked = store.revoke_api_key(&acme, &key.id).await.expect("revoke");
    let first_revocation = revoked.revoked_at.expect("revoked");
    let again = store.revoke_api_key(&acme, &key.id).await.expect("again");
    assert_eq!(again.revoked_at, Some(first_revocation));
    assert_eq!(store.list_api_keys(&acme).await.expect("list"), vec![again]);
    assert_not_found(store.revoke_api_key(&acme, "key_missing").await);
}

async fn calls_and_events<S: Store>(store: &S) {
    let acme = tenant(store, "acme").await;
    let agent = store
        .create_agent(&acme, &spec("desk"), &[])
        .await
        .expect("agent");
    let first = store
        .create_call(&new_call(&acme, &agent.id, "CA100"))
        .await
        .expect("call");
    assert_eq!(first.status, CallStatus::InProgress);
    assert_eq!(first.ended_at, None);
    assert_eq!(store.call(&acme, &first.id).await.expect("get"), first);
    assert_eq!(
        store
            .call_by_twilio_sid(&acme, "CA100")
            .await
            .expect("by sid"),
        first
    );
    assert_conflict(
        store
            .create_call(&new_call(&acme, &agent.id, "CA100"))
            .await,
    );
    assert_not_found(
        store
            .create_call(&new_call(&acme, "ag_missing", "CA101"))
            .await,
    );

    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let second = store
        .create_call(&new_call(&acme, &agent.id, "CA102"))
        .await
        .expect("second call");
    let newest_first: Vec<String> = store
        .list_calls(&acme, 10)
        .await
        .expect("list")
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(newest_first, [second.id.clone(), first.id.clone()]);
    assert_eq!(store.list_calls(&acme, 1).await.expect("list").len(), 1);

    let ringing = store
        .set_call_status(&acme, &second.id, CallStatus::Ringing)
        .await
        .expect("status");
    assert_eq!(ringing.status, CallStatus::Ringing);

    for (i, kind) in [
        CallEventKind::Transcript,
        CallEventKind::ToolCall,
        CallEventKind::ToolResult,
        CallEventKind::BargeIn,
    ]
    .into_iter()
    .enumerate()
    {
        let event = store
            .append_call_event(&acme, &first.id, kind, &json!({"i": i, "text": "héllo"}))
            .await
            .expect("append");
        assert_eq!(event.seq, i as i64 + 1);
    }
    let events = store.call_events(&acme, &first.id).await.expect("events");
    assert_eq!(
        events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
    assert_eq!(events[3].kind, CallEventKind::BargeIn);
    assert_eq!(events[0].payload, json!({"i": 0, "text": "héllo"}));
    assert!(
        store
            .call_events(&acme, &second.id)
            .await
            .expect("none")
            .is_empty()
    );
    assert_not_found(store.call_events(&acme, "call_missing").await);
    assert_not_found(
        store
            .append_call_event(&acme, "call_missing", CallEventKind::Dtmf, &json!({}))
            .await,
    );

    let ended = store
        .finish_call(
            &acme,
            &first.id,
            &CallEnd {
                status: CallStatus::Completed,
                end_reason: "caller_hangup".into(),
                recording_path: Some("recordings/acme/first.wav".into()),
            },
        )
        .await
        .expect("finish");
    assert_eq!(ended.status, CallStatus::Completed);
    assert!(ended.ended_at.expect("ended") >= ended.started_at);
    assert_eq!(ended.end_reason.as_deref(), Some("caller_hangup"));
    assert_eq!(store.call(&acme, &first.id).await.expect("get"), ended);
}

async fn concurrent_event_appends_get_distinct_sequence_numbers<S: Store>(store: &S) {
    let acme = tenant(store, "acme").await;
    let agent = store
        .create_agent(&acme, &spec("desk"), &[])
        .await
        .expect("agent");
    let call = store
        .create_call(&new_call(&acme, &agent.id, "CA1"))
        .await
        .expect("call");
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..16 {
        let (store, acme, call_id) = (store.clone(), acme.clone(), call.id.clone());
        tasks.spawn(async move {
            store
                .append_call_event(&acme, &call_id, CallEventKind::Transcript, &json!({"i": i}))
                .await
                .map(|e| e.seq)
        });
    }
    let mut seqs = BTreeSet::new();
    while let Some(joined) = tasks.join_next().await {
        seqs.insert(joined.expect("task").expect("append"));
    }
    assert_eq!(seqs, (1..=16).collect::<BTreeSet<i64>>());
}

async fn ledger_claim_complete_and_mismatch<S: Store>(store: &S) {
    let acme = tenant(store, "acme").await;
    let claimed = match store
        .ledger_claim(&acme, &ledger("call1:tool3", "h1"))
        .await
    {
        Ok(LedgerClaim::Claimed(entry)) => entry,
        other => panic!("expected Claimed, got {other:?}"),
    };
    assert_eq!(claimed.status, LedgerStatus::Pending);
    match store
        .ledger_claim(&acme, &ledger("call1:tool3", "h1"))
        .await
    {
        Ok(LedgerClaim::Existing(entry)) => assert_eq!(entry.status, LedgerStatus::Pending),
        other => panic!("expected Existing, got {other:?}"),
    }
    assert_conflict(
        store
            .ledger_claim(&acme, &ledger("call1:tool3", "h2"))
            .await,
    );

    let result = json!({"booking_id": "bk_1", "start": "2026-11-22T10:00:00+01:00"});
    let done = store
        .ledger_complete(&acme, "call1:tool3", LedgerStatus::Succeeded, Some(&result))
        .await
        .expect("complete");
    assert_eq!(done.status, LedgerStatus::Succeeded);
    assert_eq!(done.result, Some(result.clone()));
    assert_conflict(
        store
            .ledger_complete(&acme, "call1:tool3", LedgerStatus::Failed, None)
            .await,
    );
    assert_invalid(
        store
            .ledger_complete(&acme, "call1:tool3", LedgerStatus::Pending, None)
            .await,
        "ledger status",
    );
    assert_not_found(
        store
            .ledger_complete(&acme, "unknown", LedgerStatus::Failed, None)
            .await,
    );
    match store
        .ledger_claim(&acme, &ledger("call1:tool3", "h1"))
        .await
    {
        Ok(LedgerClaim::Existing(entry)) => assert_eq!(entry.result, Some(result)),
        other => panic!("expected Existing, got {other:?}"),
    }
    assert_not_found(store.ledger_claim(&tid("ghost"), &ledger("k", "h")).await);
}

async fn ledger_claim_under_concurrency_has_one_winner<S: Store>(store: &S) {
    let acme = tenant(store, "acme").await;
    let contenders = 24;
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(contenders));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..contenders {
        let (store, acme, barrier) = (store.clone(), acme.clone(), barrier.clone());
        tasks.spawn(async move {
            barrier.wait().await;
            store
                .ledger_claim(&acme, &ledger("race", "same-args"))
                .await
        });
    }
    let (mut claimed, mut existing) = (0, 0);
    while let Some(joined) = tasks.join_next().await {
        match joined.expect("task") {
            Ok(LedgerClaim::Claimed(_)) => claimed += 1,
            Ok(LedgerClaim::Existing(_)) => existing += 1,
            Err(e) => panic!("claim failed: {e}"),
        }
    }
    assert_eq!((claimed, existing), (1, contenders - 1));
}

async fn tenant_isolation_for_every_getter<S: Store>(store: &S) {
    let a = tenant(store, "tenant-a").await;
    let b = tenant(store, "tenant-b").await;
    let b_agent = store
        .create_agent(&b, &spec("desk"), &[num("+4930123456")])
        .await
        .expect("b agent");
    store
        .put_sealed_secret(&b, &sealed("token", "k1"))
        .await
        .expect("b secret");
    store
        .put_connector(
            &b,
            &ConnectorSpec {
                vendor: "hubspot".into(),
                base_url: None,
                secret_name: Some("token".into()),
            },
        )
        .await
        .expect("b connector");
    let b_key = store
        .create_api_key(&b, "cbk_bbbb0000", &[1; 32])
        .await
        .expect("b key");
    let b_call = store
        .create_call(&new_call(&b, &b_agent.id, "CAb"))
        .await
        .expect("b call");
    store
        .append_call_event(&b, &b_call.id, CallEventKind::Transcript, &json!({}))
        .await
        .expect("b event");
    store
        .ledger_claim(&b, &ledger("b-key", "h"))
        .await
        .expect("b ledger");
    // A has one agent of its own, so its lists are not trivially empty.
    let a_agent = store
        .create_agent(&a, &spec("desk"), &[])
        .await
        .expect("a agent");

    // Getters with A's id and B's row ids: NotFound, never B's row.
    assert_not_found(store.agent(&a, &b_agent.id).await);
    assert_not_found(store.connector(&a, "hubspot").await);
    assert_not_found(store.sealed_secret(&a, "token").await);
    assert_not_found(store.call(&a, &b_call.id).await);
    assert_not_found(store.call_by_twilio_sid(&a, "CAb").await);
    assert_not_found(store.call_events(&a, &b_call.id).await);
    assert_not_found(store.ledger_entry(&a, "b-key").await);
    // Writers with A's id leave B's rows alone.
    assert_not_found(store.update_agent(&a, &b_agent.id, &spec("hijack")).await);
    assert_not_found(store.delete_agent(&a, &b_agent.id).await);
    assert_not_found(
        store
            .route_number(&a, &num("+4930123456"), &a_agent.id)
            .await,
    );
    assert_not_found(store.remove_number(&a, &num("+4930123456")).await);
    assert_not_found(store.delete_connector(&a, "hubspot").await);
    assert_not_found(store.delete_secret(&a, "token").await);
    assert_not_found(store.revoke_api_key(&a, &b_key.id).await);
    assert_not_found(
        store
            .set_call_status(&a, &b_call.id, CallStatus::Failed)
            .await,
    );
    assert_not_found(
        store
            .finish_call(
                &a,
                &b_call.id,
                &CallEnd {
                    status: CallStatus::Failed,
                    end_reason: "hijack".into(),
                    recording_path: None,
                },
            )
            .await,
    );
    assert_not_found(
        store
            .append_call_event(&a, &b_call.id, CallEventKind::Error, &json!({}))
            .await,
    );
    assert_not_found(
        store
            .ledger_complete(&a, "b-key", LedgerStatus::Failed, None)
            .await,
    );
    // A's agent cannot take B's call or number.
    assert_not_found(store.create_call(&new_call(&a, &b_agent.id, "CAx")).await);
    assert_not_found(store.add_number(&a, &num("+4930999999"), &b_agent.id).await);
    // The same idempotency key in A is A's own, independent claim.
    assert!(matches!(
        store.ledger_claim(&a, &ledger("b-key", "other")).await,
        Ok(LedgerClaim::Claimed(_))
    ));

    // Lists with A's id contain only A's rows.
    let agents = store.list_agents(&a).await.expect("agents");
    assert_eq!(
        agents.iter().map(|x| &x.id).collect::<Vec<_>>(),
        [&a_agent.id]
    );
    assert!(store.list_numbers(&a).await.expect("numbers").is_empty());
    assert!(
        store
            .list_connectors(&a)
            .await
            .expect("connectors")
            .is_empty()
    );
    assert!(store.list_secrets(&a).await.expect("secrets").is_empty());
    assert!(store.list_api_keys(&a).await.expect("keys").is_empty());
    assert!(store.list_calls(&a, 100).await.expect("calls").is_empty());

    // B's rows are intact.
    assert_eq!(
        store.agent(&b, &b_agent.id).await.expect("b agent").spec,
        spec("desk")
    );
    assert_eq!(
        store.call(&b, &b_call.id).await.expect("b call").status,
        CallStatus::InProgress
    );
    assert_eq!(
        store
            .call_events(&b, &b_call.id)
            .await
            .expect("b events")
            .len(),
        1
    );
    assert_eq!(store.list_numbers(&b).await.expect("b numbers").len(), 1);
}

async fn multi_row_write_rolls_back_on_error<S: Store>(store: &S) {
    let acme = tenant(store, "acme").await;
    let beta = tenant(store, "beta").await;
    store
        .create_agent(&beta, &spec("desk"), &[num("+14155550100")])
        .await
        .expect("beta owns the number");

    // The agent row and the first number are written, then the second number conflicts.
    assert_conflict(
        store
            .create_agent(
                &acme,
                &spec("desk"),
                &[num("+14155550111"), num("+14155550100")],
            )
            .await,
    );
    assert!(store.list_agents(&acme).await.expect("agents").is_empty());
    assert!(store.list_numbers(&acme).await.expect("numbers").is_empty());
    assert_eq!(
        store
            .number_route(&num("+14155550111"))
            .await
            .expect("route"),
        None
    );

    // A duplicate inside one request rolls back the same way.
    assert_conflict(
        store
            .create_agent(
                &acme,
                &spec("desk"),
                &[num("+14155550122"), num("+14155550122")],
            )
            .await,
    );
    assert!(store.list_agents(&acme).await.expect("agents").is_empty());

    // After the failures the same write succeeds whole.
    let agent = store
        .create_agent(&acme, &spec("desk"), &[num("+14155550111")])
        .await
        .expect("clean retry");
    assert_eq!(
        store.list_numbers(&acme).await.expect("numbers")[0].agent_id,
        agent.id
    );
}

#[tokio::test]
async fn sqlite_connections_use_wal_and_enforce_foreign_keys() {
    use sqlx::Row;
    let db = store_harness::sqlite().await;
    let mut conn = db.store.pool().acquire().await.expect("connection");
    let mode: String = sqlx::query("PRAGMA journal_mode")
        .fetch_one(&mut *conn)
        .await
        .expect("journal mode")
        .try_get(0)
        .expect("text");
    assert_eq!(mode.to_lowercase(), "wal");
    let fk: i64 = sqlx::query("PRAGMA foreign_keys")
        .fetch_one(&mut *conn)
        .await
        .expect("foreign keys")
        .try_get(0)
        .expect("int");
    assert_eq!(fk, 1);
}

#[tokio::test]
async fn reopening_an_existing_database_keeps_its_rows() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("cb.db").display());
    let store = callbridge::store::SqlStore::open(&url)
        .await
        .expect("first open");
    tenant(&store, "acme").await;
    store.close().await;
    let reopened = callbridge::store::SqlStore::open(&url)
        .await
        .expect("second open");
    assert_eq!(reopened.list_tenants().await.expect("list").len(), 1);
}

#[tokio::test]
async fn an_in_memory_sqlite_store_keeps_its_rows_across_queries() {
    let store = callbridge::store::SqlStore::open("sqlite::memory:")
        .await
        .expect("open in memory");
    tenant(&store, "acme").await;
    tenant(&store, "beta").await;
    assert_eq!(store.list_tenants().await.expect("list").len(), 2);
}

async fn tenant_file_fixture_provisions_atomically<S: Store>(store: &S) {
    use callbridge::tenant::file::{TenantFile, TenantFileError};
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/tenants/acme-dental.toml"
    ))
    .expect("fixture");
    let file = TenantFile::parse(&text).expect("parse fixture");

    // A number of the file already taken elsewhere: nothing of the file is written.
    let other = tenant(store, "other").await;
    let squatter = store
        .create_agent(&other, &spec("desk"), &[num("+12025550199")])
        .await
        .expect("squatter");
    match file.apply(store).await {
        Err(TenantFileError::Store(StoreError::Conflict { what })) => {
            assert!(what.contains("+12025550199"), "{what}")
        }
        other => panic!("expected Conflict, got {other:?}"),
    }
    assert_not_found(store.tenant(&tid("acme-dental")).await);
    assert_eq!(
        store
            .number_route(&num("+12025550101"))
            .await
            .expect("route"),
        None
    );

    store
        .remove_number(&other, &num("+12025550199"))
        .await
        .expect("free the number");
    store
        .delete_agent(&other, &squatter.id)
        .await
        .expect("remove squatter");
    let (created, agents) = file.apply(store).await.expect("apply");
    assert_eq!(created.time_zone, "America/New_York");
    assert_eq!(agents.len(), 2);
    let (routed_tenant, routed_agent) = store
        .number_route(&num("+12025550199"))
        .await
        .expect("route")
        .expect("routed");
    assert_eq!(routed_tenant.id, created.id);
    assert_eq!(routed_agent.spec.name, "after hours");
    assert_eq!(
        store
            .list_numbers(&created.id)
            .await
            .expect("numbers")
            .len(),
        3
    );
    assert_conflict(file.apply(store).await.map_err(|e| match e {
        TenantFileError::Store(e) => e,
        other => panic!("unexpected {other:?}"),
    }));
}

// --- CRM meetings of bookings (inherent on SqlStore) -------------------------------------------

/// The meeting id linked to `booking_ref`, if any.
async fn meeting_of(store: &SqlStore, tenant: &TenantId, booking_ref: &str) -> Option<String> {
    store
        .crm_meeting(tenant, booking_ref)
        .await
        .expect("read")
        .map(|link| link.meeting_id)
}

async fn crm_meetings_record_replace_and_move(store: &SqlStore) {
    let acme = tenant(store, "acme").await;
    assert_eq!(meeting_of(store, &acme, "bk-1").await, None);

    let first = store
        .put_crm_meeting(&acme, "bk-1", "hubspot", "7700")
        .await
        .expect("put");
    assert_eq!(
        (
            first.booking_ref.as_str(),
            first.crm.as_str(),
            first.meeting_id.as_str()
        ),
        ("bk-1", "hubspot", "7700")
    );
    assert_eq!(
        store.crm_meeting(&acme, "bk-1").await.expect("read"),
        Some(first.clone())
    );

    // Recording the same booking again replaces its meeting, keeping when it was first recorded.
    let replaced = store
        .put_crm_meeting(&acme, "bk-1", "hubspot", "7701")
        .await
        .expect("replace");
    assert_eq!(replaced.meeting_id, "7701");
    assert_eq!(replaced.created_at, first.created_at);
    assert!(replaced.updated_at >= first.updated_at);

    // A rescheduled booking with a new reference takes its meeting along.
    let moved = store
        .move_crm_meeting(&acme, "bk-1", "bk-2")
        .await
        .expect("move")
        .expect("there was a meeting to move");
    assert_eq!(
        (moved.booking_ref.as_str(), moved.meeting_id.as_str()),
        ("bk-2", "7701")
    );
    assert_eq!(meeting_of(store, &acme, "bk-1").await, None);
    assert_eq!(
        meeting_of(store, &acme, "bk-2").await.as_deref(),
        Some("7701")
    );
    assert_eq!(
        store
            .move_crm_meeting(&acme, "bk-unknown", "bk-9")
            .await
            .expect("nothing to move"),
        None
    );

    // Moving onto a reference that has its own meeting would lose one: refused, nothing moves.
    store
        .put_crm_meeting(&acme, "bk-3", "hubspot", "7703")
        .await
        .expect("put");
    assert_conflict(store.move_crm_meeting(&acme, "bk-2", "bk-3").await);
    assert_eq!(
        meeting_of(store, &acme, "bk-2").await.as_deref(),
        Some("7701")
    );

    assert_invalid(
        store.put_crm_meeting(&acme, " ", "hubspot", "7704").await,
        "booking reference",
    );
    assert_invalid(
        store.put_crm_meeting(&acme, "bk-4", "hubspot", "").await,
        "meeting id",
    );
    assert_invalid(
        store
            .put_crm_meeting(&acme, &"x".repeat(300), "hubspot", "7704")
            .await,
        "booking reference",
    );
    assert_not_found(
        store
            .put_crm_meeting(&tid("nobody"), "bk-1", "hubspot", "7700")
            .await,
    );
}

async fn crm_meetings_stay_in_their_tenant(store: &SqlStore) {
    let acme = tenant(store, "acme").await;
    let beta = tenant(store, "beta").await;
    store
        .put_crm_meeting(&acme, "bk-1", "hubspot", "7700")
        .await
        .expect("put");

    // Another tenant neither sees nor moves it, even with the same booking reference.
    assert_eq!(meeting_of(store, &beta, "bk-1").await, None);
    assert_eq!(
        store
            .move_crm_meeting(&beta, "bk-1", "bk-2")
            .await
            .expect("nothing of beta's to move"),
        None
    );
    let theirs = store
        .put_crm_meeting(&beta, "bk-1", "hubspot", "9900")
        .await
        .expect("same reference, other tenant");
    assert_eq!(theirs.meeting_id, "9900");
    assert_eq!(
        meeting_of(store, &acme, "bk-1").await.as_deref(),
        Some("7700")
    );

    // Deleting a tenant deletes its links, and only its.
    store.delete_tenant(&acme).await.expect("delete");
    assert_eq!(meeting_of(store, &acme, "bk-1").await, None);
    assert_eq!(
        meeting_of(store, &beta, "bk-1").await.as_deref(),
        Some("9900")
    );
}

/// A call's media stream is claimed once: concurrent claimers (many nodes) get one winner, and a
/// later claim (after the call) still loses.
async fn stream_claims_are_single_use_under_concurrency(store: &SqlStore) {
    assert!(!store.stream_claimed("CA1").await.expect("read"));
    let mut claims = Vec::new();
    for _ in 0..8 {
        let store = store.clone();
        claims.push(tokio::spawn(async move {
            store
                .claim_stream("CA1", "acme", "node-a")
                .await
                .expect("claim")
        }));
    }
    let mut winners = 0;
    for claim in claims {
        winners += usize::from(claim.await.expect("join"));
    }
    assert_eq!(winners, 1);
    assert!(store.stream_claimed("CA1").await.expect("read"));
    assert!(
        !store
            .claim_stream("CA1", "", "node-b")
            .await
            .expect("claim again")
    );
    assert!(
        store
            .claim_stream("CA2", "", "node-b")
            .await
            .expect("another call")
    );
    assert!(
        store.claim_stream("", "acme", "node-a").await.is_err(),
        "empty SID refused"
    );
}

/// Crash recovery's queries: a call is orphaned when its stream's node restarted since the claim
/// or stopped its heartbeat; a live node's call is not; settling happens once.
async fn orphaned_calls_are_those_of_dead_nodes_and_settle_once(store: &SqlStore) {
    let acme = tenant(store, "acme").await;
    let agent = store
        .create_agent(&acme, &spec("Front"), &[])
        .await
        .expect("agent");
    let mut ids = Vec::new();
    for (sid, node) in [("CA1", "node-a"), ("CA2", "node-b"), ("CA3", "node-c")] {
        let call = store
            .create_call(&new_call(&acme, &agent.id, sid))
            .await
            .expect("call");
        assert!(store.claim_stream(sid, "acme", node).await.expect("claim"));
        ids.push(call.id);
    }
    let now = jiff::Timestamp::now().as_millisecond();
    // node-b is alive; node-c's heartbeat is old; node-a is "me", restarted after its claim.
    store.node_heartbeat("node-b", now).await.expect("beat");
    store
        .node_heartbeat("node-c", now - 120_000)
        .await
        .expect("beat");
    sqlx::query("UPDATE bridge_nodes SET heartbeat_at = $1 WHERE node_id = 'node-c'")
        .bind(now - 120_000)
        .execute(store.pool())
        .await
        .expect("age the heartbeat");
    let orphans = store
        .orphaned_calls("node-a", now + 1, now - 45_000, 10)
        .await
        .expect("orphans");
    let mut found: Vec<&str> = orphans.iter().map(|c| c.id.as_str()).collect();
    found.sort_unstable();
    let mut expected = vec![ids[0].as_str(), ids[2].as_str()];
    expected.sort_unstable();
    assert_eq!(found, expected);
    assert!(
        store
            .settle_orphaned_call(&acme, &ids[0], CallStatus::Completed)
            .await
            .expect("settle")
    );
    assert!(
        !store
            .settle_orphaned_call(&acme, &ids[0], CallStatus::Failed)
            .await
            .expect("settle again"),
        "settled once"
    );
    let call = store.call(&acme, &ids[0]).await.expect("call");
    assert_eq!(call.status, CallStatus::Completed);
    assert_eq!(call.end_reason.as_deref(), Some("bridge_restart"));
}

async fn mcp_servers_replace_in_order_and_stay_in_their_tenant(store: &SqlStore) {
    use callbridge::store::McpServerSpec;
    let acme = tenant(store, "acme").await;
    let beta = tenant(store, "beta").await;
    let spec = AgentSpec {
        name: "desk".into(),
        provider: "openai".into(),
        model: "gpt-realtime".into(),
        voice: "alloy".into(),
        prompt_template: "default".into(),
        enabled_tools: vec![],
        max_duration_s: 600,
        silence_timeout_s: 30,
        recording: false,
        voicemail: None,
    };
    let agent = store.create_agent(&acme, &spec, &[]).await.expect("agent");
    let server = |name: &str| McpServerSpec {
        name: name.into(),
        url: "https://mcp.example.com/mcp".into(),
        header_name: Some("Authorization".into()),
        secret_name: Some("shop-mcp".into()),
        allowed_tools: vec!["lookup_order".into(), "refund".into()],
        side_effect_tools: vec!["refund".into()],
    };
    let stored = store
        .put_mcp_servers(&acme, &agent.id, &[server("shop"), server("crm")])
        .await
        .expect("put");
    assert_eq!(stored, vec![server("shop"), server("crm")]);
    let replaced = store
        .put_mcp_servers(&acme, &agent.id, &[server("crm")])
        .await
        .expect("replace");
    assert_eq!(replaced, vec![server("crm")]);
    // Invalid lists change nothing.
    let mut bad = server("x");
    bad.side_effect_tools = vec!["wipe".into()];
    assert!(matches!(
        store.put_mcp_servers(&acme, &agent.id, &[bad]).await,
        Err(StoreError::Invalid { .. })
    ));
    assert_eq!(
        store.mcp_servers(&acme, &agent.id).await.expect("read"),
        vec![server("crm")]
    );
    // Another tenant neither reads nor writes them: its answer is "no such agent".
    assert!(matches!(
        store.mcp_servers(&beta, &agent.id).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store
            .put_mcp_servers(&beta, &agent.id, &[server("evil")])
            .await,
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(
        store.mcp_servers(&acme, &agent.id).await.expect("read"),
        vec![server("crm")]
    );
    // Deleting the agent deletes its servers.
    store.delete_agent(&acme, &agent.id).await.expect("delete");
    let again = store.create_agent(&acme, &spec, &[]).await.expect("agent");
    assert!(
        store
            .mcp_servers(&acme, &again.id)
            .await
            .expect("read")
            .is_empty()
    );
}

async fn coupon_reservations_admit_exactly_the_cap_under_concurrency(store: &SqlStore) {
    let acme = tenant(store, "acme").await;
    let (contenders, cap) = (24, 5);
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(contenders));
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..contenders {
        let (store, acme, barrier) = (store.clone(), acme.clone(), barrier.clone());
        tasks.spawn(async move {
            barrier.wait().await;
            store.reserve_coupon(&acme, &format!("key-{n}"), cap).await
        });
    }
    let (mut admitted, mut refused) = (0, 0);
    while let Some(joined) = tasks.join_next().await {
        match joined.expect("task") {
            Ok(true) => admitted += 1,
            Ok(false) => refused += 1,
            Err(e) => panic!("reservation failed: {e}"),
        }
    }
    assert_eq!((admitted, refused), (5, contenders - 5));
    // Full: a new key is refused until a slot is released.
    assert!(
        !store
            .reserve_coupon(&acme, "late", cap)
            .await
            .expect("reserve")
    );
}

async fn coupon_reservations_replay_release_and_stay_in_their_tenant(store: &SqlStore) {
    let acme = tenant(store, "acme").await;
    let beta = tenant(store, "beta").await;
    assert!(store.reserve_coupon(&acme, "a", 2).await.expect("reserve"));
    // The same key again is the same slot, not a second one.
    assert!(store.reserve_coupon(&acme, "a", 2).await.expect("replay"));
    assert!(store.reserve_coupon(&acme, "b", 2).await.expect("reserve"));
    assert!(!store.reserve_coupon(&acme, "c", 2).await.expect("full"));
    // Another tenant's slots are its own.
    assert!(
        store
            .reserve_coupon(&beta, "c", 2)
            .await
            .expect("other tenant")
    );
    // A refused coupon gives its slot back; releasing in another tenant frees nothing.
    store.release_coupon(&beta, "b").await.expect("release");
    assert!(
        !store
            .reserve_coupon(&acme, "c", 2)
            .await
            .expect("still full")
    );
    store.release_coupon(&acme, "b").await.expect("release");
    assert!(store.reserve_coupon(&acme, "c", 2).await.expect("freed"));
    assert!(store.reserve_coupon(&tid("ghost"), "x", 2).await.is_err());
}

/// `contenders` reservations of `acme` at once, each on the call `call_of(n)`; how many were
/// reserved, refused by the call's limit, by the tenant's.
async fn reserve_messages_at_once(
    store: &SqlStore,
    acme: &TenantId,
    contenders: usize,
    call_of: fn(usize) -> String,
    per_call: u32,
    per_day: u32,
) -> (usize, usize, usize) {
    use callbridge::store::SlotReservation;
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(contenders));
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..contenders {
        let (store, acme, barrier) = (store.clone(), acme.clone(), barrier.clone());
        tasks.spawn(async move {
            barrier.wait().await;
            store
                .reserve_message(
                    &acme,
                    &call_of(n),
                    "sms",
                    "+14155552671",
                    &format!("key-{}-{n}", call_of(n)),
                    per_call,
                    per_day,
                )
                .await
        });
    }
    let (mut reserved, mut call_limit, mut tenant_limit) = (0, 0, 0);
    while let Some(joined) = tasks.join_next().await {
        match joined.expect("task") {
            Ok(SlotReservation::Reserved) => reserved += 1,
            Ok(SlotReservation::CallLimit) => call_limit += 1,
            Ok(SlotReservation::TenantLimit) => tenant_limit += 1,
            Err(e) => panic!("reservation failed: {e}"),
        }
    }
    (reserved, call_limit, tenant_limit)
}

async fn message_reservations_never_exceed_the_limits_under_concurrency(store: &SqlStore) {
    let acme = tenant(store, "acme").await;
    // One call, 24 sends at once: exactly the per-call limit.
    let one_call = reserve_messages_at_once(store, &acme, 24, |_| "CA1".into(), 3, 500).await;
    assert_eq!(one_call, (3, 21, 0));
    assert_eq!(
        store.messages_of_call(&acme, "CA1").await.expect("count"),
        3
    );
    // 24 calls at once against the tenant's day: exactly what is left of it (3 taken above).
    let many_calls = reserve_messages_at_once(store, &acme, 24, |n| format!("CA-{n}"), 3, 8).await;
    assert_eq!(many_calls, (5, 0, 19));
    // Another tenant's limits are its own.
    let beta = tenant(store, "beta").await;
    let other = reserve_messages_at_once(store, &beta, 4, |_| "CA1".into(), 3, 8).await;
    assert_eq!(other, (3, 1, 0));
}

//! The store-backed tool-call ledger on SQLite and PostgreSQL (`backend_suite!`): the same
//! semantics as the in-memory ledger, across ledger instances standing for separate nodes.

#[macro_use]
mod store_harness;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use callbridge::store::{NewTenant, Store, TenantId};
use callbridge::tools::ledger::{
    Begin, LedgerError, ToolInvocation, ToolLedger, ToolOutcome, args_hash, run_once,
};
use callbridge::tools::store_ledger::StoreLedger;
use serde_json::{Value, json};
use tokio::time::Instant;

backend_suite!(
    same_call_id_gets_the_first_result_even_with_other_arguments,
    replay_with_a_new_call_id_is_deduplicated_within_the_phone_call_only,
    a_failed_run_runs_again_under_the_same_key,
    concurrent_duplicates_on_two_nodes_run_the_side_effect_once,
    an_abandoned_pending_run_is_taken_over,
    a_waiter_gives_up_at_its_limit,
    completing_an_unknown_key_is_an_error,
);

async fn tenant<S: Store>(store: &S) -> TenantId {
    let id = TenantId::parse("acme-dental").expect("id");
    store
        .create_tenant(&NewTenant {
            id: id.clone(),
            name: "Acme Dental".into(),
            time_zone: "America/New_York".into(),
        })
        .await
        .expect("tenant");
    id
}

fn invocation(call_id: &str, tool_call_id: &str, args: &Value) -> ToolInvocation {
    ToolInvocation {
        tenant: "acme-dental".into(),
        call_id: call_id.into(),
        tool_call_id: tool_call_id.into(),
        tool: "book_appointment".into(),
        args_hash: args_hash(args),
    }
}

async fn fresh_key(ledger: &dyn ToolLedger, invocation: &ToolInvocation) -> String {
    match ledger.begin(invocation).await.expect("begin") {
        Begin::Fresh { idempotency_key } => idempotency_key,
        other => panic!("expected a fresh run, got {other:?}"),
    }
}

async fn done(ledger: &dyn ToolLedger, invocation: &ToolInvocation) -> ToolOutcome {
    match ledger.begin(invocation).await.expect("begin") {
        Begin::Done(outcome) => outcome,
        other => panic!("expected a finished run, got {other:?}"),
    }
}

async fn same_call_id_gets_the_first_result_even_with_other_arguments<S: Store>(store: &S) {
    tenant(store).await;
    let ledger = StoreLedger::new(store.clone());
    let first = invocation("CA1", "t1", &json!({"start": "10:00"}));
    let key = fresh_key(&ledger, &first).await;
    ledger
        .complete(&key, json!({"booking_id": "b-1"}))
        .await
        .expect("complete");
    assert_eq!(
        done(&ledger, &first).await,
        ToolOutcome::Succeeded(json!({"booking_id": "b-1"}))
    );
    let reformatted = invocation("CA1", "t1", &json!({"start": "10:00", "name": "Ann"}));
    assert_eq!(
        done(&ledger, &reformatted).await,
        ToolOutcome::Succeeded(json!({"booking_id": "b-1"}))
    );
}

async fn replay_with_a_new_call_id_is_deduplicated_within_the_phone_call_only<S: Store>(store: &S) {
    tenant(store).await;
    let ledger = StoreLedger::new(store.clone());
    let args = json!({"start": "10:00"});
    let key = fresh_key(&ledger, &invocation("CA1", "t1", &args)).await;
    ledger
        .complete(&key, json!("booked"))
        .await
        .expect("complete");
    assert_eq!(
        done(&ledger, &invocation("CA1", "t2-after-reconnect", &args)).await,
        ToolOutcome::Succeeded(json!("booked"))
    );
    let other_call = fresh_key(&ledger, &invocation("CA2", "t9", &args)).await;
    assert_ne!(other_call, key);
}

async fn a_failed_run_runs_again_under_the_same_key<S: Store>(store: &S) {
    tenant(store).await;
    let ledger = StoreLedger::new(store.clone());
    let call = invocation("CA1", "t1", &json!({}));
    let first = fresh_key(&ledger, &call).await;
    ledger.fail(&first, "vendor down").await.expect("fail");
    let second = fresh_key(&ledger, &call).await;
    assert_eq!(first, second, "the vendor sees the same key on the rerun");
    ledger.complete(&second, json!(2)).await.expect("complete");
    assert_eq!(done(&ledger, &call).await, ToolOutcome::Succeeded(json!(2)));
}

async fn concurrent_duplicates_on_two_nodes_run_the_side_effect_once<S: Store>(store: &S) {
    tenant(store).await;
    let nodes: Vec<Arc<StoreLedger<S>>> = (0..2)
        .map(|_| {
            Arc::new(
                StoreLedger::new(store.clone())
                    .with_wait_limit(Duration::from_secs(10), Duration::from_millis(10)),
            )
        })
        .collect();
    let runs = Arc::new(AtomicUsize::new(0));
    let args = json!({"start": "10:00"});
    let mut tasks = Vec::new();
    for index in 0..6 {
        let ledger = Arc::clone(&nodes[index % 2]);
        let runs = Arc::clone(&runs);
        let call = invocation("CA1", &format!("t{index}"), &args);
        tasks.push(tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(10);
            run_once(ledger.as_ref(), &call, deadline, |key| async move {
                runs.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(100)).await;
                Ok(json!({ "booking_id": "b-1", "key": key }))
            })
            .await
        }));
    }
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.expect("task").expect("outcome"));
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert!(
        outcomes.windows(2).all(|pair| pair[0] == pair[1]),
        "{outcomes:?}"
    );
}

async fn an_abandoned_pending_run_is_taken_over<S: Store>(store: &S) {
    tenant(store).await;
    let dead_node = StoreLedger::new(store.clone());
    let call = invocation("CA1", "t1", &json!({}));
    let key = fresh_key(&dead_node, &call).await;
    // The first node never completes; another treats a run pending this long as abandoned.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let live_node = StoreLedger::new(store.clone()).with_stale_after(Duration::from_millis(10));
    let rerun = fresh_key(&live_node, &call).await;
    assert_eq!(key, rerun);
    live_node
        .complete(&rerun, json!("ok"))
        .await
        .expect("complete");
    assert_eq!(
        done(&dead_node, &call).await,
        ToolOutcome::Succeeded(json!("ok"))
    );
}

async fn a_waiter_gives_up_at_its_limit<S: Store>(store: &S) {
    tenant(store).await;
    let running = StoreLedger::new(store.clone());
    let call = invocation("CA1", "t1", &json!({}));
    let _key = fresh_key(&running, &call).await;
    let waiting = StoreLedger::new(store.clone())
        .with_wait_limit(Duration::from_millis(100), Duration::from_millis(10));
    let replay = invocation("CA1", "t2", &json!({}));
    assert!(matches!(
        waiting.begin(&replay).await,
        Err(LedgerError::WaitTimedOut)
    ));
}

async fn completing_an_unknown_key_is_an_error<S: Store>(store: &S) {
    tenant(store).await;
    let ledger = StoreLedger::new(store.clone());
    assert_eq!(
        ledger.complete("nope", json!(1)).await,
        Err(LedgerError::UnknownKey("nope".into()))
    );
    let stranger = ToolInvocation {
        tenant: "Not A Tenant".into(),
        ..invocation("CA1", "t1", &json!({}))
    };
    assert!(matches!(
        ledger.begin(&stranger).await,
        Err(LedgerError::Storage(_))
    ));
}

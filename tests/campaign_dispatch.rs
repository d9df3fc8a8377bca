//! The campaign dispatcher against the real store (SQLite and PostgreSQL, via `backend_suite!`)
//! and the fake Twilio REST server (which checks every request against Twilio's spec), driven
//! tick by tick with a manual clock: calling windows across zones and DST, pacing and caps,
//! retries by outcome, pause/resume/cancel, do-not-call, Twilio refusals, lost answers reconciled
//! without a second dial, and two dispatchers sharing one database.
//!
//! Calls end here by moving their record the way the status callback route does
//! (`advance_call_status`); the HTTP callback path itself is covered by tests/outbound_call.rs
//! and the process-level tests in tests/campaign_crash.rs.

#[macro_use]
mod store_harness;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use callbridge::campaign::window::{CallingWindow, local};
use callbridge::campaign::{CampaignRunner, Clock, Dialer, ManualClock, RunnerOptions, TickReport};
use callbridge::connectors::twilio_rest::TwilioRest;
use callbridge::metrics::Metrics;
use callbridge::store::{
    CallStatus, Campaign, CampaignSpec, CampaignStatus, ContactState, E164, NewContact, SqlStore,
    Store, TenantDialLimits, TenantId, Voicemail,
};
use callbridge_testkit::fake_twilio_rest::{FakeTwilioRest, calls_spec};
use callbridge_testkit::{ACCOUNT_SID, AUTH_TOKEN, provision_dialling_tenant};
use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::America::New_York;

backend_suite!(
    caps_and_pacing_bound_dialling_and_each_contact_is_dialled_once,
    tenant_cap_spans_campaigns,
    windows_follow_each_recipients_zone_across_dst,
    retries_follow_the_outcome,
    pause_resume_and_cancel,
    twilio_refusals_settle_or_pause,
    lost_answer_is_adopted_not_redialled,
    claim_of_a_dead_node_is_requeued_and_dialled_once,
    two_dispatchers_share_a_campaign_without_overlap,
);

struct Env {
    store: SqlStore,
    tenant: TenantId,
    fake: FakeTwilioRest,
    clock: Arc<ManualClock>,
    metrics: Arc<Metrics>,
}

/// Wednesday 2026-06-10 11:00 in New York (15:00 UTC): inside 09:00–20:00 everywhere used here
/// except where a test moves the clock.
fn midweek_morning() -> DateTime<Utc> {
    local(New_York, 2026, 6, 10, 11, 0).expect("valid time")
}

async fn env(store: &SqlStore) -> Env {
    let _ = rustls::crypto::ring::default_provider().install_default();
    // No pacing at the tenant level unless a test sets it.
    let (tenant, _) = provision_dialling_tenant(store, "acme", 100).await;
    let fake = FakeTwilioRest::start(&calls_spec().expect("spec"), ACCOUNT_SID, AUTH_TOKEN)
        .await
        .expect("fake Twilio REST");
    Env {
        store: store.clone(),
        tenant,
        fake,
        clock: Arc::new(ManualClock::new(midweek_morning())),
        metrics: Arc::new(Metrics::default()),
    }
}

impl Env {
    fn runner(&self, node: &str) -> CampaignRunner {
        let rest = TwilioRest::new(
            &callbridge_testkit::loopback_policy(),
            &self.fake.base_url,
            ACCOUNT_SID,
            AUTH_TOKEN,
        )
        .expect("client");
        // Nothing listens on the public URL: calls end in these tests through the store.
        let dialer = Dialer::new(rest, "http://127.0.0.1:9", AUTH_TOKEN);
        CampaignRunner::new(
            self.store.clone(),
            dialer,
            self.clock.clone(),
            self.metrics.clone(),
            RunnerOptions {
                node_id: node.into(),
                lease: Duration::from_secs(60),
                call_check: Duration::from_secs(600),
                ..RunnerOptions::default()
            },
        )
        .expect("runner")
    }

    async fn campaign(
        &self,
        numbers: &[(&str, &str)],
        tweak: impl FnOnce(&mut CampaignSpec),
    ) -> Campaign {
        let mut spec = CampaignSpec {
            name: "renewals".into(),
            agent_id: self.agent_id().await,
            window: CallingWindow::default().to_spec(),
            dial_interval_ms: 0,
            max_concurrent: 50,
            max_attempts: 3,
            retry_delay_s: 600,
            voicemail: None,
        };
        tweak(&mut spec);
        let contacts: Vec<NewContact> = numbers
            .iter()
            .enumerate()
            .map(|(i, (number, zone))| NewContact {
                line: i as u64 + 2,
                e164: E164::parse(number).expect("valid number"),
                zones: vec![(*zone).to_owned()],
                variables: BTreeMap::from([("name".to_owned(), format!("Person {i}"))]),
            })
            .collect();
        self.store
            .create_campaign(&self.tenant, &spec, &contacts, &[])
            .await
            .expect("create campaign")
    }

    async fn agent_id(&self) -> String {
        self.store.list_agents(&self.tenant).await.expect("agents")[0]
            .id
            .clone()
    }

    async fn counts(&self, campaign: &Campaign) -> callbridge::store::CampaignCounts {
        self.store
            .campaign_counts(&self.tenant, &campaign.id)
            .await
            .expect("counts")
    }

    async fn status(&self, campaign: &Campaign) -> CampaignStatus {
        self.store
            .campaign(&self.tenant, &campaign.id)
            .await
            .expect("campaign")
            .status
    }

    async fn tick(&self, runner: &CampaignRunner) -> TickReport {
        runner.tick().await.expect("tick")
    }

    /// Ends the live call of `number` with `status`, as its status callback would.
    async fn end_call(&self, campaign: &Campaign, number: &str, status: CallStatus) {
        let contact = self.contact(campaign, number).await;
        assert_eq!(
            contact.state,
            ContactState::InCall,
            "{number} is not in a call"
        );
        let call_id = contact.call_id.expect("call id");
        self.store
            .advance_call_status(&call_id, status)
            .await
            .expect("advance");
    }

    async fn end_all(&self, campaign: &Campaign, status: CallStatus) -> usize {
        let mut ended = 0;
        for contact in self.contacts(campaign).await {
            if contact.state == ContactState::InCall {
                self.end_call(campaign, contact.e164.as_str(), status).await;
                ended += 1;
            }
        }
        ended
    }

    async fn contacts(&self, campaign: &Campaign) -> Vec<callbridge::store::CampaignContact> {
        self.store
            .campaign_contacts(&self.tenant, &campaign.id, -1, 10_000)
            .await
            .expect("contacts")
    }

    async fn contact(
        &self,
        campaign: &Campaign,
        number: &str,
    ) -> callbridge::store::CampaignContact {
        self.contacts(campaign)
            .await
            .into_iter()
            .find(|c| c.e164.as_str() == number)
            .expect("contact exists")
    }

    async fn outcome(&self, campaign: &Campaign, number: &str) -> Option<String> {
        self.contact(campaign, number).await.outcome
    }

    /// How many CreateCall requests reached Twilio per number.
    fn dials(&self) -> HashMap<String, usize> {
        let mut dials = HashMap::new();
        for call in self.fake.calls() {
            *dials
                .entry(call.param("To").unwrap_or_default().to_owned())
                .or_default() += 1;
        }
        dials
    }

    fn assert_no_violations(&self) {
        assert_eq!(self.fake.violations(), Vec::<String>::new());
    }
}

fn us_numbers(n: usize) -> Vec<(String, &'static str)> {
    (0..n)
        .map(|i| (format!("+1415555{:04}", 1000 + i), "America/New_York"))
        .collect()
}

fn as_refs<'a>(numbers: &'a [(String, &'static str)]) -> Vec<(&'a str, &'static str)> {
    numbers.iter().map(|(n, z)| (n.as_str(), *z)).collect()
}

async fn caps_and_pacing_bound_dialling_and_each_contact_is_dialled_once(store: &SqlStore) {
    let env = env(store).await;
    let runner = env.runner("node-a");
    let numbers = us_numbers(5);
    let campaign = env
        .campaign(&as_refs(&numbers), |spec| {
            spec.max_concurrent = 2;
            spec.dial_interval_ms = 1_000;
        })
        .await;

    // Pacing: one dial per second even with room under the cap.
    assert_eq!(env.tick(&runner).await.placed, 1);
    assert_eq!(env.tick(&runner).await.placed, 0);
    env.clock.advance(chrono::Duration::milliseconds(1_000));
    assert_eq!(env.tick(&runner).await.placed, 1);
    // The cap: two live calls, so no third dial however much time passes.
    env.clock.advance(chrono::Duration::seconds(30));
    assert_eq!(env.tick(&runner).await.placed, 0);
    let counts = env.counts(&campaign).await;
    assert_eq!(counts.state(ContactState::InCall), 2);

    // Calls end; the freed capacity is used; eventually every contact is done, dialled once.
    for _ in 0..10 {
        env.end_all(&campaign, CallStatus::Completed).await;
        env.clock.advance(chrono::Duration::seconds(1));
        env.tick(&runner).await;
    }
    assert_eq!(env.status(&campaign).await, CampaignStatus::Completed);
    let counts = env.counts(&campaign).await;
    assert_eq!(counts.by_outcome.get("completed"), Some(&5));
    let dials = env.dials();
    assert_eq!(dials.len(), 5);
    assert!(dials.values().all(|n| *n == 1), "{dials:?}");
    // Each call was placed from the tenant's number to the contact, with the contact's variables
    // on the call record the voice webhook renders into the prompt.
    let first = env.contact(&campaign, &numbers[0].0).await;
    let outbound = env
        .store
        .outbound_call(first.call_id.as_deref().expect("call id"))
        .await
        .expect("outbound record");
    assert_eq!(
        outbound.variables.get("name").map(String::as_str),
        Some("Person 0")
    );
    assert_eq!(outbound.call.from, callbridge_testkit::CALLED_NUMBER);
    env.assert_no_violations();
}

async fn tenant_cap_spans_campaigns(store: &SqlStore) {
    let env = env(store).await;
    env.store
        .set_tenant_dial_limits(
            &env.tenant,
            TenantDialLimits {
                max_concurrent: 3,
                dial_interval_ms: 0,
            },
        )
        .await
        .expect("limits");
    let runner = env.runner("node-a");
    let numbers = us_numbers(8);
    let refs = as_refs(&numbers);
    env.campaign(&refs[..4], |_| {}).await;
    env.campaign(&refs[4..], |spec| spec.name = "second".into())
        .await;
    let report = env.tick(&runner).await;
    assert_eq!(report.placed, 3, "{report:?}");
    env.clock.advance(chrono::Duration::minutes(5));
    assert_eq!(env.tick(&runner).await.placed, 0);
}

async fn windows_follow_each_recipients_zone_across_dst(store: &SqlStore) {
    let env = env(store).await;
    let runner = env.runner("node-a");
    // Saturday 2026-03-07 20:30 in New York: past the window (09:00–20:00, Mon–Sat). US clocks
    // go forward on Sunday 8 March, the UK's only on 29 March.
    env.clock
        .set(local(New_York, 2026, 3, 7, 20, 30).expect("valid time"));
    let campaign = env
        .campaign(
            &[
                ("+14155550100", "America/New_York"),
                ("+442079460958", "Europe/London"),
            ],
            |_| {},
        )
        .await;
    let report = env.tick(&runner).await;
    assert_eq!(report.placed, 0, "{report:?}");
    // Why they wait is recorded (issue 12: the reason and the next attempt time are visible).
    assert_eq!(
        env.contact(&campaign, "+14155550100")
            .await
            .waiting_reason
            .as_deref(),
        Some("outside_calling_window")
    );
    // Each contact now waits for its own Monday 09:00: 13:00 UTC in New York (EDT, UTC-4 after
    // the change), 09:00 UTC in London (GMT).
    let ny_open = Utc
        .with_ymd_and_hms(2026, 3, 9, 13, 0, 0)
        .single()
        .expect("valid");
    let london_open = Utc
        .with_ymd_and_hms(2026, 3, 9, 9, 0, 0)
        .single()
        .expect("valid");
    assert_eq!(
        env.contact(&campaign, "+14155550100")
            .await
            .next_attempt_at
            .as_millisecond(),
        ny_open.timestamp_millis()
    );
    assert_eq!(
        env.contact(&campaign, "+442079460958")
            .await
            .next_attempt_at
            .as_millisecond(),
        london_open.timestamp_millis()
    );
    // 08:59 UTC Monday: nobody. 09:00: London only. 12:59: still not New York (08:59 EDT).
    env.clock.set(london_open - chrono::Duration::minutes(1));
    assert_eq!(env.tick(&runner).await.placed, 0);
    env.clock.set(london_open);
    assert_eq!(env.tick(&runner).await.placed, 1);
    assert_eq!(
        env.contact(&campaign, "+442079460958").await.waiting_reason,
        None,
        "dialled: no longer waiting"
    );
    assert_eq!(
        env.dials().keys().collect::<Vec<_>>(),
        vec!["+442079460958"]
    );
    env.clock.set(ny_open - chrono::Duration::minutes(1));
    assert_eq!(env.tick(&runner).await.placed, 0);
    env.clock.set(ny_open);
    assert_eq!(env.tick(&runner).await.placed, 1);
    assert_eq!(env.dials().len(), 2);
    env.assert_no_violations();
}

async fn retries_follow_the_outcome(store: &SqlStore) {
    let env = env(store).await;
    let runner = env.runner("node-a");
    let busy = "+14155550101";
    let answered = "+14155550102";
    let machine = "+14155550103";
    let opted = "+14155550104";
    let listed = "+14155550105";
    env.store
        .add_do_not_call(&env.tenant, &E164::parse(listed).expect("valid"), "import")
        .await
        .expect("dnc");
    let zone = "America/New_York";
    let campaign = env
        .campaign(
            &[
                (busy, zone),
                (answered, zone),
                (machine, zone),
                (opted, zone),
                (listed, zone),
            ],
            |spec| {
                spec.voicemail = Some(Voicemail::HangUp);
            },
        )
        .await;
    let report = env.tick(&runner).await;
    assert_eq!(report.placed, 4, "{report:?}");
    assert_eq!(
        env.outcome(&campaign, listed).await.as_deref(),
        Some("do_not_call")
    );

    env.end_call(&campaign, busy, CallStatus::Busy).await;
    env.end_call(&campaign, answered, CallStatus::Completed)
        .await;
    let machine_call = env.contact(&campaign, machine).await.call_id.expect("call");
    env.store
        .record_amd(&machine_call, "machine_start", "machine_hung_up")
        .await
        .expect("amd");
    env.end_call(&campaign, machine, CallStatus::Completed)
        .await;
    // The person asked not to be called again: the opt_out tool put them on the list mid-call.
    env.store
        .add_do_not_call(
            &env.tenant,
            &E164::parse(opted).expect("valid"),
            "opt_out tool",
        )
        .await
        .expect("dnc");
    env.end_call(&campaign, opted, CallStatus::Completed).await;
    env.tick(&runner).await;
    assert_eq!(
        env.outcome(&campaign, answered).await.as_deref(),
        Some("completed")
    );
    assert_eq!(
        env.outcome(&campaign, machine).await.as_deref(),
        Some("voicemail")
    );
    assert_eq!(
        env.outcome(&campaign, opted).await.as_deref(),
        Some("opted_out")
    );
    let waiting = env.contact(&campaign, busy).await;
    assert_eq!(
        (waiting.state, waiting.attempts),
        (ContactState::Pending, 1)
    );
    assert_eq!(waiting.waiting_reason.as_deref(), Some("retry_after_busy"));

    // Busy again after the delay, then no answer: three attempts, then done for good.
    env.clock.advance(chrono::Duration::seconds(599));
    assert_eq!(
        env.tick(&runner).await.placed,
        0,
        "retried before the delay"
    );
    env.clock.advance(chrono::Duration::seconds(1));
    assert_eq!(env.tick(&runner).await.placed, 1);
    env.end_call(&campaign, busy, CallStatus::Busy).await;
    env.tick(&runner).await;
    env.clock.advance(chrono::Duration::seconds(600));
    assert_eq!(env.tick(&runner).await.placed, 1);
    env.end_call(&campaign, busy, CallStatus::NoAnswer).await;
    env.tick(&runner).await;
    let last = env.contact(&campaign, busy).await;
    assert_eq!(
        (last.state, last.outcome.as_deref(), last.attempts),
        (ContactState::Done, Some("no_answer"), 3)
    );
    env.clock.advance(chrono::Duration::hours(2));
    env.tick(&runner).await;
    let dials = env.dials();
    assert_eq!(dials.get(busy), Some(&3));
    assert_eq!(dials.get(answered), Some(&1));
    assert_eq!(dials.get(opted), Some(&1));
    assert_eq!(dials.get(listed), None);
    // AMD was asked for, because the campaign hangs up on machines.
    let first = &env.fake.calls()[0];
    assert_eq!(first.param("MachineDetection"), Some("Enable"));
    assert_eq!(env.status(&campaign).await, CampaignStatus::Completed);
    env.assert_no_violations();
}

async fn pause_resume_and_cancel(store: &SqlStore) {
    let env = env(store).await;
    let runner = env.runner("node-a");
    let numbers = us_numbers(4);
    let campaign = env
        .campaign(&as_refs(&numbers), |spec| spec.max_concurrent = 1)
        .await;
    let now = || env.clock.now_ms();
    assert_eq!(env.tick(&runner).await.placed, 1);

    env.store
        .set_campaign_status(&env.tenant, &campaign.id, CampaignStatus::Paused, now())
        .await
        .expect("pause");
    // A call in progress when paused ends normally; nothing new is dialled.
    env.end_all(&campaign, CallStatus::Completed).await;
    let report = env.tick(&runner).await;
    assert_eq!((report.settled, report.placed), (1, 0), "{report:?}");
    assert!(
        env.store
            .set_campaign_status(&env.tenant, &campaign.id, CampaignStatus::Paused, now())
            .await
            .is_err(),
        "pausing twice is a conflict"
    );

    env.store
        .set_campaign_status(&env.tenant, &campaign.id, CampaignStatus::Active, now())
        .await
        .expect("resume");
    assert_eq!(env.tick(&runner).await.placed, 1);

    let cancelled = env
        .store
        .set_campaign_status(&env.tenant, &campaign.id, CampaignStatus::Cancelled, now())
        .await
        .expect("cancel");
    assert_eq!(cancelled.status, CampaignStatus::Cancelled);
    let counts = env.counts(&campaign).await;
    assert_eq!(counts.by_outcome.get("cancelled"), Some(&2));
    // The call already in progress finishes and is recorded; no one else is ever dialled.
    env.end_all(&campaign, CallStatus::Completed).await;
    for _ in 0..3 {
        env.clock.advance(chrono::Duration::hours(1));
        assert_eq!(env.tick(&runner).await.placed, 0);
    }
    let counts = env.counts(&campaign).await;
    assert_eq!(counts.by_outcome.get("completed"), Some(&2));
    assert_eq!(counts.state(ContactState::Done), 4);
    assert_eq!(env.fake.calls().len(), 2);
    assert!(
        env.store
            .set_campaign_status(&env.tenant, &campaign.id, CampaignStatus::Active, now())
            .await
            .is_err(),
        "a cancelled campaign cannot resume"
    );
}

async fn twilio_refusals_settle_or_pause(store: &SqlStore) {
    let env = env(store).await;
    let runner = env.runner("node-a");
    let numbers = us_numbers(3);
    let campaign = env
        .campaign(&as_refs(&numbers), |spec| spec.max_concurrent = 1)
        .await;

    env.fake.fail_next_create(
        400,
        r#"{"code":21211,"message":"Invalid 'To' Phone Number","status":400}"#,
        None,
    );
    assert_eq!(env.tick(&runner).await.not_placed, 1);
    assert_eq!(
        env.outcome(&campaign, &numbers[0].0).await.as_deref(),
        Some("invalid_number")
    );

    env.fake.fail_next_create(
        429,
        r#"{"code":20429,"message":"Too Many Requests","status":429}"#,
        Some("20"),
    );
    assert_eq!(env.tick(&runner).await.not_placed, 1);
    let limited = env.contact(&campaign, &numbers[1].0).await;
    assert_eq!(
        (limited.state, limited.attempts),
        (ContactState::Pending, 0)
    );
    assert_eq!(
        limited.next_attempt_at.as_millisecond(),
        env.clock.now_ms() + 20_000
    );

    env.clock.advance(chrono::Duration::seconds(20));
    env.fake.fail_next_create(
        401,
        r#"{"code":20003,"message":"Authenticate","status":401}"#,
        None,
    );
    env.tick(&runner).await;
    assert_eq!(
        env.status(&campaign).await,
        CampaignStatus::Paused,
        "bad credentials pause the campaign"
    );
    // Every refused attempt's call record is closed as failed, never left queued.
    for contact in env.contacts(&campaign).await {
        if let Some(call_id) = contact.call_id {
            let call = env.store.call(&env.tenant, &call_id).await.expect("call");
            assert_eq!(call.status, CallStatus::Failed, "{call_id}");
        }
    }
    assert!(env.metrics.campaign_dials_of("not_placed") >= 3);
}

async fn lost_answer_is_adopted_not_redialled(store: &SqlStore) {
    let env = env(store).await;
    let runner = env.runner("node-a");
    let campaign = env
        .campaign(&[("+14155550110", "America/New_York")], |_| {})
        .await;
    env.fake.lose_next_answers(1);
    let report = env.tick(&runner).await;
    assert_eq!(report.unknown, 1, "{report:?}");
    assert_eq!(
        env.contact(&campaign, "+14155550110").await.state,
        ContactState::Dialing
    );
    // Within the lease nothing happens: the answer may still be on its way.
    env.clock.advance(chrono::Duration::seconds(59));
    assert_eq!(env.tick(&runner).await, TickReport::default());
    // After it, Twilio is asked; the call it placed is adopted, not dialled again.
    env.clock.advance(chrono::Duration::seconds(2));
    let report = env.tick(&runner).await;
    assert_eq!(report.reconciled_adopted, 1, "{report:?}");
    let contact = env.contact(&campaign, "+14155550110").await;
    assert_eq!(contact.state, ContactState::InCall);
    let call = env
        .store
        .call(&env.tenant, contact.call_id.as_deref().expect("call"))
        .await
        .expect("call record");
    assert_eq!(
        call.twilio_call_sid.as_deref(),
        Some(env.fake.calls()[0].sid.as_str())
    );
    env.end_call(&campaign, "+14155550110", CallStatus::Completed)
        .await;
    env.tick(&runner).await;
    assert_eq!(env.fake.calls().len(), 1);
    assert_eq!(
        env.outcome(&campaign, "+14155550110").await.as_deref(),
        Some("completed")
    );
    env.assert_no_violations();
}

async fn claim_of_a_dead_node_is_requeued_and_dialled_once(store: &SqlStore) {
    let env = env(store).await;
    let campaign = env
        .campaign(&[("+14155550111", "America/New_York")], |_| {})
        .await;
    // A node claims the contact and dies before its CreateCall leaves.
    let claimed = env
        .store
        .claim_campaign_contact(
            &env.tenant,
            &campaign.id,
            "dead-node",
            env.clock.now_ms(),
            60_000,
            |_| callbridge::store::Eligibility::Dial,
        )
        .await
        .expect("claim");
    let callbridge::store::ClaimResult::Claimed(orphan) = claimed else {
        panic!("expected a claim, got {claimed:?}");
    };
    let runner = env.runner("node-b");
    assert_eq!(
        env.tick(&runner).await.placed,
        0,
        "the lease protects the claim"
    );
    env.clock.advance(chrono::Duration::seconds(61));
    let report = env.tick(&runner).await;
    assert_eq!(
        (report.reconciled_requeued, report.placed),
        (1, 1),
        "{report:?}"
    );
    assert_eq!(env.fake.calls().len(), 1);
    let orphan_call = env
        .store
        .call(&env.tenant, &orphan.call_id)
        .await
        .expect("orphan");
    assert_eq!(
        (orphan_call.status, orphan_call.end_reason.as_deref()),
        (CallStatus::Failed, Some("not_placed"))
    );
    let contact = env.contact(&campaign, "+14155550111").await;
    assert_eq!((contact.state, contact.attempts), (ContactState::InCall, 1));
    assert_eq!(contact.dialed_by.as_deref(), Some("node-b"));
}

async fn two_dispatchers_share_a_campaign_without_overlap(store: &SqlStore) {
    let env = env(store).await;
    let a = env.runner("node-a");
    let b = env.runner("node-b");
    let numbers = us_numbers(40);
    let campaign = env
        .campaign(&as_refs(&numbers), |spec| spec.max_concurrent = 6)
        .await;
    for round in 0..200 {
        // Which node is polled first alternates: on SQLite one writer at a
        // time means the first poller can take every free slot of a round,
        // so a fixed order would leave the other node idle by chance.
        let (ra, rb) = if round % 2 == 0 {
            tokio::join!(a.tick(), b.tick())
        } else {
            let (rb, ra) = tokio::join!(b.tick(), a.tick());
            (ra, rb)
        };
        ra.expect("tick a");
        rb.expect("tick b");
        let live = env.counts(&campaign).await;
        assert!(
            live.state(ContactState::Dialing) + live.state(ContactState::InCall) <= 6,
            "cap exceeded: {live:?}"
        );
        env.end_all(&campaign, CallStatus::Completed).await;
        env.clock.advance(chrono::Duration::seconds(1));
        if env.status(&campaign).await == CampaignStatus::Completed {
            break;
        }
    }
    let counts = env.counts(&campaign).await;
    assert_eq!(counts.by_outcome.get("completed"), Some(&40), "{counts:?}");
    let dials = env.dials();
    assert_eq!(dials.len(), 40);
    assert!(
        dials.values().all(|n| *n == 1),
        "a contact was dialled twice: {dials:?}"
    );
    let by_node: std::collections::BTreeSet<_> = env
        .contacts(&campaign)
        .await
        .into_iter()
        .filter_map(|c| c.dialed_by)
        .collect();
    assert_eq!(by_node.len(), 2, "both nodes dialled: {by_node:?}");
    env.assert_no_violations();
}

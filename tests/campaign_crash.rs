//! Exactly-once dispatch at the process level: real `callbridge serve` processes run the
//! campaign dispatcher against the fake Twilio REST server (in this test process, so it outlives
//! every kill), which answers each `CreateCall` only after a delay and ends each call by itself,
//! posting its status callback to the bridge. The bridge is killed with SIGKILL mid-campaign
//! (often between placing a call and learning its SID) and restarted; at the end every contact
//! is done and Twilio saw exactly one call per number. The PostgreSQL case runs two nodes on one
//! database and kills one of them.
//!
//! Real time is used (the processes read the system clock), so the calling window is open all
//! day in UTC and the lease is the shortest allowed (30 s): these tests take about a minute.

#[allow(unused_macros)]
mod store_harness;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use callbridge::campaign::window::CallingWindow;
use callbridge::store::{
    Campaign, CampaignSpec, CampaignStatus, ContactState, E164, NewContact, SqlStore, TenantId,
};
use callbridge_testkit::fake_twilio_rest::{FakeTwilioRest, calls_spec};
use callbridge_testkit::{ACCOUNT_SID, AUTH_TOKEN, provision_dialling_tenant};

const CONTACTS: usize = 24;

struct Node {
    child: Child,
    addr: SocketAddr,
}

impl Node {
    /// Starts `callbridge serve` on `addr` against `database_url`, and waits until it answers.
    async fn start(addr: SocketAddr, database_url: &str, fake: &FakeTwilioRest, id: &str) -> Node {
        let child = Command::new(env!("CARGO_BIN_EXE_callbridge"))
            .env_clear()
            .env("PUBLIC_URL", format!("http://{addr}"))
            .env("CALLBRIDGE_LISTEN", addr.to_string())
            .env("TWILIO_ACCOUNT_SID", ACCOUNT_SID)
            .env("TWILIO_AUTH_TOKEN", AUTH_TOKEN)
            .env("TWILIO_API_BASE", &fake.base_url)
            .env(
                "CALLBRIDGE_EGRESS_ALLOW",
                callbridge_testkit::LOOPBACK_EGRESS,
            )
            .env("OPENAI_API_KEY", "sk-test")
            .env("DATABASE_URL", database_url)
            .env("CALLBRIDGE_NODE_ID", id)
            .env("CALLBRIDGE_CAMPAIGN_TICK_MS", "50")
            .env("CALLBRIDGE_CAMPAIGN_LEASE_SECS", "30")
            .env("CALLBRIDGE_CAMPAIGN_CALL_CHECK_SECS", "1")
            .env("CALLBRIDGE_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start callbridge");
        let mut node = Node { child, addr };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok((200, _)) =
                callbridge_testkit::fake_twilio::http_get(node.addr, "/healthz").await
            {
                return node;
            }
            if let Ok(Some(status)) = node.child.try_wait() {
                let mut stderr = String::new();
                if let Some(mut pipe) = node.child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
                }
                panic!("callbridge {id} exited with {status}: {stderr}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("callbridge {id} did not start on {addr}");
    }

    /// SIGKILL: no shutdown code runs.
    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr")
}

async fn fake_twilio() -> FakeTwilioRest {
    let fake = FakeTwilioRest::start(&calls_spec().expect("spec"), ACCOUNT_SID, AUTH_TOKEN)
        .await
        .expect("fake Twilio REST");
    // The answer comes 1 s after the call is placed: a kill in between loses it.
    fake.set_create_delay(Duration::from_secs(1));
    fake.auto_end(Duration::from_millis(600), "completed");
    fake
}

async fn campaign(store: &SqlStore) -> (TenantId, Campaign) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (tenant, agent_id) = provision_dialling_tenant(store, "acme", 100).await;
    let spec = CampaignSpec {
        name: "crash".into(),
        agent_id,
        window: CallingWindow::parse("00:00-24:00", "all")
            .expect("window")
            .to_spec(),
        dial_interval_ms: 100,
        max_concurrent: 4,
        max_attempts: 3,
        retry_delay_s: 1,
        voicemail: None,
    };
    let contacts: Vec<NewContact> = (0..CONTACTS)
        .map(|i| NewContact {
            line: i as u64 + 2,
            e164: E164::parse(&format!("+1415555{:04}", 2000 + i)).expect("valid"),
            zones: vec!["Etc/UTC".into()],
            variables: BTreeMap::new(),
        })
        .collect();
    let campaign = store
        .create_campaign(&tenant, &spec, &contacts, &[])
        .await
        .expect("create campaign");
    (tenant, campaign)
}

/// Waits until the campaign is completed (the dispatchers keep running meanwhile).
async fn wait_completed(store: &SqlStore, tenant: &TenantId, campaign: &Campaign) {
    let deadline = Instant::now() + Duration::from_secs(150);
    loop {
        let now = store
            .campaign(tenant, &campaign.id)
            .await
            .expect("campaign");
        if now.status == CampaignStatus::Completed {
            return;
        }
        if Instant::now() > deadline {
            let counts = store.campaign_counts(tenant, &campaign.id).await;
            panic!("campaign not completed in time: {counts:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn assert_each_dialled_once(
    store: &SqlStore,
    tenant: &TenantId,
    campaign: &Campaign,
    fake: &FakeTwilioRest,
) -> BTreeSet<String> {
    let mut dials: HashMap<String, usize> = HashMap::new();
    for call in fake.calls() {
        *dials
            .entry(call.param("To").unwrap_or_default().to_owned())
            .or_default() += 1;
    }
    assert_eq!(
        dials.len(),
        CONTACTS,
        "a contact was never dialled: {dials:?}"
    );
    let twice: Vec<_> = dials.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "dialled more than once: {twice:?}");
    assert_eq!(fake.violations(), Vec::<String>::new());
    let counts = store
        .campaign_counts(tenant, &campaign.id)
        .await
        .expect("counts");
    assert_eq!(
        counts.by_outcome.get("completed"),
        Some(&(CONTACTS as u64)),
        "{counts:?}"
    );
    store
        .campaign_contacts(tenant, &campaign.id, -1, 1000)
        .await
        .expect("contacts")
        .into_iter()
        .filter_map(|c| c.dialed_by)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_node_killed_twice_loses_and_repeats_nothing() {
    let db = store_harness::sqlite().await;
    let (tenant, campaign) = campaign(&db.store).await;
    let fake = fake_twilio().await;
    let addr = free_addr();
    let mut lost_answers = 0;
    for incarnation in 0..2 {
        let node = Node::start(addr, &db.url, &fake, &format!("node-{incarnation}")).await;
        // Let it claim and dial a few, then kill it wherever it is.
        let placed_before = fake.calls().len();
        let deadline = Instant::now() + Duration::from_secs(20);
        while fake.calls().len() < placed_before + 3 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
        node.kill();
        // The last call was placed 150 ms ago and its answer was due after 1 s: its contact is
        // left `dialing` without a SID, for reconciliation to resolve.
        lost_answers += db
            .store
            .campaign_counts(&tenant, &campaign.id)
            .await
            .expect("counts")
            .state(ContactState::Dialing);
    }
    assert!(
        lost_answers >= 1,
        "no kill landed between a dial and its answer"
    );
    let survivor = Node::start(addr, &db.url, &fake, "node-final").await;
    wait_completed(&db.store, &tenant, &campaign).await;
    let nodes = assert_each_dialled_once(&db.store, &tenant, &campaign, &fake).await;
    assert!(nodes.contains("node-final"), "{nodes:?}");
    drop(survivor);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_two_nodes_share_a_campaign_and_survive_a_kill() {
    let Some(db) = store_harness::postgres().await else {
        return;
    };
    let (tenant, campaign) = campaign(&db.store).await;
    let fake = fake_twilio().await;
    let first = Node::start(free_addr(), &db.url, &fake, "pg-a").await;
    let second = Node::start(free_addr(), &db.url, &fake, "pg-b").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while fake.calls().len() < CONTACTS / 3 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.kill();
    wait_completed(&db.store, &tenant, &campaign).await;
    let nodes = assert_each_dialled_once(&db.store, &tenant, &campaign, &fake).await;
    assert_eq!(
        nodes,
        BTreeSet::from(["pg-a".to_owned(), "pg-b".to_owned()]),
        "both nodes dialled"
    );
    drop(second);
}

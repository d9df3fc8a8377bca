//! The operator CLI, run as the real binary against a temporary SQLite file: the same rules and
//! views as the API, secrets only from stdin, clear one-line errors with a non-zero exit.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use base64::Engine as _;
use callbridge::store::{
    CallDirection, CallEnd, CallEventKind, CallStatus, NewCall, SqlStore, Store, TenantId,
};
use serde_json::{Value, json};

struct Cli {
    dir: tempfile::TempDir,
    master_key: String,
}

fn random_key() -> String {
    base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>())
}

impl Cli {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("prompts")).unwrap();
        std::fs::write(
            dir.path().join("prompts/dental.md"),
            "You answer for a dental office. Caller: {{caller}}.",
        )
        .unwrap();
        Self {
            dir,
            master_key: random_key(),
        }
    }

    fn url(&self) -> String {
        format!(
            "sqlite://{}?mode=rwc",
            self.dir.path().join("cb.db").display()
        )
    }

    fn command(&self, args: &[&str], extra_env: &[(&str, &str)]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_callbridge"));
        command
            .env_clear()
            .env("DATABASE_URL", self.url())
            .env("CALLBRIDGE_PROMPTS_DIR", self.dir.path().join("prompts"))
            .env("CALLBRIDGE_MASTER_KEY", &self.master_key)
            .args(args);
        for (k, v) in extra_env {
            command.env(k, v);
        }
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        self.run_env(args, &[])
    }

    fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        self.command(args, env)
            .stdin(Stdio::null())
            .output()
            .expect("run callbridge")
    }

    fn run_stdin(&self, args: &[&str], env: &[(&str, &str)], input: &str) -> Output {
        let mut child = self
            .command(args, env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn callbridge");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().expect("wait")
    }

    /// Runs, expects success, parses stdout as JSON.
    fn json(&self, args: &[&str]) -> Value {
        let out = self.run(args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    async fn store(&self) -> SqlStore {
        SqlStore::open(&self.url()).await.unwrap()
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[track_caller]
fn fails_with(out: &Output, code: i32, needle: &str) {
    assert_eq!(out.status.code(), Some(code), "stderr: {}", stderr(out));
    let err = stderr(out);
    assert!(err.contains(needle), "{needle:?} not in {err:?}");
    assert_eq!(err.trim_end().lines().count(), 1, "one clear line: {err}");
}

#[test]
fn tenants_agents_and_numbers() {
    let cli = Cli::new();
    let tenant = cli.json(&[
        "tenant",
        "create",
        "--name",
        "Acme Dental",
        "--time-zone",
        "Europe/Paris",
    ]);
    assert_eq!(tenant["id"], "acme-dental");
    assert_eq!(
        cli.json(&["tenant", "list"]).as_array().map(Vec::len),
        Some(1)
    );

    let imported = cli.json(&["prompt", "import", "dental", "--tenant", "acme-dental"]);
    assert_eq!(imported["version"], 1);
    let agent = cli.json(&[
        "agent",
        "create",
        "--tenant",
        "acme-dental",
        "--name",
        "Front",
        "--prompt",
        "dental",
        "--tools",
        "get_current_time,opt_out",
        "--max-duration",
        "600",
        "--silence-timeout",
        "20",
        "--recording",
    ]);
    assert_eq!(
        agent["enabled_tools"],
        json!(["get_current_time", "opt_out"])
    );
    assert_eq!(agent["recording"], true);
    // A tool the tenant cannot run (no calendar connector) is refused when the agent is written.
    fails_with(
        &cli.run(&[
            "agent",
            "create",
            "--tenant",
            "acme-dental",
            "--name",
            "Booker",
            "--prompt",
            "dental",
            "--tools",
            "book_appointment",
        ]),
        1,
        "needs a calendar connector",
    );
    fails_with(
        &cli.run(&[
            "agent",
            "create",
            "--tenant",
            "acme-dental",
            "--name",
            "Vader",
            "--prompt",
            "dental",
            "--voice",
            "darth-vader",
        ]),
        1,
        "not a openai voice",
    );
    assert_eq!(agent["max_duration_s"], 600);

    let number = cli.json(&[
        "number",
        "add",
        "+14155550100",
        "--tenant",
        "acme-dental",
        "--agent",
        "Front",
    ]);
    assert_eq!(number["agent_id"], agent["id"]);

    // The same rules as the API, as one clear line and a non-zero exit.
    fails_with(
        &cli.run(&[
            "number",
            "add",
            "+14155550100",
            "--tenant",
            "acme-dental",
            "--agent",
            "Front",
        ]),
        1,
        "is not available",
    );
    fails_with(
        &cli.run(&[
            "number",
            "add",
            "555-0100",
            "--tenant",
            "acme-dental",
            "--agent",
            "Front",
        ]),
        1,
        "E.164",
    );
    fails_with(
        &cli.run(&[
            "agent",
            "create",
            "--tenant",
            "acme-dental",
            "--name",
            "Other",
            "--prompt",
            "nope",
        ]),
        1,
        "prompt_template",
    );
    fails_with(
        &cli.run(&[
            "tenant",
            "create",
            "--name",
            "X",
            "--time-zone",
            "Mars/Base",
        ]),
        1,
        "time_zone",
    );
    fails_with(
        &cli.run(&["number", "list", "--tenant", "ghost"]),
        1,
        "not found",
    );
    fails_with(
        &cli.run(&["connector", "set", "nosuchcrm", "--tenant", "acme-dental"]),
        1,
        "unknown vendor",
    );
    let numbers = cli.json(&["number", "list", "--tenant", "acme-dental"]);
    assert_eq!(numbers.as_array().map(Vec::len), Some(1));

    // `agent update` changes only the flags given; agents are named by id or name everywhere.
    let updated = cli.json(&[
        "agent",
        "update",
        "Front",
        "--tenant",
        "acme-dental",
        "--voice",
        "cedar",
    ]);
    assert_eq!(updated["voice"], "cedar");
    assert_eq!(
        updated["enabled_tools"],
        json!(["get_current_time", "opt_out"])
    );
    assert_eq!(updated["recording"], true);
    assert_eq!(updated["max_duration_s"], 600);
    let updated = cli.json(&[
        "agent",
        "update",
        "Front",
        "--tenant",
        "acme-dental",
        "--recording",
        "false",
    ]);
    assert_eq!(updated["recording"], false);
    assert_eq!(updated["voice"], "cedar");
    let shown = cli.json(&["agent", "show", "Front", "--tenant", "acme-dental"]);
    assert_eq!(shown["id"], agent["id"]);
    let by_id = cli.json(&[
        "agent",
        "show",
        agent["id"].as_str().unwrap(),
        "--tenant",
        "acme-dental",
    ]);
    assert_eq!(by_id["name"], "Front");

    // The do-not-call list.
    let added = cli.json(&[
        "dnc",
        "add",
        "+14155550123",
        "--tenant",
        "acme-dental",
        "--reason",
        "asked",
    ]);
    assert_eq!(added["number"], "+14155550123");
    let listed = cli.json(&["dnc", "list", "--tenant", "acme-dental"]);
    assert_eq!(listed[0]["reason"], "asked");
    assert!(
        cli.run(&["dnc", "remove", "+14155550123", "--tenant", "acme-dental"])
            .status
            .success()
    );
    assert_eq!(
        cli.json(&["dnc", "list", "--tenant", "acme-dental"]),
        json!([])
    );
    fails_with(
        &cli.run(&["dnc", "remove", "+14155550123", "--tenant", "acme-dental"]),
        1,
        "not found",
    );
    assert_eq!(
        cli.json(&["agent", "list", "--tenant", "acme-dental"])
            .as_array()
            .map(Vec::len),
        Some(1)
    );

    // A bad database URL is a configuration error (exit 2) that does not echo the URL.
    let out = cli.run_env(
        &["tenant", "list"],
        &[("DATABASE_URL", "mysql://user:hunter2@db/cb")],
    );
    fails_with(&out, 2, "DATABASE_URL");
    assert!(!stderr(&out).contains("hunter2"));
}

#[test]
fn secrets_come_from_stdin_and_are_never_printed() {
    let cli = Cli::new();
    cli.json(&[
        "tenant",
        "create",
        "--id",
        "acme",
        "--name",
        "Acme",
        "--time-zone",
        "UTC",
    ]);
    let value = "pat-na1-0123456789abcdef-SECRET";
    let out = cli.run_stdin(
        &[
            "secret", "set", "--tenant", "acme", "--name", "hubspot", "--vendor", "hubspot",
        ],
        &[],
        &format!("{value}\n"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stdout(&out).contains(value) && !stderr(&out).contains(value));
    let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["last4"], "CRET");

    let listed = cli.run(&["secret", "list", "--tenant", "acme"]);
    assert!(listed.status.success());
    assert!(!stdout(&listed).contains(value));

    // No value on stdin, no master key: clear errors; nothing is written.
    fails_with(
        &cli.run_stdin(
            &[
                "secret", "set", "--tenant", "acme", "--name", "empty", "--vendor", "hubspot",
            ],
            &[],
            "",
        ),
        2,
        "stdin",
    );
    fails_with(
        &cli.run_stdin(
            &[
                "secret", "set", "--tenant", "acme", "--name", "other", "--vendor", "hubspot",
            ],
            &[("CALLBRIDGE_MASTER_KEY", "")],
            "some-value-123456",
        ),
        2,
        "CALLBRIDGE_MASTER_KEY",
    );
    // There is no way to pass the value as an argument.
    let out = cli.run(&[
        "secret", "set", "--tenant", "acme", "--name", "x", "--vendor", "hubspot", "--value", value,
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        cli.json(&["secret", "list", "--tenant", "acme"])
            .as_array()
            .map(Vec::len),
        Some(1)
    );

    // Rotation: the new key comes from the environment, the report names no secret.
    fails_with(
        &cli.run(&["secret", "rotate-master"]),
        2,
        "CALLBRIDGE_NEW_MASTER_KEY",
    );
    let new_key = random_key();
    let out = cli.run_env(
        &["secret", "rotate-master"],
        &[("CALLBRIDGE_NEW_MASTER_KEY", &new_key)],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let report = stdout(&out);
    assert!(report.contains("re-encrypted 1 secret(s)"), "{report}");
    assert!(
        !report.contains(&new_key) && !report.contains(&cli.master_key) && !report.contains(value)
    );
    // Under the new key (old one kept as previous) the secret still opens; the old key alone
    // no longer does, so the rotation really re-encrypted.
    let with_new = cli.run_stdin(
        &["webhook", "generate-secret", "--tenant", "acme"],
        &[("CALLBRIDGE_MASTER_KEY", &new_key)],
        "",
    );
    assert!(with_new.status.success(), "{}", stderr(&with_new));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use callbridge::tenant::vault::{Keyring, MasterKey, Vault};
        use secrecy::ExposeSecret;
        let store = cli.store().await;
        let tenant = TenantId::parse("acme").unwrap();
        let new = Vault::new(
            store.clone(),
            Keyring::new(MasterKey::from_base64(&new_key, "test").unwrap()),
        );
        assert_eq!(
            new.reveal(&tenant, "hubspot")
                .await
                .unwrap()
                .expose_secret(),
            value
        );
        let old = Vault::new(
            store,
            Keyring::new(MasterKey::from_base64(&cli.master_key, "test").unwrap()),
        );
        assert!(old.reveal(&tenant, "hubspot").await.is_err());
    });
}

#[test]
fn api_keys_and_calls() {
    let cli = Cli::new();
    cli.json(&[
        "tenant",
        "create",
        "--id",
        "acme",
        "--name",
        "Acme",
        "--time-zone",
        "UTC",
    ]);
    let agent = cli.json(&[
        "agent", "create", "--tenant", "acme", "--name", "Front", "--prompt", "default",
    ]);
    let created = cli.json(&["apikey", "create", "--tenant", "acme"]);
    let key = created["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("cbk_"));
    let listed = cli.run(&["apikey", "list", "--tenant", "acme"]);
    assert!(!stdout(&listed).contains(&key), "a key is shown only once");

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let call_id = rt.block_on(async {
        let store = cli.store().await;
        let tenant = TenantId::parse("acme").unwrap();
        // The issued key authenticates as the tenant.
        let authenticated = callbridge::tenant::api_keys::authenticate(&store, &key)
            .await
            .unwrap()
            .expect("key works");
        assert_eq!(authenticated.tenant_id, tenant);
        let call = store
            .create_call(&NewCall {
                tenant_id: tenant.clone(),
                agent_id: agent["id"].as_str().unwrap().into(),
                direction: CallDirection::Inbound,
                from: "+14155550111".into(),
                to: "+14155550100".into(),
                twilio_call_sid: Some("CA0123".into()),
                status: CallStatus::InProgress,
            })
            .await
            .unwrap();
        store
            .append_call_event(
                &tenant,
                &call.id,
                CallEventKind::Transcript,
                &json!({"role": "caller", "text": "Hello"}),
            )
            .await
            .unwrap();
        store
            .finish_call(
                &tenant,
                &call.id,
                &CallEnd {
                    status: CallStatus::Completed,
                    end_reason: "agent_hangup".into(),
                    recording_path: None,
                },
            )
            .await
            .unwrap();
        call.id
    });
    let calls = cli.json(&["calls", "list", "--tenant", "acme"]);
    assert_eq!(calls[0]["id"], call_id.as_str());
    assert_eq!(calls[0]["end_reason"], "agent_hangup");
    let shown = cli.json(&["calls", "show", &call_id]);
    assert_eq!(shown["call"]["tenant_id"], "acme");
    assert_eq!(shown["events"][0]["payload"]["text"], "Hello");
    fails_with(&cli.run(&["calls", "show", "call_nope"]), 1, "not found");
    fails_with(
        &cli.run(&["calls", "list", "--tenant", "acme", "--limit", "0"]),
        1,
        "limit",
    );

    let revoked = cli.json(&[
        "apikey",
        "revoke",
        created["api_key"]["id"].as_str().unwrap(),
        "--tenant",
        "acme",
    ]);
    assert!(revoked["revoked_at"].is_string());
}

#[test]
fn webhook_settings() {
    let cli = Cli::new();
    cli.json(&[
        "tenant",
        "create",
        "--id",
        "acme",
        "--name",
        "Acme",
        "--time-zone",
        "UTC",
    ]);
    fails_with(
        &cli.run(&[
            "webhook",
            "set",
            "--tenant",
            "acme",
            "--url",
            "https://hooks.example.com/x",
        ]),
        1,
        "secret_name",
    );
    let generated = cli.json(&["webhook", "generate-secret", "--tenant", "acme"]);
    assert!(
        generated["signing_secret"]
            .as_str()
            .unwrap()
            .starts_with("whsec_")
    );
    fails_with(
        &cli.run(&[
            "webhook",
            "set",
            "--tenant",
            "acme",
            "--url",
            "http://hooks.example.com/x",
        ]),
        1,
        "https",
    );
    let set = cli.json(&[
        "webhook",
        "set",
        "--tenant",
        "acme",
        "--url",
        "https://hooks.example.com/x",
    ]);
    assert_eq!(set["secret_name"], "webhook-signing");
    assert_eq!(set["enabled"], true);
    assert_eq!(
        cli.json(&["webhook", "deliveries", "--tenant", "acme"]),
        json!([])
    );
    let out = cli.run(&["webhook", "remove", "--tenant", "acme"]);
    assert!(out.status.success());
    fails_with(
        &cli.run(&["webhook", "show", "--tenant", "acme"]),
        1,
        "not found",
    );
    assert!(Path::new(&cli.dir.path().join("cb.db")).exists());
}

/// `tenant delete` asks first (refuses without a terminal unless `--yes`), and removes the
/// tenant's recording files with its rows; `calls recording` copies a recording out.
#[tokio::test]
async fn tenant_delete_confirms_and_removes_recordings() {
    use callbridge::store::{
        CallDirection, CallEnd, CallStatus, NewCall, SqlStore, Store, TenantId,
    };
    let cli = Cli::new();
    cli.json(&[
        "tenant",
        "create",
        "--id",
        "acme",
        "--name",
        "Acme",
        "--time-zone",
        "UTC",
    ]);
    let agent = cli.json(&[
        "agent", "create", "--tenant", "acme", "--name", "Front", "--prompt", "default",
    ]);
    let store = SqlStore::open(&cli.url()).await.unwrap();
    let acme = TenantId::parse("acme").unwrap();
    let call = store
        .create_call(&NewCall {
            tenant_id: acme.clone(),
            agent_id: agent["id"].as_str().unwrap().to_owned(),
            direction: CallDirection::Inbound,
            from: "+14155550111".into(),
            to: "+14155550100".into(),
            twilio_call_sid: Some("CA1".into()),
            status: CallStatus::InProgress,
        })
        .await
        .unwrap();
    let recording = cli.dir.path().join(format!("{}.wav", call.id));
    std::fs::write(&recording, b"RIFF....WAVE").unwrap();
    store
        .finish_call(
            &acme,
            &call.id,
            &CallEnd {
                status: CallStatus::Completed,
                end_reason: "caller_hangup".into(),
                recording_path: Some(recording.display().to_string()),
            },
        )
        .await
        .unwrap();

    let out_file = cli.dir.path().join("copy.wav");
    let out = cli.run(&[
        "calls",
        "recording",
        &call.id,
        "--tenant",
        "acme",
        "--out",
        out_file.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read(&out_file).unwrap(), b"RIFF....WAVE");

    // No terminal and no --yes: nothing is deleted.
    fails_with(&cli.run(&["tenant", "delete", "acme"]), 2, "--yes");
    assert!(recording.is_file());
    assert_eq!(
        cli.json(&["tenant", "list"]).as_array().map(Vec::len),
        Some(1)
    );
    // Confirmed: the rows and the recording file are gone.
    assert!(
        cli.run(&["tenant", "delete", "acme", "--yes"])
            .status
            .success()
    );
    assert!(!recording.exists(), "the recording file must be removed");
    assert_eq!(cli.json(&["tenant", "list"]), json!([]));
}

#[test]
fn transfer_destinations_from_a_file_or_stdin() {
    let cli = Cli::new();
    cli.json(&[
        "tenant",
        "create",
        "--name",
        "Acme Dental",
        "--time-zone",
        "Europe/Paris",
    ]);
    let agent = cli.json(&[
        "agent",
        "create",
        "--tenant",
        "acme-dental",
        "--name",
        "Front",
        "--prompt",
        "default",
    ]);
    let agent = agent["id"].as_str().unwrap();
    let file = cli.dir.path().join("destinations.json");
    std::fs::write(
        &file,
        json!({"destinations": [{"name": "front-desk", "target": "+15551234567",
            "description": "Reception", "hours": [{"days": ["mon"], "open": "09:00", "close": "12:00"}]}]})
        .to_string(),
    )
    .unwrap();
    let set = cli.json(&[
        "agent",
        "set-transfer-destinations",
        agent,
        "--tenant",
        "acme-dental",
        "--file",
        file.to_str().unwrap(),
    ]);
    assert_eq!(set["destinations"][0]["caller_id"], "agent");
    let shown = cli.json(&[
        "agent",
        "transfer-destinations",
        agent,
        "--tenant",
        "acme-dental",
    ]);
    assert_eq!(shown, set);
    // Bad input: one clear line, nothing changed.
    let out = cli.run_stdin(
        &[
            "agent",
            "set-transfer-destinations",
            agent,
            "--tenant",
            "acme-dental",
            "--file",
            "-",
        ],
        &[],
        r#"{"destinations": [{"name": "x", "target": "5551234", "description": "d"}]}"#,
    );
    fails_with(&out, 1, "transfer destination target");
    let out = cli.run(&[
        "agent",
        "set-transfer-destinations",
        agent,
        "--tenant",
        "acme-dental",
        "--file",
        "/nonexistent/destinations.json",
    ]);
    fails_with(&out, 2, "cannot read");
    let shown = cli.json(&[
        "agent",
        "transfer-destinations",
        agent,
        "--tenant",
        "acme-dental",
    ]);
    assert_eq!(shown, set);
}

#[test]
fn inbound_sources_rules_and_events() {
    let cli = Cli::new();
    cli.json(&[
        "tenant",
        "create",
        "--name",
        "Acme",
        "--time-zone",
        "Europe/Paris",
    ]);
    let url = [("PUBLIC_URL", "https://bridge.example.com")];
    let out = cli.run_env(
        &[
            "inbound", "source", "add", "crm", "--tenant", "acme", "--kind", "standard",
        ],
        &url,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let created: Value = serde_json::from_slice(&out.stdout).expect("json");
    let secret = created["secret"].as_str().expect("secret shown once");
    assert!(secret.starts_with("whsec_"));
    assert_eq!(created["url"], "https://bridge.example.com/hooks/acme/crm");
    let out = cli.run_env(&["inbound", "source", "list", "--tenant", "acme"], &url);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stdout(&out).contains(secret), "never printed again");
    // A vendor-issued secret comes from stdin, never from the command line.
    let out = cli.run_stdin(
        &[
            "inbound",
            "source",
            "add",
            "shop",
            "--tenant",
            "acme",
            "--kind",
            "shopify",
            "--secret-stdin",
        ],
        &url,
        "shpss_0123456789abcdef\n",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stdout(&out).contains("shpss_"));
    let out = cli.run_env(
        &[
            "inbound",
            "rule",
            "add",
            "stop calls",
            "--tenant",
            "acme",
            "--source",
            "crm",
            "--event-type",
            "lead.lost",
            "--action",
            r#"{"type": "cancel_calls", "phone": "data.phone"}"#,
        ],
        &url,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        cli.json(&["inbound", "events", "--tenant", "acme"]),
        json!([])
    );
    fails_with(
        &cli.run_env(
            &["inbound", "replay", "evt_missing", "--tenant", "acme"],
            &url,
        ),
        1,
        "not found",
    );
}

/// `callbridge messaging` and `callbridge notify`: settings from stdin, a rule, and a test send
/// over the tenant's Slack connector (a 127.0.0.1 webhook mock, allowed by the operator's
/// egress allow-list); a channel that needs a recipient says so in one line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messaging_settings_rules_and_a_test_notification() {
    use wiremock::matchers::{body_json, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let slack = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/services/T1/B1/hook"))
        .and(body_json(
            json!({"text": "*callbridge test notification*\nHello staff."}),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .expect(1)
        .mount(&slack)
        .await;
    let cli = Cli::new();
    cli.json(&[
        "tenant",
        "create",
        "--id",
        "acme",
        "--name",
        "Acme",
        "--time-zone",
        "UTC",
    ]);
    let out = cli.run_stdin(
        &["messaging", "set", "--tenant", "acme"],
        &[],
        r#"{"staff": [{"name": "Front desk", "channel": "sms", "address": "+1 415 555 0123"}]}"#,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let shown = cli.json(&["messaging", "show", "--tenant", "acme"]);
    assert_eq!(shown["staff"][0]["address"], "+14155550123");
    let secret = json!({"webhook_url": format!("{}/services/T1/B1/hook", slack.uri())});
    let out = cli.run_stdin(
        &[
            "secret", "set", "--tenant", "acme", "--name", "slack", "--vendor", "slack",
        ],
        &[],
        &secret.to_string(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    cli.json(&[
        "connector",
        "set",
        "slack",
        "--tenant",
        "acme",
        "--secret-name",
        "slack",
    ]);
    let rule = cli.json(&[
        "notify",
        "add",
        "--tenant",
        "acme",
        "--event",
        "booking.created",
        "--channel",
        "slack",
    ]);
    assert_eq!(rule["event"], "booking.created");
    assert_eq!(
        cli.json(&["notify", "rules", "--tenant", "acme"])
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    let allow = [("CALLBRIDGE_EGRESS_ALLOW", "127.0.0.1")];
    let out = cli.run_env(
        &[
            "notify",
            "test",
            "--tenant",
            "acme",
            "--channel",
            "slack",
            "--text",
            "Hello staff.",
        ],
        &allow,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let sent: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(sent["sent"], true);
    let out = cli.run_env(
        &["notify", "test", "--tenant", "acme", "--channel", "sms"],
        &allow,
    );
    fails_with(&out, 2, "needs a recipient (--to)");
    slack.verify().await;
}

//! The admin API over HTTP on 127.0.0.1, against SQLite and PostgreSQL: CRUD of every resource,
//! the tenant isolation matrix (another tenant's objects are 404 and stay unchanged), precise
//! 4xx answers for bad input with nothing half-written, write-only secrets, authentication.

mod api_harness;
#[macro_use]
mod store_harness;

use api_harness::{ADMIN_KEY, Reply, Seeded, TestApi, expect_error, seed_tenant, snapshot};
use callbridge::store::SqlStore;
use reqwest::Method;
use serde_json::{Value, json};

backend_suite!(
    resources_round_trip,
    isolation_matrix,
    bad_input_is_a_precise_4xx_and_writes_nothing,
    secrets_are_write_only,
    secret_writes_need_a_master_key,
    authentication_and_admin_only_operations,
    prompts_are_per_tenant_with_versions,
    agent_patch_changes_only_the_given_fields,
    agents_that_cannot_run_are_refused_when_written,
    do_not_call_list_is_managed_per_tenant,
    recordings_download_only_for_their_tenant,
    inbound_sources_show_their_secret_once_and_stay_per_tenant,
    messaging_settings_and_notification_rules_per_tenant,
);

async fn inbound_sources_show_their_secret_once_and_stay_per_tenant(store: &SqlStore) {
    let api = TestApi::start(store).await;
    let a = seed_tenant(&api, store, "acme", "+14155550100").await;
    let b = seed_tenant(&api, store, "globex", "+14155550101").await;
    let r = api
        .post(
            "/tenants/acme/inbound/sources",
            &a.key,
            json!({"id": "crm", "kind": "standard"}),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    let secret = r.body["secret"]
        .as_str()
        .expect("secret shown once")
        .to_owned();
    assert!(secret.starts_with("whsec_"));
    assert_eq!(r.body["url"], "https://bridge.example.com/hooks/acme/crm");
    let r = api.get("/tenants/acme/inbound/sources", &a.key).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body[0]["id"], "crm");
    assert!(!r.text.contains(&secret) && r.body[0].get("secret").is_none());
    let r = api.get("/tenants/acme/secrets", &a.key).await;
    assert!(!r.text.contains(&secret), "never returned again");
    // Another tenant's key sees nothing of it.
    expect_error(
        &api.get("/tenants/acme/inbound/sources", &b.key).await,
        404,
        "not_found",
    );
    // A vendor that issues its secret needs it; unknown kinds are refused precisely.
    let r = api
        .post(
            "/tenants/acme/inbound/sources",
            &a.key,
            json!({"id": "shop", "kind": "shopify"}),
        )
        .await;
    assert_eq!(r.status, 400, "{r:?}");
    let r = api
        .post(
            "/tenants/acme/inbound/sources",
            &a.key,
            json!({"id": "x", "kind": "fax"}),
        )
        .await;
    assert_eq!(r.status, 400, "{r:?}");
    // Rules: a call rule gets its campaign; a bad action is a 400 naming it.
    let agents = api.get("/tenants/acme/agents", &a.key).await;
    let agent = agents.body[0]["id"].as_str().expect("agent").to_owned();
    let r = api
        .post(
            "/tenants/acme/inbound/rules",
            &a.key,
            json!({"name": "speed to lead", "source": "crm", "event_type": "lead.created",
                   "filter": [{"path": "data.status", "equals": "new"}],
                   "action": {"type": "call", "agent_id": agent, "phone": "data.phone",
                              "variables": {"name": "data.first_name"}}}),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    assert!(r.body["action"]["campaign_id"].is_string(), "{r:?}");
    let r = api
        .post(
            "/tenants/acme/inbound/rules",
            &a.key,
            json!({"name": "bad", "source": "crm", "event_type": "x",
                   "action": {"type": "send_message", "phone": "p"}}),
        )
        .await;
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(
        api.get("/tenants/acme/inbound/rules", &a.key)
            .await
            .body
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    let r = api
        .get("/tenants/acme/inbound/events?limit=5", &a.key)
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, json!([]));
    let r = api
        .post(
            "/tenants/acme/inbound/events/evt_missing/replay",
            &a.key,
            json!({}),
        )
        .await;
    assert_eq!(r.status, 404, "{r:?}");
    let r = api
        .delete("/tenants/acme/inbound/sources/crm", &a.key)
        .await;
    assert_eq!(r.status, 204, "{r:?}");
}

async fn resources_round_trip(store: &SqlStore) {
    let api = TestApi::start(store).await;
    let a = seed_tenant(&api, store, "acme", "+14155550100").await;
    let k = a.key.as_str();

    let r = api.get("/tenants/acme", k).await;
    assert_eq!(r.body["time_zone"], "Europe/Paris");
    let r = api
        .patch("/tenants/acme", k, json!({"name": "Acme Dental"}))
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["name"], "Acme Dental");
    assert_eq!(r.body["time_zone"], "Europe/Paris");

    let r = api.get("/tenants/acme/agents", k).await;
    assert_eq!(r.body.as_array().map(Vec::len), Some(1));
    assert_eq!(r.body[0]["prompt_template"], "dental");
    let r = api
        .put(
            &format!("/tenants/acme/agents/{}", a.agent_id),
            k,
            json!({"name": "Front desk", "prompt_template": "default", "max_duration_s": 600,
                   "silence_timeout_s": 20, "recording": true, "voice": "cedar"}),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["name"], "Front desk");
    assert_eq!(r.body["recording"], true);
    assert_eq!(r.body["enabled_tools"], json!([]));

    let r = api
        .post(
            "/tenants/acme/agents",
            k,
            json!({"name": "After hours", "prompt_template": "default"}),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    let second = r.body["id"].as_str().unwrap().to_owned();
    let r = api
        .put(
            "/tenants/acme/numbers/%2B14155550100",
            k,
            json!({"agent": "After hours"}),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["agent_id"], second);
    // An agent still routed from a number cannot be deleted.
    let r = api
        .delete(&format!("/tenants/acme/agents/{second}"), k)
        .await;
    expect_error(&r, 409, "conflict");
    let r = api.delete("/tenants/acme/numbers/+14155550100", k).await;
    assert_eq!(r.status, 204, "{r:?}");
    let r = api
        .delete(&format!("/tenants/acme/agents/{second}"), k)
        .await;
    assert_eq!(r.status, 204, "{r:?}");

    let r = api.get("/tenants/acme/connectors/hubspot", k).await;
    assert_eq!(r.body["secret_name"], "hubspot-token");
    let r = api
        .put(
            "/tenants/acme/connectors/calcom",
            k,
            json!({"base_url": "https://cal.example.com/api"}),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let r = api.get("/tenants/acme/connectors", k).await;
    assert_eq!(r.body.as_array().map(Vec::len), Some(2));
    // A secret in use by a connector cannot be deleted; after the connector goes, it can.
    expect_error(
        &api.delete("/tenants/acme/secrets/hubspot-token", k).await,
        409,
        "conflict",
    );
    assert_eq!(
        api.delete("/tenants/acme/connectors/hubspot", k)
            .await
            .status,
        204
    );
    assert_eq!(
        api.delete("/tenants/acme/secrets/hubspot-token", k)
            .await
            .status,
        204
    );

    let r = api.get("/tenants/acme/calls", k).await;
    assert_eq!(r.body.as_array().map(Vec::len), Some(1));
    assert_eq!(r.body[0]["end_reason"], "caller_hangup");
    let r = api
        .get(&format!("/tenants/acme/calls/{}", a.call_id), k)
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["call"]["status"], "completed");
    assert_eq!(r.body["events"][0]["payload"]["text"], "Hi");

    let r = api.get("/tenants/acme/webhook", k).await;
    assert_eq!(r.body["url"], "https://hooks.example.com/calls");
    assert_eq!(r.body["enabled"], true);
    let r = api.get("/tenants/acme/webhook/deliveries", k).await;
    assert_eq!(r.body, json!([]));

    let r = api.get("/tenants/acme/api-keys", k).await;
    assert_eq!(r.body.as_array().map(Vec::len), Some(1));
    assert!(r.body[0].get("key").is_none());

    // Tenant creation derives the id from the name when none is given.
    let r = api
        .post(
            "/tenants",
            ADMIN_KEY,
            json!({"name": "Dental West, Inc.", "time_zone": "America/Los_Angeles"}),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.body["id"], "dental-west-inc");
    let r = api.get("/tenants", ADMIN_KEY).await;
    assert_eq!(r.body.as_array().map(Vec::len), Some(2));
    assert_eq!(
        api.delete("/tenants/dental-west-inc", ADMIN_KEY)
            .await
            .status,
        204
    );
    expect_error(
        &api.get("/tenants/dental-west-inc", ADMIN_KEY).await,
        404,
        "not_found",
    );
}

/// Every endpoint, called with tenant A's key on tenant B's objects.
fn foreign_requests(a: &Seeded, b: &Seeded) -> Vec<(Method, String, Option<Value>)> {
    let bt = format!("/tenants/{}", b.tenant);
    let at = format!("/tenants/{}", a.tenant);
    let agent_body = json!({"name": "Intruder", "prompt_template": "default"});
    vec![
        (Method::GET, bt.clone(), None),
        (Method::PATCH, bt.clone(), Some(json!({"name": "Pwned"}))),
        (Method::DELETE, bt.clone(), None),
        (Method::POST, format!("{bt}/api-keys"), None),
        (Method::GET, format!("{bt}/api-keys"), None),
        (Method::DELETE, format!("{bt}/api-keys/{}", b.key_id), None),
        (
            Method::POST,
            format!("{bt}/numbers"),
            Some(json!({"number": "+14155550177", "agent": b.agent_id})),
        ),
        (Method::GET, format!("{bt}/numbers"), None),
        (
            Method::PUT,
            format!("{bt}/numbers/{}", b.number),
            Some(json!({"agent": b.agent_id})),
        ),
        (Method::DELETE, format!("{bt}/numbers/{}", b.number), None),
        (
            Method::POST,
            format!("{bt}/agents"),
            Some(agent_body.clone()),
        ),
        (Method::GET, format!("{bt}/agents"), None),
        (Method::GET, format!("{bt}/agents/{}", b.agent_id), None),
        (
            Method::PUT,
            format!("{bt}/agents/{}", b.agent_id),
            Some(agent_body.clone()),
        ),
        (Method::DELETE, format!("{bt}/agents/{}", b.agent_id), None),
        (Method::GET, format!("{bt}/connectors"), None),
        (
            Method::PUT,
            format!("{bt}/connectors/hubspot"),
            Some(json!({"base_url": "https://evil.example.com"})),
        ),
        (Method::GET, format!("{bt}/connectors/hubspot"), None),
        (Method::DELETE, format!("{bt}/connectors/hubspot"), None),
        (Method::GET, format!("{bt}/secrets"), None),
        (
            Method::PUT,
            format!("{bt}/secrets/hubspot-token"),
            Some(json!({"vendor": "hubspot", "value": "overwritten-value-123"})),
        ),
        (Method::GET, format!("{bt}/secrets/hubspot-token"), None),
        (Method::DELETE, format!("{bt}/secrets/hubspot-token"), None),
        (Method::GET, format!("{bt}/calls"), None),
        (Method::GET, format!("{bt}/calls/{}", b.call_id), None),
        (Method::GET, format!("{bt}/webhook"), None),
        (
            Method::PUT,
            format!("{bt}/webhook"),
            Some(json!({"url": "https://evil.example.com", "secret_name": "webhook-signing"})),
        ),
        (Method::DELETE, format!("{bt}/webhook"), None),
        (Method::POST, format!("{bt}/webhook/signing-secret"), None),
        (Method::GET, format!("{bt}/webhook/deliveries"), None),
        // B's object ids through A's own tenant path.
        (Method::GET, format!("{at}/agents/{}", b.agent_id), None),
        (
            Method::PUT,
            format!("{at}/agents/{}", b.agent_id),
            Some(agent_body),
        ),
        (Method::DELETE, format!("{at}/agents/{}", b.agent_id), None),
        (
            Method::PUT,
            format!("{at}/numbers/{}", b.number),
            Some(json!({"agent": a.agent_id})),
        ),
        (Method::DELETE, format!("{at}/numbers/{}", b.number), None),
        (
            Method::PUT,
            format!("{at}/numbers/{}", a.number),
            Some(json!({"agent": b.agent_id})),
        ),
        (
            Method::POST,
            format!("{at}/numbers"),
            Some(json!({"number": "+14155550178", "agent": b.agent_id})),
        ),
        (Method::DELETE, format!("{at}/api-keys/{}", b.key_id), None),
        (Method::GET, format!("{at}/calls/{}", b.call_id), None),
    ]
}

async fn isolation_matrix(store: &SqlStore) {
    let api = TestApi::start(store).await;
    let a = seed_tenant(&api, store, "tenant-a", "+14155550100").await;
    let b = seed_tenant(&api, store, "tenant-b", "+14155550200").await;
    let before_b = snapshot(&api, "tenant-b").await;
    let before_a = snapshot(&api, "tenant-a").await;

    // What a tenant that does not exist at all looks like, for comparison.
    let ghost = api.get("/tenants/no-such-tenant", &a.key).await;
    expect_error(&ghost, 404, "not_found");

    for (method, path, body) in foreign_requests(&a, &b) {
        let r = api.call(method.clone(), &path, Some(&a.key), body).await;
        expect_error(&r, 404, "not_found");
        assert!(
            !r.text.contains(&b.secret),
            "{method} {path} leaked a secret"
        );
        if path == format!("/tenants/{}", b.tenant) {
            // Indistinguishable from a tenant that does not exist.
            assert_eq!(
                r.body["error"]["message"]
                    .as_str()
                    .map(|m| m.replace("tenant-b", "X")),
                ghost.body["error"]["message"]
                    .as_str()
                    .map(|m| m.replace("no-such-tenant", "X")),
            );
        }
    }
    // A tenant key sees only its own tenant in the list.
    let r = api.get("/tenants", &a.key).await;
    assert_eq!(r.body.as_array().map(Vec::len), Some(1));
    assert_eq!(r.body[0]["id"], "tenant-a");

    assert_eq!(snapshot(&api, "tenant-b").await, before_b, "B changed");
    assert_eq!(snapshot(&api, "tenant-a").await, before_a, "A changed");
    // B's key still works (its key was not revoked through A).
    assert_eq!(api.get("/tenants/tenant-b", &b.key).await.status, 200);
}

async fn bad_input_is_a_precise_4xx_and_writes_nothing(store: &SqlStore) {
    let api = TestApi::start(store).await;
    let a = seed_tenant(&api, store, "acme", "+14155550100").await;
    let b = seed_tenant(&api, store, "other", "+14155550200").await;
    let k = a.key.as_str();
    let before = snapshot(&api, "acme").await;

    let field = |r: &Reply, status: u16, code: &str, name: &str| {
        let body = expect_error(r, status, code);
        assert_eq!(body["error"]["field"], name, "{r:?}");
    };

    // Phone numbers.
    for bad in ["555", "+1 415 555 0100", "14155550100", "+0123456789", ""] {
        let r = api
            .post(
                "/tenants/acme/numbers",
                k,
                json!({"number": bad, "agent": "Front"}),
            )
            .await;
        field(&r, 400, "invalid_field", "number");
    }
    // Another tenant's number: a conflict, not a silent move.
    let r = api
        .post(
            "/tenants/acme/numbers",
            k,
            json!({"number": b.number, "agent": "Front"}),
        )
        .await;
    expect_error(&r, 409, "conflict");
    assert!(!r.text.contains("other"), "names the owner: {r:?}");
    let r = api
        .post(
            "/tenants/acme/numbers",
            k,
            json!({"number": a.number, "agent": "Front"}),
        )
        .await;
    expect_error(&r, 409, "conflict");

    // Vendors and references.
    let r = api
        .put("/tenants/acme/connectors/nosuchcrm", k, json!({}))
        .await;
    field(&r, 400, "invalid_field", "vendor");
    let r = api
        .put(
            "/tenants/acme/connectors/calcom",
            k,
            json!({"secret_name": "missing"}),
        )
        .await;
    field(&r, 400, "invalid_field", "secret_name");
    let r = api
        .put(
            "/tenants/acme/connectors/calcom",
            k,
            json!({"base_url": "ftp://cal.example.com"}),
        )
        .await;
    field(&r, 400, "invalid_field", "base_url");
    let r = api
        .put(
            "/tenants/acme/secrets/x-token",
            k,
            json!({"vendor": "nosuchcrm", "value": "abcdefghijklmnop"}),
        )
        .await;
    field(&r, 400, "invalid_field", "vendor");
    let r = api
        .put(
            "/tenants/acme/secrets/signing",
            k,
            json!({"vendor": "webhook", "value": "not-a-whsec-secret"}),
        )
        .await;
    field(&r, 400, "invalid_field", "value");

    // Agents: prompt templates, limits, types.
    let agent = |extra: Value| {
        let mut body = json!({"name": "New", "prompt_template": "default"});
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                b.insert(k.clone(), v.clone());
            }
        }
        body
    };
    for (extra, name) in [
        (json!({"prompt_template": "missing"}), "prompt_template"),
        (
            json!({"prompt_template": "../etc/passwd"}),
            "prompt_template",
        ),
        (
            json!({"prompt_template": "x".repeat(5000)}),
            "prompt_template",
        ),
        (json!({"max_duration_s": 5}), "max_duration_s"),
        (json!({"max_duration_s": "long"}), "max_duration_s"),
        (json!({"silence_timeout_s": 0}), "silence_timeout_s"),
        (json!({"name": ""}), "name"),
        (json!({"provider": "Open AI"}), "provider"),
        (json!({"enabled_tools": ["Bad Tool"]}), "enabled_tools"),
        (json!({"nmae": "typo"}), "nmae"),
    ] {
        let r = api
            .post("/tenants/acme/agents", k, agent(extra.clone()))
            .await;
        field(&r, 400, "invalid_field", name);
    }
    let r = api
        .post(
            "/tenants/acme/agents",
            k,
            json!({"prompt_template": "default"}),
        )
        .await;
    field(&r, 400, "invalid_field", "name");
    // Duplicate agent name.
    let r = api
        .post("/tenants/acme/agents", k, agent(json!({"name": "Front"})))
        .await;
    expect_error(&r, 409, "conflict");
    // Oversized and broken prompts are refused when written (or imported), not at call time.
    std::fs::write(api.prompts.path().join("huge.md"), "Be nice. ".repeat(5000)).unwrap();
    let r = api
        .post(
            "/tenants/acme/prompt-imports",
            k,
            json!({"template": "huge"}),
        )
        .await;
    expect_error(&r, 422, "prompt_too_large");
    let r = api
        .put(
            "/tenants/acme/prompts/huge",
            k,
            json!({"text": "Be nice. ".repeat(4000)}),
        )
        .await;
    expect_error(&r, 422, "prompt_too_large");
    let r = api
        .put(
            "/tenants/acme/prompts/broken",
            k,
            json!({"text": "Hello {{caller_name}}"}),
        )
        .await;
    expect_error(&r, 422, "invalid_prompt");
    let r = api
        .post(
            "/tenants/acme/agents",
            k,
            agent(json!({"prompt_template": "broken"})),
        )
        .await;
    field(&r, 400, "invalid_field", "prompt_template");

    // Bodies: malformed, oversized, wrong media type.
    let r = api
        .raw(
            Method::POST,
            "/tenants/acme/agents",
            k,
            b"{\"name\": ".to_vec(),
        )
        .await;
    expect_error(&r, 400, "malformed_json");
    let r = api
        .raw(Method::POST, "/tenants/acme/agents", k, b"[1, 2]".to_vec())
        .await;
    expect_error(&r, 400, "invalid_field");
    let mut huge = b"{\"name\": \"".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 70 * 1024));
    huge.extend(b"\", \"prompt_template\": \"default\"}");
    let r = api.raw(Method::POST, "/tenants/acme/agents", k, huge).await;
    expect_error(&r, 413, "payload_too_large");
    let r = api
        .client
        .post(format!("{}/tenants/acme/agents", api.base))
        .bearer_auth(k)
        .body(r#"{"name": "x"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 415);

    // Tenants.
    let r = api
        .post(
            "/tenants",
            ADMIN_KEY,
            json!({"id": "new", "name": "New", "time_zone": "Mars/Olympus_Mons"}),
        )
        .await;
    field(&r, 400, "invalid_field", "time_zone");
    let r = api
        .post(
            "/tenants",
            ADMIN_KEY,
            json!({"id": "Bad Id", "name": "New", "time_zone": "UTC"}),
        )
        .await;
    field(&r, 400, "invalid_field", "id");
    let r = api
        .post(
            "/tenants",
            ADMIN_KEY,
            json!({"id": "acme", "name": "Again", "time_zone": "UTC"}),
        )
        .await;
    expect_error(&r, 409, "conflict");
    let r = api
        .patch("/tenants/acme", k, json!({"time_zone": "Nowhere/Else"}))
        .await;
    field(&r, 400, "invalid_field", "time_zone");

    // Webhook settings.
    let r = api
        .put(
            "/tenants/acme/webhook",
            k,
            json!({"url": "http://hooks.example.com/", "secret_name": "webhook-signing"}),
        )
        .await;
    field(&r, 400, "invalid_field", "url");
    let r = api
        .put(
            "/tenants/acme/webhook",
            k,
            json!({"url": "https://hooks.example.com/", "secret_name": "hubspot-token"}),
        )
        .await;
    field(&r, 400, "invalid_field", "secret_name");

    // Query strings.
    field(
        &api.get("/tenants/acme/calls?limit=0", k).await,
        400,
        "invalid_field",
        "limit",
    );
    expect_error(
        &api.get("/tenants/acme/calls?limit=many", k).await,
        400,
        "invalid_field",
    );
    // Unknown routes answer JSON too.
    expect_error(
        &api.get("/tenants/acme/nothing-here", k).await,
        404,
        "not_found",
    );

    let after = snapshot(&api, "acme").await;
    assert_eq!(after, before, "a refused request wrote something");
    assert_eq!(
        api.get("/tenants", ADMIN_KEY)
            .await
            .body
            .as_array()
            .map(Vec::len),
        Some(2)
    );
}

async fn secrets_are_write_only(store: &SqlStore) {
    let api = TestApi::start(store).await;
    let a = seed_tenant(&api, store, "acme", "+14155550100").await;
    let k = a.key.as_str();
    let value = "shpat_0123456789abcdefSECRETvalue";
    let r = api
        .put(
            "/tenants/acme/secrets/shop",
            k,
            json!({"vendor": "shopify", "value": value}),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["last4"], "alue");
    assert!(r.body.get("value").is_none());
    let generated = api
        .post(
            "/tenants/acme/webhook/signing-secret",
            k,
            json!({"secret_name": "rotated-signing"}),
        )
        .await;
    assert_eq!(generated.status, 201, "{generated:?}");
    let signing = generated.body["signing_secret"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(signing.starts_with("whsec_"));

    let mut seen = String::new();
    for path in [
        "/tenants/acme/secrets",
        "/tenants/acme/secrets/shop",
        "/tenants/acme/secrets/rotated-signing",
        "/tenants/acme/connectors",
        "/tenants/acme/webhook",
        "/tenants/acme",
        "/tenants/acme/agents",
    ] {
        let r = api.get(path, k).await;
        assert_eq!(r.status, 200, "{path}: {r:?}");
        seen.push_str(&r.text);
        let r = api.get(path, ADMIN_KEY).await;
        seen.push_str(&r.text);
    }
    for secret in [value, &a.secret, &signing, &signing["whsec_".len()..]] {
        assert!(!seen.contains(secret), "a secret value was returned");
    }
    let r = api.get("/tenants/acme/secrets", k).await;
    let names: Vec<&str> = r
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "hubspot-token",
            "rotated-signing",
            "shop",
            "webhook-signing"
        ]
    );
    for s in r.body.as_array().unwrap() {
        let keys: Vec<&String> = s.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            [
                "created_at",
                "last4",
                "name",
                "tenant_id",
                "updated_at",
                "vendor"
            ]
        );
    }
}

async fn secret_writes_need_a_master_key(store: &SqlStore) {
    let api = TestApi::start_without_vault(store).await;
    let r = api
        .post(
            "/tenants",
            ADMIN_KEY,
            json!({"id": "acme", "name": "Acme", "time_zone": "UTC"}),
        )
        .await;
    assert_eq!(r.status, 201);
    let r = api
        .put(
            "/tenants/acme/secrets/token",
            ADMIN_KEY,
            json!({"vendor": "hubspot", "value": "pat-0123456789abcdef"}),
        )
        .await;
    let body = expect_error(&r, 503, "vault_unavailable");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("CALLBRIDGE_MASTER_KEY")
    );
    let r = api
        .post("/tenants/acme/webhook/signing-secret", ADMIN_KEY, json!({}))
        .await;
    expect_error(&r, 503, "vault_unavailable");
    assert_eq!(
        api.get("/tenants/acme/secrets", ADMIN_KEY).await.body,
        json!([])
    );
}

async fn authentication_and_admin_only_operations(store: &SqlStore) {
    let api = TestApi::start(store).await;
    let a = seed_tenant(&api, store, "acme", "+14155550100").await;

    let r = api.call(Method::GET, "/tenants", None, None).await;
    expect_error(&r, 401, "unauthorized");
    for bad in [
        "wrong",
        "admin-key-0123456789abcdefghiX",
        "cbk_000000000000_nope",
        &a.key[..a.key.len() - 1],
    ] {
        let r = api.get("/tenants/acme", bad).await;
        expect_error(&r, 401, "unauthorized");
    }
    let r = api
        .client
        .get(format!("{}/tenants", api.base))
        .header("authorization", format!("Basic {ADMIN_KEY}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(
        r.headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok()),
        Some("Bearer")
    );

    // Tenant keys cannot create or delete tenants.
    let r = api
        .post(
            "/tenants",
            &a.key,
            json!({"id": "mine", "name": "Mine", "time_zone": "UTC"}),
        )
        .await;
    expect_error(&r, 403, "forbidden");
    expect_error(&api.delete("/tenants/acme", &a.key).await, 403, "forbidden");

    // A revoked key stops working at once; a new key works.
    let r = api.post("/tenants/acme/api-keys", &a.key, json!({})).await;
    let second = r.body["key"].as_str().unwrap().to_owned();
    let r = api
        .delete(&format!("/tenants/acme/api-keys/{}", a.key_id), &second)
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.body["revoked_at"].is_string());
    expect_error(&api.get("/tenants/acme", &a.key).await, 401, "unauthorized");
    assert_eq!(api.get("/tenants/acme", &second).await.status, 200);
}

#[tokio::test]
async fn openapi_documents_every_route_without_auth() {
    let db = store_harness::sqlite().await;
    let api = TestApi::start(&db.store).await;
    let r = api.call(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["servers"][0]["url"], "/api/v1");
    assert!(r.body["components"]["securitySchemes"]["bearer"].is_object());
    let expected: &[(&str, &[&str])] = &[
        ("/tenants", &["get", "post"]),
        ("/tenants/{tenant}", &["delete", "get", "patch"]),
        ("/tenants/{tenant}/api-keys", &["get", "post"]),
        ("/tenants/{tenant}/api-keys/{key_id}", &["delete"]),
        ("/tenants/{tenant}/numbers", &["get", "post"]),
        ("/tenants/{tenant}/numbers/{number}", &["delete", "put"]),
        ("/tenants/{tenant}/agents", &["get", "post"]),
        (
            "/tenants/{tenant}/agents/{agent}",
            &["delete", "get", "patch", "put"],
        ),
        ("/tenants/{tenant}/do-not-call", &["get", "post"]),
        ("/tenants/{tenant}/do-not-call/{number}", &["delete"]),
        ("/tenants/{tenant}/inbound/events", &["get"]),
        ("/tenants/{tenant}/inbound/events/{event}", &["get"]),
        ("/tenants/{tenant}/inbound/events/{event}/replay", &["post"]),
        ("/tenants/{tenant}/inbound/rules", &["get", "post"]),
        ("/tenants/{tenant}/inbound/rules/{rule}", &["delete"]),
        ("/tenants/{tenant}/inbound/sources", &["get", "post"]),
        ("/tenants/{tenant}/inbound/sources/{source}", &["delete"]),
        ("/tenants/{tenant}/prompts", &["get"]),
        ("/tenants/{tenant}/prompts/{name}", &["get", "put"]),
        ("/tenants/{tenant}/prompts/{name}/versions", &["get"]),
        ("/tenants/{tenant}/prompts/{name}/diff", &["get"]),
        ("/tenants/{tenant}/prompts/{name}/rollback", &["post"]),
        ("/tenants/{tenant}/prompt-imports", &["post"]),
        ("/prompt-templates", &["get"]),
        ("/tenants/{tenant}/connectors", &["get"]),
        (
            "/tenants/{tenant}/connectors/{vendor}",
            &["delete", "get", "put"],
        ),
        ("/tenants/{tenant}/secrets", &["get"]),
        (
            "/tenants/{tenant}/secrets/{name}",
            &["delete", "get", "put"],
        ),
        ("/calls", &["post"]),
        ("/tenants/{tenant}/calls", &["get"]),
        ("/tenants/{tenant}/calls/{call}", &["get"]),
        ("/tenants/{tenant}/calls/{call}/recording", &["get"]),
        ("/tenants/{tenant}/webhook", &["delete", "get", "put"]),
        ("/tenants/{tenant}/webhook/signing-secret", &["post"]),
        ("/tools/{tool}/invoke", &["post"]),
        ("/tenants/{tenant}/webhook/deliveries", &["get"]),
        ("/campaigns", &["get", "post"]),
        ("/campaigns/{campaign}", &["get"]),
        ("/campaigns/{campaign}/pause", &["post"]),
        ("/campaigns/{campaign}/resume", &["post"]),
        ("/campaigns/{campaign}/cancel", &["post"]),
        ("/campaigns/{campaign}/results.csv", &["get"]),
        ("/tenants/{tenant}/dial-limits", &["get", "put"]),
        ("/tenants/{tenant}/connections", &["get"]),
        ("/tenants/{tenant}/connections/{vendor}", &["delete", "get"]),
        ("/tenants/{tenant}/connections/{vendor}/start", &["post"]),
        ("/oauth-apps", &["get"]),
        ("/oauth-apps/{vendor}", &["delete", "get", "put"]),
        ("/tenants/{tenant}/oauth-apps", &["get"]),
        (
            "/tenants/{tenant}/oauth-apps/{vendor}",
            &["delete", "get", "put"],
        ),
        (
            "/tenants/{tenant}/agents/{agent}/transfer-destinations",
            &["get", "put"],
        ),
        ("/tenants/{tenant}/calls/live", &["get"]),
        ("/tenants/{tenant}/calls/{call}/hangup", &["post"]),
        ("/tenants/{tenant}/calls/{call}/inject", &["post"]),
        ("/tenants/{tenant}/calls/{call}/transfer", &["post"]),
        ("/tenants/{tenant}/calls/{call}/events", &["get"]),
        (
            "/tenants/{tenant}/agents/{agent}/analysis",
            &["delete", "get", "put"],
        ),
        ("/tenants/{tenant}/calls/{call}/analysis", &["get"]),
        (
            "/tenants/{tenant}/agents/{agent}/mcp-servers",
            &["get", "put"],
        ),
        ("/tenants/{tenant}/messaging", &["get", "put"]),
        ("/tenants/{tenant}/notification-rules", &["get", "post"]),
        ("/tenants/{tenant}/notification-rules/{rule}", &["delete"]),
        ("/tenants/{tenant}/notifications", &["get"]),
        ("/tenants/{tenant}/retention", &["get", "put"]),
    ];
    let paths = r.body["paths"].as_object().expect("paths");
    let mut documented: Vec<(String, Vec<String>)> = paths
        .iter()
        .map(|(path, item)| {
            let mut methods: Vec<String> = item
                .as_object()
                .unwrap()
                .keys()
                .filter(|k| ["get", "post", "put", "patch", "delete"].contains(&k.as_str()))
                .cloned()
                .collect();
            methods.sort();
            (path.clone(), methods)
        })
        .collect();
    documented.sort();
    let mut wanted: Vec<(String, Vec<String>)> = expected
        .iter()
        .map(|(p, m)| (p.to_string(), m.iter().map(|s| s.to_string()).collect()))
        .collect();
    wanted.sort();
    assert_eq!(documented, wanted);

    // And every documented operation is really served: without a key each answers 401 (an
    // undocumented or unrouted one would be the JSON 404 fallback).
    for (path, methods) in &wanted {
        let concrete = path
            .replace("{tenant}", "acme")
            .replace("{number}", "+14155550100")
            .replace(['{', '}'], "");
        for method in methods {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let r = api.call(method.clone(), &concrete, None, None).await;
            assert_eq!(r.status, 401, "{method} {concrete}: {r:?}");
        }
    }
}

#[tokio::test]
async fn served_by_the_server_router_with_the_configured_admin_key() {
    let bridge = callbridge_testkit::TestBridge::start("ws://127.0.0.1:9/v1/realtime", |args| {
        args.admin_key = Some(ADMIN_KEY.into());
    })
    .await;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();
    let base = format!("http://{}/api/v1", bridge.addr);
    let created = client
        .post(format!("{base}/tenants"))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({"name": "Acme", "time_zone": "UTC"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status().as_u16(), 201);
    let listed: Value = client
        .get(format!("{base}/tenants"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed[0]["id"], "acme");
    let unauthenticated = client.get(format!("{base}/tenants")).send().await.unwrap();
    assert_eq!(unauthenticated.status().as_u16(), 401);
    let doc = client
        .get(format!("{base}/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(doc.status().as_u16(), 200);
}

/// Every `{name}` in a path template, in order.
fn template_params(path: &str) -> Vec<String> {
    path.split('{')
        .skip(1)
        .filter_map(|s| s.split_once('}').map(|(name, _)| name.to_owned()))
        .collect()
}

/// The served document is a valid OpenAPI 3.1 document (the OpenAPI Initiative's own JSON Schema,
/// vendored under fixtures/openapi/), and its parameters agree with the path templates: every
/// `{param}` is declared `in: path`, and nothing else is.
#[tokio::test]
async fn openapi_document_is_valid_openapi_3_1() {
    let db = store_harness::sqlite().await;
    let api = TestApi::start(&db.store).await;
    let r = api.call(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(r.status, 200, "{r:?}");
    let doc = r.body;

    let schema: Value = serde_json::from_str(include_str!(
        "../fixtures/openapi/oas-3.1-schema-2022-10-07.json"
    ))
    .unwrap();
    let validator =
        jsonschema::draft202012::new(&schema).expect("the OpenAPI meta-schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(&doc)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "invalid OpenAPI document:\n{}",
        errors.join("\n")
    );

    let mut problems = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        let mut templated = template_params(path);
        templated.sort();
        for (method, op) in item.as_object().unwrap() {
            let Some(params) = op.get("parameters").and_then(Value::as_array) else {
                if !templated.is_empty() {
                    problems.push(format!(
                        "{method} {path}: no parameters, {templated:?} undeclared"
                    ));
                }
                continue;
            };
            let mut declared: Vec<String> = params
                .iter()
                .filter(|p| p["in"] == "path")
                .map(|p| p["name"].as_str().unwrap_or_default().to_owned())
                .collect();
            declared.sort();
            if declared != templated {
                problems.push(format!(
                    "{method} {path}: path parameters {declared:?}, template has {templated:?}"
                ));
            }
            for p in params {
                if p["in"] == "path" && p["required"] != true {
                    problems.push(format!(
                        "{method} {path}: path parameter {} not required",
                        p["name"]
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Prompts live in the store per tenant: versions kept, diff, roll back, checked at write time;
/// an agent names only its own tenant's prompt, and the prompts directory is an import source,
/// never a channel between tenants.
async fn prompts_are_per_tenant_with_versions(store: &SqlStore) {
    let api = TestApi::start(store).await;
    let a = seed_tenant(&api, store, "acme", "+14155550100").await;
    let b = seed_tenant(&api, store, "beta", "+14155550101").await;
    let (ka, kb) = (a.key.as_str(), b.key.as_str());

    // Tenant A writes its own instructions over the imported template.
    let r = api
        .put(
            "/tenants/acme/prompts/dental",
            ka,
            json!({"text": "Acme only.\nThe caller is {{caller}}."}),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["version"], 2);
    let r = api
        .put(
            "/tenants/acme/prompts/dental",
            ka,
            json!({"text": "Acme only.\nBe brief.\nThe caller is {{caller}}."}),
        )
        .await;
    assert_eq!(r.body["version"], 3);
    let r = api.get("/tenants/acme/prompts/dental/versions", ka).await;
    assert_eq!(r.status, 200, "{r:?}");
    let versions: Vec<i64> = r
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_i64().unwrap())
        .collect();
    assert_eq!(versions, vec![1, 2, 3]);
    let r = api
        .get("/tenants/acme/prompts/dental/diff?from=2", ka)
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["to"], 3);
    assert_eq!(
        r.body["diff"],
        " Acme only.\n+Be brief.\n The caller is {{caller}}.\n"
    );
    let r = api
        .post(
            "/tenants/acme/prompts/dental/rollback",
            ka,
            json!({"version": 2}),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["version"], 4);
    assert_eq!(r.body["text"], "Acme only.\nThe caller is {{caller}}.");
    let r = api.get("/tenants/acme/prompts/dental?version=1", ka).await;
    assert_eq!(
        r.body["text"],
        "You are the receptionist. The caller is {{caller}}."
    );
    let r = api.get("/tenants/acme/prompts", ka).await;
    assert_eq!(r.body.as_array().map(Vec::len), Some(1));
    assert_eq!(r.body[0]["version"], 4);

    // Tenant B sees none of it: A's prompt answers like a missing one, under either tenant.
    expect_error(
        &api.get("/tenants/acme/prompts/dental", kb).await,
        404,
        "not_found",
    );
    expect_error(
        &api.get("/tenants/acme/prompts/dental/diff?from=1", kb)
            .await,
        404,
        "not_found",
    );
    expect_error(
        &api.post(
            "/tenants/acme/prompts/dental/rollback",
            kb,
            json!({"version": 1}),
        )
        .await,
        404,
        "not_found",
    );
    // B's own copy is the template file's text (imported by the seed), not A's edits.
    let r = api.get("/tenants/beta/prompts/dental", kb).await;
    assert_eq!(r.body["version"], 1);
    assert_eq!(
        r.body["text"],
        "You are the receptionist. The caller is {{caller}}."
    );
    // B cannot point its agent at a prompt only A has.
    let r = api
        .put(
            "/tenants/acme/prompts/acme-secret",
            ka,
            json!({"text": "Acme's secret script."}),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let r = api
        .post(
            "/tenants/beta/agents",
            kb,
            json!({"name": "Thief", "prompt_template": "acme-secret"}),
        )
        .await;
    field(&r, 400, "invalid_field", "prompt_template");
    let r = api
        .put(
            &format!("/tenants/beta/agents/{}", b.agent_id),
            kb,
            json!({"name": "Front", "prompt_template": "acme-secret"}),
        )
        .await;
    field(&r, 400, "invalid_field", "prompt_template");
    // Nor write into A's prompts.
    expect_error(
        &api.put(
            "/tenants/acme/prompts/dental",
            kb,
            json!({"text": "Hijacked"}),
        )
        .await,
        404,
        "not_found",
    );
    assert_eq!(
        api.get("/tenants/acme/prompts/dental", ka).await.body["version"],
        4
    );

    // Bad names and versions are precise errors.
    let r = api
        .put("/tenants/beta/prompts/default", kb, json!({"text": "x"}))
        .await;
    field(&r, 400, "invalid_field", "name");
    expect_error(
        &api.get("/tenants/beta/prompts/dental?version=9", kb).await,
        404,
        "not_found",
    );
    let r = api
        .post(
            "/tenants/beta/prompt-imports",
            kb,
            json!({"template": "../../etc/passwd"}),
        )
        .await;
    field(&r, 400, "invalid_field", "template");
    let r = api.get("/prompt-templates", kb).await;
    assert_eq!(r.body, json!(["dental"]));
}

/// An error answer about `name`.
fn field(r: &Reply, status: u16, code: &str, name: &str) {
    let body = expect_error(r, status, code);
    assert_eq!(body["error"]["field"], name, "{r:?}");
}

/// `PATCH` is a JSON merge patch: turning recording on keeps the enabled tools; `null` resets a
/// field; the agent is named by id or name on every route.
async fn agent_patch_changes_only_the_given_fields(store: &SqlStore) {
    let api = TestApi::start(store).await;
    let a = seed_tenant(&api, store, "acme", "+14155550100").await;
    let k = a.key.as_str();
    let before = api
        .get(&format!("/tenants/acme/agents/{}", a.agent_id), k)
        .await;
    assert_eq!(before.body["enabled_tools"], json!(["log_call_note"]));

    let r = api
        .patch("/tenants/acme/agents/Front", k, json!({"recording": true}))
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["recording"], true);
    assert_eq!(r.body["enabled_tools"], json!(["log_call_note"]));
    assert_eq!(r.body["prompt_template"], "dental");
    assert_eq!(r.body["id"], a.agent_id);

    let r = api
        .patch(
            &format!("/tenants/acme/agents/{}", a.agent_id),
            k,
            json!({"voicemail": {"action": "hangup"}, "voice": "cedar"}),
        )
        .await;
    assert_eq!(r.body["voicemail"]["action"], "hangup");
    assert_eq!(r.body["voice"], "cedar");
    assert_eq!(r.body["recording"], true);
    // null resets to the default.
    let r = api
        .patch(
            "/tenants/acme/agents/Front",
            k,
            json!({"voicemail": null, "voice": null}),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.body["voicemail"].is_null(), "{r:?}");
    assert_eq!(r.body["voice"], "marin");
    assert_eq!(r.body["enabled_tools"], json!(["log_call_note"]));

    // Bad patches are refused and change nothing.
    let snapshot_before = api.get("/tenants/acme/agents/Front", k).await.body;
    for (patch, name) in [
        (json!({"recording": true, "nmae": "x"}), "nmae"),
        (json!({"max_duration_s": 1}), "max_duration_s"),
        (json!({"prompt_template": "nope"}), "prompt_template"),
    ] {
        let r = api.patch("/tenants/acme/agents/Front", k, patch).await;
        field(&r, 400, "invalid_field", name);
    }
    let r = api.patch("/tenants/acme/agents/Front", k, json!([1])).await;
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(
        api.get("/tenants/acme/agents/Front", k).await.body,
        snapshot_before
    );

    // Name or id on show, replace and delete; another tenant's agent name is a 404.
    let b = seed_tenant(&api, store, "beta", "+14155550101").await;
    expect_error(
        &api.patch(
            "/tenants/beta/agents/Front",
            &a.key,
            json!({"recording": true}),
        )
        .await,
        404,
        "not_found",
    );
    let r = api
        .put(
            "/tenants/beta/agents/Front",
            &b.key,
            json!({"name": "Front", "prompt_template": "dental", "recording": true}),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["enabled_tools"], json!([]));
    let r = api
        .post("/tenants/beta/agents", &b.key, json!({"name": "Spare"}))
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(
        api.delete("/tenants/beta/agents/Spare", &b.key)
            .await
            .status,
        204
    );
    expect_error(
        &api.get("/tenants/beta/agents/Spare", &b.key).await,
        404,
        "not_found",
    );
}

/// An agent is checked when it is written: a provider this server speaks to and has a key for,
/// a model and voice of that provider, tools that exist and that the tenant can run.
async fn agents_that_cannot_run_are_refused_when_written(store: &SqlStore) {
    let api = TestApi::start(store).await;
    let a = seed_tenant(&api, store, "acme", "+14155550100").await;
    let k = a.key.as_str();
    let before = snapshot(&api, "acme").await;
    for (body, name, words) in [
        (
            json!({"provider": "anthropic"}),
            "provider",
            "unknown provider",
        ),
        (
            json!({"provider": "xai", "model": "grok-voice-think-fast-1.0", "voice": "ara"}),
            "provider",
            "XAI_API_KEY",
        ),
        (json!({"model": "gpt-4o"}), "model", "realtime"),
        (json!({"voice": "darth-vader"}), "voice", "marin"),
        (
            json!({"enabled_tools": ["teleport"]}),
            "enabled_tools",
            "unknown tool",
        ),
        (
            json!({"enabled_tools": ["book_appointment"]}),
            "enabled_tools",
            "calendar connector",
        ),
    ] {
        let mut full = json!({"name": "Broken", "prompt_template": "dental"});
        for (key, value) in body.as_object().unwrap() {
            full[key] = value.clone();
        }
        let r = api.post("/tenants/acme/agents", k, full).await;
        field(&r, 400, "invalid_field", name);
        assert!(r.text.contains(words), "{name}: {}", r.text);
        // The same checks guard replacing and patching.
        let r = api
            .patch("/tenants/acme/agents/Front", k, body.clone())
            .await;
        field(&r, 400, "invalid_field", name);
    }
    assert_eq!(snapshot(&api, "acme").await, before, "nothing written");
    // What the tenant can run is accepted: the CRM tool its HubSpot connector serves.
    let r = api
        .post(
            "/tenants/acme/agents",
            k,
            json!({"name": "Notes", "enabled_tools": ["log_call_note", "get_current_time", "end_call"]}),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
}

/// The do-not-call list through the API: add (idempotent), list, remove; another tenant's list
/// is invisible and untouchable; bad numbers are precise errors.
async fn do_not_call_list_is_managed_per_tenant(store: &SqlStore) {
    let api = TestApi::start(store).await;
    let a = seed_tenant(&api, store, "acme", "+14155550100").await;
    let b = seed_tenant(&api, store, "beta", "+14155550101").await;
    let (ka, kb) = (a.key.as_str(), b.key.as_str());
    let r = api
        .post(
            "/tenants/acme/do-not-call",
            ka,
            json!({"number": "+14155550123", "reason": "asked on the phone"}),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.body["number"], "+14155550123");
    assert_eq!(r.body["reason"], "asked on the phone");
    let r = api
        .post(
            "/tenants/acme/do-not-call",
            ka,
            json!({"number": "+14155550123"}),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.body["reason"], "asked on the phone");
    let r = api.get("/tenants/acme/do-not-call", ka).await;
    assert_eq!(r.body.as_array().map(Vec::len), Some(1), "{r:?}");
    // The dialer sees the same list.
    let acme = callbridge::store::TenantId::parse("acme").unwrap();
    let number = callbridge::store::E164::parse("+14155550123").unwrap();
    assert!(store.is_do_not_call(&acme, &number).await.unwrap());

    // Tenant B: A's list is a 404 and stays as it is.
    expect_error(
        &api.get("/tenants/acme/do-not-call", kb).await,
        404,
        "not_found",
    );
    expect_error(
        &api.delete("/tenants/acme/do-not-call/%2B14155550123", kb)
            .await,
        404,
        "not_found",
    );
    assert_eq!(
        api.get("/tenants/beta/do-not-call", kb).await.body,
        json!([])
    );
    expect_error(
        &api.delete("/tenants/beta/do-not-call/%2B14155550123", kb)
            .await,
        404,
        "not_found",
    );
    assert!(store.is_do_not_call(&acme, &number).await.unwrap());

    let r = api
        .post(
            "/tenants/acme/do-not-call",
            ka,
            json!({"number": "555-0100"}),
        )
        .await;
    field(&r, 400, "invalid_field", "number");
    let r = api
        .post(
            "/tenants/acme/do-not-call",
            ka,
            json!({"number": "+14155550124", "reason": "x".repeat(300)}),
        )
        .await;
    field(&r, 400, "invalid_field", "reason");

    let r = api
        .delete("/tenants/acme/do-not-call/%2B14155550123", ka)
        .await;
    assert_eq!(r.status, 204, "{r:?}");
    assert!(!store.is_do_not_call(&acme, &number).await.unwrap());
    expect_error(
        &api.delete("/tenants/acme/do-not-call/%2B14155550123", ka)
            .await,
        404,
        "not_found",
    );
}

/// `GET …/calls/{call}/recording` serves the file with its media type, to its tenant only.
async fn recordings_download_only_for_their_tenant(store: &SqlStore) {
    use callbridge::store::{CallEnd, CallStatus, Store, TenantId};
    let api = TestApi::start(store).await;
    let a = seed_tenant(&api, store, "acme", "+14155550100").await;
    let b = seed_tenant(&api, store, "beta", "+14155550101").await;
    // No recording yet: 404.
    let path = format!("/tenants/acme/calls/{}/recording", a.call_id);
    expect_error(&api.get(&path, &a.key).await, 404, "not_found");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(format!("{}.wav", a.call_id));
    let bytes: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&file, &bytes).unwrap();
    let acme = TenantId::parse("acme").unwrap();
    store
        .finish_call(
            &acme,
            &a.call_id,
            &CallEnd {
                status: CallStatus::Completed,
                end_reason: "caller_hangup".into(),
                recording_path: Some(file.display().to_string()),
            },
        )
        .await
        .unwrap();
    let r = api
        .client
        .get(format!("{}{path}", api.base))
        .bearer_auth(&a.key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["content-type"], "audio/wav");
    assert_eq!(r.bytes().await.unwrap().as_ref(), bytes.as_slice());
    // Another tenant: the same 404 as a missing call, by either path.
    expect_error(&api.get(&path, &b.key).await, 404, "not_found");
    expect_error(
        &api.get(
            &format!("/tenants/beta/calls/{}/recording", a.call_id),
            &b.key,
        )
        .await,
        404,
        "not_found",
    );
    // The file gone (retention): 404, not a 500.
    std::fs::remove_file(&file).unwrap();
    expect_error(&api.get(&path, &a.key).await, 404, "not_found");
}

/// Messaging settings and notification rules through the API: stored canonical, refused precisely,
/// invisible to another tenant.
async fn messaging_settings_and_notification_rules_per_tenant(store: &SqlStore) {
    let api = TestApi::start(store).await;
    let a = seed_tenant(&api, store, "acme", "+14155550100").await;
    let b = seed_tenant(&api, store, "beta", "+14155550101").await;
    let (ka, kb) = (a.key.as_str(), b.key.as_str());
    let r = api.get("/tenants/acme/messaging", ka).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["dedup_ttl_secs"], 21600, "defaults: {r:?}");
    let r = api
        .put(
            "/tenants/acme/messaging",
            ka,
            json!({
                "staff": [{"name": "Front desk", "channel": "SMS", "address": "+1 415 555 0123"}],
                "email_domains": ["Clinic.Example"],
                "per_call_limit": 2
            }),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["staff"][0]["address"], "+14155550123");
    assert_eq!(r.body["staff"][0]["channel"], "sms");
    assert_eq!(r.body["email_domains"], json!(["clinic.example"]));
    let r = api
        .put(
            "/tenants/acme/messaging",
            ka,
            json!({"staff": [{"name": "caller", "channel": "sms", "address": "+14155550123"}]}),
        )
        .await;
    field(&r, 400, "invalid_field", "staff[0]");
    assert_eq!(
        api.get("/tenants/acme/messaging", ka).await.body["per_call_limit"],
        2,
        "a refused write changes nothing"
    );
    let r = api
        .post(
            "/tenants/acme/notification-rules",
            ka,
            json!({"event": "booking.created", "channel": "slack"}),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    let rule = r.body["id"].as_str().expect("id").to_owned();
    let r = api
        .post(
            "/tenants/acme/notification-rules",
            ka,
            json!({"event": "booking.made", "channel": "slack"}),
        )
        .await;
    field(&r, 400, "invalid_field", "rule");
    let r = api
        .post(
            "/tenants/acme/notification-rules",
            ka,
            json!({"event": "opt_out", "channel": "email", "recipient": "caller"}),
        )
        .await;
    field(&r, 400, "invalid_field", "rule");
    // Tenant B sees none of it and cannot remove it.
    expect_error(
        &api.get("/tenants/acme/messaging", kb).await,
        404,
        "not_found",
    );
    expect_error(
        &api.delete(&format!("/tenants/acme/notification-rules/{rule}"), kb)
            .await,
        404,
        "not_found",
    );
    assert_eq!(
        api.get("/tenants/beta/notification-rules", kb).await.body,
        json!([])
    );
    let r = api
        .delete(&format!("/tenants/acme/notification-rules/{rule}"), ka)
        .await;
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(
        api.get("/tenants/acme/notifications", ka).await.body,
        json!([])
    );
}

//! The campaign endpoints of the admin API over HTTP on 127.0.0.1, against SQLite and PostgreSQL:
//! creating from a CSV file (bad rows reported with their lines and stored, strict mode, bad
//! headers, size limits), tenant isolation on every campaign route, pause/resume/cancel and
//! their conflicts, the results export, and the admin-only tenant dial limits. No dispatcher
//! runs: nothing here dials.

mod api_harness;
#[macro_use]
mod store_harness;

use api_harness::{ADMIN_KEY, Reply, TestApi, expect_error, seed_tenant};
use callbridge::store::{ClaimResult, Eligibility, SqlStore, TenantId};
use reqwest::Method;
use serde_json::{Value, json};

backend_suite!(
    create_reports_bad_rows_by_line_and_stores_them,
    refused_files_write_nothing,
    large_files_are_accepted_and_exported_page_by_page,
    every_campaign_route_is_tenant_scoped,
    pause_resume_cancel_and_their_conflicts,
    dial_limits_are_set_by_the_admin_only,
    exported_cells_never_start_a_formula,
);

const MIXED_CSV: &str = "phone,name,plan\n\
                         +14155552671,Ana,gold\n\
                         +1555,Bob,silver\n\
                         +442079460958,\"Smith, Jo\",bronze\n\
                         \n\
                         +14155552671,Ana again,gold\n\
                         +13125550123,Finn,gold\n";

fn campaign_body(csv: &str) -> Value {
    json!({"name": "Spring renewals", "agent": "Front", "csv": csv})
}

/// Creates a campaign with the tenant key; returns its id.
async fn create(api: &TestApi, key: &str, body: Value) -> String {
    let r = api.post("/campaigns", key, body).await;
    assert_eq!(r.status, 201, "{r:?}");
    r.body["id"].as_str().expect("campaign id").to_owned()
}

fn lines(rows: &Value) -> Vec<u64> {
    rows.as_array()
        .expect("rows")
        .iter()
        .map(|r| r["line"].as_u64().expect("line"))
        .collect()
}

async fn create_reports_bad_rows_by_line_and_stores_them(store: &SqlStore) {
    let api = TestApi::start(store).await;
    let a = seed_tenant(&api, store, "acme", "+14155550100").await;
    let r = api
        .post(
            "/campaigns",
            &a.key,
            json!({"name": "Spring renewals", "agent": "Front", "csv": MIXED_CSV,
                   "window": {"hours": "10:00-18:30", "days": "mon-fri"},
                   "calls_per_second": 4, "max_concurrent": 2, "max_attempts": 5,
                   "retry_delay_secs": 600,
                   "voicemail": {"action": "message", "message": "Hi, this is Acme."}}),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    let v = &r.body;
    assert_eq!(v["tenant_id"], "acme");
    assert_eq!(v["agent_id"], a.agent_id.as_str());
    assert_eq!(v["status"], "active");
    assert_eq!(
        v["window"],
        json!({"hours": "10:00-18:30", "days": "mon-fri"})
    );
    assert_eq!(v["calls_per_second"], 4.0);
    assert_eq!(v["dial_interval_ms"], 250);
    assert_eq!(v["max_concurrent"], 2);
    assert_eq!(v["max_attempts"], 5);
    assert_eq!(v["retry_delay_secs"], 600);
    assert_eq!(
        v["voicemail"],
        json!({"action": "message", "message": "Hi, this is Acme."})
    );
    assert_eq!(v["counts"]["total"], 3);
    assert_eq!(v["counts"]["pending"], 3);
    assert_eq!(v["rejected_count"], 2);
    assert_eq!(lines(&v["rejected"]), vec![3, 6]);
    assert!(
        v["rejected"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("invalid phone number"))
    );
    assert!(
        v["rejected"][1]["message"]
            .as_str()
            .is_some_and(|m| m.contains("duplicate of line 2"))
    );
    let id = v["id"].as_str().expect("id").to_owned();

    // Stored with the campaign: the GET shows the same rows; the list gives the count.
    let got = api.get(&format!("/campaigns/{id}"), &a.key).await;
    assert_eq!(got.status, 200, "{got:?}");
    assert_eq!(lines(&got.body["rejected"]), vec![3, 6]);
    let listed = api.get("/campaigns", &a.key).await;
    assert_eq!(listed.body.as_array().map(Vec::len), Some(1));
    assert_eq!(listed.body[0]["rejected_count"], 2);
    assert!(listed.body[0].get("rejected").is_none());

    // Defaults; the admin names the tenant, and the agent by id.
    let r = api
        .post(
            "/campaigns",
            ADMIN_KEY,
            json!({"tenant": "acme", "name": "Defaults", "agent": a.agent_id,
                   "csv": "phone\n+14155552671\n"}),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(
        r.body["window"],
        json!({"hours": "09:00-20:00", "days": "mon-sat"})
    );
    assert_eq!(r.body["calls_per_second"], 1.0);
    assert_eq!(r.body["max_concurrent"], 5);
    assert_eq!(r.body["max_attempts"], 3);
    assert_eq!(r.body["retry_delay_secs"], 3600);
    assert_eq!(r.body["voicemail"], Value::Null);
    assert_eq!(r.body["rejected"], json!([]));
    let r = api.get("/campaigns?tenant=acme", ADMIN_KEY).await;
    assert_eq!(r.body.as_array().map(Vec::len), Some(2), "{r:?}");
    let r = api.get(&format!("/campaigns/{id}"), ADMIN_KEY).await;
    assert_eq!(r.status, 200, "{r:?}");

    // The results: file order, the fixed columns, then the variables.
    let response = api
        .client
        .get(format!("{}/campaigns/{id}/results.csv", api.base))
        .bearer_auth(&a.key)
        .send()
        .await
        .expect("results");
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("text/csv; charset=utf-8")
    );
    let text = response.text().await.expect("body");
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .expect("header")
        .iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        header,
        [
            "line",
            "phone",
            "state",
            "outcome",
            "attempts",
            "last_status",
            "answered_by",
            "call_id",
            "dialed_by",
            "last_error",
            "waiting_reason",
            "next_attempt_at",
            "var.name",
            "var.plan"
        ]
    );
    let rows: Vec<Vec<String>> = reader
        .records()
        .map(|r| r.expect("row").iter().map(str::to_owned).collect())
        .collect();
    assert_eq!(rows.len(), 3);
    assert_eq!(
        rows[1],
        [
            "4",
            "+442079460958",
            "pending",
            "",
            "0",
            "",
            "",
            "",
            "",
            "",
            "",
            "",
            "Smith, Jo",
            "bronze"
        ]
    );
    let phones: Vec<&str> = rows.iter().map(|r| r[1].as_str()).collect();
    assert_eq!(phones, ["+14155552671", "+442079460958", "+13125550123"]);
}

async fn refused_files_write_nothing(store: &SqlStore) {
    let api = TestApi::start(store).await;
    let a = seed_tenant(&api, store, "acme", "+14155550100").await;
    let k = a.key.as_str();

    // Strict: one bad row refuses the file, and the answer lists the bad rows.
    let mut strict = campaign_body(MIXED_CSV);
    strict["strict"] = json!(true);
    let body = expect_error(&api.post("/campaigns", k, strict).await, 400, "invalid_csv");
    assert_eq!(body["error"]["field"], "csv");
    assert_eq!(lines(&body["error"]["rejected"]), vec![3, 6]);

    // A bad header, and a file with no good row.
    let body = expect_error(
        &api.post("/campaigns", k, campaign_body("name,plan\nAna,gold\n"))
            .await,
        400,
        "invalid_csv",
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("phone column"))
    );
    let body = expect_error(
        &api.post("/campaigns", k, campaign_body("phone,name\n+1555,Bob\n"))
            .await,
        400,
        "invalid_csv",
    );
    assert_eq!(lines(&body["error"]["rejected"]), vec![2]);

    // Settings the campaign cannot run with, each naming its field.
    let csv = "phone\n+14155552671\n";
    for (extra, field) in [
        (json!({"calls_per_second": 0}), "calls_per_second"),
        (json!({"calls_per_second": 100.5}), "calls_per_second"),
        (json!({"window": {"hours": "20:00-09:00"}}), "window"),
        (json!({"window": {"days": "someday"}}), "window"),
        (json!({"max_attempts": 0}), "max_attempts"),
        (json!({"max_concurrent": 0}), "max_concurrent"),
        (json!({"retry_delay_secs": -1}), "retry_delay_secs"),
        (
            json!({"voicemail": {"action": "message"}}),
            "voicemail.message",
        ),
        (json!({"voicemail": {"action": "sing"}}), "voicemail.action"),
        (json!({"name": ""}), "name"),
        (json!({"colour": "blue"}), "colour"),
    ] {
        let mut body = campaign_body(csv);
        for (k, v) in extra.as_object().expect("object") {
            body[k] = v.clone();
        }
        let r = api.post("/campaigns", &a.key, body).await;
        let error = expect_error(&r, 400, "invalid_field");
        assert_eq!(error["error"]["field"], field, "{extra}: {r:?}");
    }
    let r = api
        .post(
            "/campaigns",
            k,
            json!({"name": "x", "agent": "Nobody", "csv": csv}),
        )
        .await;
    expect_error(&r, 404, "not_found");
    let r = api
        .post(
            "/campaigns",
            ADMIN_KEY,
            json!({"name": "x", "agent": "Front", "csv": csv}),
        )
        .await;
    assert_eq!(
        expect_error(&r, 400, "invalid_field")["error"]["field"],
        "tenant"
    );

    // Over 10 MiB of CSV: 413 with the limit named.
    let huge = format!("phone,note\n{}", "+14155552671,x\n".repeat(700_000));
    assert!(huge.len() > 10 * 1024 * 1024);
    let body = expect_error(
        &api.post("/campaigns", k, campaign_body(&huge)).await,
        413,
        "payload_too_large",
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("10 MiB"))
    );

    assert_eq!(api.get("/campaigns", k).await.body, json!([]));
}

async fn large_files_are_accepted_and_exported_page_by_page(store: &SqlStore) {
    let api = TestApi::start(store).await;
    let a = seed_tenant(&api, store, "acme", "+14155550100").await;
    // Far over the 64 KiB limit of other bodies, and more than two pages of the export.
    let count = 2_500;
    let mut csv = String::from("phone,note\n");
    for i in 0..count {
        csv.push_str(&format!(
            "+1415555{i:04},customer {i} with a note long enough to make the file large\n"
        ));
    }
    assert!(csv.len() > 128 * 1024);
    let id = create(&api, &a.key, campaign_body(&csv)).await;
    let r = api.get(&format!("/campaigns/{id}"), &a.key).await;
    assert_eq!(r.body["counts"]["total"], count);

    let r = api
        .get(&format!("/campaigns/{id}/results.csv"), &a.key)
        .await;
    assert_eq!(r.status, 200);
    let mut reader = csv::Reader::from_reader(r.text.as_bytes());
    let mut expected_line = 2;
    for record in reader.records() {
        let record = record.expect("row");
        assert_eq!(record.get(0), Some(expected_line.to_string().as_str()));
        assert_eq!(
            record.get(1),
            Some(format!("+1415555{:04}", expected_line - 2).as_str())
        );
        expected_line += 1;
    }
    assert_eq!(expected_line - 2, count, "every contact exactly once");
}

/// Every campaign route, called with tenant A's key on tenant B's objects.
fn foreign_requests(b_tenant: &str, b_campaign: &str) -> Vec<(Method, String, Option<Value>)> {
    let c = format!("/campaigns/{b_campaign}");
    vec![
        (
            Method::POST,
            "/campaigns".into(),
            Some(json!({"tenant": b_tenant, "name": "x", "agent": "Front",
                        "csv": "phone\n+14155552671\n"})),
        ),
        (Method::GET, format!("/campaigns?tenant={b_tenant}"), None),
        (Method::GET, c.clone(), None),
        (Method::POST, format!("{c}/pause"), None),
        (Method::POST, format!("{c}/resume"), None),
        (Method::POST, format!("{c}/cancel"), None),
        (Method::GET, format!("{c}/results.csv"), None),
        (
            Method::GET,
            format!("/tenants/{b_tenant}/dial-limits"),
            None,
        ),
        (
            Method::PUT,
            format!("/tenants/{b_tenant}/dial-limits"),
            Some(json!({"max_concurrent": 1, "calls_per_second": 1})),
        ),
    ]
}

async fn every_campaign_route_is_tenant_scoped(store: &SqlStore) {
    let api = TestApi::start(store).await;
    let a = seed_tenant(&api, store, "tenant-a", "+14155550100").await;
    let b = seed_tenant(&api, store, "tenant-b", "+14155550101").await;
    let a_campaign = create(&api, &a.key, campaign_body(MIXED_CSV)).await;
    let b_campaign = create(&api, &b.key, campaign_body(MIXED_CSV)).await;
    let before = api
        .get(&format!("/campaigns/{b_campaign}"), ADMIN_KEY)
        .await;
    let missing = api.get("/campaigns/cmp_no_such_campaign", &a.key).await;
    expect_error(&missing, 404, "not_found");

    for (method, path, body) in foreign_requests("tenant-b", &b_campaign) {
        let r: Reply = api.call(method.clone(), &path, Some(&a.key), body).await;
        assert_eq!(r.status, 404, "{method} {path}: {r:?}");
        assert_eq!(r.body["error"]["code"], "not_found", "{method} {path}");
    }
    let after = api
        .get(&format!("/campaigns/{b_campaign}"), ADMIN_KEY)
        .await;
    assert_eq!(before.body, after.body, "B's campaign is untouched");
    assert_eq!(after.body["status"], "active");

    // A's own view: only its campaign.
    let listed = api.get("/campaigns", &a.key).await;
    let ids: Vec<&str> = listed
        .body
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|c| c["id"].as_str())
        .collect();
    assert_eq!(ids, [a_campaign.as_str()]);
    // The admin sees either by id, and must name the tenant to list.
    assert_eq!(
        api.get(&format!("/campaigns/{a_campaign}"), ADMIN_KEY)
            .await
            .status,
        200
    );
    let r = api.get("/campaigns", ADMIN_KEY).await;
    assert_eq!(
        expect_error(&r, 400, "invalid_field")["error"]["field"],
        "tenant"
    );
}

async fn pause_resume_cancel_and_their_conflicts(store: &SqlStore) {
    let api = TestApi::start(store).await;
    let a = seed_tenant(&api, store, "acme", "+14155550100").await;
    let k = a.key.as_str();
    let id = create(&api, k, campaign_body(MIXED_CSV)).await;
    let status = |r: &Reply| r.body["status"].as_str().unwrap_or_default().to_owned();

    let r = api
        .post(&format!("/campaigns/{id}/pause"), k, json!({}))
        .await;
    assert_eq!((r.status, status(&r)), (200, "paused".into()), "{r:?}");
    let r = api
        .post(&format!("/campaigns/{id}/pause"), k, json!({}))
        .await;
    let error = expect_error(&r, 409, "conflict");
    assert!(
        error["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("is paused")),
        "{r:?}"
    );
    let r = api
        .post(&format!("/campaigns/{id}/resume"), k, json!({}))
        .await;
    assert_eq!((r.status, status(&r)), (200, "active".into()), "{r:?}");
    expect_error(
        &api.post(&format!("/campaigns/{id}/resume"), k, json!({}))
            .await,
        409,
        "conflict",
    );

    // One contact is being dialled when the campaign is cancelled: it is left to finish.
    let tenant = TenantId::parse("acme").expect("tenant id");
    let claimed = store
        .claim_campaign_contact(&tenant, &id, "node-test", 1_000, 60_000, |_| {
            Eligibility::Dial
        })
        .await
        .expect("claim");
    let ClaimResult::Claimed(claimed) = claimed else {
        panic!("expected a claim, got {claimed:?}");
    };

    let r = api
        .post(&format!("/campaigns/{id}/cancel"), k, json!({}))
        .await;
    assert_eq!((r.status, status(&r)), (200, "cancelled".into()), "{r:?}");
    assert_eq!(r.body["counts"]["pending"], 0);
    assert_eq!(r.body["counts"]["dialing"], 1);
    assert_eq!(r.body["counts"]["done"], 2);
    assert_eq!(r.body["counts"]["by_outcome"], json!({"cancelled": 2}));
    for action in ["cancel", "pause", "resume"] {
        let r = api
            .post(&format!("/campaigns/{id}/{action}"), k, json!({}))
            .await;
        let error = expect_error(&r, 409, "conflict");
        assert!(
            error["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("is cancelled")),
            "{action}: {r:?}"
        );
    }

    // The export shows the call in progress and the cancelled rest.
    let r = api.get(&format!("/campaigns/{id}/results.csv"), k).await;
    let mut reader = csv::Reader::from_reader(r.text.as_bytes());
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("row")).collect();
    let dialing: Vec<&csv::StringRecord> = rows
        .iter()
        .filter(|r| r.get(2) == Some("dialing"))
        .collect();
    assert_eq!(dialing.len(), 1);
    assert_eq!(dialing[0].get(1), Some(claimed.to.as_str()));
    assert_eq!(dialing[0].get(4), Some("1"), "attempts");
    assert_eq!(dialing[0].get(7), Some(claimed.call_id.as_str()));
    assert_eq!(dialing[0].get(8), Some("node-test"));
    let cancelled = rows
        .iter()
        .filter(|r| r.get(2) == Some("done") && r.get(3) == Some("cancelled"))
        .count();
    assert_eq!(cancelled, 2);
}

async fn dial_limits_are_set_by_the_admin_only(store: &SqlStore) {
    let api = TestApi::start(store).await;
    let a = seed_tenant(&api, store, "acme", "+14155550100").await;
    let r = api.get("/tenants/acme/dial-limits", &a.key).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        r.body,
        json!({"tenant_id": "acme", "max_concurrent": 10, "calls_per_second": 2.0,
               "dial_interval_ms": 500})
    );
    let limits = json!({"max_concurrent": 3, "calls_per_second": 0.5});
    expect_error(
        &api.put("/tenants/acme/dial-limits", &a.key, limits.clone())
            .await,
        403,
        "forbidden",
    );
    let r = api
        .put("/tenants/acme/dial-limits", ADMIN_KEY, limits)
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["dial_interval_ms"], 2000);
    let r = api.get("/tenants/acme/dial-limits", &a.key).await;
    assert_eq!(
        r.body,
        json!({"tenant_id": "acme", "max_concurrent": 3, "calls_per_second": 0.5,
               "dial_interval_ms": 2000})
    );
    for (body, field) in [
        (
            json!({"max_concurrent": 0, "calls_per_second": 1}),
            "max_concurrent",
        ),
        (
            json!({"max_concurrent": 1, "calls_per_second": 0}),
            "calls_per_second",
        ),
        (
            json!({"max_concurrent": 1, "calls_per_second": 1000}),
            "calls_per_second",
        ),
        (json!({"max_concurrent": 1}), "calls_per_second"),
    ] {
        let r = api.put("/tenants/acme/dial-limits", ADMIN_KEY, body).await;
        assert_eq!(
            expect_error(&r, 400, "invalid_field")["error"]["field"],
            field,
            "{r:?}"
        );
    }
    expect_error(
        &api.get("/tenants/nobody/dial-limits", ADMIN_KEY).await,
        404,
        "not_found",
    );
}

/// CSV injection: contact values that a spreadsheet would run as formulas come back as text
/// (a leading single quote), plain numbers and phone numbers untouched.
async fn exported_cells_never_start_a_formula(store: &SqlStore) {
    let api = TestApi::start(store).await;
    let a = seed_tenant(&api, store, "acme", "+14155550100").await;
    let csv = "phone,name,note\n\
               +14155552671,\"=HYPERLINK(\"\"http://evil.example\"\",\"\"x\"\")\",-3\n\
               +14155552672,@SUM(A1),+1+cmd|' /C calc'!A0\n\
               +14155552673,-2+3,plain\n";
    let id = create(&api, &a.key, campaign_body(csv)).await;
    let r = api
        .get(&format!("/campaigns/{id}/results.csv"), &a.key)
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let mut reader = csv::Reader::from_reader(r.text.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .expect("header")
        .iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(header.last().map(String::as_str), Some("var.note"));
    let rows: Vec<Vec<String>> = reader
        .records()
        .map(|r| r.expect("row").iter().map(str::to_owned).collect())
        .collect();
    let cells: Vec<(&str, &str, &str)> = rows
        .iter()
        .map(|r| (r[1].as_str(), r[12].as_str(), r[13].as_str()))
        .collect();
    assert_eq!(
        cells,
        [
            (
                "+14155552671",
                "'=HYPERLINK(\"http://evil.example\",\"x\")",
                "-3"
            ),
            ("+14155552672", "'@SUM(A1)", "'+1+cmd|' /C calc'!A0"),
            ("+14155552673", "'-2+3", "plain"),
        ]
    );
    for row in &rows {
        for cell in row {
            assert!(
                !cell.starts_with(['=', '+', '-', '@']) || cell.parse::<f64>().is_ok(),
                "{cell:?} would run as a formula"
            );
        }
    }
}

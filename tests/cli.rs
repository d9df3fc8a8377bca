//! The binary's configuration errors: one clear message naming the variable, exit code 2, and
//! nothing listening.

use std::process::Command;

fn callbridge(envs: &[(&str, &str)]) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_callbridge"));
    command.env_clear();
    for (k, v) in envs {
        command.env(k, v);
    }
    command.output().expect("run callbridge")
}

const GOOD: &[(&str, &str)] = &[
    ("PUBLIC_URL", "https://bridge.example.com"),
    ("TWILIO_ACCOUNT_SID", "AC0123456789abcdef0123456789abcdef"),
    ("TWILIO_AUTH_TOKEN", "secret-token"),
    ("OPENAI_API_KEY", "sk-secret"),
];

fn without(name: &str) -> Vec<(&'static str, &'static str)> {
    GOOD.iter().copied().filter(|(k, _)| *k != name).collect()
}

#[test]
fn each_missing_variable_is_named_with_exit_code_2() {
    for (name, _) in GOOD {
        let out = callbridge(&without(name));
        assert_eq!(out.status.code(), Some(2), "missing {name}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!("{name}: is required")),
            "stderr for missing {name}: {stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "one clear line: {stderr}");
    }
}

#[test]
fn invalid_values_are_refused_before_listening_without_echoing_secrets() {
    let mut envs = GOOD.to_vec();
    envs.push(("CALLBRIDGE_LISTEN", "not-an-address"));
    let out = callbridge(&envs);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("CALLBRIDGE_LISTEN"), "{stderr}");
    assert!(!stderr.contains("sk-secret") && !stderr.contains("secret-token"));

    let mut envs = GOOD.to_vec();
    envs.push(("CALLBRIDGE_PROMPT", "/nonexistent/prompt.md"));
    let out = callbridge(&envs);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("CALLBRIDGE_PROMPT"));
}

#[test]
fn flags_are_equivalent_to_variables() {
    let out = Command::new(env!("CARGO_BIN_EXE_callbridge"))
        .env_clear()
        .env("TWILIO_AUTH_TOKEN", "t")
        .env("OPENAI_API_KEY", "k")
        .args([
            "serve",
            "--public-url",
            "https://bridge.example.com",
            "--twilio-account-sid",
            "AC123",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("TWILIO_ACCOUNT_SID: must be AC"));
}

/// Secrets are never command-line flags (they would show in `ps` and shell history): the flag is
/// refused; the variable and a `_FILE` work.
#[test]
fn secrets_are_refused_as_flags_and_read_from_env_or_file() {
    for flag in [
        "--twilio-auth-token",
        "--openai-api-key",
        "--admin-key",
        "--gemini-api-key",
        "--metrics-token",
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_callbridge"))
            .env_clear()
            .args(["serve", flag, "s3cret-value"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{flag}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("unexpected argument"), "{flag}: {stderr}");
    }
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("twilio-token");
    std::fs::write(&token_file, "t\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_callbridge"))
        .env_clear()
        .env("PUBLIC_URL", "https://bridge.example.com")
        .env("TWILIO_ACCOUNT_SID", format!("AC{}", "0".repeat(32)))
        .env("TWILIO_AUTH_TOKEN_FILE", &token_file)
        .args(["serve"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The token came from the file: the next missing setting is the provider key.
    assert!(stderr.contains("OPENAI_API_KEY: is required"), "{stderr}");
}

#[test]
fn a_store_that_cannot_be_opened_is_a_configuration_error() {
    let mut envs = GOOD.to_vec();
    envs.push(("DATABASE_URL", "sqlite:///nonexistent-dir/x/y.db?mode=rwc"));
    let out = callbridge(&envs);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("DATABASE_URL"), "{stderr}");
}

/// The registry is the one vendor list: `connector vendors` prints it (the `connector set` help
/// points there), and the lists kept in prose (docs/connectors.md's credential table, docs/api.md)
/// name exactly its vendors.
#[test]
fn vendor_lists_agree_with_the_registry() {
    let out = Command::new(env!("CARGO_BIN_EXE_callbridge"))
        .env_clear()
        .args(["connector", "vendors"])
        .output()
        .expect("run callbridge");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let catalog: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("JSON list");
    let ids: Vec<&str> = callbridge::connectors::registry::ids().collect();
    let printed: Vec<&str> = catalog.iter().filter_map(|v| v["id"].as_str()).collect();
    assert_eq!(printed, ids);
    assert!(
        catalog
            .iter()
            .all(|v| v["capabilities"].as_array().is_some_and(|c| !c.is_empty()))
    );

    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/connectors.md"))
        .expect("docs/connectors.md");
    let table: std::collections::BTreeSet<&str> = docs
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split('`').next())
        .collect();
    let api = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/api.md"))
        .expect("docs/api.md");
    let api_line = api
        .lines()
        .find(|l| l.contains("/connectors/{vendor}"))
        .expect("docs/api.md documents the connector route");
    for id in &ids {
        assert!(table.contains(id), "docs/connectors.md's table misses {id}");
        assert!(
            api_line.contains(&format!("`{id}`")),
            "docs/api.md misses {id}"
        );
    }
    assert_eq!(
        table.len(),
        ids.len(),
        "docs/connectors.md's table names a vendor the registry does not have: {table:?}"
    );
}

/// The documented examples work as written: every E.164 number in README.md, docs/*.md and the
/// CLI's help is one the validator accepts, and every documented `curl` that sends a body says it
/// is JSON (the API answers 415 otherwise).
#[test]
fn documented_examples_use_valid_numbers_and_json_bodies() {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut texts = vec![(
        "README.md".to_owned(),
        std::fs::read_to_string(format!("{root}/README.md")).unwrap(),
    )];
    for entry in std::fs::read_dir(format!("{root}/docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            texts.push((
                path.display().to_string(),
                std::fs::read_to_string(&path).unwrap(),
            ));
        }
    }
    for args in [
        &["--help"][..],
        &["call", "--help"][..],
        &["campaign", "--help"][..],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_callbridge"))
            .args(args)
            .output()
            .unwrap();
        texts.push((
            format!("callbridge {}", args.join(" ")),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        ));
    }
    let number = regex::Regex::new(r"\+[1-9][0-9]{7,14}\b").unwrap();
    let mut problems = Vec::new();
    for (name, text) in &texts {
        for m in number.find_iter(text) {
            if callbridge::campaign::normalize_number(m.as_str()).is_err() {
                problems.push(format!(
                    "{name}: {} is refused by the number validator",
                    m.as_str()
                ));
            }
        }
        // A curl command, joined across `\` line continuations.
        let joined = text.replace("\\\n", " ");
        for line in joined
            .lines()
            .filter(|l| l.trim_start().starts_with("curl "))
        {
            let sends_body = line.contains(" -d ") || line.contains(" --data");
            if sends_body && !line.contains("Content-Type: application/json") {
                problems.push(format!("{name}: curl without Content-Type: {line}"));
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

/// The container image keeps everything it writes under its `/data` volume, owned by the user it
/// runs as, and the database URL it sets creates its file there (checked by running the binary
/// with the image's settings, `/data` mapped to a temporary directory).
#[test]
fn docker_image_writes_only_under_its_data_volume() {
    let dockerfile =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Dockerfile")).unwrap();
    let final_stage = &dockerfile[dockerfile.rfind("\nFROM ").expect("a final stage")..];
    let joined = final_stage.replace("\\\n", " ");
    let mut env = std::collections::BTreeMap::new();
    for line in joined.lines().filter(|l| l.starts_with("ENV ")) {
        for pair in line["ENV ".len()..].split_whitespace() {
            let (k, v) = pair.split_once('=').expect("ENV KEY=VALUE");
            env.insert(k.to_owned(), v.to_owned());
        }
    }
    let database_url = env
        .get("DATABASE_URL")
        .expect("the image sets DATABASE_URL");
    assert!(
        database_url.starts_with("sqlite:///data/"),
        "{database_url}"
    );
    assert!(
        env.get("CALLBRIDGE_RECORDINGS_DIR")
            .is_some_and(|d| d.starts_with("/data/"))
    );
    assert!(
        joined.lines().any(|l| l.trim() == r#"VOLUME ["/data"]"#),
        "no /data volume"
    );
    assert!(
        joined.lines().any(|l| l.trim() == "WORKDIR /data"),
        "relative paths must land in /data"
    );
    let user = joined
        .lines()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("an unprivileged USER")
        .trim();
    let uid = user.split(':').next().unwrap();
    assert_ne!(uid, "0");
    assert!(
        joined.contains(&format!("chown -R {user} /data")),
        "/data must belong to {user}"
    );

    // The image's database URL, with /data mapped to a fresh directory, creates the store there.
    let data = tempfile::tempdir().unwrap();
    let url = database_url.replace("/data", &data.path().display().to_string());
    let out = callbridge_with_args(&[("DATABASE_URL", &url)], &["tenant", "list"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let file = database_url
        .trim_start_matches("sqlite://")
        .replace("/data", &data.path().display().to_string());
    assert!(std::path::Path::new(&file).is_file(), "{file} not created");
}

fn callbridge_with_args(envs: &[(&str, &str)], args: &[&str]) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_callbridge"));
    command.env_clear().args(args);
    for (k, v) in envs {
        command.env(k, v);
    }
    command.output().expect("run callbridge")
}

//! Keeps the layering rules of ARCHITECTURE.md true: each rule is a set of source files and the
//! names they must never mention (outside comments). A violation names the file, the line and the
//! rule, so the fix is obvious; a rule whose file set is empty fails too (a renamed directory must
//! not silently switch a rule off).

use std::path::{Path, PathBuf};

struct Rule {
    /// What ARCHITECTURE.md calls it.
    name: &'static str,
    /// Files under `src/` the rule covers: a directory prefix or an exact file.
    covers: &'static [&'static str],
    /// Text that must not appear in their code.
    forbidden: &'static [&'static str],
}

const RULES: &[Rule] = &[
    Rule {
        name: "1. connectors never import a service, a surface, the store or the vault",
        covers: &["connectors/"],
        forbidden: &[
            "crate::tools",
            "crate::call",
            "crate::http",
            "crate::admin",
            "crate::store",
            "crate::tenant",
            "crate::cli",
            "crate::app",
            "crate::campaign",
            "crate::webhooks",
            "crate::notify",
        ],
    },
    Rule {
        name: "2. the call session and the realtime dialects are pure (no runtime, no IO crates)",
        covers: &["call/session.rs", "call/session/", "realtime/"],
        forbidden: &["tokio", "reqwest", "sqlx", "axum"],
    },
    Rule {
        name: "3a. the admin service knows no surface",
        covers: &["admin/"],
        forbidden: &["crate::http", "crate::cli", "axum", "clap"],
    },
    Rule {
        name: "3d. the inbound service knows no surface",
        covers: &["inbound/"],
        forbidden: &["crate::http", "crate::cli", "crate::admin", "axum", "clap"],
    },
    Rule {
        name: "3b. the HTTP surface does not import the command line",
        covers: &["http/"],
        forbidden: &["crate::cli"],
    },
    Rule {
        name: "3c. the command line does not import the HTTP surface",
        covers: &["cli/"],
        forbidden: &["crate::http"],
    },
    Rule {
        name: "L1. the store and the vault import no service or vendor",
        covers: &["store/", "tenant/"],
        forbidden: &[
            "crate::tools",
            "crate::call",
            "crate::http",
            "crate::admin",
            "crate::connectors",
            "crate::campaign",
            "crate::cli",
            "crate::app",
            "crate::notify",
        ],
    },
    Rule {
        name: "L0. telephony frames, audio and realtime import nothing above them",
        covers: &["twilio/", "audio/", "realtime/", "wire.rs"],
        forbidden: &[
            "crate::tools",
            "crate::call::driver",
            "crate::http",
            "crate::admin",
            "crate::connectors",
            "crate::store",
            "crate::campaign",
            "crate::app",
        ],
    },
    Rule {
        name: "4. only app.rs builds the shared policy and ledger",
        covers: &[
            "http/",
            "cli/",
            "admin/",
            "call/",
            "campaign/",
            "tools/",
            "webhooks/",
            "mcp/",
            "main.rs",
        ],
        forbidden: &["HttpPolicy::new(", "StoreLedger::new("],
    },
    Rule {
        name: "3d. the MCP service knows no surface (the HTTP surface authenticates and mounts it)",
        covers: &["mcp/"],
        forbidden: &["crate::http", "crate::cli", "axum", "clap"],
    },
    Rule {
        name: "5. one outbound policy: the Twilio REST client has no retry loop of its own",
        covers: &["connectors/twilio_rest.rs"],
        forbidden: &[
            "tokio::time::sleep",
            "fn retry_after",
            "reqwest::Client::builder",
        ],
    },
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a line: `//` comments (doc comments included) removed. Good enough for our own
/// sources, which keep no `//` inside string literals on import lines.
fn code_of(line: &str) -> &str {
    match line.find("//") {
        Some(at) => &line[..at],
        None => line,
    }
}

/// Lines of `text` before its `#[cfg(test)]` module: unit tests may use anything.
fn product_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .take_while(|(_, line)| line.trim() != "#[cfg(test)]")
        .map(|(n, line)| (n + 1, line))
}

fn violations(rule: &Rule, files: &[PathBuf]) -> (usize, Vec<String>) {
    let root = src();
    let mut covered = 0;
    let mut found = Vec::new();
    for file in files {
        let relative = file
            .strip_prefix(&root)
            .expect("under src")
            .to_string_lossy()
            .replace('\\', "/");
        if !rule.covers.iter().any(|c| relative.starts_with(c)) {
            continue;
        }
        // Unit tests kept in their own file (`foo/tests.rs`) are test code.
        if relative.ends_with("/tests.rs") {
            continue;
        }
        covered += 1;
        let text = std::fs::read_to_string(file).expect("readable source");
        for (line_no, line) in product_lines(&text) {
            let code = code_of(line);
            for name in rule.forbidden {
                if code.contains(name) {
                    found.push(format!(
                        "src/{relative}:{line_no}: names `{name}` — breaks rule {}",
                        rule.name
                    ));
                }
            }
        }
    }
    (covered, found)
}

#[test]
fn the_layering_rules_hold() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut all = Vec::new();
    for rule in RULES {
        let (covered, found) = violations(rule, &files);
        assert!(covered > 0, "rule {:?} covers no file", rule.name);
        all.extend(found);
    }
    assert!(all.is_empty(), "layering violations:\n{}", all.join("\n"));
}

#[test]
fn the_checker_sees_a_violation() {
    // Guards the guard: a connector that names the tool layer must be reported.
    let dir = tempfile::tempdir().expect("temp dir");
    let fake = dir.path().join("bad.rs");
    std::fs::write(
        &fake,
        "//! doc naming crate::tools is fine\nuse crate::tools::ToolError;\n",
    )
    .expect("write");
    let text = std::fs::read_to_string(&fake).expect("read");
    let hits: Vec<_> = product_lines(&text)
        .filter(|(_, line)| code_of(line).contains("crate::tools"))
        .collect();
    assert_eq!(hits.len(), 1, "only the import, not the comment");
    assert_eq!(hits[0].0, 2);
}

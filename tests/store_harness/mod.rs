//! Test harness shared by the store and vault suites: opens a fresh [`SqlStore`] on SQLite (a temp
//! file) or PostgreSQL (a fresh schema in `CALLBRIDGE_TEST_PG_URL`), and the `backend_suite!` macro
//! that instantiates every generic case once per backend.
//!
//! Without `CALLBRIDGE_TEST_PG_URL` the PostgreSQL half fails, pointing at `.ci/postgres.sh`;
//! `CALLBRIDGE_SKIP_PG=1` turns that into a printed skip.
#![allow(dead_code)]

use std::path::PathBuf;

use callbridge::store::{SqlStore, StoreOptions};
use sqlx::{AssertSqlSafe, Connection, Executor};

pub struct TestDb {
    pub store: SqlStore,
    /// The URL the store was opened with (another process can open the same database).
    pub url: String,
    /// The SQLite database file, for tests that scan its bytes.
    pub sqlite_path: Option<PathBuf>,
    _cleanup: Cleanup,
}

enum Cleanup {
    TempDir(#[allow(dead_code)] tempfile::TempDir),
    PgSchema { url: String, schema: String },
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Cleanup::PgSchema { url, schema } = self {
            let (url, schema) = (url.clone(), schema.clone());
            // Drop runs inside the test's runtime; the schema is dropped from a separate thread
            // with its own runtime so it also happens when the test panicked.
            let _ = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime for cleanup");
                runtime.block_on(async {
                    if let Ok(mut conn) = sqlx::AnyConnection::connect(&url).await {
                        let _ = conn
                            .execute(AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
                            .await;
                    }
                });
            })
            .join();
        }
    }
}

pub async fn sqlite() -> TestDb {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("callbridge.db");
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let store = SqlStore::open(&url).await.expect("open SQLite store");
    TestDb {
        store,
        url,
        sqlite_path: Some(path),
        _cleanup: Cleanup::TempDir(dir),
    }
}

/// `None` when skipped by `CALLBRIDGE_SKIP_PG=1`.
pub async fn postgres() -> Option<TestDb> {
    let url = match std::env::var("CALLBRIDGE_TEST_PG_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => {
            if std::env::var("CALLBRIDGE_SKIP_PG").as_deref() == Ok("1") {
                eprintln!("skipped: PostgreSQL half of the store suite (CALLBRIDGE_SKIP_PG=1)");
                return None;
            }
            panic!(
                "CALLBRIDGE_TEST_PG_URL is not set: run `eval \"$(.ci/postgres.sh)\"` to install \
                 and start a local PostgreSQL (or set CALLBRIDGE_SKIP_PG=1 to skip these tests)"
            );
        }
    };
    sqlx::any::install_default_drivers();
    let schema = format!("cbt_{:032x}", rand::random::<u128>());
    let mut admin = sqlx::AnyConnection::connect(&url)
        .await
        .expect("connect to CALLBRIDGE_TEST_PG_URL (is the server from .ci/postgres.sh running?)");
    admin
        .execute(AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .await
        .expect("create test schema");
    admin.close().await.expect("close admin connection");
    let separator = if url.contains('?') { '&' } else { '?' };
    let store_url = format!("{url}{separator}options[search_path]={schema}");
    let cleanup = Cleanup::PgSchema {
        url: url.clone(),
        schema,
    };
    // Tests run in parallel, each with its own pool: keep the total under PostgreSQL's default
    // limit of 100 connections while still letting the concurrency cases overlap for real.
    let options = StoreOptions {
        max_connections: 4,
        ..StoreOptions::default()
    };
    let store = SqlStore::open_with(&store_url, options)
        .await
        .expect("open PostgreSQL store");
    Some(TestDb {
        store,
        url: store_url,
        sqlite_path: None,
        _cleanup: cleanup,
    })
}

/// Instantiates each listed `async fn case<S: Store>(store: &S)` as `sqlite::case` and `postgres::case`.
macro_rules! backend_suite {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let db = crate::store_harness::sqlite().await;
                    super::$case(&db.store).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    if let Some(db) = crate::store_harness::postgres().await {
                        super::$case(&db.store).await;
                    }
                }
            )*
        }
    };
}

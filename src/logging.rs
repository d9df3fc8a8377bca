//! Log setup for the binary: the `CALLBRIDGE_LOG` filter, a hard cap on the crates that log raw
//! protocol traffic, and a sink that scrubs the process's configured secrets from every line.
//!
//! Why: at `debug`/`trace` the WebSocket client logs the provider handshake (the API key in its
//! `Authorization` header), the HTTP client and server log headers, the TLS stack logs session
//! material. None of that is needed to run the bridge; its own events say what happened. So those
//! targets never log below INFO whatever the filter asks, and as a second line every written line
//! has the configured secrets replaced. It owns what reaches the sink; it must not decide what
//! other modules log, nor hold secrets beyond the scrub list it is given.

use std::io::{self, Write};
use std::sync::Arc;

use tracing::{Level, Metadata};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// Crates (target prefixes) whose debug and trace output carries raw traffic: handshakes,
/// headers, bodies, TLS secrets. Capped at INFO.
pub const CAPPED_TARGETS: &[&str] = &[
    "tungstenite",
    "tokio_tungstenite",
    "hyper",
    "hyper_util",
    "reqwest",
    "h2",
    "http",
    "rustls",
    "tokio_rustls",
    "sqlx",
    "axum",
    "tower",
    "tower_http",
];

/// What replaces a secret in a written line.
pub const SCRUBBED: &str = "**redacted**";

/// Whether `meta` may be logged at all: the capped crates never below INFO.
pub fn allowed(meta: &Metadata<'_>) -> bool {
    *meta.level() <= Level::INFO || !is_capped(meta.target())
}

fn is_capped(target: &str) -> bool {
    CAPPED_TARGETS.iter().any(|prefix| {
        target
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
    })
}

/// The `CALLBRIDGE_LOG` filter, or `default` when unset or unparsable.
pub fn env_filter(default: &str) -> EnvFilter {
    EnvFilter::try_from_env("CALLBRIDGE_LOG").unwrap_or_else(|_| EnvFilter::new(default))
}

/// A sink that writes each formatted line with every secret replaced by [`SCRUBBED`].
#[derive(Clone)]
pub struct Scrubbed<W> {
    inner: W,
    secrets: Arc<Vec<String>>,
}

impl<W> Scrubbed<W> {
    /// `secrets` shorter than 8 characters are ignored: too short to be a key, and scrubbing them
    /// would mangle ordinary text.
    pub fn new(inner: W, secrets: impl IntoIterator<Item = String>) -> Self {
        let mut secrets: Vec<String> = secrets.into_iter().filter(|s| s.len() >= 8).collect();
        // Longest first, so a secret that contains another is replaced whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        Self {
            inner,
            secrets: Arc::new(secrets),
        }
    }

    fn scrub<'a>(&self, line: &'a str) -> std::borrow::Cow<'a, str> {
        let mut out = std::borrow::Cow::Borrowed(line);
        for secret in self.secrets.iter() {
            if out.contains(secret.as_str()) {
                out = std::borrow::Cow::Owned(out.replace(secret.as_str(), SCRUBBED));
            }
        }
        out
    }
}

/// One event's writer (the formatter writes each event in one `write_all`).
pub struct ScrubbedWriter<'a, W> {
    sink: &'a Scrubbed<W>,
    inner: Box<dyn Write + 'a>,
}

impl<W> Write for ScrubbedWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        self.inner
            .write_all(self.sink.scrub(&text).as_bytes())
            .map(|()| buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<'a, W> MakeWriter<'a> for Scrubbed<W>
where
    W: MakeWriter<'a> + 'a,
    W::Writer: 'a,
{
    type Writer = ScrubbedWriter<'a, W>;

    fn make_writer(&'a self) -> Self::Writer {
        ScrubbedWriter {
            sink: self,
            inner: Box::new(self.inner.make_writer()),
        }
    }
}

/// Installs the process's subscriber: `filter`, the cap, and the scrubbing sink over `writer`.
pub fn init<W>(filter: EnvFilter, json: bool, writer: Scrubbed<W>)
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let cap = filter_fn(allowed);
    let registry = tracing_subscriber::registry().with(filter).with(cap);
    let result = if json {
        registry
            .with(tracing_subscriber::fmt::layer().json().with_writer(writer))
            .try_init()
    } else {
        registry
            .with(tracing_subscriber::fmt::layer().with_writer(writer))
            .try_init()
    };
    if let Err(e) = result {
        eprintln!("callbridge: logging already set up: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn capped_targets_are_matched_by_crate_not_by_prefix_text() {
        assert!(is_capped("tungstenite::handshake::client"));
        assert!(is_capped("hyper"));
        assert!(is_capped("h2::codec"));
        assert!(!is_capped("h2o"));
        assert!(!is_capped("httpdate"));
        assert!(!is_capped("callbridge::call::driver"));
    }

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn secrets_are_scrubbed_and_the_cap_holds_at_trace() {
        let buffer = Buffer::default();
        let sink = Scrubbed::new(
            {
                let buffer = buffer.clone();
                move || buffer.clone()
            },
            ["sk-live-0123456789".to_owned(), "short".to_owned()],
        );
        let subscriber = tracing_subscriber::registry()
            .with(EnvFilter::new("trace"))
            .with(filter_fn(allowed))
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(sink)
                    .with_ansi(false),
            );
        tracing::subscriber::with_default(subscriber, || {
            tracing::trace!(target: "tungstenite::handshake::client", "Authorization: Bearer sk-live-0123456789");
            tracing::info!(target: "hyper", "hyper info stays");
            tracing::debug!(key = "sk-live-0123456789", "our own line");
        });
        let text = String::from_utf8_lossy(&buffer.0.lock().expect("lock")).into_owned();
        assert!(!text.contains("sk-live-0123456789"), "{text}");
        assert!(
            !text.contains("Authorization"),
            "capped trace line written: {text}"
        );
        assert!(text.contains("hyper info stays"), "{text}");
        assert!(text.contains(&format!("key=\"{SCRUBBED}\"")), "{text}");
    }
}

//! The SMTP email channel against a real SMTP server implementation (`mailin-embedded`) listening
//! on 127.0.0.1: STARTTLS with certificate verification against a private CA and AUTH PLAIN, a
//! plaintext relay the egress allow-list names, a refused recipient, and the message as received
//! (headers, body, the ledger key in the Message-ID). No mocked transport.

use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use callbridge::connectors::ConnectorError;
use callbridge::connectors::http::RequestContext;
use callbridge::connectors::messages::{Message, Messenger};
use callbridge::connectors::smtp::{Security, Smtp, SmtpConfig};
use callbridge::egress::EgressPolicy;
use mailin_embedded::response::{AUTH_OK, INVALID_CREDENTIALS, NO_MAILBOX, OK};
use mailin_embedded::{AuthMechanism, Handler, Response, Server, SslConfig};
use secrecy::SecretString;
use tokio::time::Instant;

/// One received message: envelope and raw data.
#[derive(Clone, Debug, Default)]
struct Received {
    from: String,
    to: Vec<String>,
    data: Vec<u8>,
}

#[derive(Clone, Default)]
struct Inbox {
    current: Received,
    done: Arc<Mutex<Vec<Received>>>,
    logins: Arc<Mutex<Vec<String>>>,
}

impl Handler for Inbox {
    fn rcpt(&mut self, to: &str) -> Response {
        if to.starts_with("nobody@") {
            NO_MAILBOX
        } else {
            OK
        }
    }

    fn data_start(&mut self, _domain: &str, from: &str, _is8bit: bool, to: &[String]) -> Response {
        self.current = Received {
            from: from.to_owned(),
            to: to.to_vec(),
            data: Vec::new(),
        };
        OK
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.current.data.extend_from_slice(buf);
        Ok(())
    }

    fn data_end(&mut self) -> Response {
        self.done
            .lock()
            .expect("inbox")
            .push(std::mem::take(&mut self.current));
        OK
    }

    fn auth_plain(&mut self, _authz: &str, user: &str, password: &str) -> Response {
        self.logins.lock().expect("logins").push(user.to_owned());
        if user == "desk" && password == "s3cret" {
            AUTH_OK
        } else {
            INVALID_CREDENTIALS
        }
    }
}

fn fixture(name: &str) -> String {
    format!("{}/fixtures/smtp/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Starts the server on 127.0.0.1 (STARTTLS offered when `tls`); returns its port and inbox.
fn start_server(tls: bool) -> (u16, Inbox) {
    callbridge::egress::install_tls_provider();
    let inbox = Inbox::default();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let mut server = Server::new(inbox.clone());
    let ssl = if tls {
        SslConfig::Trusted {
            cert_path: fixture("test_only_server_cert.pem"),
            key_path: fixture("test_only_server_key.pem"),
            chain_path: fixture("test_only_ca.pem"),
        }
    } else {
        SslConfig::None
    };
    server
        .with_name("mail.localhost")
        .with_ssl(ssl)
        .expect("tls settings")
        .with_num_threads(2)
        .with_tcp_listener(listener);
    if tls {
        server.with_auth(AuthMechanism::Plain);
    }
    std::thread::spawn(move || {
        let _ = server.serve();
    });
    (port, inbox)
}

fn config(host: &str, port: u16, security: Security) -> SmtpConfig {
    SmtpConfig {
        host: host.into(),
        port,
        security,
        username: None,
        password: None,
        from: "Front Desk <desk@clinic.example>".parse().expect("mailbox"),
        ca_pem: None,
    }
}

fn context() -> RequestContext {
    RequestContext::new("t1", "call_1", Instant::now() + Duration::from_secs(10))
        .with_idempotency_key("ledger-key-123")
}

fn message(to: &str) -> Message {
    Message {
        to: to.into(),
        from: None,
        subject: Some("Your appointment".into()),
        text: "Tuesday 4 March at 10:00. Reply to change it.".into(),
        template: None,
    }
}

#[tokio::test]
async fn starttls_with_a_verified_certificate_and_login() {
    let (port, inbox) = start_server(true);
    let mut config = config("localhost", port, Security::StartTls);
    config.username = Some("desk".into());
    config.password = Some(SecretString::from("s3cret"));
    config.ca_pem = Some(std::fs::read_to_string(fixture("test_only_ca.pem")).expect("ca"));
    let smtp = Smtp::new(config, EgressPolicy::allow_loopback()).expect("built");
    let sent = smtp
        .send(&context(), &message("ann@example.com"))
        .await
        .expect("sent");
    assert!(sent.id.contains("ledger-key-123"), "{}", sent.id);
    let received = inbox.done.lock().expect("inbox").clone();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].from, "desk@clinic.example");
    assert_eq!(received[0].to, ["ann@example.com"]);
    let data = String::from_utf8_lossy(&received[0].data);
    assert!(data.contains("Subject: Your appointment"), "{data}");
    assert!(
        data.contains("Message-ID: <ledger-key-123@clinic.example>"),
        "{data}"
    );
    assert!(data.contains("Tuesday 4 March at 10:00."), "{data}");
    assert_eq!(*inbox.logins.lock().expect("logins"), ["desk"]);
}

#[tokio::test]
async fn an_unknown_certificate_authority_is_refused() {
    let (port, inbox) = start_server(true);
    let smtp = Smtp::new(
        config("localhost", port, Security::StartTls),
        EgressPolicy::allow_loopback(),
    )
    .expect("built");
    let err = smtp
        .send(&context(), &message("ann@example.com"))
        .await
        .expect_err("the test CA is not trusted without ca_pem");
    assert!(!matches!(err, ConnectorError::Rejected(_)), "{err:?}");
    assert!(inbox.done.lock().expect("inbox").is_empty());
}

#[tokio::test]
async fn a_plaintext_relay_on_the_allow_list_and_a_refused_recipient() {
    let (port, inbox) = start_server(false);
    let relay = config("127.0.0.1", port, Security::None);
    let smtp = Smtp::new(relay, EgressPolicy::allow_loopback()).expect("built");
    smtp.send(&context(), &message("bob@example.com"))
        .await
        .expect("sent");
    let err = smtp
        .send(&context(), &message("nobody@example.com"))
        .await
        .expect_err("550");
    assert!(
        matches!(&err, ConnectorError::Rejected(m) if m.contains("550")),
        "{err:?}"
    );
    assert_eq!(inbox.done.lock().expect("inbox").len(), 1);
    // Without the allow-list, a plaintext relay is not even built.
    assert!(
        Smtp::new(
            config("127.0.0.1", port, Security::None),
            EgressPolicy::strict()
        )
        .is_err()
    );
}

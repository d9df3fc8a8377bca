//! Email over the tenant's SMTP server, as a [`Messenger`], with `lettre`.
//!
//! The tenant's secret names the server (`host`, `port`), the transport security (`starttls`,
//! the default: plaintext then a required `STARTTLS`; `tls`: TLS from the first byte; `none`: only
//! for a relay the operator allow-listed in `CALLBRIDGE_EGRESS_ALLOW`), the login and the sender
//! (`from`, `from_name`). The host is tenant-steerable, so the egress guard decides at connect
//! time: the name is resolved through [`crate::egress::EgressPolicy::resolve`] (internal
//! addresses refused) and the connection goes to the checked address while TLS still verifies the
//! certificate for the configured host name (`ca_pem` adds a private root for an internal relay).
//! SMTP has no idempotency key; a send is made once and the tool-call ledger keeps a repeat away
//! (the `Message-ID` carries the ledger key). It never logs the password or the message.

use std::sync::Arc;
use std::time::Duration;

use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials as SmtpCredentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use secrecy::{ExposeSecret, SecretString};

use super::ConnectorError;
use super::http::{ConnectorProfile, PolicyError, RequestContext};
use super::kit::{BuildContext, BuildFailure, Built, Capability, SecretField, SecretShape, Vendor};
use super::messages::{Channel, Message, Messenger, Sent, email, email_address};
use crate::egress::EgressPolicy;

pub const CONNECTOR: &str = "smtp";
/// Longest a whole send (connect, TLS, login, data) may take when the tool's deadline allows more.
const SEND_TIMEOUT: Duration = Duration::from_secs(20);

pub fn profile() -> ConnectorProfile {
    ConnectorProfile::new(CONNECTOR)
}

/// Transport security of the SMTP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// Plaintext greeting, then `STARTTLS` is required (port 587).
    StartTls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No encryption: only to a host the operator allow-listed.
    None,
}

impl Security {
    fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "starttls" => Some(Self::StartTls),
            "tls" | "implicit" | "smtps" => Some(Self::Tls),
            "none" | "plain" => Some(Self::None),
            _ => None,
        }
    }

    fn default_port(self) -> u16 {
        match self {
            Self::StartTls => 587,
            Self::Tls => 465,
            Self::None => 25,
        }
    }
}

/// A tenant's SMTP account.
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub security: Security,
    pub username: Option<String>,
    pub password: Option<SecretString>,
    pub from: Mailbox,
    /// PEM of an extra root certificate (an internal relay's private CA).
    pub ca_pem: Option<String>,
}

impl std::fmt::Debug for SmtpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .finish_non_exhaustive()
    }
}

pub struct Smtp {
    config: SmtpConfig,
    egress: EgressPolicy,
}

impl std::fmt::Debug for Smtp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Smtp")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn host_ok(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
}

impl Smtp {
    pub fn new(config: SmtpConfig, egress: EgressPolicy) -> Result<Self, BuildFailure> {
        if !host_ok(&config.host) {
            return Err(BuildFailure::Config(
                "host must be a host name (letters, digits, '-' and '.')".into(),
            ));
        }
        if config.security == Security::None
            && egress
                .check_url_str(&format!("http://{}:{}/", config.host, config.port))
                .is_err()
        {
            return Err(BuildFailure::Config(format!(
                "security none (no TLS) is only allowed to a relay in CALLBRIDGE_EGRESS_ALLOW, not {}",
                config.host
            )));
        }
        if config.username.is_some() != config.password.is_some() {
            return Err(BuildFailure::Missing(
                "username and password (both or neither)".into(),
            ));
        }
        Ok(Self { config, egress })
    }

    /// A transport to the address the egress guard permits, verifying TLS for the host name.
    async fn transport(
        &self,
        ctx: &RequestContext,
    ) -> Result<AsyncSmtpTransport<Tokio1Executor>, ConnectorError> {
        let config = &self.config;
        let addresses = self
            .egress
            .resolve(&config.host, config.port)
            .await
            .map_err(|err| {
                ConnectorError::Policy(PolicyError::Egress {
                    connector: CONNECTOR,
                    source: err,
                })
            })?;
        // IPv4 first: a relay listening on one family only is usually IPv4.
        let mut addresses = addresses;
        addresses.sort_by_key(|a| a.is_ipv6());
        let address = addresses.first().ok_or_else(|| {
            ConnectorError::Config(format!("{} resolves to no address", config.host))
        })?;
        let tls = match config.security {
            Security::None => Tls::None,
            security => {
                let mut builder = TlsParameters::builder(config.host.clone());
                if let Some(pem) = &config.ca_pem {
                    let certificate = Certificate::from_pem(pem.as_bytes()).map_err(|_| {
                        ConnectorError::Config("ca_pem is not a PEM certificate".into())
                    })?;
                    builder = builder.add_root_certificate(certificate);
                }
                let parameters = builder
                    .build_rustls()
                    .map_err(|err| ConnectorError::Config(format!("TLS settings: {err}")))?;
                if security == Security::Tls {
                    Tls::Wrapper(parameters)
                } else {
                    Tls::Required(parameters)
                }
            }
        };
        let remaining = ctx
            .deadline
            .saturating_duration_since(tokio::time::Instant::now())
            .min(SEND_TIMEOUT);
        if remaining.is_zero() {
            return Err(ConnectorError::Policy(PolicyError::Timeout {
                connector: CONNECTOR,
                attempts: 0,
            }));
        }
        let mut builder =
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(address.ip().to_string())
                .port(address.port())
                .tls(tls)
                .timeout(Some(remaining));
        if let (Some(user), Some(password)) = (&config.username, &config.password) {
            builder = builder.credentials(SmtpCredentials::new(
                user.clone(),
                password.expose_secret().to_owned(),
            ));
        }
        Ok(builder.build())
    }
}

/// An SMTP failure as a connector error, without the server's text when it could echo input.
fn smtp_failure(err: &lettre::transport::smtp::Error) -> ConnectorError {
    let code = err.status().map(|c| c.to_string());
    if err.is_permanent() {
        match code.as_deref() {
            Some("535") | Some("530") => {
                ConnectorError::Auth("the SMTP server refused the login".into())
            }
            Some(code) => ConnectorError::Rejected(format!("the SMTP server answered {code}")),
            None => ConnectorError::Rejected("the SMTP server refused the message".into()),
        }
    } else if err.is_tls() {
        ConnectorError::Config(format!("TLS with the SMTP server failed: {err}"))
    } else {
        ConnectorError::Policy(PolicyError::Transport {
            connector: CONNECTOR,
            reason: format!("SMTP: {err}"),
        })
    }
}

#[async_trait::async_trait]
impl Messenger for Smtp {
    fn channel(&self) -> Channel {
        Channel::Email
    }

    async fn send(&self, ctx: &RequestContext, message: &Message) -> Result<Sent, ConnectorError> {
        let key = ctx
            .idempotency_key
            .clone()
            .unwrap_or_else(|| ctx.tool_call_id.clone());
        let mail = email(&self.config.from, message, &key)?;
        let id = mail
            .headers()
            .get_raw("Message-ID")
            .map(str::to_owned)
            .unwrap_or_default();
        let transport = self.transport(ctx).await?;
        transport
            .send(mail)
            .await
            .map_err(|err| smtp_failure(&err))?;
        Ok(Sent { id, form: "text" })
    }

    async fn health_check(&self, ctx: &RequestContext) -> Result<(), ConnectorError> {
        let transport = self.transport(ctx).await?;
        match transport.test_connection().await {
            Ok(true) => Ok(()),
            Ok(false) => Err(ConnectorError::UnexpectedResponse(
                "the SMTP server did not answer NOOP".into(),
            )),
            Err(err) => Err(smtp_failure(&err)),
        }
    }
}

/// The vendor descriptor, registered in [`super::registry`].
pub static VENDOR: Vendor = Vendor {
    id: CONNECTOR,
    name: "Email (SMTP)",
    spec: "RFC 5321 / RFC 3207 (no vendor spec)",
    default_base_url: None,
    capabilities: &[Capability::Messaging],
    secret: SecretShape {
        bare_token: false,
        fields: &[
            SecretField {
                name: "host",
                aliases: &[],
                required: true,
                doc: "SMTP server host name",
            },
            SecretField {
                name: "port",
                aliases: &[],
                required: false,
                doc: "port (default 587 for starttls, 465 for tls)",
            },
            SecretField {
                name: "security",
                aliases: &["tls"],
                required: false,
                doc: "starttls (default), tls, or none (allow-listed relays only)",
            },
            SecretField {
                name: "username",
                aliases: &["user"],
                required: false,
                doc: "login name",
            },
            SecretField {
                name: "password",
                aliases: &[],
                required: false,
                doc: "login password",
            },
            SecretField {
                name: "from",
                aliases: &[],
                required: true,
                doc: "sender address (the tenant's own domain)",
            },
            SecretField {
                name: "from_name",
                aliases: &[],
                required: false,
                doc: "sender display name",
            },
            SecretField {
                name: "ca_pem",
                aliases: &[],
                required: false,
                doc: "extra trusted root certificate (PEM) for a private relay",
            },
        ],
        note: "",
    },
    oauth: None,
    webhooks: None,
    profile,
    build,
};

fn build(ctx: BuildContext<'_>) -> Result<Built, BuildFailure> {
    let credentials = &ctx.credentials;
    let security = match credentials.text("security").or(credentials.text("tls")) {
        None => Security::StartTls,
        Some(text) => Security::parse(text).ok_or_else(|| {
            BuildFailure::Config("security must be starttls, tls or none".into())
        })?,
    };
    let port = match credentials.unsigned("port") {
        None => security.default_port(),
        Some(port) => u16::try_from(port)
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| BuildFailure::Config("port must be 1 to 65535".into()))?,
    };
    let from_address = email_address(&credentials.required_text("from")?)
        .map_err(|_| BuildFailure::Config("from is not an email address".into()))?;
    let from = Mailbox::new(
        credentials.text("from_name").map(str::to_owned),
        from_address
            .parse()
            .map_err(|_| BuildFailure::Config("from is not an email address".into()))?,
    );
    let config = SmtpConfig {
        host: credentials.required_text("host")?.to_ascii_lowercase(),
        port,
        security,
        username: credentials
            .text("username")
            .or(credentials.text("user"))
            .map(str::to_owned),
        password: credentials.secret(&["password"]).ok(),
        from,
        ca_pem: credentials.text("ca_pem").map(str::to_owned),
    };
    let egress = ctx.policy.config().egress.clone();
    Ok(Built {
        messenger: Some(Arc::new(Smtp::new(config, egress)?)),
        ..Built::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(host: &str, security: Security) -> SmtpConfig {
        SmtpConfig {
            host: host.into(),
            port: 25,
            security,
            username: None,
            password: None,
            from: "desk@example.com".parse().expect("mailbox"),
            ca_pem: None,
        }
    }

    #[test]
    fn plaintext_only_to_an_allow_listed_relay() {
        let strict = EgressPolicy::strict();
        assert!(Smtp::new(config("smtp.example.com", Security::None), strict.clone()).is_err());
        assert!(Smtp::new(config("smtp.example.com", Security::StartTls), strict).is_ok());
        assert!(Smtp::new(config("127.0.0.1", Security::None), EgressPolicy::allow_loopback()).is_ok());
        assert!(Smtp::new(config("bad host", Security::Tls), EgressPolicy::strict()).is_err());
    }

    #[tokio::test]
    async fn an_internal_host_is_refused_at_connect() {
        let smtp = Smtp::new(config("127.0.0.1", Security::StartTls), EgressPolicy::strict())
            .expect("built");
        let ctx = RequestContext::new(
            "t1",
            "call_1",
            tokio::time::Instant::now() + Duration::from_secs(2),
        );
        let err = smtp
            .send(
                &ctx,
                &Message {
                    to: "ann@example.com".into(),
                    from: None,
                    subject: None,
                    text: "hello".into(),
                    template: None,
                },
            )
            .await
            .expect_err("refused");
        assert!(
            matches!(err, ConnectorError::Policy(PolicyError::Egress { .. })),
            "{err:?}"
        );
    }
}

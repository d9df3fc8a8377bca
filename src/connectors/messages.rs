//! The messaging capability: what a message is ([`Message`]), the channels it can go out on
//! ([`Channel`]) and the trait each messaging vendor implements ([`Messenger`]), with the
//! recipient checks every channel shares (E.164 numbers, email syntax).
//!
//! Owns the vendor-neutral shape of a send. It must not decide *who* may be messaged, how often,
//! or whether a WhatsApp contact is inside its customer-service window (that is the tool and
//! notification layers, which know the tenant's rules and the store); a vendor here only
//! delivers what it is handed and says what the vendor answered.

use std::fmt;

use super::ConnectorError;
use super::http::RequestContext;

/// Where a message goes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Channel {
    Sms,
    Whatsapp,
    Email,
    /// A team chat channel (Slack): the recipient is the configured channel.
    Slack,
    /// A Microsoft Teams channel: the recipient is the configured channel.
    Teams,
}

impl Channel {
    pub const ALL: [Channel; 5] = [
        Self::Sms,
        Self::Whatsapp,
        Self::Email,
        Self::Slack,
        Self::Teams,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sms => "sms",
            Self::Whatsapp => "whatsapp",
            Self::Email => "email",
            Self::Slack => "slack",
            Self::Teams => "teams",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str().eq_ignore_ascii_case(text.trim()))
    }

    /// Channels that reach a phone number (the do-not-call list applies to them).
    pub fn is_phone(self) -> bool {
        matches!(self, Self::Sms | Self::Whatsapp)
    }

    /// Channels whose recipient is the connector's configured team channel, not an address.
    pub fn is_team_chat(self) -> bool {
        matches!(self, Self::Slack | Self::Teams)
    }

    /// The recipient in its canonical form for this channel, or why it is not one.
    pub fn normalize_recipient(self, text: &str) -> Result<String, ConnectorError> {
        match self {
            Self::Sms | Self::Whatsapp => e164(text),
            Self::Email => email_address(text),
            // The channel is the connector's; a rule may still name it for dedup.
            Self::Slack | Self::Teams => {
                let name = text.trim();
                if name.len() > 200 || name.chars().any(char::is_control) {
                    return Err(ConnectorError::InvalidInput(
                        "a team channel name must be at most 200 printable characters".into(),
                    ));
                }
                Ok(if name.is_empty() {
                    "default".into()
                } else {
                    name.to_owned()
                })
            }
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An approved WhatsApp template: what may be sent outside the 24-hour customer-service window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pub name: String,
    /// Language code of the approved translation (`en_US`).
    pub language: String,
    /// Body parameters, in order (`{{1}}`, `{{2}}`, …).
    pub parameters: Vec<String>,
}

/// One message to send.
#[derive(Clone, PartialEq, Eq)]
pub struct Message {
    /// Canonical recipient (see [`Channel::normalize_recipient`]).
    pub to: String,
    /// SMS: the number to send from when the account has no default sender (the called number).
    pub from: Option<String>,
    /// Email: the subject line.
    pub subject: Option<String>,
    pub text: String,
    /// WhatsApp: send this template instead of free text (outside the service window).
    pub template: Option<Template>,
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The recipient and the text are personal data: kept out of debug output and logs.
        f.debug_struct("Message")
            .field("chars", &self.text.chars().count())
            .field("template", &self.template.as_ref().map(|t| t.name.as_str()))
            .finish_non_exhaustive()
    }
}

/// How a message went out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// The vendor's message id (Twilio SID, WhatsApp `wamid`, SMTP queue answer, Gmail id, …).
    pub id: String,
    /// `text` or `template`.
    pub form: &'static str,
}

/// A channel a tenant has connected (Twilio SMS, WhatsApp Cloud API, SMTP, Gmail, Slack, Teams).
#[async_trait::async_trait]
pub trait Messenger: Send + Sync {
    fn channel(&self) -> Channel;

    /// Sends `message` once. Vendors without an idempotency key are not replayed after a timeout
    /// (a lost answer must not become a second message); the ledger above keeps repeats away.
    async fn send(&self, ctx: &RequestContext, message: &Message) -> Result<Sent, ConnectorError>;

    /// A harmless request proving the credentials and the endpoint work.
    async fn health_check(&self, ctx: &RequestContext) -> Result<(), ConnectorError>;
}

/// A phone number in E.164 (`+14155550100`), checked against the country's number plan.
pub fn e164(text: &str) -> Result<String, ConnectorError> {
    let raw = text.trim();
    let refused = || {
        ConnectorError::InvalidInput(format!(
            "{} is not a phone number in international form (+ and country code)",
            if raw.chars().count() > 40 {
                "that"
            } else {
                raw
            }
        ))
    };
    if !raw.starts_with('+')
        || !raw
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '+' | ' ' | '-' | '(' | ')' | '.'))
    {
        return Err(refused());
    }
    let number = phonenumber::parse(None, raw).map_err(|_| refused())?;
    if !phonenumber::is_valid(&number) {
        return Err(refused());
    }
    Ok(number.format().mode(phonenumber::Mode::E164).to_string())
}

/// An email address (`local@domain.tld`), lower-cased domain; no display names, no spaces.
pub fn email_address(text: &str) -> Result<String, ConnectorError> {
    let raw = text.trim();
    let refused = || ConnectorError::InvalidInput("that is not an email address".into());
    if raw.len() > 254 || raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(refused());
    }
    let parsed: lettre::Address = raw.parse().map_err(|_| refused())?;
    let domain = parsed.domain().to_ascii_lowercase();
    let labels_ok = domain.contains('.')
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if !labels_ok {
        return Err(refused());
    }
    Ok(format!("{}@{domain}", parsed.user()))
}

/// The domain of a canonical email address.
pub fn email_domain(address: &str) -> &str {
    address.rsplit_once('@').map_or("", |(_, domain)| domain)
}

/// Whether `address`'s domain is `domain` or one of its subdomains.
pub fn domain_matches(address: &str, allowed: &str) -> bool {
    let domain = email_domain(address);
    let allowed = allowed.trim().trim_start_matches('@').to_ascii_lowercase();
    !allowed.is_empty()
        && (domain == allowed
            || domain
                .strip_suffix(allowed.as_str())
                .is_some_and(|rest| rest.ends_with('.')))
}

/// `message` as an RFC 5322 plain-text email from `from` (the SMTP and Gmail channels both send
/// it), with a stable `Message-ID` from `message_id` (the ledger key) so a receiver can tell a
/// resend from a new message.
pub fn email(
    from: &lettre::message::Mailbox,
    message: &Message,
    message_id: &str,
) -> Result<lettre::Message, ConnectorError> {
    let to: lettre::Address = email_address(&message.to)?
        .parse()
        .map_err(|_| ConnectorError::InvalidInput("that is not an email address".into()))?;
    if message.text.trim().is_empty() || message.text.len() > MAX_EMAIL_BYTES {
        return Err(ConnectorError::InvalidInput(format!(
            "an email body must have 1 to {MAX_EMAIL_BYTES} bytes"
        )));
    }
    let subject = message
        .subject
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .unwrap_or("Message");
    if subject.chars().any(char::is_control) || subject.chars().count() > 200 {
        return Err(ConnectorError::InvalidInput(
            "the subject must be one line of at most 200 characters".into(),
        ));
    }
    let id_part: String = message_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .take(120)
        .collect();
    lettre::Message::builder()
        .from(from.clone())
        .to(lettre::message::Mailbox::new(None, to))
        .subject(subject)
        .message_id(Some(format!("<{id_part}@{}>", from.email.domain())))
        .header(lettre::message::header::ContentType::TEXT_PLAIN)
        .body(message.text.clone())
        .map_err(|err| ConnectorError::InvalidInput(format!("the email cannot be built: {err}")))
}

/// Largest email body sent.
pub const MAX_EMAIL_BYTES: usize = 64 * 1024;

/// The same address with most characters hidden, for what the model and the logs see.
pub fn masked(channel: Channel, address: &str) -> String {
    match channel {
        Channel::Sms | Channel::Whatsapp => {
            let digits: Vec<char> = address.chars().collect();
            let keep = digits.len().saturating_sub(4);
            digits
                .iter()
                .enumerate()
                .map(|(i, c)| if i < keep && *c != '+' { '•' } else { *c })
                .collect()
        }
        Channel::Email => match address.split_once('@') {
            Some((local, domain)) => {
                let first: String = local.chars().take(1).collect();
                format!("{first}•••@{domain}")
            }
            None => "•••".into(),
        },
        Channel::Slack | Channel::Teams => address.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_must_be_valid_e164() {
        assert_eq!(e164("+1 415 555 2671").expect("valid"), "+14155552671");
        assert_eq!(e164("+44 20 7946 0958").expect("valid"), "+442079460958");
        for bad in ["4155552671", "+1 555", "+1415555267a", "", "+99912345678"] {
            assert!(e164(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn emails_are_checked_and_domains_matched() {
        assert_eq!(
            email_address(" Ann.Lee@Example.COM ").expect("valid"),
            "Ann.Lee@example.com"
        );
        for bad in [
            "ann",
            "ann@",
            "@example.com",
            "ann@localhost",
            "a b@example.com",
            "ann@exa_mple.com",
            "Ann <ann@example.com>",
        ] {
            assert!(email_address(bad).is_err(), "{bad:?} accepted");
        }
        assert!(domain_matches("a@example.com", "example.com"));
        assert!(domain_matches("a@mail.example.com", "@example.com"));
        assert!(!domain_matches("a@badexample.com", "example.com"));
        assert!(!domain_matches("a@example.com", ""));
    }

    #[test]
    fn channels_parse_and_mask() {
        for channel in Channel::ALL {
            assert_eq!(Channel::parse(channel.as_str()), Some(channel));
        }
        assert_eq!(Channel::parse("fax"), None);
        assert_eq!(masked(Channel::Sms, "+14155552671"), "+•••••••2671");
        assert_eq!(
            masked(Channel::Email, "ann@example.com"),
            "a•••@example.com"
        );
        let debug = format!(
            "{:?}",
            Message {
                to: "+14155552671".into(),
                from: None,
                subject: None,
                text: "secret plans".into(),
                template: None,
            }
        );
        assert!(
            !debug.contains("2671") && !debug.contains("secret"),
            "{debug}"
        );
    }
}

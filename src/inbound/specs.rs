//! Which signature scheme a source kind uses: the vendor descriptor's `webhooks` (connectors'
//! `Vendor`, the one vendor list) when it declares one, else the specs below for senders that
//! have no connector of their own (Twilio SMS replies, the business's own systems signing per
//! Standard Webhooks).
//!
//! It must not verify anything (that is [`super::verify`]); it is data.

use crate::connectors::kit::{WebhookField, WebhookScheme, WebhookSpec};

use super::SourceKind;

/// Twilio messaging webhooks (SMS replies): `X-Twilio-Signature`, keyed by the account's auth
/// token (the server's), over the URL and the sorted form fields; `MessageSid` is the event id.
pub const TWILIO: WebhookSpec = WebhookSpec {
    header: "X-Twilio-Signature",
    scheme: WebhookScheme::TwilioSha1,
    tolerance_secs: 0,
    event_id: &[WebhookField::Json("MessageSid")],
    event_type: WebhookField::Const("message.received"),
    batched: false,
    setup: "the number's Messaging configuration: \"A message comes in\" → Webhook, HTTP POST, \
            this URL (signed with the account's auth token; no secret to paste)",
};

/// The business's own systems, signing per Standard Webhooks (`webhook-id`, `webhook-timestamp`,
/// `webhook-signature: v1,<base64>`), 5 minutes' tolerance; `type` is the event type.
pub const STANDARD: WebhookSpec = WebhookSpec {
    header: "webhook-signature",
    scheme: WebhookScheme::StandardWebhooks,
    tolerance_secs: 300,
    event_id: &[WebhookField::Header("webhook-id")],
    event_type: WebhookField::Json("type"),
    batched: false,
    setup: "sign each POST per standardwebhooks.com with the secret (whsec_…) and send a JSON \
            body with a \"type\" field",
};

/// The scheme of `kind`: its vendor descriptor's when declared, else the built-in one.
pub fn spec_for(kind: SourceKind) -> WebhookSpec {
    if let Some(spec) = crate::connectors::registry::vendor(kind.as_str()).and_then(|v| v.webhooks)
    {
        return spec;
    }
    match kind {
        SourceKind::Twilio => TWILIO,
        SourceKind::Standard => STANDARD,
        // Declared by their vendor files; kept here so a descriptor edit cannot leave a kind
        // without a scheme (the unit test below checks the descriptors are there).
        SourceKind::Calendly
        | SourceKind::Calcom
        | SourceKind::Shopify
        | SourceKind::Hubspot
        | SourceKind::Stripe
        | SourceKind::Whatsapp => STANDARD,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vendor_kinds_take_their_descriptors_scheme() {
        for kind in [
            SourceKind::Calendly,
            SourceKind::Calcom,
            SourceKind::Shopify,
            SourceKind::Hubspot,
            SourceKind::Stripe,
            SourceKind::Whatsapp,
        ] {
            let vendor = crate::connectors::registry::vendor(kind.as_str()).expect("vendor");
            let declared = vendor.webhooks.expect("descriptor declares its webhooks");
            assert_eq!(spec_for(kind).header, declared.header);
        }
        assert_eq!(spec_for(SourceKind::Stripe).header, "Stripe-Signature");
    }
}

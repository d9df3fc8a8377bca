//! Payments read from verified inbound events, for the staff notification `payment.received`:
//! a Stripe `checkout.session.completed` / `checkout.session.async_payment_succeeded` whose
//! `payment_status` is `paid`, a Stripe `payment_intent.succeeded`, a Shopify `orders/paid`.
//! Each becomes a [`Payment`]: the reference that names the payment (the dedup key, so a vendor's
//! redelivery, a replay and the two Stripe events of one checkout notify once), the amount in the
//! currency's minor units, the customer's email and phone when the vendor sent them, and a
//! description.
//!
//! Pure: it reads JSON and formats money. It must not store, notify or log a payload.

use std::fmt;

use serde_json::Value;

use super::SourceKind;
use super::event::{text_at, value_at};

/// A payment an event reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Payment {
    /// Names the payment across the vendor's events (`stripe:pi_…`, `shopify:order:…`).
    pub reference: String,
    pub amount: Option<Money>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub description: String,
}

/// An amount in a currency's minor units.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Money {
    pub minor: i64,
    /// ISO 4217, upper case.
    pub currency: String,
}

/// The digits after the decimal point of `currency` as Stripe counts its amounts: zero-decimal
/// and three-decimal currencies per Stripe's currency list, two otherwise (ISK and HUF included:
/// Stripe represents them with two).
pub fn exponent(currency: &str) -> u32 {
    const ZERO: [&str; 16] = [
        "BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "UGX", "VND", "VUV",
        "XAF", "XOF", "XPF",
    ];
    const THREE: [&str; 5] = ["BHD", "JOD", "KWD", "OMR", "TND"];
    let upper = currency.to_ascii_uppercase();
    if ZERO.contains(&upper.as_str()) {
        0
    } else if THREE.contains(&upper.as_str()) {
        3
    } else {
        2
    }
}

impl Money {
    /// An amount given in minor units (Stripe). `None` for a currency that is not three letters.
    pub fn from_minor(minor: i64, currency: &str) -> Option<Self> {
        let currency = currency.trim();
        (currency.len() == 3 && currency.bytes().all(|b| b.is_ascii_alphabetic())).then(|| Self {
            minor,
            currency: currency.to_ascii_uppercase(),
        })
    }

    /// An amount given as a decimal string in major units (Shopify's `"199.00"`). `None` when the
    /// text is not a plain non-negative decimal or has more decimals than the currency.
    pub fn from_decimal(text: &str, currency: &str) -> Option<Self> {
        let text = text.trim();
        let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() || !digits(whole) || !digits(fraction) {
            return None;
        }
        let exp = exponent(currency);
        let fraction = fraction.trim_end_matches('0');
        if fraction.len() > exp as usize {
            return None;
        }
        let scale = 10_i64.checked_pow(exp)?;
        let mut minor = whole.parse::<i64>().ok()?.checked_mul(scale)?;
        if !fraction.is_empty() {
            let padded = format!("{fraction:0<width$}", width = exp as usize);
            minor = minor.checked_add(padded.parse::<i64>().ok()?)?;
        }
        Self::from_minor(minor, currency)
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let exp = exponent(&self.currency);
        let sign = if self.minor < 0 { "-" } else { "" };
        let abs = self.minor.unsigned_abs();
        if exp == 0 {
            return write!(f, "{sign}{abs} {}", self.currency);
        }
        let scale = 10_u64.pow(exp);
        write!(
            f,
            "{sign}{}.{:0width$} {}",
            abs / scale,
            abs % scale,
            self.currency,
            width = exp as usize
        )
    }
}

/// The payment `event_type` of a `kind` source reports, if it reports one.
pub fn payment_of(kind: SourceKind, event_type: &str, payload: &Value) -> Option<Payment> {
    match (kind, event_type) {
        (
            SourceKind::Stripe,
            "checkout.session.completed" | "checkout.session.async_payment_succeeded",
        ) => stripe_checkout(payload),
        (SourceKind::Stripe, "payment_intent.succeeded") => stripe_payment_intent(payload),
        (SourceKind::Shopify, "orders/paid") => shopify_order(payload),
        _ => None,
    }
}

fn text(value: &Value, path: &str) -> Option<String> {
    text_at(value, path)
        .map(|t| t.trim().chars().take(200).collect::<String>())
        .filter(|t| !t.is_empty())
}

fn integer(value: &Value, path: &str) -> Option<i64> {
    value_at(value, path)?.as_i64()
}

fn stripe_checkout(event: &Value) -> Option<Payment> {
    let session = value_at(event, "data.object")?;
    if text(session, "payment_status").as_deref() != Some("paid") {
        return None;
    }
    let id = text(session, "id")?;
    // The payment intent names the payment across its checkout and payment_intent events; a
    // subscription's first invoice has none, and the session names it.
    let reference = match text(session, "payment_intent") {
        Some(intent) => format!("stripe:{intent}"),
        None => format!("stripe:{id}"),
    };
    let amount = integer(session, "amount_total")
        .zip(text(session, "currency"))
        .and_then(|(minor, currency)| Money::from_minor(minor, &currency));
    let email = text(session, "customer_details.email").or_else(|| text(session, "customer_email"));
    let phone = text(session, "customer_details.phone");
    let name = text(session, "customer_details.name");
    let mut description = format!("Stripe Checkout session {id}");
    if let Some(name) = name {
        description.push_str(&format!(", customer {name}"));
    }
    Some(Payment {
        reference,
        amount,
        email,
        phone,
        description,
    })
}

fn stripe_payment_intent(event: &Value) -> Option<Payment> {
    let intent = value_at(event, "data.object")?;
    let id = text(intent, "id")?;
    let amount = integer(intent, "amount_received")
        .or_else(|| integer(intent, "amount"))
        .zip(text(intent, "currency"))
        .and_then(|(minor, currency)| Money::from_minor(minor, &currency));
    // Older API versions embed the charges; the billing details carry the customer's contact.
    let billing = "charges.data.0.billing_details";
    let email = text(intent, "receipt_email").or_else(|| text(intent, &format!("{billing}.email")));
    let phone =
        text(intent, &format!("{billing}.phone")).or_else(|| text(intent, "shipping.phone"));
    let description = match text(intent, "description") {
        Some(what) => format!("{what} (Stripe payment {id})"),
        None => format!("Stripe payment {id}"),
    };
    Some(Payment {
        reference: format!("stripe:{id}"),
        amount,
        email,
        phone,
        description,
    })
}

fn shopify_order(order: &Value) -> Option<Payment> {
    let id = text(order, "id")?;
    let currency = text(order, "currency");
    let amount = text(order, "total_price")
        .zip(currency)
        .and_then(|(total, currency)| Money::from_decimal(&total, &currency));
    let email = text(order, "email")
        .or_else(|| text(order, "contact_email"))
        .or_else(|| text(order, "customer.email"));
    let phone = text(order, "phone")
        .or_else(|| text(order, "customer.phone"))
        .or_else(|| text(order, "billing_address.phone"));
    let name = text(order, "name").unwrap_or_else(|| id.clone());
    Some(Payment {
        reference: format!("shopify:order:{id}"),
        amount,
        email,
        phone,
        description: format!("Shopify order {name} paid"),
    })
}

impl Payment {
    /// The notification's subject (it names the payment) and body.
    pub fn subject_and_body(&self) -> (String, String) {
        let amount = self
            .amount
            .as_ref()
            .map_or_else(|| "amount not given".to_owned(), Money::to_string);
        let subject = format!("Payment received: {amount}");
        let mut body = format!("{}. Amount: {amount}.", self.description);
        if let Some(email) = &self.email {
            body.push_str(&format!(" Email: {email}."));
        }
        if let Some(phone) = &self.phone {
            body.push_str(&format!(" Phone: {phone}."));
        }
        (subject, body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn money_is_formatted_with_the_currencys_exponent() {
        let show = |minor, currency| {
            Money::from_minor(minor, currency)
                .expect("money")
                .to_string()
        };
        assert_eq!(show(1999, "eur"), "19.99 EUR");
        assert_eq!(show(5, "usd"), "0.05 USD");
        assert_eq!(show(5000, "jpy"), "5000 JPY");
        assert_eq!(show(12345, "kwd"), "12.345 KWD");
        assert_eq!(show(-250, "gbp"), "-2.50 GBP");
        assert!(Money::from_minor(1, "euro").is_none());
        let decimal = |text, currency| Money::from_decimal(text, currency).map(|m| m.to_string());
        assert_eq!(decimal("199.00", "USD").as_deref(), Some("199.00 USD"));
        assert_eq!(decimal("199.5", "USD").as_deref(), Some("199.50 USD"));
        assert_eq!(decimal("1000", "JPY").as_deref(), Some("1000 JPY"));
        assert_eq!(decimal("1000.00", "JPY").as_deref(), Some("1000 JPY"));
        assert_eq!(decimal("1.999", "USD"), None);
        assert_eq!(decimal("-1.00", "USD"), None);
        assert_eq!(decimal("1e3", "USD"), None);
    }

    #[test]
    fn a_paid_checkout_and_its_payment_intent_name_one_payment() {
        let checkout = json!({"id": "evt_1", "type": "checkout.session.completed", "data": {"object": {
            "id": "cs_1", "payment_status": "paid", "payment_intent": "pi_1",
            "amount_total": 1999, "currency": "eur",
            "customer_details": {"email": "ana@example.com", "phone": "+14155552671", "name": "Ana"}
        }}});
        let paid =
            payment_of(SourceKind::Stripe, "checkout.session.completed", &checkout).expect("paid");
        assert_eq!(paid.reference, "stripe:pi_1");
        assert_eq!(paid.email.as_deref(), Some("ana@example.com"));
        assert_eq!(paid.phone.as_deref(), Some("+14155552671"));
        let (subject, body) = paid.subject_and_body();
        assert_eq!(subject, "Payment received: 19.99 EUR");
        assert!(body.contains("cs_1") && body.contains("Ana") && body.contains("ana@example.com"));

        let intent = json!({"id": "evt_2", "type": "payment_intent.succeeded", "data": {"object": {
            "id": "pi_1", "amount": 1999, "amount_received": 1999, "currency": "eur",
            "description": "Deposit", "receipt_email": "ana@example.com"
        }}});
        let same =
            payment_of(SourceKind::Stripe, "payment_intent.succeeded", &intent).expect("succeeded");
        assert_eq!(same.reference, paid.reference);
        assert!(
            same.subject_and_body()
                .1
                .starts_with("Deposit (Stripe payment pi_1)")
        );

        // Not (yet) paid, another event type, another source kind: no payment.
        let mut unpaid = checkout.clone();
        unpaid["data"]["object"]["payment_status"] = json!("unpaid");
        assert!(payment_of(SourceKind::Stripe, "checkout.session.completed", &unpaid).is_none());
        assert!(payment_of(SourceKind::Stripe, "invoice.payment_failed", &checkout).is_none());
        assert!(payment_of(SourceKind::Standard, "payment_intent.succeeded", &intent).is_none());
    }

    #[test]
    fn a_paid_shopify_order_reads_its_decimal_total() {
        let order = json!({"id": 820982911946154508_u64, "name": "#9999", "total_price": "403.00",
            "currency": "USD", "email": "jon@example.com", "financial_status": "paid",
            "customer": {"phone": "+16135551212"}});
        let paid = payment_of(SourceKind::Shopify, "orders/paid", &order).expect("paid");
        assert_eq!(paid.reference, "shopify:order:820982911946154508");
        assert_eq!(paid.amount.expect("amount").to_string(), "403.00 USD");
        assert_eq!(paid.phone.as_deref(), Some("+16135551212"));
        assert_eq!(paid.description, "Shopify order #9999 paid");
        assert!(payment_of(SourceKind::Shopify, "orders/create", &order).is_none());
    }
}

//! Lookups over the one list of vendors (`vendors!{}` in `connectors/mod.rs`). Everything that
//! names vendors — the admin service's accepted vendors, the resolver, `callbridge connector
//! vendors`, the docs tables (checked by a test) — reads it here.
//!
//! Adding a vendor: its file in `connectors/` with a `pub static VENDOR: Vendor`, and one word in
//! `vendors!{}` (which declares the module too). This module must not build connectors itself
//! (that is each vendor's `build`).

use super::kit::{Capability, Vendor};

/// Every vendor this bridge has a connector for (the `vendors!{}` list in `connectors/mod.rs`).
pub static VENDORS: &[&Vendor] = super::VENDOR_LIST;

/// The vendor with this id.
pub fn vendor(id: &str) -> Option<&'static Vendor> {
    VENDORS.iter().copied().find(|v| v.id == id)
}

/// Every vendor id, in registration order.
pub fn ids() -> impl Iterator<Item = &'static str> {
    VENDORS.iter().map(|v| v.id)
}

/// Whether `id` is a vendor this bridge knows.
pub fn is_known(id: &str) -> bool {
    vendor(id).is_some()
}

/// The vendors serving `capability`.
pub fn serving(capability: Capability) -> impl Iterator<Item = &'static Vendor> {
    VENDORS
        .iter()
        .copied()
        .filter(move |v| v.serves(capability))
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use secrecy::SecretString;

    use super::*;
    use crate::connectors::http::{HttpPolicy, PolicyConfig};
    use crate::connectors::kit::{
        BuildContext, BuildFailure, Built, Credentials, SecretField, SecretShape,
    };

    #[test]
    fn every_vendor_is_well_formed() {
        let mut seen = HashSet::new();
        for v in VENDORS {
            assert!(seen.insert(v.id), "{} registered twice", v.id);
            assert!(!v.capabilities.is_empty(), "{} serves nothing", v.id);
            assert_eq!((v.profile)().name, v.id, "{}'s profile names it", v.id);
            assert!(!v.name.is_empty() && !v.spec.is_empty());
            assert!(
                v.secret.bare_token || !v.secret.fields.is_empty(),
                "{}'s secret is documented",
                v.id
            );
        }
        assert_eq!(vendor("calcom").map(|v| v.name), Some("Cal.com"));
        assert!(!is_known("salesforce"));
        assert!(serving(Capability::Crm).any(|v| v.id == "hubspot"));
    }

    /// A test-only vendor serving two capabilities through one build: the recipe allows it.
    static TWO_HATS: Vendor = Vendor {
        id: "two_hats",
        name: "Two Hats",
        spec: "none",
        default_base_url: Some("https://two-hats.example/"),
        capabilities: &[Capability::Calendar, Capability::Crm],
        secret: SecretShape {
            bare_token: true,
            fields: &[SecretField {
                name: "access_token",
                aliases: &["token"],
                required: true,
                doc: "token",
            }],
            note: "",
        },
        oauth: None,
        webhooks: None,
        profile: || crate::connectors::http::ConnectorProfile::new("two_hats"),
        build: build_two_hats,
    };

    fn build_two_hats(ctx: BuildContext<'_>) -> Result<Built, BuildFailure> {
        use crate::connectors::calcom::{Calcom, CalcomConfig};
        use crate::connectors::hubspot::{Hubspot, HubspotConfig};
        let base = ctx.base_url()?;
        let token = ctx.credentials.secret(&["access_token", "token"])?;
        Ok(Built {
            calendar: Some(std::sync::Arc::new(Calcom::new(
                ctx.policy.clone(),
                CalcomConfig {
                    base_url: base.clone(),
                    api_key: token.clone(),
                    event_type_id: 1,
                    max_slots: 4,
                },
            ))),
            crm: Some(std::sync::Arc::new(Hubspot::new(
                ctx.policy,
                HubspotConfig::new(base, token),
            ))),
            commerce: None,
            payments: None,
            marketing: None,
            coupons: None,
        })
    }

    #[test]
    fn one_vendor_may_serve_two_capabilities() {
        let policy = HttpPolicy::new(PolicyConfig::default()).expect("policy");
        let credentials = Credentials::parse(&SecretString::from("tok")).expect("token");
        credentials.validate(&TWO_HATS.secret).expect("valid");
        let built = (TWO_HATS.build)(BuildContext {
            vendor: &TWO_HATS,
            base_url: None,
            credentials,
            policy,
            oauth: None,
        })
        .expect("built");
        for capability in TWO_HATS.capabilities {
            assert!(TWO_HATS.serves(*capability));
            assert!(built.serves(*capability), "{capability:?}");
        }
        assert!(!built.serves(Capability::Commerce));
    }

    #[test]
    fn secrets_are_checked_against_the_documented_shape() {
        let calcom = vendor("calcom").expect("registered");
        let missing = Credentials::parse(&SecretString::from(r#"{"api_key": "cal_x"}"#))
            .expect("object")
            .validate(&calcom.secret)
            .expect_err("event_type_id is required");
        assert_eq!(missing, BuildFailure::Missing("event_type_id".into()));
        let bare = Credentials::parse(&SecretString::from("cal_x")).expect("token");
        assert!(
            bare.validate(&calcom.secret).is_err(),
            "calcom needs an object"
        );
        let aliased = Credentials::parse(&SecretString::from(
            r#"{"token": "cal_x", "event_type_id": 3}"#,
        ))
        .expect("object");
        aliased.validate(&calcom.secret).expect("alias accepted");
        let broken = Credentials::parse(&SecretString::from("{\"api_key\": \"cal_live_sec"))
            .err()
            .expect("refused");
        assert!(!broken.to_string().contains("cal_live_sec"), "{broken}");
    }
}

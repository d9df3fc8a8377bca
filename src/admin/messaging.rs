//! A tenant's messaging configuration: the settings `send_message` reads (staff recipients,
//! limits, the email domain allow-list, the WhatsApp template, the notification dedup TTL) and the
//! staff notification rules, with every address and name checked before it is stored.
//!
//! It must not send (the tool and the notification worker do) or choose a vendor (connectors are
//! configured like any other: `callbridge connector set --vendor twilio_sms …`).

use tracing::info;

use crate::connectors::messages::Channel;
use crate::notify::{NotifyError, validate_rule};
use crate::store::{MessagingSettings, NotificationRule};

use super::dto::{NotificationRuleRequest, NotificationRuleView, NotificationView};
use super::{AdminService, Principal, ServiceError};

fn invalid(field: &str, message: impl Into<String>) -> ServiceError {
    ServiceError::Invalid {
        field: field.to_owned(),
        message: message.into(),
    }
}

fn valid_domain(domain: &str) -> bool {
    let domain = domain.trim_start_matches('@');
    domain.contains('.')
        && domain.len() <= 253
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// The settings as they will be stored (addresses canonical, domains lower-case), or the first
/// field that is wrong.
pub fn validate_settings(
    mut settings: MessagingSettings,
) -> Result<MessagingSettings, ServiceError> {
    if settings.staff.len() > 50 {
        return Err(invalid("staff", "at most 50 staff recipients"));
    }
    let mut names = std::collections::HashSet::new();
    for (i, staff) in settings.staff.iter_mut().enumerate() {
        let field = format!("staff[{i}]");
        staff.name = staff.name.trim().to_owned();
        let name_ok = !staff.name.is_empty()
            && staff.name.chars().count() <= 60
            && !staff.name.eq_ignore_ascii_case("caller")
            && staff
                .name
                .chars()
                .all(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_' | '.'));
        if !name_ok {
            return Err(invalid(
                &field,
                "name must be 1 to 60 letters, digits, spaces, '-', '_' or '.', and not \"caller\"",
            ));
        }
        if !names.insert(staff.name.to_lowercase()) {
            return Err(invalid(&field, format!("{:?} is listed twice", staff.name)));
        }
        let channel = Channel::parse(&staff.channel)
            .filter(|c| !c.is_team_chat())
            .ok_or_else(|| invalid(&field, "channel must be sms, whatsapp or email"))?;
        staff.channel = channel.as_str().to_owned();
        staff.address = channel
            .normalize_recipient(&staff.address)
            .map_err(|err| invalid(&field, format!("address: {err}")))?;
    }
    for domain in &mut settings.email_domains {
        *domain = domain.trim().trim_start_matches('@').to_ascii_lowercase();
        if !valid_domain(domain) {
            return Err(invalid(
                "email_domains",
                format!("{domain:?} is not a domain"),
            ));
        }
    }
    if !settings.email_domains.is_empty() {
        for staff in settings.staff.iter().filter(|s| s.channel == "email") {
            if !settings
                .email_domains
                .iter()
                .any(|d| crate::connectors::messages::domain_matches(&staff.address, d))
            {
                return Err(invalid(
                    "staff",
                    format!("{}'s email domain is not in email_domains", staff.name),
                ));
            }
        }
    }
    if !(1..=50).contains(&settings.per_call_limit) {
        return Err(invalid("per_call_limit", "must be 1 to 50"));
    }
    if !(1..=100_000).contains(&settings.per_tenant_daily_limit) {
        return Err(invalid("per_tenant_daily_limit", "must be 1 to 100000"));
    }
    if !(60..=7 * 24 * 3600).contains(&settings.dedup_ttl_secs) {
        return Err(invalid(
            "dedup_ttl_secs",
            "must be 60 seconds to 7 days (604800)",
        ));
    }
    if let Some(template) = &settings.whatsapp_template {
        let name_ok = !template.name.is_empty()
            && template.name.len() <= 512
            && template
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        let language_ok = (2..=10).contains(&template.language.len())
            && template
                .language
                .chars()
                .all(|c| c.is_ascii_alphabetic() || c == '_');
        if !name_ok || !language_ok {
            return Err(invalid(
                "whatsapp_template",
                "name must be lower-case letters, digits and '_'; language a code such as en_US",
            ));
        }
    }
    if let Some(channel) = &settings.default_channel {
        let parsed = Channel::parse(channel)
            .filter(|c| !c.is_team_chat())
            .ok_or_else(|| invalid("default_channel", "must be sms, whatsapp or email"))?;
        settings.default_channel = Some(parsed.as_str().to_owned());
    }
    Ok(settings)
}

impl From<NotifyError> for ServiceError {
    fn from(err: NotifyError) -> Self {
        match err {
            NotifyError::Invalid(message) => invalid("rule", message),
            NotifyError::Store(err) => err.into(),
            other => ServiceError::Unavailable(other.to_string()),
        }
    }
}

impl From<NotificationRule> for NotificationRuleView {
    fn from(rule: NotificationRule) -> Self {
        Self {
            id: rule.id,
            event: rule.event,
            channel: rule.channel,
            recipient: rule.recipient,
            created_at: rule.created_at.to_string(),
        }
    }
}

impl AdminService {
    pub async fn messaging_settings(
        &self,
        who: &Principal,
        tenant: &str,
    ) -> Result<MessagingSettings, ServiceError> {
        let id = self.tenant_scope(who, tenant).await?;
        Ok(self.store().messaging_settings(&id).await?)
    }

    pub async fn put_messaging_settings(
        &self,
        who: &Principal,
        tenant: &str,
        settings: MessagingSettings,
    ) -> Result<MessagingSettings, ServiceError> {
        let id = self.tenant_scope(who, tenant).await?;
        let settings = validate_settings(settings)?;
        let stored = self.store().put_messaging_settings(&id, &settings).await?;
        info!(tenant = %id, staff = stored.staff.len(), "messaging settings updated");
        Ok(stored)
    }

    pub async fn list_notification_rules(
        &self,
        who: &Principal,
        tenant: &str,
    ) -> Result<Vec<NotificationRuleView>, ServiceError> {
        let id = self.tenant_scope(who, tenant).await?;
        Ok(super::views(
            self.store().list_notification_rules(&id).await?,
        ))
    }

    pub async fn add_notification_rule(
        &self,
        who: &Principal,
        tenant: &str,
        req: NotificationRuleRequest,
    ) -> Result<NotificationRuleView, ServiceError> {
        let id = self.tenant_scope(who, tenant).await?;
        let (event, channel, recipient) = validate_rule(&req.event, &req.channel, &req.recipient)?;
        let rule = self
            .store()
            .add_notification_rule(&id, event.as_str(), channel.as_str(), &recipient)
            .await?;
        info!(tenant = %id, event = event.as_str(), channel = channel.as_str(), "notification rule added");
        Ok(rule.into())
    }

    pub async fn delete_notification_rule(
        &self,
        who: &Principal,
        tenant: &str,
        rule: &str,
    ) -> Result<(), ServiceError> {
        let id = self.tenant_scope(who, tenant).await?;
        self.store().delete_notification_rule(&id, rule).await?;
        info!(tenant = %id, "notification rule removed");
        Ok(())
    }

    /// The tenant's most recent notifications and their delivery state (no texts).
    pub async fn list_notifications(
        &self,
        who: &Principal,
        tenant: &str,
        limit: u32,
    ) -> Result<Vec<NotificationView>, ServiceError> {
        let id = self.tenant_scope(who, tenant).await?;
        let rows = self
            .store()
            .list_notifications(&id, limit.clamp(1, 500))
            .await?;
        Ok(rows
            .into_iter()
            .map(|n| NotificationView {
                id: n.id,
                event: n.event,
                channel: n.channel,
                status: n.status.as_str().to_owned(),
                attempts: n.attempts,
                last_error: n.last_error,
                created_at: n.created_at.to_string(),
                delivered_at: n.delivered_at.map(|t| t.to_string()),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{StaffRecipient, TemplateSetting};

    fn staff(name: &str, channel: &str, address: &str) -> StaffRecipient {
        StaffRecipient {
            name: name.into(),
            channel: channel.into(),
            address: address.into(),
        }
    }

    #[test]
    fn settings_are_canonical_or_refused() {
        let settings = validate_settings(MessagingSettings {
            staff: vec![
                staff(" Front desk ", "SMS", "+1 415 555 2671"),
                staff("Manager", "email", "Boss@Clinic.Example"),
            ],
            email_domains: vec!["@Clinic.Example".into()],
            whatsapp_template: Some(TemplateSetting {
                name: "booking_note".into(),
                language: "en_US".into(),
            }),
            default_channel: Some("WhatsApp".into()),
            ..MessagingSettings::default()
        })
        .expect("valid");
        assert_eq!(settings.staff[0].name, "Front desk");
        assert_eq!(settings.staff[0].address, "+14155552671");
        assert_eq!(settings.staff[1].address, "Boss@clinic.example");
        assert_eq!(settings.email_domains, ["clinic.example"]);
        assert_eq!(settings.default_channel.as_deref(), Some("whatsapp"));
        for bad in [
            MessagingSettings {
                staff: vec![staff("caller", "sms", "+14155552671")],
                ..MessagingSettings::default()
            },
            MessagingSettings {
                staff: vec![staff("a", "sms", "4155552671")],
                ..MessagingSettings::default()
            },
            MessagingSettings {
                staff: vec![staff("a", "slack", "x")],
                ..MessagingSettings::default()
            },
            MessagingSettings {
                staff: vec![staff("a", "email", "a@other.example")],
                email_domains: vec!["clinic.example".into()],
                ..MessagingSettings::default()
            },
            MessagingSettings {
                per_call_limit: 0,
                ..MessagingSettings::default()
            },
            MessagingSettings {
                dedup_ttl_secs: 10,
                ..MessagingSettings::default()
            },
        ] {
            assert!(validate_settings(bad.clone()).is_err(), "{bad:?} accepted");
        }
    }
}

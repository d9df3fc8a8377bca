//! Deals (opportunities) as the `update_deal` tool sees them, and the two rules every CRM applies
//! the same way: which of the caller's deals a change is for, and which pipeline stage a spoken
//! stage name is. Pure: no requests; the vendors fetch deals and stages and call these. A stage
//! that is not in the pipeline is an error naming the stages, never a guess.

use chrono::NaiveDate;

use super::ConnectorError;

/// A change to one of the caller's deals; `None` leaves a field unchanged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DealUpdate {
    /// The stage by its label or id in the deal's pipeline.
    pub stage: Option<String>,
    /// A decimal string (`"1200.50"`), in the deal's currency.
    pub amount: Option<String>,
    pub close_date: Option<NaiveDate>,
    pub next_step: Option<String>,
}

impl DealUpdate {
    pub fn is_empty(&self) -> bool {
        self.stage.is_none()
            && self.amount.is_none()
            && self.close_date.is_none()
            && self.next_step.is_none()
    }
}

/// A deal after an update, as the tool reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deal {
    pub id: String,
    pub name: String,
    /// The stage's label.
    pub stage: Option<String>,
    pub amount: Option<String>,
    pub close_date: Option<NaiveDate>,
}

impl Deal {
    /// The deal as it stands after `update` was written: the update's values where it set them,
    /// else what the vendor had (`prior_close_date` is read from its first ten characters, so a
    /// date or a timestamp both do).
    pub fn after(
        update: &DealUpdate,
        id: &str,
        name: String,
        stage: Option<String>,
        prior_amount: Option<String>,
        prior_close_date: Option<&str>,
    ) -> Self {
        Self {
            id: id.to_owned(),
            name,
            stage,
            amount: update.amount.clone().or(prior_amount),
            close_date: update.close_date.or_else(|| {
                prior_close_date
                    .and_then(|d| d.get(..10))
                    .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
            }),
        }
    }
}

/// A checked amount (see [`checked_amount`]) as the JSON number the vendors that want one take.
pub fn amount_number(amount: &str) -> Result<serde_json::Number, ConnectorError> {
    amount
        .parse()
        .map_err(|_| ConnectorError::InvalidInput("an amount is a plain number".into()))
}

/// A deal of the caller, as listed for choosing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DealChoice {
    pub id: String,
    pub name: String,
}

/// The deal a change is for: `wanted` when given (it must be among the caller's `deals`, else
/// not found), else the caller's only open deal; several open deals and no id is an error
/// listing them so the model can ask which.
pub fn pick_deal<'a, T>(
    deals: &'a [T],
    wanted: Option<&str>,
    choice: impl Fn(&T) -> DealChoice,
) -> Result<&'a T, ConnectorError> {
    if let Some(wanted) = wanted {
        return deals
            .iter()
            .find(|deal| choice(deal).id == wanted)
            .ok_or_else(|| ConnectorError::NotFound("deal".into()));
    }
    match deals {
        [] => Err(ConnectorError::NotFound("open deal".into())),
        [only] => Ok(only),
        several => {
            let listed = several
                .iter()
                .map(|deal| {
                    let deal = choice(deal);
                    format!("\"{}\" (deal_id {})", deal.name, deal.id)
                })
                .collect::<Vec<_>>()
                .join(", ");
            Err(ConnectorError::InvalidInput(format!(
                "the caller has several open deals: {listed}; ask which one and pass its deal_id"
            )))
        }
    }
}

/// The stage of `stages` (id, label) named by `wanted`: its label (case and spacing ignored) or
/// its id. Anything else is an error naming the stages that exist.
pub fn match_stage<'a>(
    stages: &'a [(String, String)],
    wanted: &str,
) -> Result<&'a (String, String), ConnectorError> {
    let norm = |text: &str| {
        text.split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase()
    };
    let key = norm(wanted);
    stages
        .iter()
        .find(|(id, label)| norm(label) == key || id == wanted)
        .ok_or_else(|| {
            let labels = stages
                .iter()
                .map(|(_, label)| format!("\"{label}\""))
                .collect::<Vec<_>>()
                .join(", ");
            ConnectorError::InvalidInput(format!(
                "there is no stage \"{wanted}\" in this pipeline; the stages are {labels}"
            ))
        })
}

/// A decimal amount as the caller gave it, checked: digits with at most one point, no sign.
pub fn checked_amount(text: &str) -> Result<String, ConnectorError> {
    let text = text.trim();
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let digits = |part: &str| part.chars().all(|c| c.is_ascii_digit());
    if whole.is_empty()
        || whole.len() > 15
        || fraction.len() > 4
        || !digits(whole)
        || !digits(fraction)
    {
        return Err(ConnectorError::InvalidInput(
            "an amount is a plain number such as 1200 or 1200.50".into(),
        ));
    }
    Ok(text.trim_end_matches('.').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stages() -> Vec<(String, String)> {
        vec![
            (
                "appointmentscheduled".into(),
                "Appointment Scheduled".into(),
            ),
            ("closedwon".into(), "Closed Won".into()),
        ]
    }

    #[test]
    fn a_stage_is_matched_by_label_or_id_and_never_guessed() {
        let stages = stages();
        assert_eq!(
            match_stage(&stages, "closed  won")
                .map(|s| s.0.as_str())
                .ok(),
            Some("closedwon")
        );
        assert_eq!(
            match_stage(&stages, "appointmentscheduled")
                .map(|s| s.1.as_str())
                .ok(),
            Some("Appointment Scheduled")
        );
        let err = match_stage(&stages, "Won").expect_err("no such stage");
        assert!(
            err.to_string()
                .contains("\"Appointment Scheduled\", \"Closed Won\""),
            "{err}"
        );
    }

    #[test]
    fn the_deal_is_the_named_one_or_the_only_open_one() {
        let deals = vec![("1", "Seats"), ("2", "Support")];
        let choice = |d: &(&str, &str)| DealChoice {
            id: d.0.to_owned(),
            name: d.1.to_owned(),
        };
        assert_eq!(
            pick_deal(&deals, Some("2"), choice).ok(),
            Some(&("2", "Support"))
        );
        assert!(matches!(
            pick_deal(&deals, Some("3"), choice),
            Err(ConnectorError::NotFound(_))
        ));
        let several = pick_deal(&deals, None, choice).expect_err("ambiguous");
        assert!(
            several.to_string().contains("\"Seats\" (deal_id 1)"),
            "{several}"
        );
        assert_eq!(
            pick_deal(&deals[..1], None, choice).ok(),
            Some(&("1", "Seats"))
        );
        assert!(pick_deal(&deals[..0], None, choice).is_err());
    }

    #[test]
    fn amounts_are_plain_decimals() {
        assert_eq!(checked_amount("1200.50").ok().as_deref(), Some("1200.50"));
        assert_eq!(checked_amount(" 300 ").ok().as_deref(), Some("300"));
        for bad in ["-5", "1e9", "12,000", "", ".5", "1.2.3"] {
            assert!(checked_amount(bad).is_err(), "{bad}");
        }
    }
}

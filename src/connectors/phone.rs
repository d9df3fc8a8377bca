//! The forms a caller's number may be stored in by a CRM that matches phone fields exactly
//! (Salesforce, Zoho): the E.164 caller id, the national number, and the North American display
//! form. Pure text; it must not guess a country the connector was not configured with.

/// `e164` (`+14155550100`) and its national forms for `country_code` (`1`, `44`): the national
/// digits (with the trunk `0` outside the North American plan) and, for `1`, `(415) 555-0100`,
/// the form Salesforce and Zoho show numbers typed in their UI. E.164 first; no duplicates.
pub fn stored_forms(e164: &str, country_code: &str) -> Vec<String> {
    let mut forms = vec![e164.to_owned()];
    let digits: String = e164.chars().filter(char::is_ascii_digit).collect();
    let Some(national) = digits.strip_prefix(country_code).filter(|n| n.len() >= 4) else {
        return forms;
    };
    if country_code == "1" {
        forms.push(national.to_owned());
        if national.len() == 10 {
            forms.push(format!(
                "({}) {}-{}",
                &national[..3],
                &national[3..6],
                &national[6..]
            ));
        }
    } else {
        forms.push(format!("0{national}"));
    }
    forms.dedup();
    forms
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn national_and_display_forms() {
        assert_eq!(
            stored_forms("+14155550100", "1"),
            vec!["+14155550100", "4155550100", "(415) 555-0100"]
        );
        assert_eq!(
            stored_forms("+442071838750", "44"),
            vec!["+442071838750", "02071838750"]
        );
        // Another country's number keeps only its E.164 form.
        assert_eq!(stored_forms("+33123456789", "44"), vec!["+33123456789"]);
        assert_eq!(stored_forms("+1555", "1"), vec!["+1555"]);
    }
}

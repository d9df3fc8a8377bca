//! Campaign contact import from CSV: one row per contact, a `phone` column (E.164, validated
//! with `phonenumber`), an optional `time_zone` column overriding the zone derived from the
//! number, and every other column a per-contact prompt variable (`{{var.COLUMN}}`).
//!
//! Bad rows are reported with their line number and reason and never silently dropped; the
//! caller decides whether a file with errors is accepted. This module is pure: no store, no clock.

use std::collections::{BTreeMap, HashMap};

use chrono_tz::Tz;

use super::dialer::normalize_number;
use super::window::{parse_zone, zones_for_number};
use crate::store::E164;

/// Largest file accepted, in contacts.
pub const MAX_CONTACTS: usize = 100_000;

/// A whole-file problem (the header); row problems are [`RowError`]s.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ImportError {
    #[error("CSV header: {0}")]
    Header(String),
    #[error("more than {MAX_CONTACTS} contacts")]
    TooManyRows,
}

/// One rejected row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowError {
    /// 1-based line number in the file (the header is line 1).
    pub line: u64,
    pub message: String,
}

/// One accepted contact.
#[derive(Clone, Debug, PartialEq)]
pub struct ContactRow {
    pub line: u64,
    pub number: E164,
    /// The zones its calling window must be open in (one when overridden).
    pub zones: Vec<Tz>,
    pub variables: BTreeMap<String, String>,
}

/// The outcome of an import: accepted contacts and rejected rows, both in file order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ImportReport {
    pub contacts: Vec<ContactRow>,
    pub errors: Vec<RowError>,
}

const PHONE_COLUMNS: &[&str] = &["phone", "number", "to"];
const ZONE_COLUMN: &str = "time_zone";

/// Parses a CSV file of contacts.
pub fn parse_contacts(data: &[u8]) -> Result<ImportReport, ImportError> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(true)
        .from_reader(data);
    let headers = reader
        .headers()
        .map_err(|e| ImportError::Header(e.to_string()))?
        .clone();
    let names: Vec<String> = headers.iter().map(|h| h.to_ascii_lowercase()).collect();
    let phone_index = names
        .iter()
        .position(|n| PHONE_COLUMNS.contains(&n.as_str()))
        .ok_or_else(|| ImportError::Header("needs a phone column".into()))?;
    let zone_index = names.iter().position(|n| n == ZONE_COLUMN);
    for (i, name) in names.iter().enumerate() {
        if i == phone_index || Some(i) == zone_index {
            continue;
        }
        if name.is_empty()
            || name.len() > 64
            || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(ImportError::Header(format!(
                "column {:?}: variable names are letters, digits and _",
                headers.get(i).unwrap_or_default()
            )));
        }
        if names[..i].contains(name) {
            return Err(ImportError::Header(format!(
                "column {name:?} appears twice"
            )));
        }
    }
    let mut report = ImportReport::default();
    let mut seen: HashMap<E164, u64> = HashMap::new();
    for record in reader.records() {
        let record = match record {
            Ok(record) => record,
            Err(e) => {
                let line = e.position().map_or(0, |p| line_of(data, p));
                report.errors.push(RowError {
                    line,
                    message: format!("unreadable row: {e}"),
                });
                continue;
            }
        };
        let line = record.position().map_or(0, |p| line_of(data, p));
        if record.iter().all(str::is_empty) {
            continue;
        }
        if report.contacts.len() + report.errors.len() >= MAX_CONTACTS {
            return Err(ImportError::TooManyRows);
        }
        if record.len() != names.len() {
            report.errors.push(RowError {
                line,
                message: format!(
                    "has {} fields; the header has {}",
                    record.len(),
                    names.len()
                ),
            });
            continue;
        }
        match contact(&names, phone_index, zone_index, &record, line) {
            Ok(row) => {
                if let Some(first) = seen.get(&row.number) {
                    report.errors.push(RowError {
                        line,
                        message: format!("{} is a duplicate of line {first}", row.number),
                    });
                } else {
                    seen.insert(row.number.clone(), line);
                    report.contacts.push(row);
                }
            }
            Err(message) => report.errors.push(RowError { line, message }),
        }
    }
    Ok(report)
}

/// The 1-based file line of a record, counted from its byte offset: the csv crate's own line
/// counter skips blank lines, which would misreport every row after one.
fn line_of(data: &[u8], position: &csv::Position) -> u64 {
    let mut end = usize::try_from(position.byte()).map_or(data.len(), |b| b.min(data.len()));
    // A record's position is where reading it began, which includes blank lines before it.
    while end < data.len() && matches!(data[end], b'\n' | b'\r') {
        end += 1;
    }
    data[..end].iter().filter(|&&b| b == b'\n').count() as u64 + 1
}

fn contact(
    names: &[String],
    phone_index: usize,
    zone_index: Option<usize>,
    record: &csv::StringRecord,
    line: u64,
) -> Result<ContactRow, String> {
    let raw = record.get(phone_index).unwrap_or_default();
    let number = normalize_number(raw).map_err(|e| e.to_string())?;
    let zone_override = zone_index
        .and_then(|i| record.get(i))
        .filter(|z| !z.is_empty());
    let zones = match zone_override {
        Some(name) => vec![parse_zone(name).map_err(|e| e.to_string())?],
        None => zones_for_number(&number).map_err(|e| e.to_string())?,
    };
    let mut variables = BTreeMap::new();
    for (i, value) in record.iter().enumerate() {
        if i == phone_index || Some(i) == zone_index {
            continue;
        }
        if value.chars().count() > 500 || value.chars().any(char::is_control) {
            return Err(format!(
                "column {:?}: at most 500 characters without control characters",
                names[i]
            ));
        }
        variables.insert(names[i].clone(), value.to_owned());
    }
    Ok(ContactRow {
        line,
        number,
        zones,
        variables,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_rows_become_contacts_and_bad_rows_are_reported_by_line() {
        let csv = "phone,name,time_zone,plan\n\
                   +1 415 555 2671,Ana,,gold\n\
                   +1555,Bob,,silver\n\
                   +442079460958,\"Smith, Jo\",Europe/London,bronze\n\
                   +14155552671,Ana again,,gold\n\
                   +5511987654321,Caio,,gold\n\
                   +5511987654322,Duda,Mars/Base,gold\n\
                   +12125550123,Eve\n\
                   \n\
                   +13125550123,Finn,America/Chicago,gold\n";
        let report = parse_contacts(csv.as_bytes()).expect("header is fine");
        let lines: Vec<u64> = report.contacts.iter().map(|c| c.line).collect();
        assert_eq!(lines, vec![2, 4, 10]);
        assert_eq!(report.contacts[0].number.as_str(), "+14155552671");
        assert_eq!(report.contacts[0].zones.len(), 7);
        assert_eq!(report.contacts[1].variables["name"], "Smith, Jo");
        assert_eq!(report.contacts[2].zones, vec![chrono_tz::America::Chicago]);
        let errors: Vec<(u64, &str)> = report
            .errors
            .iter()
            .map(|e| (e.line, e.message.as_str()))
            .collect();
        assert_eq!(errors.len(), 5, "{errors:?}");
        assert_eq!(errors[0].0, 3);
        assert!(errors[0].1.contains("invalid phone number"));
        assert_eq!(errors[1].0, 5);
        assert!(errors[1].1.contains("duplicate of line 2"));
        assert_eq!(errors[2].0, 6);
        assert!(errors[2].1.contains("time_zone column"));
        assert_eq!(errors[3].0, 7);
        assert!(errors[3].1.contains("Mars/Base"));
        assert_eq!(errors[4].0, 8);
        assert!(errors[4].1.contains("fields"));
    }

    #[test]
    fn a_bad_header_refuses_the_file() {
        assert!(matches!(
            parse_contacts(b"name,plan\nAna,gold\n"),
            Err(ImportError::Header(_))
        ));
        assert!(matches!(
            parse_contacts(b"phone,first name\n+14155552671,Ana\n"),
            Err(ImportError::Header(_))
        ));
        assert!(matches!(
            parse_contacts(b"phone,name,NAME\n+14155552671,Ana,Ana\n"),
            Err(ImportError::Header(_))
        ));
    }
}

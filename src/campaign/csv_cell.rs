//! Spreadsheet-safe CSV cells: every CSV callbridge writes passes each cell through
//! [`neutralise`], so a value a caller or a tenant's contact file put there (a name, a variable,
//! an error text) opens in a spreadsheet as text, never as a formula (CSV or formula injection).
//!
//! It owns only the cell rule; it must not quote or escape CSV syntax (the `csv` writer does that).
//!
//! The rule follows OWASP's guidance: a cell that begins with `=`, `+`, `-`, `@`, a tab or a
//! carriage return is prefixed with a single quote, which spreadsheets read as "this is text".
//! The full-width forms of the four signs are treated the same (some spreadsheets fold them).
//! A cell that is a plain number (`+14155552671`, `-3`, `2.5`) is left as it is: it cannot hold
//! a formula, and phone numbers stay usable.

use std::borrow::Cow;

/// First characters a spreadsheet may read as the start of a formula.
const TRIGGERS: &[char] = &[
    '=', '+', '-', '@', '\t', '\r', '\u{FF1D}', '\u{FF0B}', '\u{FF0D}', '\u{FF20}',
];

/// `cell` as it is safe to write into a CSV file meant for spreadsheets.
pub fn neutralise(cell: &str) -> Cow<'_, str> {
    match cell.chars().next() {
        Some(first) if TRIGGERS.contains(&first) && !is_plain_number(cell) => {
            Cow::Owned(format!("'{cell}"))
        }
        _ => Cow::Borrowed(cell),
    }
}

/// An optional sign, ASCII digits, at most one decimal point between digits.
fn is_plain_number(cell: &str) -> bool {
    let digits = cell.strip_prefix(['+', '-']).unwrap_or(cell);
    let mut parts = digits.splitn(2, '.');
    let whole = parts.next().unwrap_or("");
    let fraction = parts.next();
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    all_digits(whole) && fraction.is_none_or(all_digits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_starts_are_neutralised() {
        for (raw, safe) in [
            (
                "=HYPERLINK(\"http://x\",\"y\")",
                "'=HYPERLINK(\"http://x\",\"y\")",
            ),
            ("+SUM(1,2)", "'+SUM(1,2)"),
            ("-2+3+cmd|' /C calc'!A0", "'-2+3+cmd|' /C calc'!A0"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\t=1", "'\t=1"),
            ("\r=1", "'\r=1"),
            ("\u{FF1D}1+1", "'\u{FF1D}1+1"),
            ("+", "'+"),
            ("-", "'-"),
            ("+1.", "'+1."),
            ("-.5", "'-.5"),
            ("+1e5", "'+1e5"),
        ] {
            assert_eq!(neutralise(raw), safe, "{raw:?}");
        }
    }

    #[test]
    fn ordinary_text_and_plain_numbers_are_left_alone() {
        for raw in [
            "",
            "Ana",
            "Smith, Jo",
            "a=b",
            "'quoted",
            "+14155552671",
            "-3",
            "2.5",
            "-0.25",
            "42",
        ] {
            assert!(matches!(neutralise(raw), Cow::Borrowed(_)), "{raw:?}");
        }
    }
}

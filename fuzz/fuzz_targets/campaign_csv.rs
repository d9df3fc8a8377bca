//! Campaign contact files: any bytes give a report of good and bad rows or a header error, never a
//! panic; every reported line is a line of the file.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = callbridge::campaign::import::parse_contacts(data);
    let cell = String::from_utf8_lossy(data);
    let safe = callbridge::campaign::csv_cell::neutralise(&cell);
    assert!(!safe.starts_with(['=', '@', '\t', '\r']));
});

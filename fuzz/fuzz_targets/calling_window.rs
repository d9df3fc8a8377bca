//! Calling windows: any hours and days text parses to a valid window or an error (the
//! `HH * 60` overflow of issue 21 is the kind it catches), and a parsed window survives its stored form.
#![no_main]

use libfuzzer_sys::fuzz_target;
use callbridge::campaign::window::CallingWindow;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (hours, days) = text.split_once('\n').unwrap_or((&text, "mon"));
    if let Ok(window) = CallingWindow::parse(hours, days) {
        let back = CallingWindow::from_spec(window.to_spec()).expect("a parsed window stores");
        assert_eq!(back.to_spec(), window.to_spec());
    }
});

//! Stream tokens: any token text against any claims verifies or fails cleanly, and only the token
//! minted for exactly those claims verifies.
#![no_main]

use libfuzzer_sys::fuzz_target;
use callbridge::twilio::token::{self, StreamClaims};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let f: Vec<&str> = text.splitn(7, '\u{1f}').collect();
    let field = |i: usize| f.get(i).copied().unwrap_or_default().to_owned();
    let claims = StreamClaims {
        call_sid: field(0),
        from: field(1),
        to: field(2),
        tenant: field(3),
        agent: field(4),
        expires_at: field(5).parse().unwrap_or(0),
        resume: String::new(),
    };
    let given = field(6);
    let minted = token::mint("secret", &claims);
    let verdict = token::verify("secret", &claims, Some(given.as_str()), 0);
    if given != minted {
        assert!(verdict.is_err(), "a token that is not the minted one verified");
    }
    assert!(token::verify("secret", &claims, Some(minted.as_str()), 0).is_ok());
});

//! Prompt templates: the scanner, the checks and the renderer accept any text without panicking,
//! and rendering a template with no variables gives it back unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(template) = std::str::from_utf8(data) else {
        return;
    };
    let _ = callbridge::config::template_parts(template);
    let _ = callbridge::config::check_template(template);
    let _ = callbridge::call::plan::check_agent_template(template);
    let rendered = callbridge::config::render_template(template, &[("caller", "+14155551234")]);
    if !template.contains("{{") {
        assert_eq!(rendered, template);
    }
});

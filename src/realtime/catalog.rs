//! What each realtime provider accepts as an agent's model and voice, so an agent that cannot run
//! is refused when it is written rather than when a caller is waiting. Pure data and checks; it
//! must not know which providers a deployment has keys for (that is the caller's `Config`).
//!
//! Voices are the providers' published built-in voices (protocols reference §4.4, §5.1; Gemini's
//! prebuilt voice list). Model names change often, so models are checked by family prefix only.

/// Every provider this server can speak to.
pub const PROVIDERS: [&str; 4] = ["openai", "xai", "azure", "gemini"];

/// OpenAI (and Azure OpenAI) realtime voices.
pub const OPENAI_VOICES: [&str; 10] = [
    "alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar",
];
/// xAI Grok voices (case-insensitive).
pub const XAI_VOICES: [&str; 5] = ["ara", "eve", "leo", "rex", "sal"];
/// Gemini Live prebuilt voices (case-insensitive).
pub const GEMINI_VOICES: [&str; 30] = [
    "Zephyr",
    "Puck",
    "Charon",
    "Kore",
    "Fenrir",
    "Leda",
    "Orus",
    "Aoede",
    "Callirrhoe",
    "Autonoe",
    "Enceladus",
    "Iapetus",
    "Umbriel",
    "Algieba",
    "Despina",
    "Erinome",
    "Algenib",
    "Rasalgethi",
    "Laomedeia",
    "Achernar",
    "Alnilam",
    "Schedar",
    "Gacrux",
    "Pulcherrima",
    "Achird",
    "Zubenelgenubi",
    "Vindemiatrix",
    "Sadachbia",
    "Sadaltager",
    "Sulafat",
];

/// Why a provider, model or voice was refused: the agent field and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogError {
    pub field: &'static str,
    pub message: String,
}

fn refuse(field: &'static str, message: String) -> CatalogError {
    CatalogError { field, message }
}

/// Checks that `provider` is known and that `model` and `voice` are ones it accepts.
pub fn check_agent_voice(provider: &str, model: &str, voice: &str) -> Result<(), CatalogError> {
    let voices: &[&str] = match provider {
        "openai" | "azure" => &OPENAI_VOICES,
        "xai" => &XAI_VOICES,
        "gemini" => &GEMINI_VOICES,
        other => {
            return Err(refuse(
                "provider",
                format!(
                    "unknown provider {other:?}; this server speaks to {}",
                    PROVIDERS.join(", ")
                ),
            ));
        }
    };
    let model_ok = match provider {
        "openai" => model.starts_with("gpt-") && model.contains("realtime"),
        "xai" => model.starts_with("grok-"),
        "gemini" => model.starts_with("gemini-") || model.starts_with("models/gemini-"),
        // An Azure model is the name of the operator's deployment.
        _ => {
            !model.is_empty()
                && model.len() <= 64
                && model
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        }
    };
    if !model_ok {
        let expected = match provider {
            "openai" => "an OpenAI realtime model (gpt-realtime, gpt-realtime-mini, …)",
            "xai" => "a Grok voice model (grok-voice-think-fast-1.0, …)",
            "gemini" => "a Gemini Live model (gemini-…)",
            _ => "the name of an Azure OpenAI realtime deployment",
        };
        return Err(refuse("model", format!("{model:?} is not {expected}")));
    }
    let case_sensitive = matches!(provider, "openai" | "azure");
    let voice_ok = voices.iter().any(|v| {
        if case_sensitive {
            *v == voice
        } else {
            v.eq_ignore_ascii_case(voice)
        }
    });
    if !voice_ok {
        return Err(refuse(
            "voice",
            format!(
                "{voice:?} is not a {provider} voice (one of {})",
                voices.join(", ")
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_providers_models_and_voices_pass() {
        assert!(check_agent_voice("openai", "gpt-realtime", "marin").is_ok());
        assert!(check_agent_voice("openai", "gpt-realtime-mini", "cedar").is_ok());
        assert!(check_agent_voice("xai", "grok-voice-think-fast-1.0", "Eve").is_ok());
        assert!(check_agent_voice("gemini", "gemini-live-2.5-flash-preview", "puck").is_ok());
        assert!(check_agent_voice("azure", "my-realtime-deployment", "alloy").is_ok());
    }

    #[test]
    fn what_cannot_run_is_refused_with_its_field() {
        let field = |p, m, v| check_agent_voice(p, m, v).unwrap_err().field;
        assert_eq!(field("anthropic", "claude", "marin"), "provider");
        assert_eq!(field("openai", "gpt-4o", "marin"), "model");
        assert_eq!(field("openai", "gpt-realtime", "darth-vader"), "voice");
        assert_eq!(field("xai", "gpt-realtime", "ara"), "model");
        assert_eq!(field("xai", "grok-voice-latest", "marin"), "voice");
        assert_eq!(field("gemini", "gemini-live", "alloy"), "voice");
        assert_eq!(field("azure", "bad deployment/name", "alloy"), "model");
    }
}

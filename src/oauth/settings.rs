//! The deployment's OAuth apps, read from the environment: per vendor, the client id and secret
//! the operator registered at the vendor, and optional endpoint overrides (a vendor's sandbox, a
//! test authorization server). The redirect URI is always `PUBLIC_URL/oauth/callback`.
//!
//! It must not take a secret from a command-line flag (flags show in `ps`): the secret comes from
//! `CALLBRIDGE_OAUTH_<VENDOR>_CLIENT_SECRET` or the file named by `…_CLIENT_SECRET_FILE`. Apps set
//! through the admin API (`apps.rs`) win over these.

use std::collections::HashMap;
use std::fmt;

use secrecy::SecretString;

/// One vendor's OAuth app.
#[derive(Clone)]
pub struct OAuthApp {
    pub client_id: String,
    pub client_secret: SecretString,
    /// Overrides of the vendor's endpoints (checked by the egress guard when used).
    pub authorize_url: Option<String>,
    pub token_url: Option<String>,
    pub revoke_url: Option<String>,
    /// The identity directory filling a `{directory}` in the vendor's URLs (Microsoft:
    /// `common`, `organizations`, `consumers` or a directory's id or domain); `None`: `common`.
    pub directory: Option<String>,
}

impl OAuthApp {
    /// `url` with its `{directory}` placeholder, if any, replaced by this app's directory.
    pub fn fill_directory(&self, url: &str) -> String {
        url.replace(
            super::apps::DIRECTORY_PLACEHOLDER,
            self.directory
                .as_deref()
                .unwrap_or(super::apps::DEFAULT_DIRECTORY),
        )
    }
}

impl fmt::Debug for OAuthApp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthApp")
            .field("client_id", &self.client_id)
            .field("authorize_url", &self.authorize_url)
            .field("token_url", &self.token_url)
            .field("revoke_url", &self.revoke_url)
            .field("directory", &self.directory)
            .finish_non_exhaustive()
    }
}

/// Every OAuth app of the deployment, by vendor id, and the public URL callbacks come back to.
#[derive(Debug, Default)]
pub struct OAuthSettings {
    pub public_url: Option<String>,
    pub apps: HashMap<String, OAuthApp>,
}

/// A setting that is present but unusable.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("{var} is set but {missing} is not")]
    Incomplete { var: String, missing: String },
    #[error("{var}: {reason}")]
    Invalid { var: String, reason: String },
    #[error("{var}: cannot read the secret file: {reason}")]
    SecretFile { var: String, reason: String },
}

/// The environment prefix of a vendor's settings: `CALLBRIDGE_OAUTH_GOOGLE_CALENDAR_`.
pub fn env_prefix(vendor: &str) -> String {
    format!("CALLBRIDGE_OAUTH_{}_", vendor.to_ascii_uppercase())
}

impl OAuthSettings {
    /// Reads the apps of `vendors` from the process environment.
    pub fn from_env(public_url: Option<String>, vendors: &[&str]) -> Result<Self, SettingsError> {
        Self::from_lookup(public_url, vendors, |name| std::env::var(name).ok())
    }

    /// Reads the apps of `vendors` through `lookup` (the environment, or a test's map). A vendor
    /// without a client id has no app; a client id without a secret is an error.
    pub fn from_lookup(
        public_url: Option<String>,
        vendors: &[&str],
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, SettingsError> {
        let mut apps = HashMap::new();
        for vendor in vendors {
            let prefix = env_prefix(vendor);
            let get = |suffix: &str| lookup(&format!("{prefix}{suffix}")).filter(|v| !v.is_empty());
            let Some(client_id) = get("CLIENT_ID") else {
                continue;
            };
            let secret = match (get("CLIENT_SECRET"), get("CLIENT_SECRET_FILE")) {
                (Some(secret), _) => secret,
                (None, Some(path)) => std::fs::read_to_string(&path)
                    .map(|text| text.trim().to_owned())
                    .map_err(|err| SettingsError::SecretFile {
                        var: format!("{prefix}CLIENT_SECRET_FILE"),
                        reason: err.kind().to_string(),
                    })?,
                (None, None) => {
                    return Err(SettingsError::Incomplete {
                        var: format!("{prefix}CLIENT_ID"),
                        missing: format!("{prefix}CLIENT_SECRET or {prefix}CLIENT_SECRET_FILE"),
                    });
                }
            };
            apps.insert(
                (*vendor).to_owned(),
                OAuthApp {
                    client_id,
                    client_secret: SecretString::from(secret),
                    authorize_url: get("AUTHORIZE_URL"),
                    token_url: get("TOKEN_URL"),
                    revoke_url: get("REVOKE_URL"),
                    directory: match get("DIRECTORY") {
                        Some(directory) => {
                            Some(super::apps::valid_directory(&directory).map_err(|reason| {
                                SettingsError::Invalid {
                                    var: format!("{prefix}DIRECTORY"),
                                    reason,
                                }
                            })?)
                        }
                        None => None,
                    },
                },
            );
        }
        Ok(Self { public_url, apps })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_apps_and_refuses_an_id_without_secret() {
        let env: HashMap<&str, &str> = [
            ("CALLBRIDGE_OAUTH_HUBSPOT_CLIENT_ID", "id-1"),
            ("CALLBRIDGE_OAUTH_HUBSPOT_CLIENT_SECRET", "s3cret"),
            (
                "CALLBRIDGE_OAUTH_HUBSPOT_TOKEN_URL",
                "https://t.example/token",
            ),
        ]
        .into_iter()
        .collect();
        let settings = OAuthSettings::from_lookup(None, &["hubspot", "calendly"], |k| {
            env.get(k).map(|v| (*v).to_owned())
        })
        .unwrap();
        assert_eq!(settings.apps.len(), 1);
        let app = &settings.apps["hubspot"];
        assert_eq!(app.client_id, "id-1");
        assert_eq!(app.token_url.as_deref(), Some("https://t.example/token"));
        assert!(!format!("{app:?}").contains("s3cret"));

        let err = OAuthSettings::from_lookup(None, &["calendly"], |k| {
            (k == "CALLBRIDGE_OAUTH_CALENDLY_CLIENT_ID").then(|| "x".to_owned())
        })
        .unwrap_err();
        assert!(err.to_string().contains("CLIENT_SECRET"));
    }
}

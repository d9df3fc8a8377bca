//! Per-tenant prompts: write (each write a new version), read, history, diff, roll back, and
//! import of the server's template files. It owns the checks at write time (size, the
//! `{{variable}}` check) and the line diff.
//!
//! It must not let a tenant read or name another tenant's prompt: every operation goes through
//! `tenant_scope` and the tenant-scoped store. Template files of the prompts directory are only
//! read by an explicit import, which copies the text into the importing tenant's prompts; they are
//! never read when a call runs.

use std::path::Path;

use tracing::info;

use crate::store::{MAX_PROMPT_BYTES, StoreError, TenantId, validate_prompt_name};

use super::dto::{PromptDiffView, PromptImportRequest, PromptVersionView, PromptView};
use super::{AdminService, Principal, ServiceError};

impl AdminService {
    /// Writes `text` as the next version of the tenant's prompt `name` (created when new).
    pub async fn put_prompt(
        &self,
        who: &Principal,
        tenant: &str,
        name: &str,
        text: &str,
    ) -> Result<PromptView, ServiceError> {
        let id = self.tenant_scope(who, tenant).await?;
        self.write_prompt(&id, name, text).await
    }

    async fn write_prompt(
        &self,
        id: &TenantId,
        name: &str,
        text: &str,
    ) -> Result<PromptView, ServiceError> {
        validate_prompt_name(name)?;
        check_prompt_text(name, text)?;
        let saved = self.store().put_prompt(id, name, text).await?;
        info!(tenant = %id, prompt = name, version = saved.version, "prompt written");
        Ok(saved.into())
    }

    pub async fn get_prompt(
        &self,
        who: &Principal,
        tenant: &str,
        name: &str,
        version: Option<i64>,
    ) -> Result<PromptView, ServiceError> {
        let id = self.tenant_scope(who, tenant).await?;
        Ok(self.store().prompt(&id, name, version).await?.into())
    }

    /// The current version of each of the tenant's prompts.
    pub async fn list_prompts(
        &self,
        who: &Principal,
        tenant: &str,
    ) -> Result<Vec<PromptView>, ServiceError> {
        let id = self.tenant_scope(who, tenant).await?;
        Ok(super::views(self.store().list_prompts(&id).await?))
    }

    pub async fn prompt_versions(
        &self,
        who: &Principal,
        tenant: &str,
        name: &str,
    ) -> Result<Vec<PromptVersionView>, ServiceError> {
        let id = self.tenant_scope(who, tenant).await?;
        Ok(self
            .store()
            .prompt_versions(&id, name)
            .await?
            .into_iter()
            .map(|v| PromptVersionView {
                version: v.version,
                bytes: v.body.len(),
                created_at: v.created_at.to_string(),
            })
            .collect())
    }

    /// The line diff from version `from` to version `to` (default: the current one).
    pub async fn diff_prompt(
        &self,
        who: &Principal,
        tenant: &str,
        name: &str,
        from: i64,
        to: Option<i64>,
    ) -> Result<PromptDiffView, ServiceError> {
        let id = self.tenant_scope(who, tenant).await?;
        let old = self.store().prompt(&id, name, Some(from)).await?;
        let new = self.store().prompt(&id, name, to).await?;
        Ok(PromptDiffView {
            name: name.to_owned(),
            from: old.version,
            to: new.version,
            diff: line_diff(&old.body, &new.body),
        })
    }

    /// Makes version `version`'s text current again, as a new version (history is kept).
    pub async fn rollback_prompt(
        &self,
        who: &Principal,
        tenant: &str,
        name: &str,
        version: i64,
    ) -> Result<PromptView, ServiceError> {
        let id = self.tenant_scope(who, tenant).await?;
        let old = self.store().prompt(&id, name, Some(version)).await?;
        self.write_prompt(&id, name, &old.body).await
    }

    /// Copies `<prompts_dir>/<template>.md` into the tenant's prompts (a new version when the
    /// prompt exists).
    pub async fn import_prompt(
        &self,
        who: &Principal,
        tenant: &str,
        req: PromptImportRequest,
    ) -> Result<PromptView, ServiceError> {
        let id = self.tenant_scope(who, tenant).await?;
        let text = read_template(self.prompts_dir(), &req.template)?;
        let name = req.name.unwrap_or_else(|| req.template.clone());
        self.write_prompt(&id, &name, &text).await
    }

    /// The template files of the server's prompts directory, by name (without `.md`).
    pub fn prompt_templates(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.prompts_dir())
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let name = entry.file_name().into_string().ok()?;
                let stem = name.strip_suffix(".md")?;
                validate_prompt_name(stem).ok().map(|()| stem.to_owned())
            })
            .collect();
        names.sort();
        names
    }

    /// `default`, or the name of one of the tenant's own prompts.
    pub(super) async fn check_agent_prompt(
        &self,
        tenant: &TenantId,
        name: &str,
    ) -> Result<(), ServiceError> {
        if name == "default" {
            return Ok(());
        }
        match self.store().prompt(tenant, name, None).await {
            Ok(_) => Ok(()),
            Err(StoreError::NotFound { .. }) => Err(ServiceError::invalid(
                "prompt_template",
                format!(
                    "this tenant has no prompt named {name:?}: create it with PUT \
                     /tenants/{tenant}/prompts/{name} (or `callbridge prompt import`), or use \
                     `default`"
                ),
            )),
            Err(e) => Err(e.into()),
        }
    }
}

/// The size limit and the `{{variable}}` check of a prompt's text.
fn check_prompt_text(name: &str, text: &str) -> Result<(), ServiceError> {
    if text.len() > MAX_PROMPT_BYTES {
        return Err(ServiceError::PromptTooLarge {
            name: name.to_owned(),
            size: text.len() as u64,
        });
    }
    crate::call::plan::check_agent_template(text).map_err(|message| ServiceError::InvalidPrompt {
        name: name.to_owned(),
        message,
    })
}

/// The text of the template file `<dir>/<template>.md`.
fn read_template(dir: &Path, template: &str) -> Result<String, ServiceError> {
    validate_prompt_name(template).map_err(|_| {
        ServiceError::invalid(
            "template",
            "must be 1 to 64 characters of letters, digits, '-' and '_' naming <template>.md \
             in the prompts directory",
        )
    })?;
    let path = dir.join(format!("{template}.md"));
    let missing = || ServiceError::NotFound(format!("prompt template {template:?}"));
    let meta = std::fs::metadata(&path).map_err(|_| missing())?;
    if !meta.is_file() {
        return Err(missing());
    }
    if meta.len() > MAX_PROMPT_BYTES as u64 {
        return Err(ServiceError::PromptTooLarge {
            name: template.to_owned(),
            size: meta.len(),
        });
    }
    std::fs::read_to_string(&path).map_err(|e| ServiceError::InvalidPrompt {
        name: template.to_owned(),
        message: format!("cannot be read as UTF-8 text: {e}"),
    })
}

/// A line diff (longest common subsequence): `-` for a line only in `old`, `+` only in `new`, a
/// space for a line in both. Prompts are at most 32 KiB, so the quadratic table stays small; past
/// 2000 lines on a side the whole texts are shown as replaced.
pub fn line_diff(old: &str, new: &str) -> String {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    let mut out = String::new();
    if a.len() > 2000 || b.len() > 2000 {
        a.iter().for_each(|l| push_line(&mut out, '-', l));
        b.iter().for_each(|l| push_line(&mut out, '+', l));
        return out;
    }
    // lcs[i][j]: length of the common subsequence of a[i..] and b[j..].
    let mut lcs = vec![vec![0u32; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if a[i] == b[j] {
            push_line(&mut out, ' ', a[i]);
            i += 1;
            j += 1;
        } else if lcs[i + 1][j] >= lcs[i][j + 1] {
            push_line(&mut out, '-', a[i]);
            i += 1;
        } else {
            push_line(&mut out, '+', b[j]);
            j += 1;
        }
    }
    a[i..].iter().for_each(|l| push_line(&mut out, '-', l));
    b[j..].iter().for_each(|l| push_line(&mut out, '+', l));
    out
}

fn push_line(out: &mut String, mark: char, line: &str) {
    out.push(mark);
    out.push_str(line);
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_marks_removed_added_and_kept_lines() {
        let old = "Hello.\nBe brief.\nSay goodbye.";
        let new = "Hello.\nBe warm and brief.\nSay goodbye.\nOffer a callback.";
        assert_eq!(
            line_diff(old, new),
            " Hello.\n-Be brief.\n+Be warm and brief.\n Say goodbye.\n+Offer a callback.\n"
        );
        assert_eq!(line_diff("same", "same"), " same\n");
        assert_eq!(line_diff("", "new"), "+new\n");
    }

    #[test]
    fn text_checks_size_and_variables() {
        assert!(check_prompt_text("p", "Caller {{caller}} on {{var.first_name}}").is_ok());
        assert!(matches!(
            check_prompt_text("p", "Hi {{nmae}}"),
            Err(ServiceError::InvalidPrompt { .. })
        ));
        assert!(matches!(
            check_prompt_text("p", &"x".repeat(MAX_PROMPT_BYTES + 1)),
            Err(ServiceError::PromptTooLarge { .. })
        ));
    }
}

//! Pull (merge) requests on the forge that hosts a repository: GitHub's REST API and GitLab's, at a configurable
//! base URL (GitHub Enterprise, self-hosted GitLab). Every answer is bounded and checked before it is used.

use crate::GitopsError;
use crate::git::Secret;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::time::Duration;

/// Largest forge answer read.
const MAX_ANSWER: usize = 256 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ForgeKind {
    Github,
    Gitlab,
}

impl std::str::FromStr for ForgeKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "github" => Ok(Self::Github),
            "gitlab" => Ok(Self::Gitlab),
            other => Err(format!("{other:?} is not a forge: github or gitlab")),
        }
    }
}

/// A pull request kube-reflexion opened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullRequest {
    pub number: u64,
    pub url: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrState {
    Open,
    /// Merged, as this commit on the base branch.
    Merged(String),
    Closed,
}

#[derive(Debug, Clone)]
pub struct Forge {
    pub kind: ForgeKind,
    pub base_url: String,
    token: Option<Secret>,
    http: reqwest::Client,
}

/// `owner/repo` (GitLab: `group/subgroup/repo`) from a repository URL in any of git's forms.
pub fn repo_path(url: &str) -> Option<String> {
    let path = match url.split_once("://") {
        Some((_, rest)) => rest.split_once('/')?.1.to_string(),
        None => url.split_once(':')?.1.to_string(),
    };
    let path = path.trim_matches('/').trim_end_matches(".git").to_string();
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    (parts.len() >= 2
        && parts.iter().all(|p| {
            p.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        }))
    .then(|| parts.join("/"))
}

fn sha_of(v: &Value) -> Option<String> {
    v.as_str()
        .filter(|s| s.len() == 40 && s.chars().all(|c| c.is_ascii_hexdigit()))
        .map(String::from)
}

impl Forge {
    pub fn new(
        kind: ForgeKind,
        base_url: &str,
        token: Option<Secret>,
    ) -> Result<Self, GitopsError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .user_agent("kube-reflexion")
            .build()
            .map_err(|e| GitopsError::Forge(e.to_string()))?;
        Ok(Self {
            kind,
            base_url: base_url.trim_end_matches('/').to_string(),
            token,
            http,
        })
    }

    fn project(&self, repo_url: &str) -> Result<String, GitopsError> {
        let path = repo_path(repo_url).ok_or_else(|| {
            GitopsError::Forge(format!(
                "cannot tell the forge project of {}",
                crate::git::redact(repo_url)
            ))
        })?;
        Ok(match self.kind {
            // GitHub's repositories are `owner/name`: the last two parts of the path.
            ForgeKind::Github => {
                let parts: Vec<&str> = path.rsplitn(3, '/').collect();
                format!("{}/repos/{}/{}", self.base_url, parts[1], parts[0])
            }
            ForgeKind::Gitlab => format!("{}/projects/{}", self.base_url, path.replace('/', "%2F")),
        })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        url: &str,
        body: Option<Value>,
    ) -> Result<Value, GitopsError> {
        let mut req = self.http.request(method, url);
        req = match (self.kind, &self.token) {
            (ForgeKind::Github, Some(t)) => req.bearer_auth(t.expose()),
            (ForgeKind::Gitlab, Some(t)) => req.header("PRIVATE-TOKEN", t.expose()),
            (_, None) => req,
        };
        if self.kind == ForgeKind::Github {
            req = req
                .header("Accept", "application/vnd.github+json")
                .header("X-GitHub-Api-Version", "2022-11-28");
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| GitopsError::Forge(e.without_url().to_string()))?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| GitopsError::Forge(e.without_url().to_string()))?;
        if bytes.len() > MAX_ANSWER {
            return Err(GitopsError::Forge(format!(
                "an answer of {} bytes",
                bytes.len()
            )));
        }
        let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if !status.is_success() {
            let said = v["message"]
                .as_str()
                .unwrap_or_default()
                .chars()
                .take(300)
                .collect::<String>();
            return Err(GitopsError::Forge(format!("{status}: {said}")));
        }
        Ok(v)
    }

    /// Open a pull request from `head` into `base`.
    pub async fn open(
        &self,
        repo_url: &str,
        head: &str,
        base: &str,
        title: &str,
        body: &str,
    ) -> Result<PullRequest, GitopsError> {
        let project = self.project(repo_url)?;
        let (url, payload, number, link) = match self.kind {
            ForgeKind::Github => (
                format!("{project}/pulls"),
                json!({"title": title, "head": head, "base": base, "body": body}),
                "number",
                "html_url",
            ),
            ForgeKind::Gitlab => (
                format!("{project}/merge_requests"),
                json!({"title": title, "source_branch": head, "target_branch": base, "description": body}),
                "iid",
                "web_url",
            ),
        };
        let v = self
            .call(reqwest::Method::POST, &url, Some(payload))
            .await?;
        let number = v[number]
            .as_u64()
            .ok_or_else(|| GitopsError::Forge("the answer has no number".into()))?;
        let url = v[link]
            .as_str()
            .filter(|u| u.len() <= 2048 && (u.starts_with("https://") || u.starts_with("http://")))
            .ok_or_else(|| GitopsError::Forge("the answer has no link".into()))?;
        Ok(PullRequest {
            number,
            url: url.to_string(),
        })
    }

    /// Merge a pull request whose head is `head_sha` (refused by the forge if it moved); the merge commit.
    pub async fn merge(
        &self,
        repo_url: &str,
        number: u64,
        head_sha: &str,
    ) -> Result<String, GitopsError> {
        let project = self.project(repo_url)?;
        let v = match self.kind {
            ForgeKind::Github => {
                let url = format!("{project}/pulls/{number}/merge");
                self.call(
                    reqwest::Method::PUT,
                    &url,
                    Some(json!({"merge_method": "merge", "sha": head_sha})),
                )
                .await?
            }
            ForgeKind::Gitlab => {
                let url = format!("{project}/merge_requests/{number}/merge");
                self.call(reqwest::Method::PUT, &url, Some(json!({"sha": head_sha})))
                    .await?
            }
        };
        let sha = match self.kind {
            ForgeKind::Github => sha_of(&v["sha"]),
            ForgeKind::Gitlab => sha_of(&v["merge_commit_sha"]),
        };
        sha.ok_or_else(|| GitopsError::Forge("the merge answer has no commit".into()))
    }

    pub async fn state(&self, repo_url: &str, number: u64) -> Result<PrState, GitopsError> {
        let project = self.project(repo_url)?;
        let path = match self.kind {
            ForgeKind::Github => format!("{project}/pulls/{number}"),
            ForgeKind::Gitlab => format!("{project}/merge_requests/{number}"),
        };
        let v = self.call(reqwest::Method::GET, &path, None).await?;
        Ok(match self.kind {
            ForgeKind::Github if v["merged"] == true => {
                PrState::Merged(sha_of(&v["merge_commit_sha"]).unwrap_or_default())
            }
            ForgeKind::Gitlab if v["state"] == "merged" => {
                PrState::Merged(sha_of(&v["merge_commit_sha"]).unwrap_or_default())
            }
            ForgeKind::Github if v["state"] == "closed" => PrState::Closed,
            ForgeKind::Gitlab if v["state"] == "closed" => PrState::Closed,
            _ => PrState::Open,
        })
    }

    /// Close a pull request without merging (a rejected fix).
    pub async fn close(&self, repo_url: &str, number: u64) -> Result<(), GitopsError> {
        let project = self.project(repo_url)?;
        match self.kind {
            ForgeKind::Github => {
                let url = format!("{project}/pulls/{number}");
                self.call(
                    reqwest::Method::PATCH,
                    &url,
                    Some(json!({"state": "closed"})),
                )
                .await?;
            }
            ForgeKind::Gitlab => {
                let url = format!("{project}/merge_requests/{number}");
                self.call(
                    reqwest::Method::PUT,
                    &url,
                    Some(json!({"state_event": "close"})),
                )
                .await?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_paths() {
        for (url, want) in [
            ("https://github.com/acme/apps.git", Some("acme/apps")),
            ("https://github.com/acme/apps", Some("acme/apps")),
            ("git@github.com:acme/apps.git", Some("acme/apps")),
            (
                "ssh://git@gitlab.example.com/platform/team/apps.git",
                Some("platform/team/apps"),
            ),
            ("file:///tmp/x/acme/apps.git", Some("tmp/x/acme/apps")),
            ("https://github.com/apps", None),
            ("https://github.com/acme/ap ps", None),
        ] {
            assert_eq!(repo_path(url).as_deref(), want, "{url}");
        }
    }
}

//! Asking a container registry which tags a repository has (OCI distribution `tags/list`) and what an image runs
//! by default (its manifest, for linux/amd64 when it is an index, then its config blob, checked against its
//! digest), including the anonymous bearer-token challenge Docker Hub and most registries use.

use reflexion_core::image::{DefaultProcess, ImageRef};
use sha2::{Digest, Sha256};
use std::time::Duration;

const MANIFEST_TYPES: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

const MAX_BODY: usize = 1024 * 1024;
const MAX_PAGES: usize = 10;
const MAX_TAGS: usize = 10_000;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RegistryError {
    #[error("repository {0} not found in the registry, or it requires credentials")]
    NotFound(String),
    #[error("registry {registry} answered {status} for {repository}")]
    Status {
        registry: String,
        repository: String,
        status: u16,
    },
    #[error("registry {registry} unreachable: {reason}")]
    Unreachable { registry: String, reason: String },
    #[error("registry {registry} sent an invalid answer: {reason}")]
    Invalid { registry: String, reason: String },
}

#[derive(Clone)]
pub struct Registry {
    http: reqwest::Client,
    /// Send every lookup to this base URL (a mirror, or simcluster's catalog) instead of the image's registry.
    mirror: Option<String>,
}

#[derive(serde::Deserialize)]
struct TagList {
    #[serde(default)]
    tags: Option<Vec<String>>,
}

#[derive(serde::Deserialize)]
struct Token {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
}

impl Registry {
    pub fn new(http: reqwest::Client, mirror: Option<String>) -> Self {
        Self {
            http,
            mirror: mirror.map(|m| m.trim_end_matches('/').to_string()),
        }
    }

    /// (base URL, repository name as that registry knows it)
    fn locate(&self, image: &ImageRef) -> (String, String) {
        match &self.mirror {
            Some(m) if image.registry == reflexion_core::image::DEFAULT_REGISTRY => {
                (m.clone(), image.repository.clone())
            }
            Some(m) => (m.clone(), image.full_name()),
            None if image.registry == reflexion_core::image::DEFAULT_REGISTRY => (
                "https://registry-1.docker.io".into(),
                image.repository.clone(),
            ),
            None => (
                format!("https://{}", image.registry),
                image.repository.clone(),
            ),
        }
    }

    pub async fn tags(&self, image: &ImageRef) -> Result<Vec<String>, RegistryError> {
        let (base, name) = self.locate(image);
        let mut url = format!("{base}/v2/{name}/tags/list?n=1000");
        let mut token: Option<String> = None;
        let mut tags = Vec::new();
        for _ in 0..MAX_PAGES {
            let resp = self
                .fetch(&url, None, &mut token, image, &base, &name)
                .await?;
            let next = resp
                .headers()
                .get("link")
                .and_then(|v| v.to_str().ok())
                .and_then(next_link);
            let body = bounded_body(resp, &base).await?;
            let list: TagList =
                serde_json::from_slice(&body).map_err(|e| RegistryError::Invalid {
                    registry: base.clone(),
                    reason: e.to_string(),
                })?;
            tags.extend(
                list.tags
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|t| t.len() <= 128),
            );
            match next {
                Some(path) if tags.len() < MAX_TAGS => url = format!("{base}{path}"),
                _ => break,
            }
        }
        tags.truncate(MAX_TAGS);
        Ok(tags)
    }

    /// What the image runs when a pod sets no command: the config of its manifest (linux/amd64 from an index).
    pub async fn default_process(&self, image: &ImageRef) -> Result<DefaultProcess, RegistryError> {
        let (base, name) = self.locate(image);
        let invalid = |reason: String| RegistryError::Invalid {
            registry: base.clone(),
            reason,
        };
        let mut token = None;
        let mut reference = image
            .digest
            .clone()
            .or_else(|| image.effective_tag().map(str::to_string))
            .unwrap_or_else(|| "latest".into());
        // An index names one manifest per platform; a manifest names its config.
        for _ in 0..2 {
            let url = format!("{base}/v2/{name}/manifests/{reference}");
            let resp = self
                .fetch(&url, Some(MANIFEST_TYPES), &mut token, image, &base, &name)
                .await?;
            let body = bounded_body(resp, &base).await?;
            let m: serde_json::Value =
                serde_json::from_slice(&body).map_err(|e| invalid(e.to_string()))?;
            if let Some(manifests) = m["manifests"].as_array() {
                let linux = |arch: Option<&str>| {
                    manifests.iter().find(|d| {
                        d["platform"]["os"] == "linux"
                            && arch.is_none_or(|a| d["platform"]["architecture"] == a)
                    })
                };
                reference = linux(Some("amd64"))
                    .or_else(|| linux(None))
                    .and_then(|d| d["digest"].as_str())
                    .ok_or_else(|| invalid("an image index with no linux manifest".into()))?
                    .to_string();
                continue;
            }
            let digest = m["config"]["digest"]
                .as_str()
                .ok_or_else(|| invalid("a manifest with no config digest".into()))?;
            let url = format!("{base}/v2/{name}/blobs/{digest}");
            let resp = self
                .fetch(&url, None, &mut token, image, &base, &name)
                .await?;
            let blob = bounded_body(resp, &base).await?;
            if format!("sha256:{:x}", Sha256::digest(&blob)) != digest {
                return Err(invalid(format!(
                    "the config blob does not match its digest {digest}"
                )));
            }
            let c: serde_json::Value =
                serde_json::from_slice(&blob).map_err(|e| invalid(e.to_string()))?;
            let words = |v: &serde_json::Value| -> Vec<String> {
                v.as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|w| w.as_str())
                    .map(|w| w.chars().take(256).collect())
                    .take(64)
                    .collect()
            };
            return Ok(DefaultProcess {
                entrypoint: words(&c["config"]["Entrypoint"]),
                cmd: words(&c["config"]["Cmd"]),
            });
        }
        Err(invalid("an image index that names another index".into()))
    }

    /// GET with the registry's anonymous token when it asks for one; 401/403/404 mean "not found" to a client
    /// without credentials.
    async fn fetch(
        &self,
        url: &str,
        accept: Option<&str>,
        token: &mut Option<String>,
        image: &ImageRef,
        base: &str,
        name: &str,
    ) -> Result<reqwest::Response, RegistryError> {
        let unreachable = |e: reqwest::Error| RegistryError::Unreachable {
            registry: base.to_string(),
            reason: e.to_string(),
        };
        let mut resp = self
            .get(url, accept, token.as_deref())
            .await
            .map_err(unreachable)?;
        if resp.status() == 401 && token.is_none() {
            let challenge = resp
                .headers()
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            *token = Some(self.anonymous_token(&challenge, base).await?);
            resp = self
                .get(url, accept, token.as_deref())
                .await
                .map_err(unreachable)?;
        }
        match resp.status().as_u16() {
            200 => Ok(resp),
            401 | 403 | 404 => Err(RegistryError::NotFound(image.full_name())),
            status => Err(RegistryError::Status {
                registry: base.to_string(),
                repository: name.to_string(),
                status,
            }),
        }
    }

    async fn get(
        &self,
        url: &str,
        accept: Option<&str>,
        token: Option<&str>,
    ) -> Result<reqwest::Response, reqwest::Error> {
        let mut req = self.http.get(url).timeout(Duration::from_secs(10));
        if let Some(a) = accept {
            req = req.header("accept", a);
        }
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await
    }

    /// `Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull"`
    async fn anonymous_token(&self, challenge: &str, base: &str) -> Result<String, RegistryError> {
        let invalid = |reason: String| RegistryError::Invalid {
            registry: base.to_string(),
            reason,
        };
        let params = challenge
            .strip_prefix("Bearer ")
            .ok_or_else(|| invalid(format!("unsupported auth challenge {challenge:?}")))?;
        let mut realm = None;
        let mut query = Vec::new();
        for part in params.split(',') {
            if let Some((k, v)) = part.trim().split_once('=') {
                let v = v.trim_matches('"').to_string();
                if k == "realm" {
                    realm = Some(v)
                } else {
                    query.push((k.to_string(), v))
                }
            }
        }
        let realm = realm.ok_or_else(|| invalid("auth challenge without realm".into()))?;
        let mut url = reqwest::Url::parse(&realm)
            .map_err(|e| invalid(format!("auth realm {realm:?}: {e}")))?;
        url.query_pairs_mut()
            .extend_pairs(query.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let resp = self
            .http
            .get(url)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(|e| RegistryError::Unreachable {
                registry: realm.clone(),
                reason: e.to_string(),
            })?;
        let body = bounded_body(resp, base).await?;
        let t: Token = serde_json::from_slice(&body).map_err(|e| invalid(e.to_string()))?;
        t.token
            .or(t.access_token)
            .ok_or_else(|| invalid("token response without a token".into()))
    }
}

async fn bounded_body(resp: reqwest::Response, base: &str) -> Result<Vec<u8>, RegistryError> {
    if resp.content_length().is_some_and(|l| l as usize > MAX_BODY) {
        return Err(RegistryError::Invalid {
            registry: base.into(),
            reason: format!("answer larger than {MAX_BODY} bytes"),
        });
    }
    let bytes = resp.bytes().await.map_err(|e| RegistryError::Unreachable {
        registry: base.into(),
        reason: e.to_string(),
    })?;
    if bytes.len() > MAX_BODY {
        return Err(RegistryError::Invalid {
            registry: base.into(),
            reason: format!("answer larger than {MAX_BODY} bytes"),
        });
    }
    Ok(bytes.to_vec())
}

/// `</v2/x/tags/list?n=2&last=b>; rel="next"` -> `/v2/x/tags/list?n=2&last=b`
fn next_link(link: &str) -> Option<String> {
    let (target, rel) = link.split_once(';')?;
    rel.contains("next")
        .then(|| {
            target
                .trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string()
        })
        .filter(|p| p.starts_with("/v2/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_repositories() {
        let r = Registry::new(reqwest::Client::new(), None);
        let m = Registry::new(
            reqwest::Client::new(),
            Some("http://127.0.0.1:6443/".into()),
        );
        let cases = [
            (
                &r,
                "nginx:1",
                ("https://registry-1.docker.io", "library/nginx"),
            ),
            (&r, "ghcr.io/org/app:1", ("https://ghcr.io", "org/app")),
            (&m, "nginx:1", ("http://127.0.0.1:6443", "library/nginx")),
            (
                &m,
                "ghcr.io/org/app:1",
                ("http://127.0.0.1:6443", "ghcr.io/org/app"),
            ),
        ];
        for (reg, image, (base, name)) in cases {
            let img = ImageRef::parse(image).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                reg.locate(&img),
                (base.to_string(), name.to_string()),
                "{image}"
            );
        }
    }

    #[test]
    fn parses_next_links() {
        assert_eq!(
            next_link("</v2/x/tags/list?n=2&last=b>; rel=\"next\"").as_deref(),
            Some("/v2/x/tags/list?n=2&last=b")
        );
        assert_eq!(next_link("<https://evil.example/v2/x>; rel=\"next\""), None);
        assert_eq!(next_link("garbage"), None);
    }
}

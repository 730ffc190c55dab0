//! Asking a container registry which tags a repository has (OCI distribution `tags/list`), including the
//! anonymous bearer-token challenge Docker Hub and most registries use.

use reflexion_core::image::ImageRef;
use std::time::Duration;

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
        let unreachable = |e: reqwest::Error| RegistryError::Unreachable {
            registry: base.clone(),
            reason: e.to_string(),
        };
        let mut url = format!("{base}/v2/{name}/tags/list?n=1000");
        let mut token: Option<String> = None;
        let mut tags = Vec::new();
        for _ in 0..MAX_PAGES {
            let mut resp = self
                .get(&url, token.as_deref())
                .await
                .map_err(unreachable)?;
            if resp.status() == 401 && token.is_none() {
                let challenge = resp
                    .headers()
                    .get("www-authenticate")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                token = Some(self.anonymous_token(&challenge, &base).await?);
                resp = self
                    .get(&url, token.as_deref())
                    .await
                    .map_err(unreachable)?;
            }
            match resp.status().as_u16() {
                200 => {}
                401 | 403 | 404 => return Err(RegistryError::NotFound(image.full_name())),
                status => {
                    return Err(RegistryError::Status {
                        registry: base,
                        repository: name,
                        status,
                    });
                }
            }
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

    async fn get(
        &self,
        url: &str,
        token: Option<&str>,
    ) -> Result<reqwest::Response, reqwest::Error> {
        let mut req = self.http.get(url).timeout(Duration::from_secs(10));
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

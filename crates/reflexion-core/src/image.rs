//! Container image references, parsed and normalized the way the container runtime does
//! (`nginx:1.27` is `docker.io/library/nginx:1.27`).

use serde::{Deserialize, Serialize};
use std::fmt;
use thiserror::Error;

pub const DEFAULT_REGISTRY: &str = "docker.io";
const MAX_REFERENCE_LEN: usize = 255 + 1 + 128 + 72;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ImageRefError {
    #[error("invalid reference format: empty reference")]
    Empty,
    #[error("invalid reference format: reference longer than {MAX_REFERENCE_LEN} characters")]
    TooLong,
    #[error("invalid reference format: repository name must be lowercase")]
    Uppercase,
    #[error("invalid reference format: {0:?} is not a valid repository path component")]
    BadComponent(String),
    #[error("invalid reference format: {0:?} is not a valid tag")]
    BadTag(String),
    #[error("invalid reference format: {0:?} is not a valid digest")]
    BadDigest(String),
}

/// A parsed image reference. `registry` and `repository` are normalized (`docker.io`, `library/nginx`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRef {
    pub registry: String,
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
    /// Whether the registry was written out in the original reference; a rewritten reference keeps the user's form.
    explicit_registry: bool,
}

impl ImageRef {
    pub fn parse(reference: &str) -> Result<Self, ImageRefError> {
        if reference.is_empty() {
            return Err(ImageRefError::Empty);
        }
        if reference.len() > MAX_REFERENCE_LEN {
            return Err(ImageRefError::TooLong);
        }
        let (rest, digest) = match reference.split_once('@') {
            Some((r, d)) => (r, Some(parse_digest(d)?)),
            None => (reference, None),
        };
        // A tag is after the last ':' only if no '/' follows it (otherwise it is a registry port).
        let (name, tag) = match rest.rfind(':') {
            Some(i) if !rest[i + 1..].contains('/') => (&rest[..i], Some(&rest[i + 1..])),
            _ => (rest, None),
        };
        if let Some(tag) = tag
            && !valid_tag(tag)
        {
            return Err(ImageRefError::BadTag(tag.to_string()));
        }
        let (registry, path, explicit_registry) = match name.split_once('/') {
            Some((first, path))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), path.to_string(), true)
            }
            _ => (DEFAULT_REGISTRY.to_string(), name.to_string(), false),
        };
        if path.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(ImageRefError::Uppercase);
        }
        for component in path.split('/') {
            if !valid_component(component) {
                return Err(ImageRefError::BadComponent(component.to_string()));
            }
        }
        let repository = if registry == DEFAULT_REGISTRY && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        Ok(Self {
            registry,
            repository,
            tag: tag.map(str::to_string),
            digest,
            explicit_registry,
        })
    }

    /// The tag the runtime pulls: the written tag, or `latest` when neither tag nor digest is given.
    pub fn effective_tag(&self) -> Option<&str> {
        match (&self.tag, &self.digest) {
            (Some(t), _) => Some(t),
            (None, None) => Some("latest"),
            (None, Some(_)) => None,
        }
    }

    /// The same image with another tag and no digest, written the way the user wrote the original
    /// (`nginx:1.27`, not `docker.io/library/nginx:1.27`).
    pub fn with_tag(&self, tag: &str) -> Self {
        Self {
            tag: Some(tag.to_string()),
            digest: None,
            ..self.clone()
        }
    }

    /// Fully qualified name without tag, as a runtime reports it (`docker.io/library/nginx`).
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    fn short_name(&self) -> String {
        if self.explicit_registry {
            return self.full_name();
        }
        self.repository
            .strip_prefix("library/")
            .unwrap_or(&self.repository)
            .to_string()
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.short_name())?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

fn valid_tag(tag: &str) -> bool {
    let mut chars = tag.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric() || c == '_')
        && tag.len() <= 128
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn valid_component(c: &str) -> bool {
    let bytes = c.as_bytes();
    if bytes.is_empty() || !is_alnum(bytes[0]) || !is_alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if is_alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !is_alnum(bytes[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.chars().all(|ch| ch == '-');
        if !ok {
            return false;
        }
    }
    true
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

fn parse_digest(d: &str) -> Result<String, ImageRefError> {
    let bad = || ImageRefError::BadDigest(d.to_string());
    let (alg, hex) = d.split_once(':').ok_or_else(bad)?;
    let alg_ok = !alg.is_empty()
        && alg
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+._-".contains(c));
    let hex_ok = hex.len() >= 32
        && hex
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase());
    if alg_ok && hex_ok {
        Ok(d.to_string())
    } else {
        Err(bad())
    }
}

/// What an image runs when the pod sets no `command` or `args`: its config's `Entrypoint` then `Cmd`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DefaultProcess {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
}

impl DefaultProcess {
    pub fn argv(&self) -> Vec<&str> {
        self.entrypoint
            .iter()
            .chain(&self.cmd)
            .map(String::as_str)
            .collect()
    }

    /// Whether the image runs nothing a pod could serve with: no process at all, or a bare shell (busybox's `sh`,
    /// alpine's `/bin/sh`, ubuntu's `/bin/bash`), which reads its script from a terminal a pod does not have and
    /// exits at once. Dropping a command override on such an image leaves a container that completes and restarts.
    pub fn runs_nothing(&self) -> bool {
        const SHELLS: &[&str] = &["sh", "ash", "bash", "dash", "zsh", "ksh"];
        match self.argv().as_slice() {
            [] => true,
            [one] => {
                let name = one.rsplit('/').next().unwrap_or(one);
                SHELLS.contains(&name)
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_normalizes() {
        let cases = [
            ("nginx", "docker.io", "library/nginx", None, "nginx"),
            (
                "nginx:bu-tag-yok",
                "docker.io",
                "library/nginx",
                Some("bu-tag-yok"),
                "nginx:bu-tag-yok",
            ),
            (
                "bitnami/redis:7.2",
                "docker.io",
                "bitnami/redis",
                Some("7.2"),
                "bitnami/redis:7.2",
            ),
            (
                "docker.io/library/nginx:1.27",
                "docker.io",
                "library/nginx",
                Some("1.27"),
                "docker.io/library/nginx:1.27",
            ),
            (
                "localhost:5000/app:v1",
                "localhost:5000",
                "app",
                Some("v1"),
                "localhost:5000/app:v1",
            ),
            (
                "ghcr.io/org/team/app:1.0.0-rc.1",
                "ghcr.io",
                "org/team/app",
                Some("1.0.0-rc.1"),
                "ghcr.io/org/team/app:1.0.0-rc.1",
            ),
            (
                "registry:5000/app",
                "registry:5000",
                "app",
                None,
                "registry:5000/app",
            ),
            (
                "my_app__x-y",
                "docker.io",
                "library/my_app__x-y",
                None,
                "my_app__x-y",
            ),
        ];
        for (input, registry, repo, tag, display) in cases {
            let r = ImageRef::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(
                (r.registry.as_str(), r.repository.as_str(), r.tag.as_deref()),
                (registry, repo, tag),
                "{input}"
            );
            assert_eq!(r.to_string(), display, "{input}");
        }
    }

    #[test]
    fn rejects_what_the_runtime_rejects() {
        let cases = [
            ("", ImageRefError::Empty),
            ("Nginx:1.27", ImageRefError::Uppercase),
            ("nginx:-bad", ImageRefError::BadTag("-bad".into())),
            ("nginx:", ImageRefError::BadTag(String::new())),
            ("ngi$nx", ImageRefError::BadComponent("ngi$nx".into())),
            ("a//b", ImageRefError::BadComponent(String::new())),
            (
                "nginx@sha256:abc",
                ImageRefError::BadDigest("sha256:abc".into()),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(ImageRef::parse(input), Err(want), "{input:?}");
        }
        assert_eq!(
            ImageRef::parse(&"a".repeat(500)),
            Err(ImageRefError::TooLong)
        );
    }

    #[test]
    fn effective_tag_defaults_to_latest_unless_pinned_by_digest() {
        let digest = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            ImageRef::parse("nginx").map(|r| r.effective_tag().map(String::from)),
            Ok(Some("latest".into()))
        );
        let pinned = ImageRef::parse(&format!("nginx@{digest}"));
        assert_eq!(
            pinned.map(|r| r.effective_tag().map(String::from)),
            Ok(None)
        );
    }

    #[test]
    fn with_tag_keeps_the_users_form_and_drops_the_digest() {
        let r = ImageRef::parse("nginx:bu-tag-yok").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.with_tag("1.27").to_string(), "nginx:1.27");
        let r = ImageRef::parse("ghcr.io/org/app:v1").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.with_tag("v2").to_string(), "ghcr.io/org/app:v2");
    }

    #[test]
    fn a_bare_shell_or_no_process_runs_nothing() {
        let p = |e: &[&str], c: &[&str]| DefaultProcess {
            entrypoint: e.iter().map(|s| s.to_string()).collect(),
            cmd: c.iter().map(|s| s.to_string()).collect(),
        };
        let cases = [
            (p(&[], &["sh"]), true),
            (p(&[], &["/bin/sh"]), true),
            (p(&[], &["/bin/bash"]), true),
            (p(&[], &[]), true),
            (p(&["/bin/sh"], &[]), true),
            (p(&[], &["nginx", "-g", "daemon off;"]), false),
            (
                p(&["/docker-entrypoint.sh"], &["nginx", "-g", "daemon off;"]),
                false,
            ),
            (p(&["/bin/sh", "-c"], &["exec server"]), false),
            (p(&["/usr/bin/redis-server"], &[]), false),
            (p(&[], &["shell-server"]), false),
        ];
        for (process, want) in cases {
            assert_eq!(process.runs_nothing(), want, "{process:?}");
        }
    }
}

//! The image catalog: which repositories and tags exist. A data file with good defaults, replaceable by flag.

pub use crate::rootfs::Base;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

const DEFAULT: &str = include_str!("../data/images.yaml");
const MAX_CATALOG_BYTES: u64 = 8 * 1024 * 1024;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    pub repositories: BTreeMap<String, Repository>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Repository {
    pub tags: Vec<String>,
    #[serde(default)]
    pub behaviour: Behaviour,
}

/// How a container of this image behaves when the pod does not say otherwise.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Behaviour {
    #[serde(default)]
    pub entrypoint: Vec<String>,
    #[serde(default)]
    pub cmd: Vec<String>,
    #[serde(default)]
    pub serves: Vec<Serves>,
    /// Resident memory of the default process, as a quantity (`8Mi`).
    #[serde(default)]
    pub memory: Option<String>,
    #[serde(default)]
    pub requires_env: Vec<String>,
    #[serde(default)]
    pub missing_env: Option<String>,
    #[serde(default)]
    pub logs: Vec<String>,
    /// The default process runs as PID 1 without a SIGTERM handler: stopping it takes the whole grace period.
    #[serde(default)]
    pub ignores_sigterm: bool,
    /// The default process lists this resource (`pods`, `deployments.apps`) in its namespace at start-up with the
    /// pod's ServiceAccount token, as a controller does; refused, it logs the API server's message and exits 1.
    #[serde(default)]
    pub lists: Option<String>,
    /// The default process exits at once (an interpreter with no script and no terminal).
    #[serde(default)]
    pub exits_at_once: bool,
    /// The base image: which shell and tools the image has. Tags with `alpine` in them are Alpine-based.
    #[serde(default)]
    pub base: Base,
    /// Programs the image ships besides its base's tools and its default process.
    #[serde(default)]
    pub binaries: Vec<String>,
}

impl Behaviour {
    /// The image's default program: the first word of its ENTRYPOINT, else of its CMD.
    pub fn main_program(&self) -> Option<&str> {
        self.entrypoint
            .first()
            .or(self.cmd.first())
            .map(String::as_str)
    }

    /// Resident memory of the default process, in bytes.
    pub fn memory_bytes(&self) -> f64 {
        self.memory
            .as_deref()
            .and_then(crate::quantity::parse)
            .unwrap_or(4.0 * 1024.0 * 1024.0)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Serves {
    pub port: u16,
    /// HTTP paths answered with 200; `None` answers any path.
    #[serde(default)]
    pub paths: Option<Vec<String>>,
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("reading image catalog {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("image catalog {path} is larger than {MAX_CATALOG_BYTES} bytes")]
    TooLarge { path: String },
    #[error("parsing image catalog {path}: {source}")]
    Parse {
        path: String,
        source: serde_yaml::Error,
    },
}

/// What pulling an image reference would do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pull {
    Ok,
    /// Malformed reference: `InvalidImageName`, with the runtime's reason.
    InvalidName(String),
    /// Repository exists, tag does not.
    TagNotFound {
        full: String,
    },
    /// Registries answer an unknown repository with "access denied".
    RepositoryNotFound {
        full: String,
    },
}

impl Catalog {
    pub fn builtin() -> Self {
        // The built-in catalog is part of the binary and covered by a test.
        serde_yaml::from_str(DEFAULT).unwrap_or(Self {
            repositories: BTreeMap::new(),
        })
    }

    pub fn load(path: &Path) -> Result<Self, CatalogError> {
        let p = path.display().to_string();
        let meta = std::fs::metadata(path).map_err(|source| CatalogError::Read {
            path: p.clone(),
            source,
        })?;
        if meta.len() > MAX_CATALOG_BYTES {
            return Err(CatalogError::TooLarge { path: p });
        }
        let text = std::fs::read_to_string(path).map_err(|source| CatalogError::Read {
            path: p.clone(),
            source,
        })?;
        serde_yaml::from_str(&text).map_err(|source| CatalogError::Parse { path: p, source })
    }

    /// The behaviour of an image (the default, empty behaviour for an unparsable or unknown reference).
    pub fn behaviour(&self, image: &str) -> Behaviour {
        let Ok((repo, tag)) = normalize(image) else {
            return Behaviour::default();
        };
        let mut b = self
            .repositories
            .get(&repo)
            .map(|r| r.behaviour.clone())
            .unwrap_or_default();
        if tag.contains("alpine") {
            b.base = Base::Alpine;
        }
        b
    }

    pub fn tags(&self, repository: &str) -> Option<&[String]> {
        self.repositories.get(repository).map(|r| r.tags.as_slice())
    }

    pub fn pull(&self, image: &str) -> Pull {
        let (repo, tag) = match normalize(image) {
            Ok(v) => v,
            Err(why) => return Pull::InvalidName(why),
        };
        let full = format!("{repo}:{tag}");
        match self.tags(&repo) {
            None => Pull::RepositoryNotFound { full },
            Some(tags) if tags.contains(&tag) || tag.starts_with("sha256:") => Pull::Ok,
            Some(_) => Pull::TagNotFound { full },
        }
    }
}

/// `nginx:1.27` -> (`docker.io/library/nginx`, `1.27`); the runtime's parse errors otherwise.
pub fn normalize(image: &str) -> Result<(String, String), String> {
    if image.is_empty() {
        return Err("invalid reference format".into());
    }
    let (rest, digest) = match image.split_once('@') {
        Some((r, d)) => (r, Some(d)),
        None => (image, None),
    };
    let (name, tag) = match rest.rfind(':') {
        Some(i) if !rest[i + 1..].contains('/') => (&rest[..i], Some(&rest[i + 1..])),
        _ => (rest, None),
    };
    let (registry, path) = match name.split_once('/') {
        Some((first, path))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (first, path.to_string())
        }
        _ => ("docker.io", name.to_string()),
    };
    if path.chars().any(|c| c.is_ascii_uppercase()) {
        return Err("invalid reference format: repository name must be lowercase".into());
    }
    let component_ok = |c: &str| {
        !c.is_empty()
            && c.chars()
                .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || "._-".contains(ch))
            && c.starts_with(|ch: char| ch.is_ascii_alphanumeric())
            && c.ends_with(|ch: char| ch.is_ascii_alphanumeric())
    };
    let tag_ok = |t: &str| {
        !t.is_empty()
            && t.len() <= 128
            && t.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
            && t.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
    };
    if !path.split('/').all(component_ok) || tag.is_some_and(|t| !tag_ok(t)) {
        return Err("invalid reference format".into());
    }
    let repo = if registry == "docker.io" && !path.contains('/') {
        format!("docker.io/library/{path}")
    } else {
        format!("{registry}/{path}")
    };
    let tag = match (tag, digest) {
        (Some(t), _) => t.to_string(),
        (None, Some(d)) => d.to_string(),
        (None, None) => "latest".to_string(),
    };
    Ok((repo, tag))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_catalog_parses_and_pulls() {
        let c: Catalog =
            serde_yaml::from_str(DEFAULT).unwrap_or_else(|e| panic!("builtin catalog: {e}"));
        assert!(c.repositories.len() >= 10);
        let cases = [
            ("nginx:1.27", Pull::Ok),
            ("nginx", Pull::Ok),
            ("docker.io/library/nginx:1.27.3", Pull::Ok),
            ("busybox", Pull::Ok),
            (
                "nginx:bu-tag-yok",
                Pull::TagNotFound {
                    full: "docker.io/library/nginx:bu-tag-yok".into(),
                },
            ),
            (
                "nope/nothing:1",
                Pull::RepositoryNotFound {
                    full: "docker.io/nope/nothing:1".into(),
                },
            ),
            (
                "Nginx:1.27",
                Pull::InvalidName(
                    "invalid reference format: repository name must be lowercase".into(),
                ),
            ),
            (
                "nginx:bad tag",
                Pull::InvalidName("invalid reference format".into()),
            ),
        ];
        for (image, want) in cases {
            assert_eq!(c.pull(image), want, "{image}");
        }
    }
}

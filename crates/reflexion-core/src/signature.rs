//! Failure signatures: the key under which incidents are de-duplicated and strategies are learned.
//!
//! A signature is a failure family plus discriminators that change which fix is right: a tag that does not exist
//! and a registry that refuses credentials are both `ImagePullBackOff`, but only the first is fixed by a tag.

use crate::classify::{Failure, FailureKind};
use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Signature {
    pub kind: FailureKind,
    pub cause: String,
}

impl Signature {
    pub fn of(failure: &Failure) -> Self {
        let cause = match failure.kind {
            FailureKind::InvalidImageName => "invalid_reference",
            FailureKind::ImagePull => image_pull_cause(&failure.reason, &failure.message),
        };
        Self {
            kind: failure.kind,
            cause: cause.to_string(),
        }
    }

    /// The signature class strategies are learned for (`image_pull/not_found`).
    pub fn class(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.kind.as_str(), self.cause)
    }
}

fn image_pull_cause(reason: &str, message: &str) -> &'static str {
    let m = message.to_ascii_lowercase();
    if reason == "ErrImageNeverPull" {
        "never_pull"
    } else if m.contains("pull access denied")
        || m.contains("unauthorized")
        || m.contains("authorization failed")
    {
        // Registries answer a missing repository with the same "access denied" as a missing credential.
        "access_denied"
    } else if m.contains("not found") || m.contains("manifest unknown") {
        "not_found"
    } else if m.contains("no such host")
        || m.contains("i/o timeout")
        || m.contains("connection refused")
        || m.contains("tls")
    {
        "registry_unreachable"
    } else {
        "unknown"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(kind: FailureKind, reason: &str, message: &str) -> Failure {
        Failure {
            kind,
            reason: reason.into(),
            container: "c".into(),
            init_container: false,
            image: "nginx:x".into(),
            message: message.into(),
        }
    }

    #[test]
    fn signatures_discriminate_causes() {
        let cases = [
            (
                FailureKind::ImagePull,
                "ErrImagePull",
                "rpc error: code = NotFound desc = ... docker.io/library/nginx:x: not found",
                "image_pull/not_found",
            ),
            (
                FailureKind::ImagePull,
                "ErrImagePull",
                "manifest unknown: manifest unknown",
                "image_pull/not_found",
            ),
            (
                FailureKind::ImagePull,
                "ImagePullBackOff",
                "pull access denied, repository does not exist or may require authorization: server message: insufficient_scope: authorization failed",
                "image_pull/access_denied",
            ),
            (
                FailureKind::ImagePull,
                "ErrImagePull",
                "401 Unauthorized",
                "image_pull/access_denied",
            ),
            (
                FailureKind::ImagePull,
                "ErrImagePull",
                "dial tcp: lookup registry.example: no such host",
                "image_pull/registry_unreachable",
            ),
            (
                FailureKind::ImagePull,
                "ImagePullBackOff",
                "Back-off pulling image \"nginx:x\"",
                "image_pull/unknown",
            ),
            (
                FailureKind::ImagePull,
                "ErrImageNeverPull",
                "Container image \"nginx:x\" is not present with pull policy of Never",
                "image_pull/never_pull",
            ),
            (
                FailureKind::InvalidImageName,
                "InvalidImageName",
                "couldn't parse image name",
                "invalid_image_name/invalid_reference",
            ),
        ];
        for (kind, reason, message, want) in cases {
            assert_eq!(
                Signature::of(&failure(kind, reason, message)).class(),
                want,
                "{message}"
            );
        }
    }

    #[test]
    fn err_image_pull_and_back_off_share_a_signature() {
        let a = Signature::of(&failure(
            FailureKind::ImagePull,
            "ErrImagePull",
            "x: not found",
        ));
        let b = Signature::of(&failure(
            FailureKind::ImagePull,
            "ImagePullBackOff",
            "x: not found",
        ));
        assert_eq!(a, b);
    }
}

//! Where notifications go: `--notify KIND=URL`. A Slack incoming-webhook URL is itself the credential, so a target
//! is logged and stored only by its host and a hash of its URL, never the URL.

use sha2::{Digest, Sha256};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A Slack incoming webhook: a Block Kit message.
    Slack,
    /// Any HTTP endpoint: the versioned JSON notice, HMAC-signed.
    Webhook,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Slack => "slack",
            Kind::Webhook => "webhook",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub kind: Kind,
    pub url: reqwest::Url,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TargetError {
    #[error("--notify {0:?}: unknown kind (use slack=URL or webhook=URL)")]
    UnknownKind(String),
    #[error("--notify {kind}=…: not a URL: {why}")]
    NotUrl { kind: &'static str, why: String },
    #[error("--notify {kind}=…: scheme {scheme:?} (only http and https are sent to)")]
    Scheme { kind: &'static str, scheme: String },
}

impl Target {
    /// `slack=URL`, `webhook=URL`, or a bare URL (a Slack webhook when its host is `hooks.slack.com`).
    pub fn parse(spec: &str) -> Result<Self, TargetError> {
        let spec = spec.trim();
        let (kind, url) = match spec.split_once('=') {
            Some((k, url)) if !k.contains(':') && !k.contains('/') => match k {
                "slack" => (Some(Kind::Slack), url),
                "webhook" => (Some(Kind::Webhook), url),
                other => return Err(TargetError::UnknownKind(other.to_string())),
            },
            _ => (None, spec),
        };
        let name = kind.map_or("url", Kind::as_str);
        let url = reqwest::Url::parse(url).map_err(|e| TargetError::NotUrl {
            kind: name,
            why: e.to_string(),
        })?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(TargetError::Scheme {
                kind: name,
                scheme: url.scheme().to_string(),
            });
        }
        let kind = kind.unwrap_or(if url.host_str() == Some("hooks.slack.com") {
            Kind::Slack
        } else {
            Kind::Webhook
        });
        Ok(Self { kind, url })
    }

    /// The target's name in the store: its kind and a hash of its URL (the URL may be a secret).
    pub fn key(&self) -> String {
        let digest = Sha256::digest(self.url.as_str().as_bytes());
        let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        format!("{}:{hex}", self.kind.as_str())
    }

    /// The target as logs show it: kind, scheme and host, no path or query.
    pub fn redacted(&self) -> String {
        let port = self.url.port().map(|p| format!(":{p}")).unwrap_or_default();
        format!(
            "{} {}://{}{port}/…",
            self.kind.as_str(),
            self.url.scheme(),
            self.url.host_str().unwrap_or("")
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_kinds_and_refuses_the_rest() {
        let cases: &[(&str, Result<Kind, &str>)] = &[
            (
                "slack=https://hooks.slack.com/services/T/B/x",
                Ok(Kind::Slack),
            ),
            ("https://hooks.slack.com/services/T/B/x", Ok(Kind::Slack)),
            ("webhook=http://127.0.0.1:9/hook", Ok(Kind::Webhook)),
            ("https://example.com/hook?x=a=b", Ok(Kind::Webhook)),
            ("slack=http://127.0.0.1:9/slack", Ok(Kind::Slack)),
            ("teams=https://example.com", Err("unknown kind")),
            ("webhook=file:///etc/passwd", Err("scheme \"file\"")),
            ("webhook=not a url", Err("not a URL")),
            ("", Err("not a URL")),
        ];
        for (spec, want) in cases {
            match (Target::parse(spec), want) {
                (Ok(t), Ok(k)) => assert_eq!(t.kind, *k, "{spec}"),
                (Err(e), Err(w)) => assert!(e.to_string().contains(w), "{spec}: {e}"),
                (got, want) => panic!("{spec}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn never_shows_the_secret_path() {
        let t = Target::parse("slack=https://hooks.slack.com/services/T0/B0/SECRET").unwrap();
        assert_eq!(t.redacted(), "slack https://hooks.slack.com/…");
        assert!(!t.key().contains("SECRET"));
        assert_ne!(
            t.key(),
            Target::parse("slack=https://hooks.slack.com/services/T0/B0/OTHER")
                .unwrap()
                .key()
        );
    }
}

//! The `git` program, run with an argument vector (never a shell), a bounded time, no user or system
//! configuration, no hooks, no prompts, only the transports a GitOps source uses, and credentials that reach git
//! through its environment only: never its arguments, a URL, a log line or the store.

use crate::GitopsError;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// A secret read from a file: its `Debug` and `Display` never show it.
#[derive(Clone, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    /// Read from a file (a mounted Secret), trimmed; an empty file is no secret.
    pub fn from_file(path: &Path) -> std::io::Result<Option<Self>> {
        let s = std::fs::read_to_string(path)?;
        let s = s.trim();
        Ok((!s.is_empty()).then(|| Self(s.to_string())))
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// How git authenticates to a remote.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    /// HTTPS basic-auth user for the token (`x-access-token` for GitHub, `oauth2` for GitLab).
    pub username: String,
    pub token: Option<Secret>,
    /// An SSH private key file, and the known_hosts file its server must be in (host keys are always checked).
    pub ssh_key: Option<PathBuf>,
    pub known_hosts: Option<PathBuf>,
}

/// The git program with this deployment's settings.
#[derive(Debug, Clone)]
pub struct Git {
    pub credentials: Credentials,
    pub timeout: Duration,
    /// Allow `file://` and plain-path repositories (for tests and single-host setups; off by default, since a
    /// GitOps object could otherwise make the service read its own disk).
    pub allow_file: bool,
}

/// What a git run printed.
pub struct Output {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Git {
    /// Refuse URLs git would treat as a command (`ext::`), transports a GitOps source does not use, and URLs that
    /// carry credentials of their own.
    pub fn check_url(&self, url: &str) -> Result<(), GitopsError> {
        let bad = |why: &str| Err(GitopsError::Url(redact(url), why.to_string()));
        if url.contains("::") || url.starts_with('-') || url.chars().any(char::is_control) {
            return bad("not a repository URL");
        }
        if let Some((scheme, rest)) = url.split_once("://") {
            let authority = rest.split('/').next().unwrap_or_default();
            if authority.contains('@') && scheme != "ssh" {
                return bad("credentials in the URL; give them with --git-token-file");
            }
            if authority.contains(':') && authority.contains('@') && scheme == "ssh" {
                let user = authority.split('@').next().unwrap_or_default();
                if user.contains(':') {
                    return bad("a password in the URL");
                }
            }
            return match scheme {
                "https" | "ssh" | "http" => Ok(()),
                "file" if self.allow_file => Ok(()),
                "file" => bad("file:// repositories need --gitops-allow-file-urls"),
                _ => bad("only https, http, ssh and (with a flag) file URLs"),
            };
        }
        if url.starts_with('/') {
            return if self.allow_file {
                Ok(())
            } else {
                bad("local repositories need --gitops-allow-file-urls")
            };
        }
        // scp-like `git@host:owner/repo.git`
        match url.split_once(':') {
            Some((host, path)) if !host.is_empty() && !path.is_empty() && !host.contains('/') => {
                Ok(())
            }
            _ => bad("not a repository URL"),
        }
    }

    fn command(&self, dir: Option<&Path>) -> Command {
        let mut c = Command::new("git");
        if let Some(d) = dir {
            c.arg("-C").arg(d);
        }
        c.args(["-c", "core.hooksPath=/dev/null", "-c", "credential.helper="])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env(
                "GIT_ALLOW_PROTOCOL",
                if self.allow_file {
                    "https:http:ssh:file"
                } else {
                    "https:http:ssh"
                },
            )
            .env("LC_ALL", "C")
            .kill_on_drop(true);
        if let Some(home) = std::env::var_os("HOME") {
            c.env("HOME", home);
        }
        let mut config: Vec<(String, String)> = Vec::new();
        if let Some(token) = &self.credentials.token {
            let user = if self.credentials.username.is_empty() {
                "x-access-token"
            } else {
                &self.credentials.username
            };
            use base64::Engine;
            let basic = base64::engine::general_purpose::STANDARD
                .encode(format!("{user}:{}", token.expose()));
            config.push((
                "http.extraHeader".into(),
                format!("Authorization: Basic {basic}"),
            ));
        }
        if let Some(key) = &self.credentials.ssh_key {
            let mut ssh = format!(
                "ssh -i '{}' -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=yes",
                key.display()
            );
            if let Some(kh) = &self.credentials.known_hosts {
                ssh.push_str(&format!(" -o UserKnownHostsFile='{}'", kh.display()));
            }
            config.push(("core.sshCommand".into(), ssh));
        }
        c.env("GIT_CONFIG_COUNT", config.len().to_string());
        for (i, (k, v)) in config.into_iter().enumerate() {
            c.env(format!("GIT_CONFIG_KEY_{i}"), k);
            c.env(format!("GIT_CONFIG_VALUE_{i}"), v);
        }
        c
    }

    /// Run git in `dir` (or nowhere) with `args`, feeding `input` on stdin.
    pub async fn run(
        &self,
        dir: Option<&Path>,
        args: &[&str],
        input: Option<&[u8]>,
    ) -> Result<Output, GitopsError> {
        let mut c = self.command(dir);
        c.args(args)
            .stdin(if input.is_some() {
                std::process::Stdio::piped()
            } else {
                std::process::Stdio::null()
            })
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let what = args.first().copied().unwrap_or_default().to_string();
        let mut child = c
            .spawn()
            .map_err(|e| GitopsError::Git(what.clone(), format!("cannot run git: {e}")))?;
        if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
            stdin
                .write_all(input)
                .await
                .map_err(|e| GitopsError::Git(what.clone(), e.to_string()))?;
        }
        let out = tokio::time::timeout(self.timeout, child.wait_with_output())
            .await
            .map_err(|_| {
                GitopsError::Git(what.clone(), format!("timed out after {:?}", self.timeout))
            })?
            .map_err(|e| GitopsError::Git(what.clone(), e.to_string()))?;
        Ok(Output {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: redact(&String::from_utf8_lossy(&out.stderr)),
        })
    }

    /// Run git and require success; its output.
    pub async fn ok(&self, dir: Option<&Path>, args: &[&str]) -> Result<String, GitopsError> {
        let out = self.run(dir, args, None).await?;
        if !out.ok {
            return Err(GitopsError::Git(
                args.first().copied().unwrap_or_default().to_string(),
                out.stderr.trim().chars().take(2000).collect(),
            ));
        }
        Ok(out.stdout)
    }
}

/// A URL or text with any `user:password@` credentials taken out.
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c == '/' || c.is_whitespace() || c == '\'' || c == '"')
            .unwrap_or(tail.len());
        match tail[..end].rfind('@') {
            Some(at) => {
                out.push_str("***@");
                rest = &tail[at + 1..];
            }
            None => rest = tail,
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_that_are_not_plain_repositories_are_refused() {
        let git = Git {
            credentials: Credentials::default(),
            timeout: Duration::from_secs(1),
            allow_file: false,
        };
        for (url, ok) in [
            ("https://github.com/acme/apps.git", true),
            ("ssh://git@github.com/acme/apps.git", true),
            ("git@github.com:acme/apps.git", true),
            ("ext::sh -c touch% /tmp/pwned", false),
            ("https://user:token@github.com/acme/apps.git", false),
            ("ssh://git:pw@host/x.git", false),
            ("file:///srv/apps.git", false),
            ("/srv/apps.git", false),
            ("--upload-pack=touch /tmp/x", false),
            ("fd::17", false),
            ("", false),
        ] {
            assert_eq!(git.check_url(url).is_ok(), ok, "{url}");
        }
        let local = Git {
            allow_file: true,
            ..git
        };
        assert!(local.check_url("file:///srv/apps.git").is_ok());
        assert!(local.check_url("/srv/apps.git").is_ok());
    }

    #[test]
    fn credentials_are_redacted() {
        assert_eq!(
            redact(
                "fatal: unable to access 'https://x-access-token:ghp_secret@github.com/a/b.git/': 403"
            ),
            "fatal: unable to access 'https://***@github.com/a/b.git/': 403"
        );
        assert_eq!(redact("https://github.com/a/b"), "https://github.com/a/b");
        assert_eq!(format!("{:?}", Secret::new("ghp_secret")), "<redacted>");
    }
}

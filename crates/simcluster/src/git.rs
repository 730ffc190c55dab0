//! Reading a Git repository the way a GitOps controller's source fetcher does: the commit a branch points at, and
//! the files of a path at a commit. Only local repositories (a path or a `file://` URL) are read, through the `git`
//! program, never a working tree: what a controller applies is what is committed.

use std::collections::BTreeMap;
use std::path::PathBuf;
use tokio::process::Command;

/// Files read from one path at most, and bytes per file (a source artifact is bounded too).
const MAX_FILES: usize = 2000;
const MAX_FILE_BYTES: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("{0}: simcluster reads only local repositories (a path or a file:// URL)")]
    Remote(String),
    #[error("git {0}: {1}")]
    Git(String, String),
    #[error("{0}: no such branch or revision")]
    NoRevision(String),
    #[error("{0}: more than {MAX_FILES} files")]
    TooMany(String),
}

/// The local directory of a repository URL.
pub fn local(url: &str) -> Result<PathBuf, GitError> {
    let path = url.strip_prefix("file://").unwrap_or(url);
    if !path.starts_with('/') {
        return Err(GitError::Remote(url.to_string()));
    }
    Ok(PathBuf::from(path))
}

async fn git(repo: &PathBuf, args: &[&str]) -> Result<Vec<u8>, GitError> {
    let out = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| GitError::Git(args.join(" "), e.to_string()))?;
    if !out.status.success() {
        return Err(GitError::Git(
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    Ok(out.stdout)
}

/// The commit `reference` names: a branch, `HEAD`, a full ref (`refs/tags/v1`), or a commit id.
pub async fn resolve(url: &str, reference: &str) -> Result<String, GitError> {
    let repo = local(url)?;
    let spec = if reference == "HEAD"
        || reference.starts_with("refs/")
        || reference.chars().all(|c| c.is_ascii_hexdigit())
    {
        format!("{reference}^{{commit}}")
    } else {
        format!("refs/heads/{reference}^{{commit}}")
    };
    let out = git(&repo, &["rev-parse", "--verify", "--quiet", &spec])
        .await
        .map_err(|_| GitError::NoRevision(format!("{url} {reference}")))?;
    Ok(String::from_utf8_lossy(&out).trim().to_string())
}

/// The regular files under `path` at commit `sha`, by their path relative to the repository's root. Links are
/// left out, as Flux's source-controller leaves out links that leave an artifact.
pub async fn files(url: &str, sha: &str, path: &str) -> Result<BTreeMap<String, String>, GitError> {
    let repo = local(url)?;
    let mut args = vec!["ls-tree", "-r", "-z", sha];
    if !path.is_empty() {
        args.extend(["--", path]);
    }
    let listing = git(&repo, &args).await?;
    let mut out = BTreeMap::new();
    for entry in listing.split(|b| *b == 0).filter(|e| !e.is_empty()) {
        let entry = String::from_utf8_lossy(entry);
        // `<mode> <type> <object>\t<path>`
        let Some((meta, file)) = entry.split_once('\t') else {
            continue;
        };
        let mut meta = meta.split(' ');
        let (mode, kind, object) = (meta.next(), meta.next(), meta.next());
        if kind != Some("blob") || mode == Some("120000") {
            continue;
        }
        let Some(object) = object else { continue };
        if out.len() >= MAX_FILES {
            return Err(GitError::TooMany(path.to_string()));
        }
        let blob = git(&repo, &["cat-file", "blob", object]).await?;
        if blob.len() <= MAX_FILE_BYTES {
            out.insert(
                file.to_string(),
                String::from_utf8_lossy(&blob).into_owned(),
            );
        }
    }
    Ok(out)
}

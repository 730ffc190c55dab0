//! One working clone per repository, kept under the work directory and brought to the tracked branch's tip before
//! every change. Manifests are read from the commit (git's objects: a link is seen as a link, never followed); an
//! edit is written only to a regular file reached through no link, inside the clone.

use crate::git::Git;
use crate::{GitopsError, Source};
use reflexion_core::gitops::kustomize::{KustomizeError, MemTree, Tree};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

/// Files read from a commit at most, and bytes per file.
const MAX_FILES: usize = 5000;
const MAX_FILE_BYTES: usize = 1 << 20;
/// The local branch changes are made on.
const WORK_BRANCH: &str = "kube-reflexion-work";

pub struct Checkout<'g> {
    pub git: &'g Git,
    pub dir: PathBuf,
}

/// A commit's manifests, with its links known so that a path through one is refused.
pub struct CommitTree {
    files: MemTree,
    links: BTreeSet<String>,
}

impl Tree for CommitTree {
    fn read(&self, path: &str) -> Result<Option<String>, KustomizeError> {
        if self.through_link(path) {
            return Err(KustomizeError::Symlink(path.to_string()));
        }
        self.files.read(path)
    }
    fn list(&self, dir: &str) -> Result<Option<Vec<(String, bool)>>, KustomizeError> {
        if self.through_link(dir) {
            return Err(KustomizeError::Symlink(dir.to_string()));
        }
        self.files.list(dir)
    }
}

impl CommitTree {
    fn through_link(&self, path: &str) -> bool {
        let mut prefix = String::new();
        for part in path.split('/') {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(part);
            if self.links.contains(&prefix) {
                return true;
            }
        }
        false
    }
}

/// The clone's directory for a repository URL.
pub fn dir_for(workdir: &Path, url: &str) -> PathBuf {
    let digest = Sha256::digest(url.as_bytes());
    let name: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    workdir.join(name)
}

impl<'g> Checkout<'g> {
    /// Clone when missing, fetch the branch, and put the work branch at its tip with a clean tree.
    pub async fn sync(
        git: &'g Git,
        workdir: &Path,
        source: &Source,
    ) -> Result<Checkout<'g>, GitopsError> {
        let c = Self::fetched(git, workdir, source).await?;
        let remote = format!("origin/{}", source.branch);
        c.ok(&["checkout", "--quiet", "--force", "-B", WORK_BRANCH, &remote])
            .await?;
        c.ok(&["clean", "--quiet", "-fdx"]).await?;
        Ok(c)
    }

    /// Clone when missing and fetch the branch, leaving the work tree as it is: enough to read the remote's
    /// history.
    pub async fn fetched(
        git: &'g Git,
        workdir: &Path,
        source: &Source,
    ) -> Result<Checkout<'g>, GitopsError> {
        git.check_url(&source.url)?;
        let dir = dir_for(workdir, &source.url);
        if !dir.join(".git").is_dir() {
            std::fs::create_dir_all(workdir)
                .map_err(|e| GitopsError::Io(workdir.display().to_string(), e))?;
            let _ = std::fs::remove_dir_all(&dir);
            let d = dir.to_string_lossy().to_string();
            git.ok(
                None,
                &["clone", "--quiet", "--no-checkout", "--", &source.url, &d],
            )
            .await?;
        }
        let c = Checkout { git, dir };
        c.fetch(&source.branch).await?;
        Ok(c)
    }

    pub async fn ok(&self, args: &[&str]) -> Result<String, GitopsError> {
        self.git.ok(Some(&self.dir), args).await
    }

    pub async fn fetch(&self, branch: &str) -> Result<(), GitopsError> {
        check_branch(branch)?;
        let spec = format!("+refs/heads/{branch}:refs/remotes/origin/{branch}");
        self.ok(&["fetch", "--quiet", "--no-tags", "origin", &spec])
            .await?;
        Ok(())
    }

    pub async fn head(&self) -> Result<String, GitopsError> {
        Ok(self.ok(&["rev-parse", "HEAD"]).await?.trim().to_string())
    }

    /// The manifests (YAML files and kustomization files) of a commit.
    pub async fn tree(&self, rev: &str) -> Result<CommitTree, GitopsError> {
        let listing = self
            .ok(&["ls-tree", "-r", "-z", "--full-tree", rev])
            .await?;
        let mut wanted: Vec<(String, String)> = Vec::new();
        let mut links = BTreeSet::new();
        for entry in listing.split('\0').filter(|e| !e.is_empty()) {
            let Some((meta, path)) = entry.split_once('\t') else {
                continue;
            };
            let mut m = meta.split(' ');
            let (mode, kind, object) = (m.next(), m.next(), m.next());
            if mode == Some("120000") {
                links.insert(path.to_string());
                continue;
            }
            let manifest = path.ends_with(".yaml")
                || path.ends_with(".yml")
                || path.ends_with("/Kustomization")
                || path == "Kustomization";
            if kind == Some("blob")
                && manifest
                && let Some(o) = object
            {
                wanted.push((path.to_string(), o.to_string()));
            }
        }
        if wanted.len() > MAX_FILES {
            return Err(GitopsError::TooLarge(format!(
                "{} manifests in {rev}",
                wanted.len()
            )));
        }
        let mut files = BTreeMap::new();
        if !wanted.is_empty() {
            let input: String = wanted.iter().map(|(_, o)| format!("{o}\n")).collect();
            let out = self
                .git
                .run(
                    Some(&self.dir),
                    &["cat-file", "--batch"],
                    Some(input.as_bytes()),
                )
                .await?;
            let mut rest = out.stdout.as_str();
            for (path, _) in &wanted {
                // `<object> blob <size>\n<content>\n`
                let Some((header, body)) = rest.split_once('\n') else {
                    break;
                };
                let size: usize = header
                    .rsplit(' ')
                    .next()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                let size = size.min(body.len());
                let content = body.get(..size).unwrap_or_default();
                if size <= MAX_FILE_BYTES {
                    files.insert(path.clone(), content.to_string());
                }
                rest = body.get(size + 1..).unwrap_or_default();
            }
        }
        Ok(CommitTree {
            files: MemTree(files),
            links,
        })
    }

    /// Write a file of the clone: a relative path with no `..`, reached through no link, to a regular file.
    pub fn write(&self, path: &str, text: &str) -> Result<(), GitopsError> {
        let rel = Path::new(path);
        if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
            return Err(GitopsError::Path(path.to_string(), "leaves the repository"));
        }
        let mut at = self.dir.clone();
        for c in rel.components() {
            at.push(c);
            match std::fs::symlink_metadata(&at) {
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(GitopsError::Path(
                        path.to_string(),
                        "goes through a symbolic link",
                    ));
                }
                Ok(_) => {}
                Err(e) => return Err(GitopsError::Io(path.to_string(), e)),
            }
        }
        if !std::fs::symlink_metadata(&at).is_ok_and(|m| m.is_file()) {
            return Err(GitopsError::Path(path.to_string(), "is not a regular file"));
        }
        std::fs::write(&at, text).map_err(|e| GitopsError::Io(path.to_string(), e))
    }

    /// Commit what is staged as the given author; the new commit.
    pub async fn commit(
        &self,
        name: &str,
        email: &str,
        message: &str,
    ) -> Result<String, GitopsError> {
        let user = format!("user.name={name}");
        let mail = format!("user.email={email}");
        let out = self
            .git
            .run(
                Some(&self.dir),
                &[
                    "-c",
                    &user,
                    "-c",
                    &mail,
                    "commit",
                    "--quiet",
                    "--no-verify",
                    "-F",
                    "-",
                ],
                Some(message.as_bytes()),
            )
            .await?;
        if !out.ok {
            return Err(GitopsError::Git("commit".into(), out.stderr));
        }
        self.head().await
    }

    /// Push HEAD to a branch, never forced. `Rejected` when the branch moved on (someone pushed first).
    pub async fn push(&self, branch: &str) -> Result<(), GitopsError> {
        check_branch(branch)?;
        let spec = format!("HEAD:refs/heads/{branch}");
        let out = self
            .git
            .run(
                Some(&self.dir),
                &["push", "--porcelain", "origin", &spec],
                None,
            )
            .await?;
        if out.ok {
            return Ok(());
        }
        let said = format!("{}{}", out.stdout, out.stderr);
        if said.contains("[rejected]")
            || said.contains("non-fast-forward")
            || said.contains("fetch first")
        {
            return Err(GitopsError::Rejected(branch.to_string()));
        }
        Err(GitopsError::Git(
            "push".into(),
            out.stderr.trim().to_string(),
        ))
    }

    /// Whether `ancestor` is in the history of `rev`.
    pub async fn is_ancestor(&self, ancestor: &str, rev: &str) -> Result<bool, GitopsError> {
        let out = self
            .git
            .run(
                Some(&self.dir),
                &["merge-base", "--is-ancestor", ancestor, rev],
                None,
            )
            .await?;
        Ok(out.ok)
    }

    /// The newest commit of `rev`'s history whose message has every one of these lines.
    pub async fn find(&self, rev: &str, lines: &[String]) -> Result<Option<String>, GitopsError> {
        let mut args: Vec<String> = vec![
            "log".into(),
            "-n".into(),
            "1".into(),
            "--format=%H".into(),
            "--all-match".into(),
            "-F".into(),
        ];
        for l in lines {
            args.push(format!("--grep={l}"));
        }
        args.push(rev.to_string());
        args.push("--".into());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = self.ok(&args).await?;
        Ok(Some(out.trim().to_string()).filter(|s| !s.is_empty()))
    }

    /// The parents of a commit.
    pub async fn parents(&self, sha: &str) -> Result<usize, GitopsError> {
        let out = self.ok(&["rev-list", "--parents", "-n", "1", sha]).await?;
        Ok(out.split_whitespace().count().saturating_sub(1))
    }
}

/// A branch name git and a forge accept, with nothing a command line could mistake for an option.
pub fn check_branch(branch: &str) -> Result<(), GitopsError> {
    let ok = !branch.is_empty()
        && branch.len() <= 200
        && !branch.starts_with('-')
        && !branch.starts_with('/')
        && !branch.ends_with('/')
        && !branch.ends_with(".lock")
        && !branch.contains("..")
        && !branch.contains("//")
        && !branch.contains("@{")
        && branch
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c));
    if ok {
        Ok(())
    } else {
        Err(GitopsError::Branch(branch.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branch_names() {
        for (b, ok) in [
            ("main", true),
            ("kube-reflexion/5f0c-2", true),
            ("release/1.2", true),
            ("-f", false),
            ("a..b", false),
            ("x.lock", false),
            ("a b", false),
            ("", false),
            ("refs/heads/@{1}", false),
        ] {
            assert_eq!(check_branch(b).is_ok(), ok, "{b}");
        }
    }
}

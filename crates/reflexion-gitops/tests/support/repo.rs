//! A Git repository as a GitOps source for tests: a bare repository `<dir>/acme/apps.git` on branch main, changed
//! through a clone as a developer would, with Debian's git.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=dev", "-c", "user.email=dev@example.com"])
        .args(args)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `<dir>/acme/apps.git` (bare, branch main) and a clone of it.
pub struct Repo {
    pub bare: PathBuf,
    pub work: PathBuf,
}

impl Repo {
    pub fn new(dir: &Path, files: &[(&str, &str)]) -> Repo {
        let bare = dir.join("acme").join("apps.git");
        std::fs::create_dir_all(&bare).unwrap();
        git(&bare, &["init", "-q", "--bare", "-b", "main"]);
        let work = dir.join("apps-work");
        git(dir, &["clone", "-q", bare.to_str().unwrap(), "apps-work"]);
        git(&work, &["checkout", "-q", "-b", "main"]);
        let repo = Repo { bare, work };
        repo.commit(files, "apps");
        repo
    }

    pub fn commit(&self, files: &[(&str, &str)], msg: &str) -> String {
        if !git(&self.bare, &["branch", "--list", "main"]).is_empty() {
            git(&self.work, &["pull", "-q", "--ff-only", "origin", "main"]);
        }
        for (p, text) in files {
            let path = self.work.join(p);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        git(&self.work, &["add", "-A"]);
        git(&self.work, &["commit", "-q", "-m", msg]);
        git(&self.work, &["push", "-q", "origin", "main"]);
        git(&self.work, &["rev-parse", "HEAD"])
    }

    pub fn url(&self) -> String {
        format!("file://{}", self.bare.display())
    }

    /// `git log --format=<format> main` of the remote, newest first.
    pub fn log(&self, format: &str) -> Vec<String> {
        git(&self.bare, &["log", &format!("--format={format}"), "main"])
            .lines()
            .map(String::from)
            .collect()
    }

    pub fn show(&self, rev: &str, path: &str) -> String {
        git(&self.bare, &["show", &format!("{rev}:{path}")])
    }

    pub fn head(&self) -> String {
        git(&self.bare, &["rev-parse", "main"])
    }
}

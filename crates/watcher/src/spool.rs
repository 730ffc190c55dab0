//! The on-disk spool: every report is written here before delivery and removed only once reflexion-api has
//! stored it (or refused it for good), so a report survives an API outage, a watcher crash and a restart.

use reflexion_core::report::FailureReport;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// A spooled report larger than this is not ours: it is set aside, not parsed.
const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool {dir}: {source}")]
    Io {
        dir: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the spool holds {0} reports, its limit")]
    Full(usize),
    #[error("encoding a report: {0}")]
    Encode(#[from] serde_json::Error),
}

pub struct Spool {
    dir: PathBuf,
    max: usize,
    seq: AtomicU64,
    /// Reports on disk, kept by put/remove and corrected by every `pending()` listing, so `put` need not list
    /// the directory (which made a long outage's spool quadratic).
    count: AtomicUsize,
}

impl Spool {
    /// Open (creating) a spool directory holding at most `max` reports.
    pub fn open(dir: impl Into<PathBuf>, max: usize) -> Result<Self, SpoolError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
        let spool = Self {
            dir,
            max: max.max(1),
            seq: AtomicU64::new(0),
            count: AtomicUsize::new(0),
        };
        spool.pending()?;
        Ok(spool)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Write a report durably (temporary file, fsync, rename). File names sort in the order reports were made.
    pub fn put(&self, report: &FailureReport) -> Result<PathBuf, SpoolError> {
        let pending = self.count.load(Ordering::Relaxed);
        if pending >= self.max {
            return Err(SpoolError::Full(pending));
        }
        let millis = chrono::Utc::now().timestamp_millis();
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let name = format!(
            "{millis:015}-{:06}-{}.json",
            seq % 1_000_000,
            std::process::id()
        );
        let path = self.dir.join(&name);
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let body = serde_json::to_vec(report)?;
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&body)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)
        };
        write().map_err(|e| io(&self.dir, e))?;
        self.count.fetch_add(1, Ordering::Relaxed);
        Ok(path)
    }

    /// Spooled reports, oldest first.
    pub fn pending(&self) -> Result<Vec<PathBuf>, SpoolError> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .map_err(|e| io(&self.dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension().is_some_and(|x| x == "json")
                    && !p
                        .file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with('.'))
            })
            .collect();
        files.sort();
        self.count.store(files.len(), Ordering::Relaxed);
        Ok(files)
    }

    /// Read a spooled report. A file that is not a report (truncated, foreign, too large) is renamed to `.bad`
    /// and `None` is returned, so one bad file never blocks the others.
    pub fn read(&self, path: &Path) -> Option<FailureReport> {
        let parsed = std::fs::metadata(path)
            .ok()
            .filter(|m| m.len() <= MAX_FILE_BYTES)
            .and_then(|_| std::fs::read(path).ok())
            .and_then(|b| serde_json::from_slice::<FailureReport>(&b).ok());
        if parsed.is_none() {
            tracing::error!(file = %path.display(), "unreadable spool file set aside as .bad");
            if std::fs::rename(path, path.with_extension("bad")).is_ok() {
                self.forget_one();
            }
        }
        parsed
    }

    pub fn remove(&self, path: &Path) {
        match std::fs::remove_file(path) {
            Ok(()) => self.forget_one(),
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "could not remove a delivered report from the spool")
            }
        }
    }

    fn forget_one(&self) {
        let _ = self
            .count
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }
}

fn io(dir: &Path, source: std::io::Error) -> SpoolError {
    SpoolError::Io {
        dir: dir.display().to_string(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(pod: &str) -> FailureReport {
        serde_json::from_value(serde_json::json!({"pod_name": pod, "namespace": "default", "error_type": "ImagePullBackOff"}))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn reports_survive_reopening_in_order_and_bad_files_are_set_aside() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let spool = Spool::open(dir.path(), 3).unwrap_or_else(|e| panic!("{e}"));
        for p in ["a", "b", "c"] {
            spool.put(&report(p)).unwrap_or_else(|e| panic!("{e}"));
        }
        assert!(matches!(spool.put(&report("d")), Err(SpoolError::Full(3))));
        std::fs::write(dir.path().join("000-bad.json"), b"{not json")
            .unwrap_or_else(|e| panic!("{e}"));
        let reopened = Spool::open(dir.path(), 10).unwrap_or_else(|e| panic!("{e}"));
        let files = reopened.pending().unwrap_or_else(|e| panic!("{e}"));
        let pods: Vec<Option<String>> = files
            .iter()
            .map(|f| reopened.read(f).map(|r| r.pod_name))
            .collect();
        assert_eq!(
            pods,
            [None, Some("a".into()), Some("b".into()), Some("c".into())]
        );
        assert!(dir.path().join("000-bad.bad").exists());
        reopened.remove(&files[1]);
        assert_eq!(reopened.pending().map(|p| p.len()).unwrap_or(0), 2);
        // The limit counts what is on disk, across reopening, without listing the directory on every put.
        let small = Spool::open(dir.path(), 3).unwrap_or_else(|e| panic!("{e}"));
        small.put(&report("e")).unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(small.put(&report("f")), Err(SpoolError::Full(3))));
        small.remove(&files[2]);
        small.put(&report("f")).unwrap_or_else(|e| panic!("{e}"));
    }
}

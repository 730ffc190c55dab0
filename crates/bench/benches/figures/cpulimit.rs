//! A CPU quota for one process, through a cgroup of its own: the bench's API replicas as they run on machines of
//! their own, each with its own CPU, rather than all on the two this machine shares with PostgreSQL and the clients.
//! The cgroup's scheduler period is short (10 ms), so that a replica at its quota waits milliseconds, not tenths of a
//! second, for its next share.

use std::path::PathBuf;

const PERIOD_US: u64 = 10_000;

/// Where the quota is written: cgroup v1's `cpu` controller, or v2's `cpu.max`.
enum Flavour {
    V1,
    V2,
}

/// A cgroup holding one process at `cpus` of a CPU; removed when dropped (once its process has ended).
pub struct CpuLimit {
    dir: PathBuf,
}

impl CpuLimit {
    /// Put process `pid` (every thread of it) under a quota of `cpus` CPUs; why not, where cgroups cannot be written.
    pub fn new(pid: u32, cpus: f64) -> Result<Self, String> {
        let (root, flavour) = [
            ("/sys/fs/cgroup/cpu", Flavour::V1),
            ("/sys/fs/cgroup", Flavour::V2),
        ]
        .into_iter()
        .find(|(root, f)| {
            let probe = match f {
                Flavour::V1 => "cpu.cfs_quota_us",
                Flavour::V2 => "cgroup.subtree_control",
            };
            std::path::Path::new(root).join(probe).exists()
        })
        .ok_or("no cgroup cpu controller mounted")?;
        let dir = PathBuf::from(root).join(format!("kube-reflexion-bench-{pid}"));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let limit = Self { dir };
        let quota = ((cpus * PERIOD_US as f64) as u64).max(1_000);
        let writes: Vec<(&str, String)> = match flavour {
            Flavour::V1 => vec![
                ("cpu.cfs_period_us", PERIOD_US.to_string()),
                ("cpu.cfs_quota_us", quota.to_string()),
            ],
            Flavour::V2 => vec![("cpu.max", format!("{quota} {PERIOD_US}"))],
        };
        for (file, value) in writes
            .into_iter()
            .chain([("cgroup.procs", pid.to_string())])
        {
            let path = limit.dir.join(file);
            std::fs::write(&path, &value).map_err(|e| format!("{}: {e}", path.display()))?;
        }
        Ok(limit)
    }
}

impl Drop for CpuLimit {
    fn drop(&mut self) {
        // A cgroup can be removed once its processes have ended; the stack is dropped (and its processes killed and
        // waited for) first.
        let _ = std::fs::remove_dir(&self.dir);
    }
}

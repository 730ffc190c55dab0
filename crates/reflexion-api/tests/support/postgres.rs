//! A real PostgreSQL server (Debian's `postgresql` package) for the tests: initdb in a temporary directory, the
//! server on a loopback port, one fresh database per caller. One server per test binary, started on first use and
//! stopped when the test binary exits: a shell beside it waits on a pipe from this process, and when the pipe closes
//! (the process exited, however) it tells the server to shut down (SIGINT, a fast shutdown) and removes its directory.
//!
//! Where PostgreSQL is not installed the store tests run on SQLite alone and say so, unless
//! `REFLEXION_REQUIRE_POSTGRES=1` (set by `.ci/run`), which makes a missing server a failure.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

struct Server {
    port: u16,
    data: PathBuf,
    tls: bool,
}

static SERVER: OnceLock<Option<Server>> = OnceLock::new();
static NEXT_DB: AtomicU32 = AtomicU32::new(0);

fn bindir() -> Option<PathBuf> {
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if dir.join("postgres").exists() {
            return Some(dir);
        }
    }
    // Debian keeps the server out of PATH: /usr/lib/postgresql/<major>/bin, newest first.
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|d| d.join("postgres").exists() && d.join("initdb").exists())
        .collect();
    dirs.sort();
    dirs.pop()
}

/// The server refuses to run as root: as root, it runs as Debian's `postgres` user.
fn run_as() -> Option<(u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    if std::fs::metadata("/proc/self").ok()?.uid() != 0 {
        return None;
    }
    let id = |flag: &str| -> u32 {
        let out = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .expect("id");
        assert!(
            out.status.success(),
            "running as root and there is no `postgres` user to run PostgreSQL as"
        );
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    };
    Some((id("-u"), id("-g")))
}

fn command(bin: &Path, user: Option<(u32, u32)>) -> Command {
    let mut c = Command::new(bin);
    if let Some((uid, gid)) = user {
        c.uid(uid).gid(gid);
    }
    c
}

/// Data directories of test binaries that are gone (a server killed with them cannot clean up).
fn remove_stale(root: &Path) {
    for e in std::fs::read_dir(root).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if let Some(pid) = name.strip_prefix("reflexion-pg-")
            && !Path::new(&format!("/proc/{pid}")).exists()
        {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

fn start() -> Option<Server> {
    let Some(bin) = bindir() else {
        assert!(
            std::env::var("REFLEXION_REQUIRE_POSTGRES").as_deref() != Ok("1"),
            "REFLEXION_REQUIRE_POSTGRES=1 and PostgreSQL is not installed (apt-get install postgresql)"
        );
        eprintln!(
            "PostgreSQL is not installed (apt-get install postgresql): the store is tested on SQLite only"
        );
        return None;
    };
    let user = run_as();
    let root = std::env::temp_dir();
    remove_stale(&root);
    let dir = root.join(format!("reflexion-pg-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    if let Some((uid, gid)) = user {
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).unwrap();
    }
    let data = dir.join("data");
    let out = command(&bin.join("initdb"), user)
        .args([
            "--auth=trust",
            "--username=postgres",
            "--encoding=UTF8",
            "--no-sync",
        ])
        .arg("-D")
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "initdb: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A self-signed certificate where openssl is installed: the server then takes TLS (`sslmode=require`) as well.
    let tls = command(Path::new("openssl"), user)
        .args([
            "req",
            "-new",
            "-x509",
            "-days",
            "2",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
        ])
        .arg("-keyout")
        .arg(data.join("server.key"))
        .arg("-out")
        .arg(data.join("server.crt"))
        .output()
        .is_ok_and(|o| o.status.success());
    if tls {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            data.join("server.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
    }
    let port = super::free_port();
    let log = std::fs::File::create(dir.join("server.log")).unwrap();
    let mut c = command(Path::new("/bin/sh"), user);
    c.arg("-c")
        .arg(r#""$0" "$@" </dev/null & pid=$!; read -r _; kill -INT $pid; wait $pid; rm -rf "$PG_TEST_DIR""#)
        .env("PG_TEST_DIR", &dir)
        .arg(bin.join("postgres"))
        .arg("-D")
        .arg(&data)
        .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1"])
        .args(["-c", "unix_socket_directories=", "-c", "fsync=off"])
        .args(["-c", "max_connections=200"])
        .args(if tls { &["-c", "ssl=on"][..] } else { &[] })
        .stdin(Stdio::piped())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    // Never waited on: the shell outlives this process on purpose, to stop the server after it.
    #[allow(clippy::zombie_processes)]
    let mut child = c.spawn().unwrap();
    // Held until the process exits; its end closing is the server's signal to stop.
    static LIFELINE: OnceLock<std::process::ChildStdin> = OnceLock::new();
    let _ = LIFELINE.set(child.stdin.take().unwrap());
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "PostgreSQL did not start: {}",
            std::fs::read_to_string(dir.join("server.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(Server { port, data, tls })
}

/// Whether the test binary's server takes TLS (it was started, and openssl made it a certificate).
pub fn tls() -> bool {
    SERVER.get().and_then(Option::as_ref).is_some_and(|s| s.tls)
}

/// Whether the store tests run on PostgreSQL too.
pub fn installed() -> bool {
    bindir().is_some()
}

/// A new empty database on the test binary's server (`postgres://...`), or None where PostgreSQL is not installed.
pub async fn database() -> Option<String> {
    let port = SERVER.get_or_init(start).as_ref()?.port;
    let name = format!("t{}", NEXT_DB.fetch_add(1, Ordering::SeqCst));
    let admin = format!("postgres://postgres@127.0.0.1:{port}/postgres");
    // The server accepts connections a moment before it accepts queries.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match sqlx::PgPool::connect(&admin).await {
            Ok(pool) => {
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&pool)
                    .await
                    .unwrap();
                break;
            }
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("PostgreSQL on port {port}: {e}"),
        }
    }
    Some(format!("postgres://postgres@127.0.0.1:{port}/{name}"))
}

/// Freeze (`true`) or thaw the test binary's server and every backend it runs (SIGSTOP / SIGCONT): to its clients the
/// database stops answering, as behind a network partition, with their connections still open.
pub fn freeze(frozen: bool) {
    let server = SERVER
        .get()
        .and_then(Option::as_ref)
        .expect("a server started");
    let pid = std::fs::read_to_string(server.data.join("postmaster.pid")).unwrap();
    let pid = pid.lines().next().unwrap().trim().to_string();
    let mut pids = vec![pid.clone()];
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        // pid (comm) state ppid ...: the command may hold spaces, the fields after its ')' do not.
        if let Some((_, rest)) = stat.rsplit_once(')')
            && rest.split_whitespace().nth(1) == Some(pid.as_str())
        {
            pids.push(e.file_name().to_string_lossy().to_string());
        }
    }
    let status = Command::new("kill")
        .arg(if frozen { "-STOP" } else { "-CONT" })
        .args(&pids)
        .status()
        .unwrap();
    assert!(status.success(), "kill {pids:?}");
}

//! A small model of `sh -c` and of the commands a container runs: statements separated by `;`, newlines, `&&`,
//! `||`, `|` and `&`, with quoting, `$VAR` expansion and `>` redirections. What a command does comes from the image:
//! a shell builtin, a tool of its base (`dd`, `sleep`, `tail -f`, `nc -l`), one of the image's own programs (its
//! server starts, serving what the catalog says), or nothing — "not found", exit 127, in the shell's own words.
//! Files written under /tmp or a memory-backed emptyDir count toward the container's memory, as their page cache
//! does in its cgroup.

use crate::catalog::{Behaviour, Serves};
use crate::process::{Outcome, Program, Sigterm};
use crate::quantity;
use crate::rootfs::{self, Shell};
use std::collections::BTreeMap;
use std::time::Duration;

/// A process that "exits immediately" still takes a moment.
pub const IMMEDIATE: Duration = Duration::from_millis(300);

/// Where the container runs: its image, environment and which paths are memory-backed.
pub struct Context<'a> {
    pub behaviour: &'a Behaviour,
    pub env: &'a BTreeMap<String, String>,
    /// Mount paths of memory-backed volumes, besides /tmp and /dev/shm.
    pub memory_paths: &'a [String],
    /// What the container reaches over the cluster network.
    pub network: &'a dyn crate::network::Network,
}

impl Context<'_> {
    /// Whether writing to this path uses memory.
    fn in_memory(&self, path: &str) -> bool {
        ["/tmp", "/dev/shm"]
            .iter()
            .copied()
            .chain(self.memory_paths.iter().map(String::as_str))
            .any(|dir| {
                let dir = dir.trim_end_matches('/');
                path == dir || path.starts_with(&format!("{dir}/"))
            })
    }
}

/// Where a run of statements got to.
#[derive(Default)]
struct Run {
    elapsed: Duration,
    status: i32,
    /// A command that does not return (a server, `sleep infinity`, `tail -f`).
    forever: bool,
    exited: bool,
}

/// What one command did.
enum Effect {
    Status(i32),
    Sleep(Duration),
    Forever,
    Exit(i32),
}

/// Run `sh -c <script>` in the shell `shell`, invoked as `argv0`.
pub fn run_script(script: &str, shell: Shell, argv0: &str, ctx: &Context<'_>, p: &mut Program) {
    let mut run = Run::default();
    let looping = script.contains("while true") || script.contains("while :");
    let mut skip = false;
    for (words, redirect, then) in statements(script, ctx.env) {
        if !skip && !words.is_empty() {
            let background = then == Sep::Background;
            match command(&words, redirect.as_deref(), Some((shell, argv0)), ctx, p) {
                Effect::Status(s) => run.status = s,
                Effect::Sleep(d) => {
                    run.elapsed += d;
                    run.status = 0;
                }
                Effect::Forever if background => run.status = 0,
                Effect::Forever => {
                    run.forever = true;
                    break;
                }
                Effect::Exit(code) => {
                    run.status = code;
                    run.exited = true;
                    break;
                }
            }
            if words.first().is_some_and(|w| w == "exec") {
                break;
            }
        }
        skip = match then {
            Sep::And => skip || run.status != 0,
            Sep::Or => !skip && run.status == 0,
            _ => false,
        };
    }
    if let Some(on_term) = term_trap(script, ctx.env) {
        p.on_sigterm = on_term;
    }
    p.outcome = if run.forever || (looping && !run.exited) {
        Outcome::RunsForever
    } else {
        Outcome::Exits {
            after: run.elapsed.max(IMMEDIATE),
            code: run.status,
        }
    };
}

/// What the script's last `trap` for SIGTERM makes of the signal, as sh does: `trap "" TERM` ignores it; `trap -
/// TERM` (or a trap without an action) restores the default, which a shell running as PID 1 ignores too; a handler
/// that exits ends the container with its code; one that does not exit runs and the script goes on.
fn term_trap(script: &str, env: &BTreeMap<String, String>) -> Option<Sigterm> {
    let mut on_term = None;
    for (words, _, _) in statements(script, env) {
        if words.first().map(String::as_str) != Some("trap") || words.len() < 2 {
            continue;
        }
        let is_term = |w: &String| matches!(w.as_str(), "TERM" | "SIGTERM" | "15");
        // `trap TERM`: one operand, a condition: reset to the default.
        let (action, conditions) = if words.len() == 2 {
            ("-", &words[1..])
        } else {
            (words[1].as_str(), &words[2..])
        };
        if !conditions.iter().any(is_term) {
            continue;
        }
        let handler: Vec<&str> = action.split_whitespace().collect();
        on_term = Some(match handler.iter().position(|w| *w == "exit") {
            Some(i) => Sigterm::Exits(
                handler
                    .get(i + 1)
                    .and_then(|c| c.trim_end_matches(';').parse().ok())
                    .unwrap_or(0),
            ),
            None => Sigterm::Ignored,
        });
    }
    on_term
}

/// Run a container's `command`/`args` that is not a shell: one command, without the shell's words for failure.
pub fn run_argv(argv: &[String], ctx: &Context<'_>, p: &mut Program) {
    p.outcome = match command(argv, None, None, ctx, p) {
        Effect::Forever => Outcome::RunsForever,
        Effect::Sleep(d) => Outcome::Exits { after: d, code: 0 },
        Effect::Status(code) | Effect::Exit(code) => Outcome::Exits {
            after: IMMEDIATE,
            code,
        },
    };
}

/// Whether the image has this program: the base's tools, or the image's own.
pub fn image_has(ctx: &Context<'_>, program: &str) -> bool {
    ctx.behaviour.base.has(program) || own_program(ctx.behaviour, program)
}

fn own_program(b: &Behaviour, program: &str) -> bool {
    let name = program.rsplit('/').next().unwrap_or(program);
    b.main_program()
        .into_iter()
        .chain(b.binaries.iter().map(String::as_str))
        .any(|own| own == program || own.rsplit('/').next() == Some(name))
}

/// Run one command. `shell` is the shell running it (for builtins and its not-found message), if any.
fn command(
    words: &[String],
    redirect: Option<&str>,
    shell: Option<(Shell, &str)>,
    ctx: &Context<'_>,
    p: &mut Program,
) -> Effect {
    // `exec X`, `env A=1 X` and `A=1 X` all run X.
    let mut i = 0;
    while let Some(w) = words.get(i) {
        let assignment = w.contains('=') && !w.starts_with('=') && !w.starts_with('-');
        if w == "exec" || (w == "env" && words.len() > i + 1) || (assignment && i + 1 < words.len())
        {
            i += 1;
        } else {
            break;
        }
    }
    let words = &words[i..];
    let Some(cmd) = words.first().map(String::as_str) else {
        return Effect::Status(0);
    };
    let name = cmd.rsplit('/').next().unwrap_or(cmd);
    let arg = |n: usize| words.get(n).map(String::as_str);
    let in_shell = shell.is_some();
    if in_shell && rootfs::builtin(cmd) {
        return builtin(cmd, words, redirect, ctx, p);
    }
    if own_program(ctx.behaviour, cmd) {
        if name == "stress" {
            return stress(&words[1..], p);
        }
        return image_program(name, ctx, p);
    }
    if !ctx.behaviour.base.has(cmd) {
        return match shell {
            Some((sh, argv0)) => {
                p.logs.push(sh.not_found(argv0, cmd));
                Effect::Status(127)
            }
            // Without a shell the runtime refuses to start it; `process` reports that.
            None => Effect::Status(127),
        };
    }
    match name {
        "sleep" => match sleep(arg(1).unwrap_or("0")) {
            Some(d) => Effect::Sleep(d),
            None if arg(1) == Some("infinity") => Effect::Forever,
            None => {
                p.logs
                    .push(format!("sleep: invalid number '{}'", arg(1).unwrap_or("")));
                Effect::Status(1)
            }
        },
        "tail" if words.iter().any(|w| w == "-f" || w == "-F") => Effect::Forever,
        "yes" if redirect.is_none() => Effect::Forever,
        "nc" if words.iter().any(|w| w.starts_with("-l")) => {
            let port = words
                .iter()
                .position(|w| w == "-p")
                .and_then(|i| words.get(i + 1))
                .or(words.last())
                .and_then(|p| p.parse().ok());
            if let Some(port) = port {
                p.serves.push(Serves { port, paths: None });
            }
            Effect::Forever
        }
        "dd" => dd(words, ctx, shell.map(|s| s.0), p),
        "fallocate" => {
            let size = words
                .iter()
                .position(|w| w == "-l")
                .and_then(|i| words.get(i + 1))
                .and_then(|s| dd_size(s));
            write_file(
                words.last().map(String::as_str),
                size.unwrap_or(0.0),
                ctx,
                p,
            );
            Effect::Status(0)
        }
        "head" if words.iter().any(|w| w == "-c") => {
            let size = words
                .iter()
                .position(|w| w == "-c")
                .and_then(|i| words.get(i + 1))
                .and_then(|s| dd_size(s))
                .unwrap_or(0.0);
            write_file(redirect, size, ctx, p);
            Effect::Status(0)
        }
        "wget" => {
            let Some((host, port, path)) = crate::network::wget_url(words) else {
                p.logs.push("BusyBox v1.36.1 multi-call binary.".into());
                return Effect::Status(1);
            };
            match ctx.network.get(&host, port, &path) {
                Ok(()) => Effect::Status(0),
                Err(line) => {
                    p.logs.push(line);
                    Effect::Status(1)
                }
            }
        }
        "false" => Effect::Status(1),
        "env" | "printenv" if redirect.is_none() => {
            p.logs
                .extend(ctx.env.iter().map(|(k, v)| format!("{k}={v}")));
            Effect::Status(0)
        }
        _ => Effect::Status(0),
    }
}

fn builtin(
    cmd: &str,
    words: &[String],
    redirect: Option<&str>,
    ctx: &Context<'_>,
    p: &mut Program,
) -> Effect {
    match cmd {
        "echo" | "printf" => {
            let text = words[1..].join(" ");
            let text = if cmd == "printf" {
                text.replace("\\n", "")
            } else {
                text
            };
            match redirect {
                Some(path) => write_file(Some(path), text.len() as f64 + 1.0, ctx, p),
                None => p.logs.push(text),
            }
            Effect::Status(0)
        }
        "exit" => Effect::Exit(words.get(1).and_then(|c| c.parse().ok()).unwrap_or(0)),
        "false" => Effect::Status(1),
        // `exec` with nothing after it, `wait` with nothing in the background, and the rest.
        _ => Effect::Status(0),
    }
}

/// The image's own program: its server (the image's default process) starts; another of its programs runs and
/// returns.
fn image_program(name: &str, ctx: &Context<'_>, p: &mut Program) -> Effect {
    let b = ctx.behaviour;
    let main = b
        .main_program()
        .map(|m| m.rsplit('/').next().unwrap_or(m) == name)
        .unwrap_or(false);
    if !main {
        return Effect::Status(0);
    }
    if let Some(missing) = b
        .requires_env
        .iter()
        .find(|v| ctx.env.get(*v).is_none_or(|x| x.is_empty()))
    {
        let line = b
            .missing_env
            .as_deref()
            .unwrap_or("error: required environment variable {name} is not set")
            .replace("{name}", missing);
        p.logs.extend(line.lines().map(String::from));
        return Effect::Exit(1);
    }
    if let Some(resource) = &b.lists {
        match ctx.network.list(resource) {
            Ok(n) => p
                .logs
                .push(format!("listed {n} {resource}; watching for changes")),
            Err(why) => {
                p.logs.push(format!("failed to list {resource}: {why}"));
                return Effect::Exit(1);
            }
        }
    }
    p.logs.extend(b.logs.iter().cloned());
    p.serves.extend(b.serves.iter().cloned());
    p.memory_bytes += b.memory_bytes();
    if !b.ignores_sigterm {
        p.on_sigterm = Sigterm::Exits(0);
    }
    if b.exits_at_once {
        // An interpreter with no script and no terminal.
        return Effect::Exit(0);
    }
    Effect::Forever
}

/// `stress --vm 1 --vm-bytes 500M [--timeout 10s]`: allocates and holds the memory.
fn stress(args: &[String], p: &mut Program) -> Effect {
    let value = |flag: &[&str]| {
        args.iter()
            .position(|a| flag.contains(&a.as_str()))
            .and_then(|i| args.get(i + 1))
    };
    if args.is_empty() || args.iter().any(|a| a == "--help") {
        p.logs
            .push("`stress' imposes certain types of compute stress on your system".into());
        return Effect::Exit(1);
    }
    let vm: f64 = value(&["--vm", "-m"])
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    let bytes = value(&["--vm-bytes"])
        .and_then(|v| quantity::parse(v))
        .unwrap_or(256.0 * 1024.0 * 1024.0);
    p.logs.push(format!(
        "stress: info: [1] dispatching hogs: 0 cpu, 0 io, {vm} vm, 0 hdd"
    ));
    p.memory_bytes = p.memory_bytes.max(vm * bytes);
    match value(&["--timeout", "-t"]).and_then(|t| sleep(t)) {
        Some(d) => Effect::Sleep(d),
        None => Effect::Forever,
    }
}

/// `dd if=SRC of=DST bs=SIZE count=N`: what it writes to DST, and the records it reports on stderr.
fn dd(words: &[String], ctx: &Context<'_>, shell: Option<Shell>, p: &mut Program) -> Effect {
    let opt = |key: &str| {
        words
            .iter()
            .find_map(|w| w.strip_prefix(&format!("{key}=")))
    };
    let bs = opt("bs").and_then(dd_size).unwrap_or(512.0);
    let Some(count) = opt("count").and_then(|c| c.parse::<f64>().ok()) else {
        // No count: it copies until the source ends, and /dev/zero never does.
        return Effect::Forever;
    };
    let bytes = bs * count;
    write_file(opt("of"), bytes, ctx, p);
    p.logs.push(format!("{count}+0 records in"));
    p.logs.push(format!("{count}+0 records out"));
    p.logs.push(if shell == Some(Shell::Ash) {
        format!(
            "{bytes} bytes ({:.1}MB) copied, 0.259346 seconds, 1.1GB/s",
            bytes / 1048576.0
        )
    } else {
        format!(
            "{bytes} bytes ({:.0} MB, {:.0} MiB) copied, 0.12 s, 2.6 GB/s",
            bytes / 1e6,
            bytes / 1048576.0
        )
    });
    Effect::Status(0)
}

fn write_file(path: Option<&str>, bytes: f64, ctx: &Context<'_>, p: &mut Program) {
    if path.is_some_and(|f| ctx.in_memory(f)) {
        p.memory_bytes += bytes;
    }
}

/// A dd/head size: `512`, `1k`/`1K` = 1024, `1M` = 1024², `1G`; `kB`/`MB`/`GB` in powers of 1000.
fn dd_size(s: &str) -> Option<f64> {
    let split = s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len());
    let (num, suffix) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mult = match suffix {
        "" | "c" => 1.0,
        "w" => 2.0,
        "b" => 512.0,
        "k" | "K" => 1024.0,
        "kB" | "KB" => 1e3,
        "M" => 1048576.0,
        "MB" => 1e6,
        "G" => 1073741824.0,
        "GB" => 1e9,
        _ => return None,
    };
    Some(n * mult)
}

/// A `sleep` argument (`5`, `2.5`, `10s`, `1m`), or `None` for `infinity` and garbage.
pub fn sleep(arg: &str) -> Option<Duration> {
    let (num, unit) = match arg.char_indices().last() {
        Some((i, c)) if "smhd".contains(c) => (&arg[..i], c),
        _ => (arg, 's'),
    };
    let n: f64 = num.parse().ok()?;
    let secs = n * match unit {
        'm' => 60.0,
        'h' => 3600.0,
        'd' => 86400.0,
        _ => 1.0,
    };
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(1e7)))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sep {
    Seq,
    And,
    Or,
    Background,
}

/// The script's statements: words (quotes removed, variables expanded), the `>` target, and what follows.
fn statements(
    script: &str,
    env: &BTreeMap<String, String>,
) -> Vec<(Vec<String>, Option<String>, Sep)> {
    let mut out = Vec::new();
    let mut words: Vec<String> = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut redirect: Option<String> = None;
    let mut redirecting = false;
    let mut chars = script.chars().peekable();
    fn finish_word(
        word: &mut String,
        in_word: &mut bool,
        words: &mut Vec<String>,
        redirecting: &mut bool,
        redirect: &mut Option<String>,
    ) {
        if *in_word {
            if *redirecting {
                *redirect = Some(std::mem::take(word));
                *redirecting = false;
            } else {
                words.push(std::mem::take(word));
            }
            *in_word = false;
        }
    }
    macro_rules! end_statement {
        ($sep:expr) => {{
            finish_word(
                &mut word,
                &mut in_word,
                &mut words,
                &mut redirecting,
                &mut redirect,
            );
            let ws = strip_keywords(std::mem::take(&mut words));
            out.push((ws, redirect.take(), $sep));
        }};
    }
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                for q in chars.by_ref() {
                    if q == '\'' {
                        break;
                    }
                    word.push(q);
                }
            }
            '"' => {
                in_word = true;
                let mut quoted = String::new();
                while let Some(q) = chars.next() {
                    match q {
                        '"' => break,
                        '\\' => {
                            if let Some(n) = chars.next() {
                                quoted.push(n);
                            }
                        }
                        _ => quoted.push(q),
                    }
                }
                word.push_str(&expand(&quoted, env));
            }
            '$' => {
                in_word = true;
                let mut var = String::from('$');
                if chars.peek() == Some(&'{') {
                    for v in chars.by_ref() {
                        var.push(v);
                        if v == '}' {
                            break;
                        }
                    }
                } else {
                    while let Some(&v) = chars.peek() {
                        if v.is_ascii_alphanumeric() || v == '_' {
                            var.push(v);
                            chars.next();
                        } else {
                            break;
                        }
                    }
                }
                word.push_str(&expand(&var, env));
            }
            ';' | '\n' => end_statement!(Sep::Seq),
            '&' if chars.peek() == Some(&'&') => {
                chars.next();
                end_statement!(Sep::And);
            }
            '|' if chars.peek() == Some(&'|') => {
                chars.next();
                end_statement!(Sep::Or);
            }
            '|' => end_statement!(Sep::Seq),
            '&' if word.ends_with(['>', '<'])
                || word.chars().all(|c| c.is_ascii_digit()) && in_word =>
            {
                // `2>&1`: part of a redirection, not a background job.
                word.push(c);
            }
            '&' => end_statement!(Sep::Background),
            '>' => {
                // `2>/dev/null` and `>>` redirect too; only the target matters.
                if in_word && word.chars().all(|c| c.is_ascii_digit()) {
                    word.clear();
                    in_word = false;
                } else {
                    finish_word(
                        &mut word,
                        &mut in_word,
                        &mut words,
                        &mut redirecting,
                        &mut redirect,
                    );
                }
                if chars.peek() == Some(&'>') {
                    chars.next();
                }
                if chars.peek() == Some(&'&') {
                    // `>&2`, `2>&1`: a duplicated descriptor, no file.
                    chars.next();
                    while chars.peek().is_some_and(char::is_ascii_digit) {
                        chars.next();
                    }
                } else {
                    redirecting = true;
                }
            }
            c if c.is_whitespace() => finish_word(
                &mut word,
                &mut in_word,
                &mut words,
                &mut redirecting,
                &mut redirect,
            ),
            '\\' => {
                if let Some(n) = chars.next() {
                    in_word = true;
                    word.push(n);
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    end_statement!(Sep::Seq);
    out.into_iter().filter(|(w, _, _)| !w.is_empty()).collect()
}

/// Control-flow words carry no command of their own: `do X` runs X; `done`, `fi` and `while true` run nothing.
fn strip_keywords(mut words: Vec<String>) -> Vec<String> {
    while words
        .first()
        .is_some_and(|w| matches!(w.as_str(), "do" | "then" | "else" | "{" | "("))
    {
        words.remove(0);
    }
    match words.first().map(String::as_str) {
        Some(
            "while" | "until" | "if" | "elif" | "done" | "fi" | "}" | ")" | "for" | "esac" | "case",
        ) => Vec::new(),
        _ => words,
    }
}

/// `$VAR` and `${VAR}` from the container's environment (unset = empty).
fn expand(s: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '$' {
            out.push(c);
            continue;
        }
        let braced = chars.peek() == Some(&'{');
        if braced {
            chars.next();
        }
        let mut name = String::new();
        while let Some(&n) = chars.peek() {
            if n.is_ascii_alphanumeric() || n == '_' {
                name.push(n);
                chars.next();
            } else {
                break;
            }
        }
        if braced && chars.peek() == Some(&'}') {
            chars.next();
        }
        if name.is_empty() {
            out.push('$');
        } else {
            out.push_str(env.get(&name).map(String::as_str).unwrap_or(""));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_split_like_sh() {
        let env = BTreeMap::from([("NAME".to_string(), "sre".to_string())]);
        let got: Vec<(Vec<String>, Option<String>, Sep)> = statements(
            "echo \"hi $NAME\" 'x; y' && dd if=/dev/zero of=/tmp/f bs=1M count=3 2>/dev/null || exit 1; nginx -g 'daemon off;' &\nwhile true; do sleep 1; done",
            &env,
        );
        let words: Vec<Vec<&str>> = got
            .iter()
            .map(|(w, _, _)| w.iter().map(String::as_str).collect())
            .collect();
        assert_eq!(
            words,
            vec![
                vec!["echo", "hi sre", "x; y"],
                vec!["dd", "if=/dev/zero", "of=/tmp/f", "bs=1M", "count=3"],
                vec!["exit", "1"],
                vec!["nginx", "-g", "daemon off;"],
                vec!["sleep", "1"],
            ]
        );
        let seps: Vec<Sep> = got.iter().map(|(_, _, s)| *s).collect();
        assert_eq!(
            seps,
            vec![Sep::And, Sep::Or, Sep::Seq, Sep::Background, Sep::Seq]
        );
        let (_, redirect, _) = &statements("head -c 10M /dev/zero > /tmp/big", &env)[0];
        assert_eq!(redirect.as_deref(), Some("/tmp/big"));
    }

    #[test]
    fn a_term_trap_is_read_as_sh_reads_it() {
        let env = BTreeMap::new();
        let cases = [
            (
                "trap 'exit 0' TERM; while true; do sleep 1; done",
                Some(Sigterm::Exits(0)),
            ),
            (
                "trap \"exit 3\" SIGTERM INT; sleep 100",
                Some(Sigterm::Exits(3)),
            ),
            (
                "trap '' TERM; while true; do sleep 1; done",
                Some(Sigterm::Ignored),
            ),
            ("trap \"\" TERM; sleep 3600", Some(Sigterm::Ignored)),
            ("trap - TERM; sleep 3600", Some(Sigterm::Ignored)),
            ("trap 'echo bye' TERM; sleep 3600", Some(Sigterm::Ignored)),
            (
                "trap 'echo bye; exit 0' 15; sleep 3600",
                Some(Sigterm::Exits(0)),
            ),
            ("trap 'exit 0' INT; sleep 3600", None),
            ("echo no traps; sleep 3600", None),
        ];
        for (script, want) in cases {
            assert_eq!(term_trap(script, &env), want, "{script}");
        }
    }

    #[test]
    fn sizes_and_sleeps() {
        assert_eq!(dd_size("1M"), Some(1048576.0));
        assert_eq!(dd_size("1MB"), Some(1e6));
        assert_eq!(dd_size("4k"), Some(4096.0));
        assert_eq!(sleep("2.5"), Some(Duration::from_millis(2500)));
        assert_eq!(sleep("1m"), Some(Duration::from_secs(60)));
        assert_eq!(sleep("infinity"), None);
    }
}

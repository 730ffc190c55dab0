//! What an image's filesystem holds: the base it was built from (its shell, if any, and the tools that come with
//! it: busybox applets in busybox and Alpine images, coreutils and friends in Debian ones, nothing in distroless),
//! plus the image's own programs. A command that is not there is "not found", as on a real node.

use serde::Deserialize;

/// The base image an image was built from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Base {
    Busybox,
    Alpine,
    #[default]
    Debian,
    Ubuntu,
    /// Google's distroless: a program and its libraries, no shell.
    Distroless,
    Scratch,
}

/// The shell `/bin/sh` is, which decides how it reports a missing command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shell {
    /// busybox `ash` (busybox, Alpine).
    Ash,
    /// Debian's `/bin/sh`.
    Dash,
    Bash,
}

impl Shell {
    /// The line a shell prints for a command it cannot find (it then exits 127). `argv0` is how it was invoked.
    pub fn not_found(self, argv0: &str, command: &str) -> String {
        match self {
            Self::Ash => format!("{argv0}: {command}: not found"),
            Self::Dash => format!("{argv0}: 1: {command}: not found"),
            Self::Bash => format!("{argv0}: line 1: {command}: command not found"),
        }
    }
}

/// Commands every shell runs itself.
const BUILTINS: &[&str] = &[
    "echo", "printf", "test", "[", "true", "false", "exit", "export", "set", "trap", "wait", "cd",
    ":", "read", "exec", "shift", "unset", "eval", ".", "source", "ulimit", "umask", "kill", "pwd",
    "type", "command", "local", "return",
];

/// busybox's applets, as busybox and Alpine images have them.
const BUSYBOX: &[&str] = &[
    "sh",
    "ash",
    "awk",
    "base64",
    "basename",
    "cat",
    "chmod",
    "chown",
    "cp",
    "cut",
    "date",
    "dd",
    "df",
    "dirname",
    "du",
    "env",
    "expr",
    "false",
    "find",
    "free",
    "grep",
    "gunzip",
    "gzip",
    "head",
    "hostname",
    "id",
    "ip",
    "kill",
    "ln",
    "ls",
    "md5sum",
    "mkdir",
    "mktemp",
    "more",
    "mount",
    "mv",
    "nc",
    "netstat",
    "nslookup",
    "ping",
    "printenv",
    "printf",
    "ps",
    "pwd",
    "readlink",
    "realpath",
    "rm",
    "rmdir",
    "sed",
    "seq",
    "sha256sum",
    "sleep",
    "sort",
    "stat",
    "tail",
    "tar",
    "tee",
    "test",
    "[",
    "timeout",
    "top",
    "touch",
    "tr",
    "true",
    "uname",
    "uniq",
    "uptime",
    "vi",
    "watch",
    "wc",
    "wget",
    "which",
    "whoami",
    "xargs",
    "yes",
    "echo",
    "fallocate",
];

/// coreutils, grep, sed, mawk, findutils, tar, gzip, hostname: what a Debian or Ubuntu image has. No wget, curl,
/// nc or ps.
const DEBIAN: &[&str] = &[
    "sh",
    "dash",
    "bash",
    "awk",
    "base64",
    "basename",
    "cat",
    "chmod",
    "chown",
    "cp",
    "cut",
    "date",
    "dd",
    "df",
    "dirname",
    "du",
    "env",
    "expr",
    "false",
    "find",
    "grep",
    "gunzip",
    "gzip",
    "head",
    "hostname",
    "id",
    "kill",
    "ln",
    "ls",
    "md5sum",
    "mkdir",
    "mktemp",
    "mount",
    "mv",
    "nproc",
    "printenv",
    "printf",
    "pwd",
    "readlink",
    "realpath",
    "rm",
    "rmdir",
    "sed",
    "seq",
    "sha256sum",
    "sleep",
    "sort",
    "stat",
    "tail",
    "tar",
    "tee",
    "test",
    "[",
    "timeout",
    "touch",
    "tr",
    "true",
    "uname",
    "uniq",
    "wc",
    "which",
    "whoami",
    "xargs",
    "yes",
    "echo",
    "fallocate",
];

impl Base {
    /// The shell a path names (`sh`, `/bin/bash`), if this base has it.
    pub fn shell(self, program: &str) -> Option<Shell> {
        let name = program.rsplit('/').next().unwrap_or(program);
        match (self, name) {
            (Self::Busybox | Self::Alpine, "sh" | "ash") => Some(Shell::Ash),
            (Self::Debian | Self::Ubuntu, "sh" | "dash") => Some(Shell::Dash),
            (Self::Debian | Self::Ubuntu, "bash") => Some(Shell::Bash),
            _ => None,
        }
    }

    /// Whether the base has this tool on its PATH (a shell builtin counts only inside a shell).
    pub fn has(self, program: &str) -> bool {
        let name = program.rsplit('/').next().unwrap_or(program);
        match self {
            Self::Busybox | Self::Alpine => BUSYBOX.contains(&name),
            Self::Debian | Self::Ubuntu => DEBIAN.contains(&name),
            Self::Distroless | Self::Scratch => false,
        }
    }
}

/// Whether a shell runs this command itself.
pub fn builtin(command: &str) -> bool {
    BUILTINS.contains(&command)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bases_have_the_tools_their_images_really_ship() {
        // (base, program, a shell?, on the PATH?)
        let cases = [
            (Base::Alpine, "sh", Some(Shell::Ash), true),
            (Base::Alpine, "/bin/sh", Some(Shell::Ash), true),
            (Base::Alpine, "bash", None, false),
            (Base::Alpine, "dd", None, true),
            (Base::Alpine, "wget", None, true),
            (Base::Busybox, "nc", None, true),
            (Base::Debian, "sh", Some(Shell::Dash), true),
            (Base::Debian, "/bin/bash", Some(Shell::Bash), true),
            (Base::Debian, "dd", None, true),
            (Base::Debian, "wget", None, false),
            (Base::Debian, "nc", None, false),
            (Base::Distroless, "sh", None, false),
            (Base::Scratch, "ls", None, false),
        ];
        for (base, program, shell, has) in cases {
            assert_eq!(
                (base.shell(program), base.has(program)),
                (shell, has),
                "{base:?} {program}"
            );
        }
        assert_eq!(
            Shell::Ash.not_found("sh", "start-my-server"),
            "sh: start-my-server: not found"
        );
        assert_eq!(
            Shell::Dash.not_found("/bin/sh", "start-my-server"),
            "/bin/sh: 1: start-my-server: not found"
        );
        assert_eq!(
            Shell::Bash.not_found("bash", "x"),
            "bash: line 1: x: command not found"
        );
    }
}

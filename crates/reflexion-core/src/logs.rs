//! What a crashed container's logs say, read as evidence: bounded, and never followed as instructions.

/// Logs longer than this are not read further.
const MAX_LOG_BYTES: usize = 16 * 1024;

/// The environment variable a crashing program says it is missing, if its logs say so in one of the usual ways
/// ("environment variable X is not set", "X must be set", "missing env var X", `KeyError: 'X'`, ...).
pub fn missing_env_var(logs: &str) -> Option<String> {
    let text = &logs[..floor_char_boundary(logs, MAX_LOG_BYTES)];
    for line in text.lines() {
        let lower = line.to_ascii_lowercase();
        let mentions = [
            "environment variable",
            "env var",
            "not set",
            "must be set",
            "is required",
            "missing",
            "keyerror",
            "undefined",
            "not specified",
            "must specify",
        ];
        if !mentions.iter().any(|m| lower.contains(m)) {
            continue;
        }
        if let Some(name) = line
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .find(|w| is_env_name(w) && !is_shouting_word(w) && (w.contains('_') || w.len() >= 4))
        {
            return Some(name.to_string());
        }
    }
    None
}

/// An upper-case identifier as environment variables are conventionally named (`DATABASE_URL`).
fn is_env_name(w: &str) -> bool {
    w.len() >= 2
        && w.len() <= 128
        && w.starts_with(|c: char| c.is_ascii_uppercase())
        && w.chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// Capitalised words log lines shout that are not variable names.
fn is_shouting_word(w: &str) -> bool {
    [
        "ERROR", "FATAL", "WARN", "WARNING", "INFO", "DEBUG", "PANIC", "TRACE",
    ]
    .contains(&w)
}

fn floor_char_boundary(s: &str, max: usize) -> usize {
    if s.len() <= max {
        return s.len();
    }
    (0..=max)
        .rev()
        .find(|i| s.is_char_boundary(*i))
        .unwrap_or(0)
}

/// A valid environment variable name as the API server accepts it (C identifier, plus '.' and '-').
pub fn is_valid_env_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 256
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_variable_a_program_says_it_misses() {
        let cases = [
            (
                "fatal: required environment variable DATABASE_URL is not set",
                Some("DATABASE_URL"),
            ),
            (
                "Error: Database is uninitialized and superuser password is not specified. You must specify POSTGRES_PASSWORD to a non-empty value for the superuser.",
                Some("POSTGRES_PASSWORD"),
            ),
            ("ERROR: REDIS_HOST must be set", Some("REDIS_HOST")),
            ("panic: missing env var API_TOKEN", Some("API_TOKEN")),
            ("KeyError: 'SECRET_KEY'", Some("SECRET_KEY")),
            (
                "starting server\nFATAL: env var PORT is required",
                Some("PORT"),
            ),
            ("Başladım", None),
            ("ERROR: connection refused", None),
            ("", None),
        ];
        for (logs, want) in cases {
            assert_eq!(missing_env_var(logs).as_deref(), want, "{logs}");
        }
    }

    #[test]
    fn huge_logs_are_bounded_and_safe_on_char_boundaries() {
        let logs = format!(
            "{}\nfatal: environment variable LATE_VAR is not set",
            "ü".repeat(MAX_LOG_BYTES)
        );
        assert_eq!(
            missing_env_var(&logs),
            None,
            "only the first bytes are read"
        );
    }

    #[test]
    fn env_names() {
        for (n, ok) in [
            ("DATABASE_URL", true),
            ("a.b-c", true),
            ("1X", false),
            ("", false),
            ("A B", false),
        ] {
            assert_eq!(is_valid_env_name(n), ok, "{n}");
        }
    }
}

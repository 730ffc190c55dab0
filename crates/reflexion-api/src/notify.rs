//! `--notify`, its secret and the console's address, checked into the notifier's settings.

use crate::config::{Args, ConfigError, url};
use reflexion_notify::sign::MIN_SECRET_BYTES;
use reflexion_notify::{Kind, Target};

/// Largest secret file read.
const MAX_SECRET_BYTES: u64 = 4096;

pub(crate) fn settings(args: &Args) -> Result<Option<reflexion_notify::Settings>, ConfigError> {
    let targets = args
        .notify
        .iter()
        .filter(|s| !s.trim().is_empty())
        .map(|s| Target::parse(s).map_err(|e| ConfigError::Notify(e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    let secret = match (&args.notify_secret, &args.notify_secret_file) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::Notify(
                "--notify-secret and --notify-secret-file: give one".into(),
            ));
        }
        (Some(s), None) => Some(s.trim().as_bytes().to_vec()),
        (None, Some(path)) => Some(read_secret(path)?),
        (None, None) => None,
    };
    if let Some(s) = &secret
        && s.len() < MIN_SECRET_BYTES
    {
        return Err(ConfigError::Notify(format!(
            "the notification secret must be at least {MIN_SECRET_BYTES} bytes, got {}",
            s.len()
        )));
    }
    if secret.is_none() && targets.iter().any(|t| t.kind == Kind::Webhook) {
        return Err(ConfigError::Notify(
            "--notify webhook=… needs --notify-secret or --notify-secret-file: webhooks are signed"
                .into(),
        ));
    }
    if let Some(u) = &args.console_url {
        url("--console-url", u)?;
    }
    if targets.is_empty() {
        return Ok(None);
    }
    Ok(Some(reflexion_notify::Settings::new(
        targets,
        secret,
        args.console_url.clone(),
    )))
}

fn read_secret(path: &std::path::Path) -> Result<Vec<u8>, ConfigError> {
    let err = |why: String| ConfigError::File {
        name: "--notify-secret-file",
        path: path.to_path_buf(),
        why,
    };
    let len = std::fs::metadata(path)
        .map_err(|e| err(e.to_string()))?
        .len();
    if len > MAX_SECRET_BYTES {
        return Err(err(format!("is {len} bytes, more than {MAX_SECRET_BYTES}")));
    }
    let text = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    Ok(text.trim_ascii().to_vec())
}

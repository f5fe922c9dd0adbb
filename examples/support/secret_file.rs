//! `WEBHOOK_SECRET_FILE`: the demo receiver's secrets in a file, reloaded while it runs, on
//! SIGHUP and when the file changes. A file that cannot be read or used keeps the keys in
//! force; the error names the line, never what is on it.

use std::path::PathBuf;
use std::time::Duration;

use tokio::signal::unix::{signal, SignalKind};
use tower_webhook::scheme::Scheme;
use tower_webhook::{ConfigError, Verifier};

/// The secrets of a file: one secret (or public key) per line, each with its line number;
/// blank lines and lines starting with `#` are skipped.
pub fn parse(text: &str) -> Vec<(usize, String)> {
    text.lines()
        .enumerate()
        .map(|(i, line)| (i + 1, line.trim()))
        .filter(|(_, line)| !line.is_empty() && !line.starts_with('#'))
        .map(|(n, line)| (n, line.to_owned()))
        .collect()
}

/// Reads `path` and checks that its secrets make a verifier of `scheme`, or says what is
/// wrong, naming a line but never quoting it.
pub fn load(path: &PathBuf, scheme: &Scheme) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {}", path.display(), e.kind()))?;
    verifier(scheme, &parse(&text))?;
    Ok(text)
}

fn verifier(scheme: &Scheme, secrets: &[(usize, String)]) -> Result<Verifier, String> {
    Verifier::builder(scheme.clone())
        .secrets(secrets.iter().map(|(_, s)| s))
        .build()
        .map_err(|e| match e {
            ConfigError::InvalidSecret { index, reason, .. } => {
                let line = secrets.get(index).map_or(0, |(n, _)| *n);
                format!("line {line}: {reason}")
            }
            ConfigError::NoSecret => "no secret in the file".to_owned(),
            other => other.to_string(),
        })
}

/// Replaces the keys of `live` with the file's whenever SIGHUP comes, or the file's content
/// differs from `loaded` when checked every `every`. Runs until the process ends.
pub fn watch(path: PathBuf, every: Duration, live: Verifier, mut loaded: String) {
    let mut hangup = signal(SignalKind::hangup()).expect("a SIGHUP handler");
    tokio::spawn(async move {
        loop {
            let asked = tokio::select! {
                _ = hangup.recv() => true,
                () = tokio::time::sleep(every) => false,
            };
            let text = match std::fs::read_to_string(&path) {
                Ok(text) if !asked && text == loaded => continue,
                Ok(text) => text,
                Err(e) => {
                    tracing::error!(
                        "WEBHOOK_SECRET_FILE: cannot read {}: {}; the keys in force stay",
                        path.display(),
                        e.kind()
                    );
                    continue;
                }
            };
            let scheme = live.scheme().clone();
            match verifier(&scheme, &parse(&text)).and_then(|next| {
                live.replace_keys(&next).map_err(|e| e.to_string())?;
                Ok(next.key_count())
            }) {
                Ok(keys) => tracing::info!("WEBHOOK_SECRET_FILE: reloaded, {keys} keys in force"),
                Err(e) => tracing::error!("WEBHOOK_SECRET_FILE: {e}; the keys in force stay"),
            }
            // A broken file is not tried again until it changes or SIGHUP comes.
            loaded = text;
        }
    });
}

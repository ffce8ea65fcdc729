//! `incomingAuth: {type: static, tokensFile}`: bearer tokens listed in a file, one per
//! line (`NAME TOKEN`, or a bare `TOKEN` named by its line), `#` comments. Only their
//! SHA-256 digests are kept; a presented token is hashed and compared with every digest
//! in constant time, so neither timing nor an early exit tells how close a guess was.
//! The file is read again when it changes (a rotated Kubernetes secret).

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use hale_mcp::WatchedFile;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The tokens of a file.
#[derive(Debug)]
pub(crate) struct StaticTokens {
    file: WatchedFile<Arc<Entries>>,
}

#[derive(Debug)]
struct Entries(Vec<([u8; 32], Arc<str>)>);

impl StaticTokens {
    /// Reads `path`: it must exist and list at least one token.
    pub(crate) fn open(path: &Path) -> Result<Self, String> {
        Ok(StaticTokens {
            file: WatchedFile::open(path, parse)?,
        })
    }

    /// The caller's name if `token` is one of the file's.
    pub(crate) fn admit(&self, token: &str) -> Option<Arc<str>> {
        let entries = self.file.get(Instant::now());
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found: Option<Arc<str>> = None;
        for (known, name) in &entries.0 {
            // Every entry is compared: the time taken does not depend on which matched.
            #[cfg(test)]
            COMPARED.with(|c| c.set(c.get() + 1));
            if bool::from(known.ct_eq(&digest)) {
                found = Some(name.clone());
            }
        }
        found
    }
}

#[cfg(test)]
thread_local! {
    /// Digest comparisons made on this thread (tests).
    static COMPARED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

fn parse(text: &str) -> Result<Arc<Entries>, String> {
    let mut entries = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (name, token) = match fields.as_slice() {
            [token] => (format!("token-{}", n + 1), *token),
            [name, token] => ((*name).to_string(), *token),
            _ => {
                return Err(format!(
                    "line {}: expected TOKEN or NAME TOKEN (a token has no spaces)",
                    n + 1
                ));
            }
        };
        if token.len() < 16 {
            return Err(format!(
                "line {}: the token is shorter than 16 characters; use a long random one (openssl rand -hex 32)",
                n + 1
            ));
        }
        entries.push((Sha256::digest(token.as_bytes()).into(), Arc::from(name)));
    }
    if entries.is_empty() {
        return Err("lists no token (one per line: TOKEN or NAME TOKEN)".into());
    }
    Ok(Arc::new(Entries(entries)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, text: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("hale-tokens-{}-{name}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("tokens");
        let _ = std::fs::write(&path, text);
        path
    }

    #[test]
    fn listed_tokens_are_admitted_with_their_names_and_others_are_not() {
        let path = file(
            "ok",
            "# callers\nalice aaaaaaaaaaaaaaaaaaaa\n\nbbbbbbbbbbbbbbbbbbbb\n",
        );
        let tokens = StaticTokens::open(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            tokens.admit("aaaaaaaaaaaaaaaaaaaa").as_deref(),
            Some("alice")
        );
        assert_eq!(
            tokens.admit("bbbbbbbbbbbbbbbbbbbb").as_deref(),
            Some("token-4")
        );
        for wrong in ["", "aaaaaaaaaaaaaaaaaaa", "aaaaaaaaaaaaaaaaaaaaa", "alice"] {
            assert_eq!(tokens.admit(wrong), None, "{wrong:?}");
        }
        let _ = std::fs::remove_dir_all(path.parent().unwrap_or(&path));
    }

    #[test]
    fn every_listed_token_is_compared_whichever_matches_or_none() {
        let lines: String = (0..50)
            .map(|i| format!("n{i} token-number-{i:04}-abcdefgh\n"))
            .collect();
        let path = file("timing", &lines);
        let tokens = StaticTokens::open(&path).unwrap_or_else(|e| panic!("{e}"));
        for (presented, expected) in [
            ("token-number-0000-abcdefgh", Some("n0")),
            ("token-number-0049-abcdefgh", Some("n49")),
            ("token-number-0049-abcdefgX", None),
            ("t", None),
        ] {
            COMPARED.with(|c| c.set(0));
            assert_eq!(tokens.admit(presented).as_deref(), expected);
            // No early exit: the first, the last, a near miss and a short guess all cost
            // 50 comparisons of 32-byte digests (each in constant time, `subtle`).
            assert_eq!(COMPARED.with(std::cell::Cell::get), 50, "{presented}");
        }
        let _ = std::fs::remove_dir_all(path.parent().unwrap_or(&path));
    }

    #[test]
    fn a_missing_empty_or_weak_tokens_file_is_refused_naming_it() {
        let missing = std::env::temp_dir().join("hale-tokens-nope/tokens");
        for (path, says) in [
            (missing, "cannot read it"),
            (file("empty", "# nothing\n\n"), "lists no token"),
            (file("short", "short\n"), "shorter than 16"),
            (file("three", "a b c\n"), "line 1"),
        ] {
            let e = StaticTokens::open(&path).err().unwrap_or_default();
            assert!(
                e.contains(&path.display().to_string()) && e.contains(says),
                "{e}"
            );
        }
    }
}

//! The server's secret: a random key that signs the request ids `serve` issues
//! (so feedback can only name a prediction this deployment made, for the
//! client it made it for) and keys `retrain`'s holdout split (so no client can
//! choose which of its rows the gate sees). One key file, shared by the
//! replicas that share a log folder and by the `retrain` that reads it.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result, bail};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

/// 256 random bits.
pub type Key = [u8; 32];

/// Reads the key at `path`, or creates it (mode 0600) when there is none. Two
/// processes creating it at once agree on one key: the file appears whole
/// (written aside, synced, then linked into place), and the loser reads the winner's.
pub fn load_or_create_key(path: &Path) -> Result<Key> {
    match std::fs::read_to_string(path) {
        Ok(text) => return parse_key(&text).with_context(|| format!("{} is not a kiln signing key", path.display())),
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            return Err(error).with_context(|| format!("cannot read the signing key {}", path.display()));
        }
        Err(_) => {}
    }
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let key = random_key();
    // tempfile creates its files 0600.
    let mut temp = tempfile::Builder::new()
        .prefix(".kiln-key-")
        .tempfile_in(dir)
        .with_context(|| format!("cannot write in {}", dir.display()))?;
    writeln!(temp, "{}", hex::encode(key))
        .and_then(|()| temp.as_file().sync_all())
        .with_context(|| format!("cannot write in {}", dir.display()))?;
    match std::fs::hard_link(temp.path(), path) {
        Ok(()) => {
            crate::output::sync_dir(dir)?;
            tracing::info!("created the signing key {}", path.display());
            Ok(key)
        }
        // Another process made it first: use theirs.
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => load_or_create_key(path),
        Err(error) => Err(error).with_context(|| format!("cannot create the signing key {}", path.display())),
    }
}

/// A new key from the thread's CSPRNG (seeded by the OS).
pub fn random_key() -> Key {
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    key
}

fn parse_key(text: &str) -> Result<Key> {
    let bytes = hex::decode(text.trim()).context("expected 64 hex digits")?;
    let Ok(key) = Key::try_from(bytes.as_slice()) else {
        bail!("expected 64 hex digits, found {} bytes", bytes.len());
    };
    Ok(key)
}

/// HMAC-SHA256 of `parts`, each length-prefixed (so `("ab", "c")` and `("a", "bc")` differ).
pub fn keyed_hash(key: &Key, parts: &[&[u8]]) -> [u8; 32] {
    mac(key, parts).finalize().into_bytes().into()
}

fn mac(key: &Key, parts: &[&[u8]]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    for part in parts {
        mac.update(&(part.len() as u64).to_le_bytes());
        mac.update(part);
    }
    mac
}

/// Whether `tag` is the first `tag.len()` bytes of [`keyed_hash`] of `parts`,
/// compared in constant time.
pub fn verify_keyed_hash(key: &Key, parts: &[&[u8]], tag: &[u8]) -> bool {
    !tag.is_empty() && mac(key, parts).verify_truncated_left(tag).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_created_once_private_and_read_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log/.key");
        let first = load_or_create_key(&path).expect("created");
        assert_eq!(load_or_create_key(&path).expect("read"), first);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "only its owner may read the key");
        }
        let names: Vec<_> = std::fs::read_dir(path.parent().expect("dir")).expect("list").flatten().collect();
        assert_eq!(names.len(), 1, "no temp file is left");
        std::fs::write(&path, "not hex").expect("write");
        let error = load_or_create_key(&path).expect_err("damaged");
        assert!(format!("{error:#}").contains(".key"), "{error:#}");
    }

    #[test]
    fn tags_verify_only_for_the_same_key_and_parts() {
        let (key, other) = ([7u8; 32], [8u8; 32]);
        let tag = keyed_hash(&key, &[b"ab", b"c"]);
        assert!(verify_keyed_hash(&key, &[b"ab", b"c"], &tag[..16]));
        assert!(!verify_keyed_hash(&key, &[b"a", b"bc"], &tag[..16]), "parts are delimited");
        assert!(!verify_keyed_hash(&other, &[b"ab", b"c"], &tag[..16]));
        assert!(!verify_keyed_hash(&key, &[b"ab", b"c"], &[]), "an empty tag proves nothing");
    }
}

//! Request ids the server issues and can later recognise: `<uuid>.<tag>`,
//! where the tag is an HMAC of the uuid and the client's name under the
//! server's signing key. Feedback must quote such an id, issued to the same
//! client: nobody can label another client's predictions, invent ids, or
//! steer which rows `retrain` holds out (its split is keyed with the same secret).

use kiln_core::secret::{Key, keyed_hash, verify_keyed_hash};

/// Bytes of the HMAC kept in an id (128 bits).
const TAG_BYTES: usize = 16;
const DOMAIN: &[u8] = b"kiln request id";

pub struct RequestIds {
    key: Key,
}

impl RequestIds {
    pub fn new(key: Key) -> Self {
        Self { key }
    }

    /// A new id for a request from `client`.
    pub fn issue(&self, client: &str) -> String {
        let id = uuid::Uuid::new_v4().to_string();
        let tag = keyed_hash(&self.key, &[DOMAIN, id.as_bytes(), client.as_bytes()]);
        format!("{id}.{}", hex::encode(&tag[..TAG_BYTES]))
    }

    /// Whether this server issued `id` to `client`.
    pub fn verify(&self, id: &str, client: &str) -> bool {
        let Some((id, tag)) = id.split_once('.') else { return false };
        let Ok(tag) = hex::decode(tag) else { return false };
        tag.len() == TAG_BYTES && verify_keyed_hash(&self.key, &[DOMAIN, id.as_bytes(), client.as_bytes()], &tag)
    }
}

/// Whether `id` has the shape of a request id as the `x-request-id` header
/// takes it: 1 to 128 letters, digits or `-_.:`.
pub fn well_formed(id: &str) -> bool {
    (1..=128).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_verifies_for_its_client_only_and_not_once_changed() {
        let ids = RequestIds::new([3u8; 32]);
        let id = ids.issue("app");
        assert!(well_formed(&id), "{id}");
        assert!(ids.verify(&id, "app"));
        assert!(!ids.verify(&id, "other"), "issued to another client");
        assert!(!RequestIds::new([4u8; 32]).verify(&id, "app"), "another server's key");
        let mut tampered = id.clone().into_bytes();
        let last = tampered.len() - 1;
        tampered[last] = if tampered[last] == b'0' { b'1' } else { b'0' };
        assert!(!ids.verify(&String::from_utf8(tampered).expect("ascii"), "app"));
        let (uuid, _) = id.split_once('.').expect("two parts");
        assert!(!ids.verify(uuid, "app") && !ids.verify(&format!("{uuid}."), "app") && !ids.verify("", "app"));
        assert!(!ids.verify(&format!("{}.{}", uuid::Uuid::new_v4(), &id[37..]), "app"), "another uuid, same tag");
        assert_ne!(ids.issue("app"), id);
    }

    #[test]
    fn ids_are_checked_like_the_header() {
        assert!(well_formed("order-17:a") && !well_formed("") && !well_formed("a b") && !well_formed(&"x".repeat(129)));
    }
}

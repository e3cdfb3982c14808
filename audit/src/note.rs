//! Checkpoints as C2SP signed notes, signed with Ed25519.
//!
//! A checkpoint body is three lines (C2SP `tlog-checkpoint`): the origin, the tree size in
//! decimal, the base64 root hash. A signed note is the body, a blank line, then one line
//! per signature: `— <key name> <base64(key id ‖ signature)>`, where the key id is the
//! first four bytes of `SHA-256(name ‖ "\n" ‖ 0x01 ‖ public key)` and the signature covers
//! the body bytes exactly. Verifier keys travel as `<name>+<hex key id>+<base64(0x01 ‖ key)>`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::hash::{Hash, hash_from_b64, hash_to_b64};

/// The signature algorithm byte of Ed25519 in C2SP notes.
pub const ALG_ED25519: u8 = 0x01;

/// The em dash that starts every signature line.
const SIG_PREFIX: &str = "\u{2014} ";

/// Why a note, key or checkpoint could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    /// A key name that is empty or has white space or `+`.
    #[error("key name `{0}` must be non-empty, without spaces or '+'")]
    BadKeyName(String),
    /// A verifier key string that does not parse.
    #[error("verifier key is malformed: {0}")]
    BadVerifierKey(String),
    /// A note without the blank line and signature lines.
    #[error("signed note is malformed: {0}")]
    Malformed(String),
    /// A checkpoint body that is not origin / size / root.
    #[error("checkpoint body is malformed: {0}")]
    BadCheckpoint(String),
}

/// The 4-byte id of an Ed25519 key named `name`.
pub fn key_id(name: &str, public: &[u8; 32]) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([ALG_ED25519]);
    h.update(public);
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

fn check_name(name: &str) -> Result<(), NoteError> {
    if name.is_empty() || name.contains(char::is_whitespace) || name.contains('+') {
        return Err(NoteError::BadKeyName(name.to_owned()));
    }
    Ok(())
}

/// A signing key with its name (the sealer's, never the API's).
pub struct NoteSigner {
    name: String,
    key: SigningKey,
    id: [u8; 4],
}

impl NoteSigner {
    /// A signer from a 32-byte Ed25519 seed.
    ///
    /// # Errors
    /// [`NoteError::BadKeyName`].
    pub fn new(name: &str, seed: &[u8; 32]) -> Result<Self, NoteError> {
        check_name(name)?;
        let key = SigningKey::from_bytes(seed);
        let id = key_id(name, key.verifying_key().as_bytes());
        Ok(Self { name: name.to_owned(), key, id })
    }

    /// The matching verifier.
    pub fn verifier(&self) -> NoteVerifier {
        NoteVerifier { name: self.name.clone(), key: self.key.verifying_key(), id: self.id }
    }

    /// The signature line for `body`.
    pub fn sign(&self, body: &str) -> NoteSignature {
        let sig = self.key.sign(body.as_bytes()).to_bytes();
        NoteSignature { name: self.name.clone(), key_id: self.id, signature: sig }
    }
}

/// A public key that checks signatures of one name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteVerifier {
    name: String,
    key: VerifyingKey,
    id: [u8; 4],
}

impl NoteVerifier {
    /// Parses `<name>+<hex id>+<base64(0x01 ‖ key)>`, checking that the id matches.
    ///
    /// # Errors
    /// [`NoteError::BadVerifierKey`].
    pub fn parse(vkey: &str) -> Result<Self, NoteError> {
        let bad = |why: &str| NoteError::BadVerifierKey(why.to_owned());
        // The base64 key may itself hold '+': split off the name and id only.
        let mut parts = vkey.trim().splitn(3, '+');
        let (Some(name), Some(hex), Some(b64)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad("expected name+id+key"));
        };
        check_name(name).map_err(|e| bad(&e.to_string()))?;
        let raw = STANDARD.decode(b64).map_err(|_| bad("key is not base64"))?;
        let Some((&ALG_ED25519, key)) = raw.split_first() else { return Err(bad("not an Ed25519 key")) };
        let key: [u8; 32] = key.try_into().map_err(|_| bad("Ed25519 keys are 32 bytes"))?;
        let key = VerifyingKey::from_bytes(&key).map_err(|_| bad("not a valid Ed25519 point"))?;
        let id = key_id(name, key.as_bytes());
        if hex != id.iter().map(|b| format!("{b:02x}")).collect::<String>() {
            return Err(bad("key id does not match the key"));
        }
        Ok(Self { name: name.to_owned(), key, id })
    }

    /// The `name+id+key` form.
    pub fn to_vkey(&self) -> String {
        let mut raw = vec![ALG_ED25519];
        raw.extend_from_slice(self.key.as_bytes());
        let hex: String = self.id.iter().map(|b| format!("{b:02x}")).collect();
        format!("{}+{hex}+{}", self.name, STANDARD.encode(raw))
    }

    /// The key's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key's 4-byte id.
    pub fn id(&self) -> [u8; 4] {
        self.id
    }

    /// Whether `sig` is this key's valid signature of `body`.
    pub fn verify(&self, body: &str, sig: &NoteSignature) -> bool {
        sig.name == self.name
            && sig.key_id == self.id
            && self.key.verify(body.as_bytes(), &Signature::from_bytes(&sig.signature)).is_ok()
    }
}

/// One signature line of a note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature {
    /// Key name.
    pub name: String,
    /// Key id.
    pub key_id: [u8; 4],
    /// Ed25519 signature.
    pub signature: [u8; 64],
}

impl NoteSignature {
    /// The `— name base64` line (without newline).
    pub fn line(&self) -> String {
        let mut raw = self.key_id.to_vec();
        raw.extend_from_slice(&self.signature);
        format!("{SIG_PREFIX}{} {}", self.name, STANDARD.encode(raw))
    }
}

/// A note: its signed body and its signatures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedNote {
    /// The body, each line ending in `\n`.
    pub body: String,
    /// The signatures, in order.
    pub signatures: Vec<NoteSignature>,
}

impl SignedNote {
    /// The note's text.
    pub fn to_text(&self) -> String {
        let mut t = format!("{}\n", self.body);
        for s in &self.signatures {
            t.push_str(&s.line());
            t.push('\n');
        }
        t
    }

    /// Parses a note's text.
    ///
    /// # Errors
    /// [`NoteError::Malformed`].
    pub fn parse(text: &str) -> Result<Self, NoteError> {
        let bad = |why: &str| NoteError::Malformed(why.to_owned());
        let split = text.find("\n\n").ok_or_else(|| bad("no blank line before the signatures"))?;
        let body = &text[..=split];
        let mut signatures = Vec::new();
        for line in text[split + 2..].lines() {
            let rest = line.strip_prefix(SIG_PREFIX).ok_or_else(|| bad("signature line must start with an em dash"))?;
            let (name, b64) = rest.split_once(' ').ok_or_else(|| bad("signature line must be `— name signature`"))?;
            let raw = STANDARD.decode(b64).map_err(|_| bad("signature is not base64"))?;
            if raw.len() != 68 {
                return Err(bad("an Ed25519 signature line holds 4 + 64 bytes"));
            }
            let key_id = [raw[0], raw[1], raw[2], raw[3]];
            let signature: [u8; 64] = raw[4..].try_into().map_err(|_| bad("signature length"))?;
            signatures.push(NoteSignature { name: name.to_owned(), key_id, signature });
        }
        if signatures.is_empty() {
            return Err(bad("no signature"));
        }
        Ok(Self { body: body.to_owned(), signatures })
    }
}

/// A checkpoint: the log's origin, size and root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint<'a> {
    /// Log origin.
    pub origin: &'a str,
    /// Tree size.
    pub size: u64,
    /// Merkle root at that size.
    pub root: Hash,
}

impl<'a> Checkpoint<'a> {
    /// The note body: `origin\nsize\nroot\n`.
    pub fn body(&self) -> String {
        format!("{}\n{}\n{}\n", self.origin, self.size, hash_to_b64(&self.root))
    }

    /// Parses a body.
    ///
    /// # Errors
    /// [`NoteError::BadCheckpoint`].
    pub fn parse(body: &'a str) -> Result<Self, NoteError> {
        let bad = |why: &str| NoteError::BadCheckpoint(why.to_owned());
        let mut lines = body.lines();
        let origin = lines.next().filter(|o| !o.is_empty()).ok_or_else(|| bad("no origin line"))?;
        let size = lines.next().and_then(|s| s.parse().ok()).ok_or_else(|| bad("tree size is not a number"))?;
        let root =
            lines.next().and_then(|r| hash_from_b64(r).ok()).ok_or_else(|| bad("root is not base64 of 32 bytes"))?;
        Ok(Self { origin, size, root })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer(name: &str, byte: u8) -> NoteSigner {
        NoteSigner::new(name, &[byte; 32]).expect("signer")
    }

    #[test]
    fn a_signed_checkpoint_round_trips_and_verifies() {
        let s = signer("covenant-sealer-1", 7);
        let cp = Checkpoint { origin: "covenant/COVENANT_EVENTS", size: 5, root: [9; 32] };
        let note = SignedNote { body: cp.body(), signatures: vec![s.sign(&cp.body())] };
        let text = note.to_text();
        assert!(text.starts_with("covenant/COVENANT_EVENTS\n5\n"), "{text}");
        assert!(text.contains("\n\n\u{2014} covenant-sealer-1 "), "{text}");
        let parsed = SignedNote::parse(&text).expect("parse");
        assert_eq!(parsed, note);
        assert_eq!(Checkpoint::parse(&parsed.body).expect("body"), cp);
        let v = NoteVerifier::parse(&s.verifier().to_vkey()).expect("vkey");
        assert!(v.verify(&parsed.body, &parsed.signatures[0]));
    }

    #[test]
    fn a_changed_body_or_another_key_does_not_verify() {
        let (a, b) = (signer("a", 1), signer("b", 2));
        let body = Checkpoint { origin: "o", size: 1, root: [0; 32] }.body();
        let sig = a.sign(&body);
        assert!(!a.verifier().verify(&body.replace('1', "2"), &sig));
        assert!(!b.verifier().verify(&body, &sig));
        let mut forged = sig.clone();
        forged.signature[0] ^= 1;
        assert!(!a.verifier().verify(&body, &forged));
    }

    #[test]
    fn malformed_notes_and_keys_are_refused() {
        assert!(SignedNote::parse("o\n1\nroot\n").is_err(), "no signatures");
        assert!(SignedNote::parse("o\n1\nroot\n\n- a AAAA\n").is_err(), "hyphen instead of em dash");
        assert!(SignedNote::parse("o\n1\nroot\n\n\u{2014} a AAAA\n").is_err(), "short signature");
        let vkey = signer("k", 3).verifier().to_vkey();
        assert!(NoteVerifier::parse(&vkey.replacen("k+", "j+", 1)).is_err(), "id bound to the name");
        assert!(NoteVerifier::parse("k+00000000").is_err());
        // Keys whose base64 holds '+' (and '/') parse: found by the integration tests.
        for seed in 0..=255u8 {
            let s = NoteSigner::new("k", &[seed; 32]).expect("signer");
            let vkey = s.verifier().to_vkey();
            assert_eq!(NoteVerifier::parse(&vkey).expect(&vkey).to_vkey(), vkey);
        }
        assert!(NoteSigner::new("has space", &[0; 32]).is_err());
        assert!(Checkpoint::parse("o\nx\nroot\n").is_err());
    }
}

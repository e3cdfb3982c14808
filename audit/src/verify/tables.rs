//! The verifier's tables and small parsers: what makes its sequential pass cheap per
//! event (keys worked out on the parallel side, compact tables, indexes built only when
//! asked).

use std::collections::HashSet;
use std::hash::BuildHasher as _;

use crate::entry::Hash;

/// A UUID in its 36-character hyphenated form, as a number.
pub(super) fn parse_uuid(s: &str) -> Option<u128> {
    /// Hex digit values, 0xff for anything else.
    const HEX: [u8; 256] = {
        let mut t = [0xff; 256];
        let mut i = 0;
        while i < 10 {
            t[b'0' as usize + i] = i as u8;
            i += 1;
        }
        let mut i = 0;
        while i < 6 {
            t[b'a' as usize + i] = 10 + i as u8;
            t[b'A' as usize + i] = 10 + i as u8;
            i += 1;
        }
        t
    };
    /// Where the 32 digits are (the hyphens at 8, 13, 18 and 23 are skipped).
    const DIGITS: [usize; 32] = {
        let mut d = [0; 32];
        let (mut i, mut at) = (0, 0);
        while i < 36 {
            if !(i == 8 || i == 13 || i == 18 || i == 23) {
                d[at] = i;
                at += 1;
            }
            i += 1;
        }
        d
    };
    let b: &[u8; 36] = s.as_bytes().try_into().ok()?;
    if b[8] != b'-' || b[13] != b'-' || b[18] != b'-' || b[23] != b'-' {
        return None;
    }
    let (mut bytes, mut bad) = ([0u8; 16], 0u8);
    for (byte, pair) in bytes.iter_mut().zip(DIGITS.chunks_exact(2)) {
        let (hi, lo) = (HEX[usize::from(b[pair[0]])], HEX[usize::from(b[pair[1]])]);
        bad |= hi | lo;
        *byte = hi << 4 | (lo & 0x0f);
    }
    (bad & 0xf0 == 0).then_some(u128::from_be_bytes(bytes))
}

pub(super) fn format_uuid(v: u128) -> String {
    let h = format!("{v:032x}");
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

/// A hasher for keys that are already uniformly distributed (hash prefixes, random UUIDs):
/// it folds the bytes instead of hashing them again.
#[derive(Default, Clone, Copy)]
struct Fold(u64);

impl std::hash::Hasher for Fold {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // FxHash-style mixing for anything that is not a plain integer (subjects).
        for chunk in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 ^= v;
    }
    fn write_u128(&mut self, v: u128) {
        self.0 ^= (v as u64) ^ ((v >> 64) as u64);
    }
}

type FoldBuild = std::hash::BuildHasherDefault<Fold>;

/// The aggregate table's key of a subject, worked out on the parallel side: two 64-bit
/// words, each folded from the subject's length and 8-byte words under multipliers drawn
/// at random for this process (see [`multipliers`]). Each step of a fold (xor a word,
/// multiply by an odd key, rotate) is a bijection of its state, so two subjects of one
/// length that differ in a word part with different states, and meet again only if a
/// later pair of words makes up their difference exactly, which depends on keys the log's
/// author never sees. Subjects are told apart by these 128 bits rather than compared as
/// strings (which would cost a second memory read per event).
pub(super) fn subject_key(subject: &str) -> [u64; 2] {
    let k = multipliers();
    let b = subject.as_bytes();
    let len = b.len() as u64;
    let (mut x, mut y) = (k[4] ^ len, k[5] ^ len.rotate_left(32));
    let mut step = |w: u64| {
        x = (x ^ w).wrapping_mul(k[6]).rotate_left(31);
        y = (y ^ w).wrapping_mul(k[7]).rotate_left(27);
    };
    let mut words = b.chunks_exact(8);
    for w in &mut words {
        let mut word = [0u8; 8];
        word.copy_from_slice(w);
        step(u64::from_le_bytes(word));
    }
    let rest = words.remainder();
    let mut word = [0u8; 8];
    word[..rest.len()].copy_from_slice(rest);
    step(u64::from_le_bytes(word));
    [mix(x), mix(y)]
}

/// MurmurHash3's 64-bit finaliser (a bijection that spreads every bit over the word), so
/// the key's top bits place it in the aggregate table evenly.
fn mix(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// Random odd multipliers for this process, so that ids or subjects chosen to collide in
/// the tables cannot be prepared in advance (a log's author could otherwise make every
/// lookup walk a long run of slots, or two aggregates share a key).
fn multipliers() -> &'static [u64; 8] {
    static KEYS: std::sync::OnceLock<[u64; 8]> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| {
        let s = std::collections::hash_map::RandomState::new();
        // Odd, so each multiplication is a bijection of the word.
        std::array::from_fn(|i| s.hash_one(i) | 1)
    })
}

/// Every event id so far, for duplicates: ids and sequences in arrival order, and an
/// open-addressed table of 8-byte slots (a 32-bit fingerprint of the id and its position),
/// so a lookup reads one slot and reads an id only when the fingerprint matches. The
/// sequential pass looks up a whole group of ids before checking them ([`EventIds::touch`]):
/// one independent memory read each, which the processor overlaps.
#[derive(Default)]
pub(super) struct EventIds {
    ids: Vec<u128>,
    seqs: Vec<u64>,
    /// 0 = empty, else `fingerprint << 32 | (position + 1)`.
    slots: Vec<u64>,
    /// Set once more ids arrive than positions fit in 32 bits: later ids are not checked.
    pub(super) full: bool,
}

impl EventIds {
    pub(super) fn reserve(&mut self, n: usize) {
        self.ids.reserve(n);
        self.seqs.reserve(n);
        if self.slots.len() < 2 * n {
            self.rehash((2 * n).next_power_of_two());
        }
    }

    /// The slot an id's probe starts at, and its fingerprint.
    fn place(&self, id: u128) -> (usize, u64) {
        let k = multipliers();
        let (lo, hi) = (id as u64, (id >> 64) as u64);
        let h = lo.wrapping_mul(k[0]) ^ hi.wrapping_mul(k[1]);
        let fingerprint = (lo.wrapping_mul(k[2]) ^ hi.wrapping_mul(k[3])) >> 32;
        // The top bits of a multiplication are its well-mixed ones.
        let bits = self.slots.len().trailing_zeros();
        ((h >> (63 - bits) >> 1) as usize, fingerprint)
    }

    /// Reads the slot `id`'s lookup starts at (the value is of no use: the read brings the
    /// slot into the cache for the lookup that follows).
    pub(super) fn touch(&self, id: u128) -> u64 {
        if self.slots.is_empty() {
            return 0;
        }
        self.slots[self.place(id).0]
    }

    /// Records `id` at `seq`; the sequence it first appeared at, if it is a repeat.
    pub(super) fn insert(&mut self, id: u128, seq: u64) -> Option<u64> {
        if self.full {
            return None;
        }
        if 2 * (self.ids.len() + 1) > self.slots.len() {
            self.rehash((2 * self.slots.len()).max(1024));
        }
        let Ok(position) = u32::try_from(self.ids.len()) else {
            self.full = true;
            return None;
        };
        let (mut i, fingerprint) = self.place(id);
        let mask = self.slots.len() - 1;
        loop {
            let slot = self.slots[i];
            if slot == 0 {
                self.slots[i] = fingerprint << 32 | (u64::from(position) + 1);
                self.ids.push(id);
                self.seqs.push(seq);
                return None;
            }
            let at = (slot & 0xffff_ffff) as usize - 1;
            if slot >> 32 == fingerprint && self.ids[at] == id {
                return Some(self.seqs[at]);
            }
            i = (i + 1) & mask;
        }
    }

    /// Grows the table to `len` slots (a power of two) and places every id again.
    fn rehash(&mut self, len: usize) {
        self.slots = vec![0; len];
        let mask = len - 1;
        for (position, id) in self.ids.iter().enumerate() {
            let (mut i, fingerprint) = self.place(*id);
            while self.slots[i] != 0 {
                i = (i + 1) & mask;
            }
            self.slots[i] = fingerprint << 32 | (position as u64 + 1);
        }
    }
}

/// An aggregate's chain so far.
#[derive(Clone, Copy, Default)]
pub(super) struct Aggregate {
    /// Its subject's key ([`subject_key`]); `[0, 0]` marks an empty slot.
    pub(super) key: [u64; 2],
    /// Its last version.
    pub(super) version: u64,
    /// Its last `Audit-Hash` (`h_0` before its first event).
    pub(super) hash: Hash,
}

/// Every aggregate's chain, in an open-addressed table of 64-byte slots (one cache line
/// each) placed by the subject key's first word, which is already a keyed hash.
#[derive(Default)]
pub(super) struct Aggregates {
    slots: Vec<Aggregate>,
    len: usize,
}

impl Aggregates {
    fn start(&self, key: [u64; 2]) -> usize {
        let bits = self.slots.len().trailing_zeros();
        (key[0] >> (63 - bits) >> 1) as usize
    }

    /// Reads the slot `key`'s lookup starts at (see [`EventIds::touch`]).
    pub(super) fn touch(&self, key: [u64; 2]) -> u64 {
        if self.slots.is_empty() {
            return 0;
        }
        self.slots[self.start(key)].version
    }

    /// The chain of `key`, made with `first` (its `h_0`) when it is new.
    pub(super) fn entry(&mut self, key: [u64; 2], first: impl FnOnce() -> Hash) -> &mut Aggregate {
        // `[0, 0]` marks an empty slot; a subject with that key (a chance of 2^-128) is
        // kept under `[0, 1]` instead.
        let key = if key == [0, 0] { [0, 1] } else { key };
        if 2 * (self.len + 1) > self.slots.len() {
            self.grow();
        }
        let mask = self.slots.len() - 1;
        let mut i = self.start(key);
        while self.slots[i].key != key && self.slots[i].key != [0, 0] {
            i = (i + 1) & mask;
        }
        if self.slots[i].key == [0, 0] {
            self.slots[i] = Aggregate { key, version: 0, hash: first() };
            self.len += 1;
        }
        &mut self.slots[i]
    }

    fn grow(&mut self) {
        let len = (2 * self.slots.len()).max(1024);
        let old = std::mem::replace(&mut self.slots, vec![Aggregate::default(); len]);
        let mask = self.slots.len() - 1;
        for a in old.into_iter().filter(|a| a.key != [0, 0]) {
            let mut i = self.start(a.key);
            while self.slots[i].key != [0, 0] {
                i = (i + 1) & mask;
            }
            self.slots[i] = a;
        }
    }
}

/// The 8-byte prefixes of every hash of the log so far and of its subjects' genesis
/// hashes, asked only when an event fails both checks (to tell a predecessor from another
/// log). Appending is a push; the index is built at the first question and kept after.
#[derive(Default)]
pub(super) struct Known {
    all: Vec<u64>,
    index: Option<HashSet<u64, FoldBuild>>,
}

impl Known {
    pub(super) fn reserve(&mut self, n: usize) {
        self.all.reserve(n);
    }

    pub(super) fn insert(&mut self, h: &Hash) {
        let p = prefix(h);
        self.all.push(p);
        if let Some(i) = &mut self.index {
            i.insert(p);
        }
    }

    pub(super) fn contains(&mut self, h: &Hash) -> bool {
        let all = &self.all;
        self.index.get_or_insert_with(|| all.iter().copied().collect()).contains(&prefix(h))
    }
}

fn prefix(h: &Hash) -> u64 {
    u64::from_le_bytes([h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]])
}

/// A subject carried from the parallel side to the sequential one: inline when it is
/// short, as subjects are (no allocation per event), boxed otherwise.
#[derive(Debug)]
pub(super) enum Subject {
    Inline(u8, [u8; 64]),
    Boxed(Box<str>),
}

impl Default for Subject {
    fn default() -> Self {
        Self::Inline(0, [0; 64])
    }
}

impl Subject {
    /// Holds `s` instead, in place when it is short.
    pub(super) fn set(&mut self, s: &str) {
        match self {
            Self::Inline(len, b) if s.len() <= b.len() => {
                b[..s.len()].copy_from_slice(s.as_bytes());
                *len = s.len() as u8;
            }
            _ => *self = Self::new(s),
        }
    }

    pub(super) fn new(s: &str) -> Self {
        match u8::try_from(s.len()) {
            Ok(len) if s.len() <= 64 => {
                let mut b = [0; 64];
                b[..s.len()].copy_from_slice(s.as_bytes());
                Self::Inline(len, b)
            }
            _ => Self::Boxed(s.into()),
        }
    }

    pub(super) fn as_str(&self) -> &str {
        match self {
            // Copied from a `str`, so always UTF-8.
            Self::Inline(len, b) => std::str::from_utf8(&b[..usize::from(*len)]).unwrap_or_default(),
            Self::Boxed(s) => s,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{format_uuid, parse_uuid, subject_key};

    /// Every pair of distinct subjects among many similar ones has distinct keys (and
    /// each key's two words differ).
    #[test]
    fn similar_subjects_have_distinct_keys() {
        let mut subjects = vec![String::new()];
        for n in 0..3000 {
            subjects.push(format!("covenant.events.country.{n}"));
            subjects.push(format!("covenant.events.user.{n:036}"));
            subjects.push("x".repeat(n % 70));
            subjects.push(format!("{}\0", "x".repeat(n % 70)));
        }
        subjects.sort();
        subjects.dedup();
        let mut keys: Vec<[u64; 2]> = subjects.iter().map(|s| subject_key(s)).collect();
        assert!(keys.iter().all(|k| k[0] != k[1]));
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), subjects.len());
        assert_eq!(subject_key("covenant.events.country.US"), subject_key("covenant.events.country.US"));
    }

    #[test]
    fn uuids_read_as_numbers_and_back() {
        for text in [
            "a0395e41-7799-44ba-90fa-59854627b6d9",
            "00000000-0000-0000-0000-000000000000",
            "FFFFFFFF-ffff-FfFf-0123-456789abcdef",
        ] {
            let v = parse_uuid(text).expect("a UUID");
            assert_eq!(v, u128::from_str_radix(&text.replace('-', ""), 16).expect("hex"));
            assert_eq!(format_uuid(v), text.to_ascii_lowercase());
        }
        let good = "a0395e41-7799-44ba-90fa-59854627b6d9";
        for (i, c) in good.char_indices() {
            for bad in ['g', 'G', '-', ' ', '/', ':', '@', '`', 'z'] {
                if bad == c {
                    continue;
                }
                let mut t = good.to_owned();
                t.replace_range(i..=i, &bad.to_string());
                assert_eq!(parse_uuid(&t), None, "{t}");
            }
        }
        for bad in ["", "a0395e41779944ba90fa59854627b6d9", &format!("{good}0"), &good[1..]] {
            assert_eq!(parse_uuid(bad), None, "{bad}");
        }
    }
}

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
    let b = s.as_bytes();
    if b.len() != 36 || b[8] != b'-' || b[13] != b'-' || b[18] != b'-' || b[23] != b'-' {
        return None;
    }
    let (mut v, mut bad) = (0u128, 0u8);
    for (i, c) in b.iter().enumerate() {
        if matches!(i, 8 | 13 | 18 | 23) {
            continue;
        }
        let d = HEX[usize::from(*c)];
        bad |= d;
        v = (v << 4) | u128::from(d & 0x0f);
    }
    (bad & 0xf0 == 0).then_some(v)
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

/// The aggregate table's key of a subject, worked out on the parallel side: two SipHash
/// values under keys drawn at random for this process (std's `RandomState`). Subjects are
/// told apart by these 128 bits rather than compared as strings (which would cost a
/// second memory read per event); finding two subjects with one key would take a
/// SipHash collision under keys the log's author never sees.
pub(super) fn subject_key(subject: &str) -> [u64; 2] {
    static KEYS: std::sync::OnceLock<[std::collections::hash_map::RandomState; 2]> = std::sync::OnceLock::new();
    let keys = KEYS.get_or_init(Default::default);
    keys.each_ref().map(|k| k.hash_one(subject))
}

/// Every event id so far, for duplicates: ids and sequences in arrival order, and a table
/// of their positions (4 bytes a slot, so it stays in cache where a map of ids would not).
#[derive(Default)]
pub(super) struct EventIds {
    ids: Vec<u128>,
    seqs: Vec<u64>,
    table: hashbrown::HashTable<u32>,
    /// Set once more ids arrive than positions fit in 32 bits: later ids are not checked.
    pub(super) full: bool,
}

impl EventIds {
    pub(super) fn reserve(&mut self, n: usize) {
        self.ids.reserve(n);
        self.seqs.reserve(n);
        self.table.reserve(n, |_| 0);
    }

    /// Where `id` was first recorded, if it was.
    pub(super) fn seen(&self, id: u128) -> Option<u32> {
        let hash = (id as u64) ^ ((id >> 64) as u64);
        self.table.find(hash, |&i| self.ids[i as usize] == id).copied()
    }

    /// Records `id` at `seq`; the sequence it first appeared at, if it is a repeat.
    pub(super) fn insert(&mut self, id: u128, seq: u64) -> Option<u64> {
        let hash = (id as u64) ^ ((id >> 64) as u64);
        if let Some(at) = self.seen(id) {
            return Some(self.seqs[at as usize]);
        }
        let Ok(at) = u32::try_from(self.ids.len()) else {
            self.full = true;
            return None;
        };
        self.ids.push(id);
        self.seqs.push(seq);
        let ids = &self.ids;
        self.table.insert_unique(hash, at, |&i| {
            let id = ids[i as usize];
            (id as u64) ^ ((id >> 64) as u64)
        });
        None
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

impl Subject {
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

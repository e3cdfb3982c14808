//! The GraphQL guard's document cache under the densest documents there are, in a process
//! of its own: the test reads the process's resident memory, which tests running beside it
//! would move.

use async_graphql::Variables;
use covenant_api::guard::{BOUNDS, parse_checked};

/// The process's resident memory, in bytes (Linux).
fn resident() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    statm.split_whitespace().nth(1).and_then(|p| p.parse::<u64>().ok()).expect("resident pages") * 4096
}

/// 500 distinct documents of 1,200 one-letter fields (2.4 KB of text, about 250 KB once
/// parsed, refused by the field bound after the parse and kept all the same) leave the
/// process within the cache's 32 MiB bound and some slack. Weighed by their text alone
/// (2 MiB of it), the cache grew the process by 126 MB under this test; weighed as parsed,
/// by 28 MB.
#[test]
fn dense_documents_keep_the_cache_within_its_memory_bound() {
    let before = resident();
    let fields = "a ".repeat(1200);
    for i in 0..500 {
        let refused = parse_checked(&format!("{{ {fields} }} # {i}"), &Variables::default(), &BOUNDS);
        assert!(refused.is_err(), "over the field bound");
    }
    let grown = resident().saturating_sub(before);
    assert!(grown < 64 << 20, "the process grew {} MB", grown >> 20);
}

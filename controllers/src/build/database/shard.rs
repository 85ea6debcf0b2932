//! The shard rule applications use to route a key to a database shard.
//!
//! Contract: pure, stable forever (changing it moves data). `shard = jump(fnv1a64(utf8(key)),
//! shards)`: FNV-1a 64 of the key's UTF-8 bytes, then Lamport and Veach's jump consistent hash
//! into `shards` buckets. `docs/sharding.md` holds the rule, reference implementations and test
//! vectors; a test here checks the Rust implementation against that table.

/// FNV-1a 64 offset basis.
pub const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
/// FNV-1a 64 prime.
pub const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
/// Multiplier of the jump hash's linear congruential step.
pub const JUMP_MULTIPLIER: u64 = 2_862_933_555_777_941_757;
/// Name of the rule, published in the shard map ConfigMap (`hash`).
pub const RULE: &str = "jump-fnv1a64";

/// FNV-1a 64 of `bytes`.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(FNV_OFFSET_BASIS, |hash, b| (hash ^ u64::from(*b)).wrapping_mul(FNV_PRIME))
}

/// Jump consistent hash of `key` into `buckets` buckets (0-based); `buckets` 0 is read as 1.
pub fn jump(mut key: u64, buckets: u32) -> u32 {
    let buckets = i64::from(buckets.max(1));
    let (mut b, mut j) = (-1_i64, 0_i64);
    while j < buckets {
        b = j;
        key = key.wrapping_mul(JUMP_MULTIPLIER).wrapping_add(1);
        // The reference computes in IEEE doubles and truncates; so do Python, Go and Java ports.
        j = ((b + 1) as f64 * ((1_u64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    u32::try_from(b).unwrap_or(0)
}

/// The shard (0-based) of `key` among `shards` shards (`shards` 0 is read as 1).
pub fn shard_for(key: &str, shards: u32) -> u32 {
    jump(fnv1a64(key.as_bytes()), shards)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test-vector table of docs/sharding.md: rows `| "key" | s1 | s2 | s4 | s16 | s256 |`.
    fn doc_vectors() -> Vec<(String, Vec<u32>)> {
        let doc = include_str!("../../../../docs/sharding.md");
        let section = doc.split("## Test vectors").nth(1).expect("docs/sharding.md has a Test vectors section");
        section
            .lines()
            .filter(|l| l.starts_with("| \""))
            .map(|line| {
                let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
                let key: String = serde_json::from_str(cells[0]).expect("key cell is a JSON string");
                let shards = cells[1..].iter().map(|c| c.parse().expect("shard cell is a number")).collect();
                (key, shards)
            })
            .collect()
    }

    #[test]
    fn fnv1a64_matches_published_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn shard_for_matches_the_documented_test_vectors() {
        let vectors = doc_vectors();
        assert!(vectors.len() >= 10, "docs/sharding.md lists {} vectors", vectors.len());
        for (key, expected) in vectors {
            let got: Vec<u32> = [1, 2, 4, 16, 256].iter().map(|n| shard_for(&key, *n)).collect();
            assert_eq!(got, expected, "key {key:?}");
        }
    }

    #[test]
    fn shards_stay_in_range_and_growth_moves_few_keys() {
        let keys: Vec<String> = (0..4000).map(|i| format!("customer:{i}")).collect();
        for n in [1_u32, 2, 3, 7, 16, 256] {
            assert!(keys.iter().all(|k| shard_for(k, n) < n));
        }
        assert_eq!(shard_for("x", 0), 0);
        // Jump hash: going from 8 to 9 shards moves about 1/9 of the keys, all onto shard 8.
        let moved: Vec<&String> = keys.iter().filter(|k| shard_for(k, 8) != shard_for(k, 9)).collect();
        assert!(moved.iter().all(|k| shard_for(k, 9) == 8));
        assert!((300..600).contains(&moved.len()), "{} of 4000 moved", moved.len());
        // Roughly uniform: every one of 16 shards gets 250 ± 30%.
        let mut counts = [0_u32; 16];
        keys.iter().for_each(|k| counts[shard_for(k, 16) as usize] += 1);
        assert!(counts.iter().all(|c| (175..=325).contains(c)), "{counts:?}");
    }
}

//! Maglev lookup tables (Eisenbud et al., "Maglev: A Fast and Reliable Software Network Load
//! Balancer", NSDI 2016, §3.4), weighted, computed in user space for the `mh` scheduler.
//!
//! Each real has a permutation of the table's positions, `(offset + j · skip) mod M`, from two
//! hashes of its identity (address and port). Reals take turns claiming their next free
//! preferred position until the table is full. The table size `M` is a prime
//! ([`lb_common::lb::SLOTS_PER_SERVICE`], 4093) so every skip in `1..M` visits every position.
//!
//! Weights follow Katran's weighted Maglev: in each round every real adds its weight to a
//! running credit and claims a position whenever the credit reaches the largest weight, so a
//! real's share is its weight over the sum, to within a position.
//!
//! Properties the tests hold it to: with equal weights every real gets `M/N` positions to
//! within one; adding or removing one real moves little more than the `1/N` of positions it
//! gains or loses; the table depends only on the reals' identities and weights (not on their
//! order nor on the Rust version: the hash is defined here), so two load balancers, or one
//! before and after a restart, compute the same table.

use super::sched::Candidate;

/// The Maglev table of `size` entries (a prime) for `reals`, as real ids. Empty when no real
/// has a weight.
pub fn table(reals: &[Candidate], size: u32) -> Vec<u32> {
    let mut reals: Vec<&Candidate> = reals.iter().filter(|c| c.weight > 0).collect();
    if reals.is_empty() || size == 0 {
        return Vec::new();
    }
    // Order-independent: turns are taken in identity order.
    reals.sort_by_key(|c| (identity(c), c.id));
    let m = u64::from(size);
    let permutations: Vec<(u64, u64)> = reals
        .iter()
        .map(|c| {
            let key = identity(c);
            let offset = hash(OFFSET_SEED, &key) % m;
            let skip = if m > 1 { hash(SKIP_SEED, &key) % (m - 1) + 1 } else { 1 };
            (offset, skip)
        })
        .collect();
    let weights: Vec<u64> = reals.iter().map(|c| u64::from(c.weight)).collect();
    let max_weight = weights.iter().copied().max().unwrap_or(1);

    const EMPTY: usize = usize::MAX;
    let mut owner = vec![EMPTY; size as usize];
    let mut next = vec![0u64; reals.len()];
    let mut credit = vec![0u64; reals.len()];
    let mut filled: u64 = 0;
    // Terminates: the heaviest real claims a position every round, and a real always finds a
    // free position within M steps of its permutation while the table is not full.
    'fill: loop {
        for (i, &(offset, skip)) in permutations.iter().enumerate() {
            credit[i] += weights[i];
            if credit[i] < max_weight {
                continue;
            }
            credit[i] -= max_weight;
            loop {
                let position = ((offset + next[i] * skip) % m) as usize;
                next[i] += 1;
                if owner[position] == EMPTY {
                    owner[position] = i;
                    break;
                }
            }
            filled += 1;
            if filled == m {
                break 'fill;
            }
        }
    }
    owner.into_iter().map(|i| reals[i].id).collect()
}

const OFFSET_SEED: u64 = 0x6c62_645f_6f66_6673; // "lbd_offs"
const SKIP_SEED: u64 = 0x6c62_645f_736b_6970; // "lbd_skip"

/// What a real's permutation derives from: its address (16 bytes, IPv4 in the first four) and
/// port, big-endian.
fn identity(c: &Candidate) -> [u8; 18] {
    let mut key = [0u8; 18];
    match c.addr {
        std::net::IpAddr::V4(a) => key[..4].copy_from_slice(&a.octets()),
        std::net::IpAddr::V6(a) => key[..16].copy_from_slice(&a.octets()),
    }
    key[16..].copy_from_slice(&c.port.to_be_bytes());
    key
}

/// FNV-1a over the seed and the bytes, finished with MurmurHash3's 64-bit mixer: fixed here so
/// that tables never change with the toolchain.
fn hash(seed: u64, bytes: &[u8]) -> u64 {
    const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = FNV_OFFSET;
    for byte in seed.to_le_bytes().iter().chain(bytes) {
        h ^= u64::from(*byte);
        h = h.wrapping_mul(FNV_PRIME);
    }
    fmix64(h)
}

fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^= k >> 33;
    k
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    use lb_common::lb::SLOTS_PER_SERVICE;

    use super::*;

    const M: u32 = SLOTS_PER_SERVICE;

    fn real(n: u32, weight: u32) -> Candidate {
        Candidate { id: n, weight, addr: IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n)), port: 8080 }
    }

    fn reals(n: u32) -> Vec<Candidate> {
        (1..=n).map(|i| real(i, 1)).collect()
    }

    fn count(table: &[u32], id: u32) -> usize {
        table.iter().filter(|&&r| r == id).count()
    }

    fn moved(a: &[u32], b: &[u32]) -> usize {
        a.iter().zip(b).filter(|(x, y)| x != y).count()
    }

    #[test]
    fn equal_weights_are_balanced_to_one_entry() {
        for n in [1, 2, 3, 7, 10, 50, 100] {
            let table = table(&reals(n), M);
            assert_eq!(table.len(), M as usize);
            let counts: Vec<usize> = (1..=n).map(|id| count(&table, id)).collect();
            let (min, max) = (counts.iter().min().unwrap_or(&0), counts.iter().max().unwrap_or(&0));
            assert!(max - min <= 1, "{n} reals: {min}..{max}");
        }
    }

    #[test]
    fn weights_set_the_shares() {
        let reals = [real(1, 1), real(2, 2), real(3, 3), real(4, 10)];
        let table = table(&reals, M);
        let total: u32 = reals.iter().map(|r| r.weight).sum();
        for r in &reals {
            let expected = f64::from(M) * f64::from(r.weight) / f64::from(total);
            let got = count(&table, r.id) as f64;
            assert!((got - expected).abs() / expected < 0.03, "real {}: {got} vs {expected}", r.id);
        }
    }

    #[test]
    fn removing_a_real_moves_about_its_share() {
        let n = 20;
        let before = table(&reals(n), M);
        let after = table(&reals(n - 1), M);
        let lost = count(&before, n);
        let changed = moved(&before, &after);
        // Its own positions move necessarily; Maglev moves a few more (the paper's figure 9).
        assert!(changed >= lost);
        let minimal = f64::from(M) / f64::from(n);
        assert!((changed as f64) < 1.5 * minimal, "{changed} moved, minimal {minimal}");
    }

    #[test]
    fn adding_a_real_moves_about_its_share() {
        let n = 20;
        let before = table(&reals(n), M);
        let after = table(&reals(n + 1), M);
        let changed = moved(&before, &after);
        let minimal = f64::from(M) / f64::from(n + 1);
        assert!((changed as f64) < 1.5 * minimal, "{changed} moved, minimal {minimal}");
        // Whatever moved went to the new real, mostly.
        let to_new = before.iter().zip(&after).filter(|(x, y)| x != y && **y == n + 1).count();
        assert!(to_new as f64 > 0.7 * changed as f64, "{to_new} of {changed}");
    }

    #[test]
    fn a_weight_change_moves_little() {
        let mut changed_reals = reals(10);
        let before = table(&changed_reals, M);
        changed_reals[3].weight = 2;
        let after = table(&changed_reals, M);
        // Real 4 goes from 1/10 to 2/11 of the table: it gains about 8% of the positions.
        let changed = moved(&before, &after) as f64 / f64::from(M);
        assert!(changed < 0.15, "{changed}");
    }

    #[test]
    fn the_table_depends_on_identities_not_order() {
        let mut reversed = reals(10);
        reversed.reverse();
        assert_eq!(table(&reals(10), M), table(&reversed, M));
    }

    #[test]
    fn the_table_is_stable_across_builds() {
        // Pinned values: if these change, every deployed table changes with the upgrade.
        assert_eq!(hash(OFFSET_SEED, b"lbd"), PINNED_HASH);
        let table = table(&reals(3), M);
        assert_eq!(&table[..8], &PINNED_PREFIX);
    }

    const PINNED_HASH: u64 = 0x051d_f2de_bef8_8fc3;

    const PINNED_PREFIX: [u32; 8] = [2, 1, 2, 1, 2, 2, 1, 3];

    #[test]
    fn ipv6_and_ports_are_part_of_the_identity() {
        let v6 =
            |port| Candidate { id: u32::from(port), weight: 1, addr: IpAddr::V6(Ipv6Addr::LOCALHOST), port };
        let table = table(&[v6(1), v6(2)], M);
        let ones = count(&table, 1);
        assert!(ones.abs_diff(count(&table, 2)) <= 1);
    }

    #[test]
    fn no_weight_no_table() {
        assert!(table(&[real(1, 0)], M).is_empty());
        assert!(table(&[], M).is_empty());
    }
}

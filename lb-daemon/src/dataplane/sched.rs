//! Scheduling slot rows: the array of real ids the XDP program indexes for each new flow.
//!
//! The program never weighs servers itself (Katran's split: heavy work in user space, an array
//! index in the kernel). Per scheduler, a service's row holds (`slots_len` = the row's length):
//! - `rr`: every available real once; the program takes `row[c % len]` with a per-CPU counter.
//! - `wrr`: IPVS's weighted round-robin sequence (`ip_vs_wrr.c`): the current weight steps down
//!   by the weights' gcd and every real whose weight reaches it is picked, so reals are
//!   interleaved, not bunched. One period has `Σ weight / gcd` entries; when that exceeds
//!   [`SLOTS_PER_SERVICE`] the weights are scaled down in proportion first.
//! - `sh`, `dh`: a weighted ring of exactly [`SLOTS_PER_SERVICE`] (4093, prime) entries, each
//!   real holding a block of entries in proportion to its weight (largest remainder, at least
//!   one each), as IPVS's `ip_vs_sh.c` fills its 256 buckets. A prime length spreads hash values
//!   that share a factor with it. The program takes `row[hash % len]`.
//! - `mh`: the Maglev lookup table of [`SLOTS_PER_SERVICE`] entries ([`super::maglev`]).
//! - `lc`, `wlc`, `lblc`: every available real once, at most [`MAX_LC_SCAN`]; the program
//!   scans them with their active-connection counters.
//!
//! Only reals that can take new flows (weight above 0, and for TUN a known tunnel source) are
//! given to the builders; an empty row means none is available (the program then uses the
//! sorry server, or drops).

use std::{cmp::Ordering, net::IpAddr};

use lb_common::lb::{MAX_LC_SCAN, SLOTS_PER_SERVICE, Scheduler};

use super::{Algorithm, maglev};

/// A real server that can take new flows, as the row builders see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// Its id (what the row holds).
    pub id: u32,
    /// Its weight (above 0).
    pub weight: u32,
    /// Its address: with the port, its identity for Maglev's permutation.
    pub addr: IpAddr,
    /// Its port.
    pub port: u16,
}

/// A built row.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Row {
    /// Real ids; `slots_len` is its length.
    pub slots: Vec<u32>,
    /// How many of the candidates it could hold (less than given when truncated).
    pub used: usize,
}

/// The XDP program's scheduler for an algorithm.
pub const fn scheduler(algorithm: Algorithm) -> Scheduler {
    match algorithm {
        Algorithm::RoundRobin | Algorithm::WeightedRoundRobin => Scheduler::RoundRobin,
        Algorithm::LeastConnection => Scheduler::LeastConn,
        Algorithm::WeightedLeastConnection => Scheduler::WeightedLeastConn,
        Algorithm::SourceHashing => Scheduler::SourceHash,
        Algorithm::DestinationHashing => Scheduler::DestinationHash,
        Algorithm::LocalityBasedLeastConnection => Scheduler::LocalityLeastConn,
        Algorithm::MaglevHashing => Scheduler::Maglev,
    }
}

/// Most candidates a row of `algorithm` can hold.
pub const fn capacity(algorithm: Algorithm) -> usize {
    match algorithm {
        Algorithm::LeastConnection
        | Algorithm::WeightedLeastConnection
        | Algorithm::LocalityBasedLeastConnection => MAX_LC_SCAN as usize,
        _ => SLOTS_PER_SERVICE as usize,
    }
}

/// The row of `algorithm` for `candidates`, in the order given (the caller sorts them by
/// address so that the row does not depend on the order of the configuration). Candidates of
/// weight 0 are left out; those beyond [`capacity`] too.
pub fn build(algorithm: Algorithm, candidates: &[Candidate]) -> Row {
    let available: Vec<Candidate> = candidates.iter().copied().filter(|c| c.weight > 0).collect();
    let used = available.len().min(capacity(algorithm));
    let reals = &available[..used];
    let slots = match algorithm {
        Algorithm::RoundRobin
        | Algorithm::LeastConnection
        | Algorithm::WeightedLeastConnection
        | Algorithm::LocalityBasedLeastConnection => reals.iter().map(|c| c.id).collect(),
        Algorithm::WeightedRoundRobin => weighted_round_robin(reals),
        Algorithm::SourceHashing | Algorithm::DestinationHashing => weighted_ring(reals, SLOTS_PER_SERVICE),
        Algorithm::MaglevHashing => maglev::table(reals, SLOTS_PER_SERVICE),
    };
    Row { slots, used }
}

/// IPVS's wrr sequence (`ip_vs_wrr_schedule`), one period, at most [`SLOTS_PER_SERVICE`] long.
pub fn weighted_round_robin(reals: &[Candidate]) -> Vec<u32> {
    let weights: Vec<u64> = reals.iter().map(|c| u64::from(c.weight)).collect();
    let mut turns = reduce(&weights);
    if turns.iter().sum::<u64>() > u64::from(SLOTS_PER_SERVICE) {
        turns = reduce(&apportion(&weights, u64::from(SLOTS_PER_SERVICE)));
    }
    let Some(&max) = turns.iter().max() else { return Vec::new() };
    let gcd = turns.iter().copied().fold(0, gcd);
    let period: u64 = turns.iter().map(|t| t / gcd).sum();
    let mut row = Vec::with_capacity(usize::try_from(period).unwrap_or(0));
    // As the kernel: start before the first real with current weight 0; stepping onto the
    // first real lowers the current weight by the gcd, wrapping to the maximum.
    let mut current: u64 = 0;
    let mut i = turns.len() - 1;
    while (row.len() as u64) < period {
        i = (i + 1) % turns.len();
        if i == 0 {
            current = current.saturating_sub(gcd);
            if current == 0 {
                current = max;
            }
        }
        if turns[i] >= current {
            row.push(reals[i].id);
        }
    }
    row
}

/// A ring of `len` entries where each real holds a block in proportion to its weight.
pub fn weighted_ring(reals: &[Candidate], len: u32) -> Vec<u32> {
    let weights: Vec<u64> = reals.iter().map(|c| u64::from(c.weight)).collect();
    let counts = apportion(&weights, u64::from(len));
    let mut row = Vec::with_capacity(len as usize);
    for (real, count) in reals.iter().zip(counts) {
        row.extend(std::iter::repeat_n(real.id, usize::try_from(count).unwrap_or(0)));
    }
    row
}

/// Splits `total` into shares proportional to `weights` (largest remainder), each at least 1,
/// summing exactly to `total`. Needs `weights.len() <= total` and every weight above 0 (an
/// empty split otherwise).
pub fn apportion(weights: &[u64], total: u64) -> Vec<u64> {
    let n = weights.len() as u64;
    let sum: u128 = weights.iter().map(|&w| u128::from(w)).sum();
    if n == 0 || n > total || sum == 0 || weights.contains(&0) {
        return Vec::new();
    }
    let total128 = u128::from(total);
    // The exact quota of i is total * w_i / sum; compare shortfalls `quota - count` through
    // their numerators `total * w_i - count * sum`, in i128 to stay exact.
    let quota_num = |i: usize| (total128 * u128::from(weights[i])) as i128;
    let mut counts: Vec<u64> =
        weights.iter().map(|&w| ((total128 * u128::from(w) / sum) as u64).max(1)).collect();
    let shortfall = |counts: &[u64], i: usize| quota_num(i) - i128::from(counts[i]) * sum as i128;
    let mut assigned: u64 = counts.iter().sum();
    while assigned < total {
        let i = (0..counts.len())
            .max_by(|&a, &b| shortfall(&counts, a).cmp(&shortfall(&counts, b)).then(b.cmp(&a)))
            .unwrap_or(0);
        counts[i] += 1;
        assigned += 1;
    }
    while assigned > total {
        // Raising shares to 1 overshot: take back from the most over-served share above 1.
        let Some(i) = (0..counts.len()).filter(|&i| counts[i] > 1).min_by(|&a, &b| {
            match shortfall(&counts, a).cmp(&shortfall(&counts, b)) {
                Ordering::Equal => b.cmp(&a),
                other => other,
            }
        }) else {
            break;
        };
        counts[i] -= 1;
        assigned -= 1;
    }
    counts
}

/// Weights divided by their gcd.
fn reduce(weights: &[u64]) -> Vec<u64> {
    let g = weights.iter().copied().fold(0, gcd);
    if g == 0 {
        return weights.to_vec();
    }
    weights.iter().map(|w| w / g).collect()
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn candidates(weights: &[u32]) -> Vec<Candidate> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &weight)| Candidate {
                id: i as u32 + 1,
                weight,
                addr: IpAddr::V4(Ipv4Addr::from(0x0a00_0001 + i as u32)),
                port: 80,
            })
            .collect()
    }

    fn count(row: &[u32], id: u32) -> usize {
        row.iter().filter(|&&r| r == id).count()
    }

    #[test]
    fn round_robin_lists_available_reals_once() {
        let row = build(Algorithm::RoundRobin, &candidates(&[1, 0, 5]));
        assert_eq!(row.slots, vec![1, 3]);
        assert_eq!(row.used, 2);
    }

    #[test]
    fn wrr_matches_the_ipvs_sequence() {
        // ip_vs_wrr with weights 4, 3, 2: cw 4 → A; cw 3 → A B; cw 2 → A B C; cw 1 → A B C.
        let row = weighted_round_robin(&candidates(&[4, 3, 2]));
        assert_eq!(row, vec![1, 1, 2, 1, 2, 3, 1, 2, 3]);
    }

    #[test]
    fn wrr_divides_by_the_gcd_and_keeps_proportions() {
        let row = weighted_round_robin(&candidates(&[100, 200, 300]));
        assert_eq!(row, vec![3, 2, 3, 1, 2, 3]);
        let row = weighted_round_robin(&candidates(&[5, 5]));
        assert_eq!(row, vec![1, 2]);
    }

    #[test]
    fn wrr_gives_each_real_its_weight_per_period() {
        let row = weighted_round_robin(&candidates(&[1, 1, 10]));
        assert_eq!(row.len(), 12);
        assert_eq!((count(&row, 1), count(&row, 2), count(&row, 3)), (1, 1, 10));
        // As IPVS: the heavy real alone while the current weight is above the others'.
        assert_eq!(row, [vec![3; 9], vec![1, 2, 3]].concat());
    }

    #[test]
    fn wrr_scales_large_weights_into_the_row() {
        let row = weighted_round_robin(&candidates(&[1_000_000, 2_000_001, 1]));
        assert!(row.len() <= SLOTS_PER_SERVICE as usize, "{}", row.len());
        let (a, b, c) = (count(&row, 1), count(&row, 2), count(&row, 3));
        assert!(c >= 1, "every available real keeps a slot");
        let ratio = b as f64 / a as f64;
        assert!((ratio - 2.0).abs() < 0.01, "b/a = {ratio}");
    }

    #[test]
    fn hash_ring_is_full_and_weighted() {
        let row = build(Algorithm::SourceHashing, &candidates(&[1, 2, 3, 0]));
        assert_eq!(row.slots.len(), SLOTS_PER_SERVICE as usize);
        let total = SLOTS_PER_SERVICE as f64;
        for (id, weight) in [(1, 1.0), (2, 2.0), (3, 3.0)] {
            let share = count(&row.slots, id) as f64 / total;
            assert!((share - weight / 6.0).abs() < 0.001, "real {id}: {share}");
        }
        assert_eq!(count(&row.slots, 4), 0);
        assert_eq!(build(Algorithm::DestinationHashing, &candidates(&[1, 2, 3, 0])), row);
    }

    #[test]
    fn apportion_is_exact_and_gives_everyone_a_share() {
        assert_eq!(apportion(&[1, 1, 1], 10), vec![4, 3, 3]);
        assert_eq!(apportion(&[1, 1_000_000], 10), vec![1, 9]);
        let shares = apportion(&[3, 5, 7, 11], 4093);
        assert_eq!(shares.iter().sum::<u64>(), 4093);
        assert!(apportion(&[1, 2], 1).is_empty());
        assert!(apportion(&[], 10).is_empty());
    }

    #[test]
    fn least_connection_rows_hold_at_most_the_scan_limit() {
        let scan = MAX_LC_SCAN as usize;
        let row = build(Algorithm::WeightedLeastConnection, &candidates(&vec![1; scan]));
        assert_eq!(row.slots, (1..=MAX_LC_SCAN).collect::<Vec<_>>());
        let row = build(Algorithm::LeastConnection, &candidates(&vec![1; scan + 3]));
        assert_eq!(row.slots.len(), scan);
        assert_eq!(row.used, scan);
        let row = build(Algorithm::LocalityBasedLeastConnection, &candidates(&vec![1; scan + 3]));
        assert_eq!(row.slots.len(), scan);
    }

    #[test]
    fn no_available_real_gives_an_empty_row() {
        for (_, algorithm) in Algorithm::ALL {
            assert!(build(algorithm, &candidates(&[0, 0])).slots.is_empty(), "{algorithm:?}");
            assert!(build(algorithm, &[]).slots.is_empty(), "{algorithm:?}");
        }
    }
}

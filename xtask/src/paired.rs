//! Paired comparisons for the benches: the median of the differences between two programs
//! measured in the same runs, with a distribution-free confidence interval for it (the sign
//! test's order-statistic interval: under no assumption but independent runs, the interval
//! between the k-th smallest and the k-th largest difference covers the true median with
//! probability `1 − 2 × P(Binomial(n, ½) < k)`).

/// The median of paired differences and its confidence interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PairedMedian {
    /// Number of pairs.
    pub n: usize,
    /// Median of the differences.
    pub median: f64,
    /// The interval (lower, upper) and its exact coverage, or `None` when there are too few
    /// pairs for the confidence asked (fewer than 6 for 95 %).
    pub interval: Option<(f64, f64, f64)>,
}

/// Where the interval puts the first program against the second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The whole interval is above zero: slower.
    Slower,
    /// The interval contains zero: no difference shown.
    NoDifference,
    /// The whole interval is below zero: faster.
    Faster,
    /// Too few pairs for an interval.
    TooFew,
}

impl PairedMedian {
    /// `a[i] − b[i]` for each pair, summarised with an interval of at least `confidence`.
    pub fn of(a: &[f64], b: &[f64], confidence: f64) -> Self {
        let mut differences: Vec<f64> = a.iter().zip(b).map(|(a, b)| a - b).collect();
        differences.sort_by(f64::total_cmp);
        let n = differences.len();
        let median = match n {
            0 => f64::NAN,
            _ if n % 2 == 1 => differences[n / 2],
            _ => (differences[n / 2 - 1] + differences[n / 2]) / 2.0,
        };
        let interval = order_statistic(n, confidence)
            .map(|(k, coverage)| (differences[k - 1], differences[n - k], coverage));
        PairedMedian { n, median, interval }
    }

    /// Slower, faster or neither, by the interval.
    pub fn verdict(&self) -> Verdict {
        match self.interval {
            None => Verdict::TooFew,
            Some((low, _, _)) if low > 0.0 => Verdict::Slower,
            Some((_, high, _)) if high < 0.0 => Verdict::Faster,
            Some(_) => Verdict::NoDifference,
        }
    }
}

/// The largest k (1-based) such that the interval between the k-th smallest and the k-th
/// largest of `n` values covers the median with probability at least `confidence`, with that
/// probability; `None` if even k = 1 does not.
pub fn order_statistic(n: usize, confidence: f64) -> Option<(usize, f64)> {
    let mut best = None;
    // P(Binomial(n, ½) ≤ j), summed in log space so that large n does not underflow.
    let mut log_pmf = -(n as f64) * std::f64::consts::LN_2;
    let mut below = 0.0;
    for k in 1..=n.div_ceil(2) {
        // below = P(B ≤ k − 1).
        below += log_pmf.exp();
        let coverage = 1.0 - 2.0 * below;
        if coverage < confidence {
            break;
        }
        best = Some((k, coverage));
        let j = (k - 1) as f64;
        log_pmf += ((n as f64 - j) / (j + 1.0)).ln();
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_statistics_match_the_binomial_tables() {
        // Known sign-test intervals at 95 %: n = 6..8 → k = 1; n = 9..11 → 2; n = 20 → 6;
        // n = 30 → 10 (coverage 1 − 2·P(B ≤ k − 1)).
        assert_eq!(order_statistic(5, 0.95), None);
        let (k, coverage) = order_statistic(6, 0.95).unwrap_or_else(|| panic!("n = 6 has an interval"));
        assert_eq!(k, 1);
        assert!((coverage - (1.0 - 2.0 / 64.0)).abs() < 1e-12);
        assert_eq!(order_statistic(8, 0.95).map(|(k, _)| k), Some(1));
        assert_eq!(order_statistic(9, 0.95).map(|(k, _)| k), Some(2));
        assert_eq!(order_statistic(11, 0.95).map(|(k, _)| k), Some(2));
        let (k, coverage) = order_statistic(20, 0.95).unwrap_or_else(|| panic!("n = 20"));
        assert_eq!(k, 6);
        // 1 − 2 × 0.020695 (P(B(20, ½) ≤ 5) = 21700 / 2^20).
        assert!((coverage - (1.0 - 2.0 * 21_700.0 / 1_048_576.0)).abs() < 1e-9);
        assert_eq!(order_statistic(30, 0.95).map(|(k, _)| k), Some(10));
        // Large n neither underflows nor panics: k near n/2 − 0.98·√n.
        let (k, _) = order_statistic(2000, 0.95).unwrap_or_else(|| panic!("n = 2000"));
        assert!((955..=960).contains(&k), "k = {k}");
    }

    #[test]
    fn paired_median_and_interval() {
        let a = [10.0, 11.0, 12.0, 13.0, 14.0, 15.0, 16.0, 17.0, 18.0];
        let b = [9.5, 10.0, 12.5, 12.0, 13.0, 14.5, 15.0, 18.0, 16.0];
        // Differences sorted: −1, −0.5, 0.5, 0.5, 1, 1, 1, 1, 2.
        let paired = PairedMedian::of(&a, &b, 0.95);
        assert_eq!(paired.n, 9);
        assert_eq!(paired.median, 1.0);
        let (low, high, coverage) = paired.interval.unwrap_or_else(|| panic!("9 pairs"));
        assert_eq!((low, high), (-0.5, 1.0));
        assert!((coverage - (1.0 - 2.0 * 10.0 / 512.0)).abs() < 1e-12);
        assert_eq!(paired.verdict(), Verdict::NoDifference);
        // Pairing matters: the same samples shifted make a difference every time.
        let slower: Vec<f64> = b.iter().map(|x| x + 0.7).collect();
        assert_eq!(PairedMedian::of(&slower, &b, 0.95).verdict(), Verdict::Slower);
        assert_eq!(PairedMedian::of(&b, &slower, 0.95).verdict(), Verdict::Faster);
        // Even count: the mean of the middle two; too few pairs for an interval.
        let few = PairedMedian::of(&[3.0, 1.0, 4.0, 1.0], &[0.0; 4], 0.95);
        assert_eq!(few.median, 2.0);
        assert_eq!(few.verdict(), Verdict::TooFew);
        assert!(PairedMedian::of(&[], &[], 0.95).median.is_nan());
    }
}

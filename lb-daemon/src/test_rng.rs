//! xorshift64*: a reproducible stream of pseudo-random test inputs without a dependency, for
//! the unit tests' property checks (compiled for tests only).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The generator; its field is the seed.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number below `n`.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub(crate) fn byte(&mut self) -> u8 {
        (self.next() >> 56) as u8
    }

    /// An address of the family asked for.
    pub(crate) fn addr(&mut self, ipv6: bool) -> IpAddr {
        if ipv6 {
            IpAddr::V6(Ipv6Addr::from(u128::from(self.next()) << 64 | u128::from(self.next())))
        } else {
            IpAddr::V4(Ipv4Addr::from(self.next() as u32))
        }
    }
}

//! The VRRP advert decoder never panics, and whatever it decodes re-encodes to the same packet.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lb_daemon::vrrp::packet::fuzz_decode(data));

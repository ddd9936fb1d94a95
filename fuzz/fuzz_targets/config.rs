//! Fuzz target for the keepalived.conf reader: any input parses without panicking, and the
//! model it gives survives a TOML round trip (`lb_daemon::config::fuzz_parse`).
//!
//! Run with `cargo +nightly fuzz run config` from this directory (seeds: `corpus/config/`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lb_daemon::config::fuzz_parse(data));

//! The integration tests that need nothing but the binary: one test binary (as ripgrep has),
//! one module per area, and the helpers shared with the `components` binary in `support`
//! (servers on 127.0.0.1, reserved ports, running the real binary with a clean environment and
//! watching what it logs).
//!
//! The tests that need a third-party component (rsyslogd, tinyproxy, moto, DuckDB, promtool, a
//! mount namespace) are in `tests/components`.
//!
//! No test sleeps to synchronise: outages, restarts and stops follow what the test observed (a
//! request that arrived, a line on stderr, a file that appeared, messages in the spool).

#[path = "../support/mod.rs"]
mod support;

mod decode_gaps;
mod decode_order;
mod layers;
mod observe;
mod omprog_protocol;
mod repository;
mod round_trip;
mod send_config;
mod send_delivery;
mod send_faults;
mod send_file;
mod send_file_identity;
mod send_http2;
mod send_outages;
mod send_resources;
mod send_spool;
mod send_spool_limits;
mod send_spool_segments;
mod send_tls;
mod spool_privacy;
mod wire_format;
mod wire_properties;

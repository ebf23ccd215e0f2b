//! The integration tests: one binary (as ripgrep has), one module per area, shared helpers in
//! `support` (servers on 127.0.0.1, running the real binary) and `rsyslogd` (a private
//! rsyslogd, shared with the rsyslog benchmark).
//!
//! Tests that need a component run when `.ci/run` provides it; with `DRIFTER_RSYSLOG_E2E=1`
//! a missing rsyslogd is a failure, never a silent skip.

#[path = "../../examples/support/rsyslogd.rs"]
mod rsyslogd;
mod support;

mod aws_stack;
mod decode_duckdb;
mod decode_s3;
mod metrics;
mod omprog_protocol;
mod round_trip;
mod rsyslog_e2e;
mod send_config;
mod send_delivery;
mod send_faults;
mod send_outages;
mod send_proxy;
mod send_resources;
mod send_spool;
mod send_tls;
mod wire_format;
mod wire_properties;

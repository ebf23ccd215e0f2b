//! The integration tests that need third-party components beside the binary: a real rsyslogd,
//! tinyproxy, nginx, moto's S3, IAM and CloudFormation, DuckDB and sqlglot, promtool, podman
//! (the sidecar image), a mount namespace for a small tmpfs, and dpkg with cargo-deb and lintian
//! for the Debian package.
//!
//! This binary has its own harness (libtest-mimic) so that a test whose component is missing
//! is reported as ignored in `cargo test`'s own output, with the reason and the install line,
//! and counted in its summary: libtest's `#[ignore]` is decided at compile time, and a test
//! that returns early is reported as passed. With `DRIFTER_RSYSLOG_E2E` set (to anything but
//! empty or `0`, as `.ci/run` does), a missing component is a failure instead.

use std::future::Future;
use std::process::ExitCode;

use libtest_mimic::{Arguments, Completion, Failed, Trial};

#[path = "../../examples/support/rsyslogd.rs"]
mod rsyslogd;
#[path = "../support/mod.rs"]
mod support;

mod aws_stack;
mod container_sidecar;
mod deb_package;
mod decode_duckdb;
mod decode_metrics;
mod decode_s3;
mod decode_s3_order;
mod metrics;
mod rsyslog_e2e;
mod send_nginx_h2;
mod send_proxy;
mod spool_full_disk;

use support::Missing;

/// `module::test` trials for async test functions of this module.
macro_rules! trials {
    ($($test:ident),* $(,)?) => {
        vec![$($crate::trial(module_path!(), stringify!($test), $test)),*]
    };
}
pub(crate) use trials;

/// One test on a multi-threaded runtime of its own, as `#[tokio::test(flavor =
/// "multi_thread")]` runs it; a [`Missing`] component makes it ignored.
fn trial<F, Fut>(module: &str, name: &str, test: F) -> Trial
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), Missing>>,
{
    let module = module.strip_prefix("components::").unwrap_or(module);
    Trial::ignorable_test(format!("{module}::{name}"), move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|e| Failed::from(format!("a tokio runtime: {e}")))?;
        match runtime.block_on(test()) {
            Ok(()) => Ok(Completion::Completed),
            Err(Missing(reason)) => Ok(Completion::ignored_with(reason)),
        }
    })
}

fn main() -> ExitCode {
    let arguments = Arguments::from_args();
    let trials = [
        aws_stack::trials(),
        container_sidecar::trials(),
        deb_package::trials(),
        decode_duckdb::trials(),
        decode_metrics::trials(),
        decode_s3::trials(),
        decode_s3_order::trials(),
        metrics::trials(),
        rsyslog_e2e::trials(),
        send_nginx_h2::trials(),
        send_proxy::trials(),
        spool_full_disk::trials(),
    ]
    .into_iter()
    .flatten()
    .collect();
    libtest_mimic::run(&arguments, trials).exit_code()
}

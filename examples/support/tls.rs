//! For the TLS benchmark: a self-signed CA and a server certificate, and h2load.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

use super::{children_cpu, cpu_since};

/// Writes a new CA and a certificate for `127.0.0.1` and `localhost` signed by it, as PEM
/// files in `dir`: (CA, certificate, key).
pub fn certificates(dir: &Path) -> anyhow::Result<(PathBuf, PathBuf, PathBuf)> {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate()?;
    let names = vec!["127.0.0.1".to_string(), "localhost".to_string()];
    let cert = CertificateParams::new(names)?.signed_by(&key, &issuer)?;
    let paths = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    std::fs::write(&paths.0, ca.pem())?;
    std::fs::write(&paths.1, cert.pem())?;
    std::fs::write(&paths.2, key.serialize_pem())?;
    Ok(paths)
}

/// h2load over one connection with `streams` concurrent streams, sending each URL of
/// `urls` (a file, one a line) once: requests per second and CPU time per request.
pub async fn h2load(
    urls: &Path,
    requests: usize,
    streams: usize,
) -> anyhow::Result<(f64, Duration)> {
    let before = children_cpu();
    let output = tokio::process::Command::new("h2load")
        .args([
            "-t1",
            "-c1",
            &format!("-m{streams}"),
            &format!("-n{requests}"),
        ])
        .arg("-i")
        .arg(urls)
        .output()
        .await
        .context("run h2load (apt-get install nghttp2-client)")?;
    let (user, system) = cpu_since(before);
    let text = String::from_utf8_lossy(&output.stdout);
    anyhow::ensure!(output.status.success(), "h2load failed: {text}");
    // "finished in 4.01s, 49875.12 req/s, …" and "requests: N total, N started, N done, N succeeded, …"
    let rate: f64 = text
        .lines()
        .find_map(|line| line.strip_prefix("finished in "))
        .and_then(|rest| rest.split(", ").nth(1))
        .and_then(|rate| rate.strip_suffix(" req/s"))
        .and_then(|rate| rate.parse().ok())
        .context("no rate in h2load's output")?;
    let done: u32 = text
        .lines()
        .find_map(|line| line.strip_prefix("requests: "))
        .and_then(|rest| rest.split(", ").nth(2))
        .and_then(|done| done.strip_suffix(" done"))
        .and_then(|done| done.parse().ok())
        .context("no request count in h2load's output")?;
    anyhow::ensure!(
        done as usize == requests,
        "h2load: {done} of {requests} requests done: {text}"
    );
    Ok((rate, (user + system) / done.max(1)))
}

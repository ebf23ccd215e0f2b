//! HTTPS against a server whose certificate comes from a CA made in the test.

use std::sync::Arc;
use std::time::Duration;

use crate::support;
use crate::support::{Reply, TestServer, run_with_input};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

struct TlsFixture {
    server: TestServer,
    ca_pem_path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

async fn tls_server() -> TlsFixture {
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "drifter-rsyslog test CA");
    let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
    let issuer = Issuer::new(ca_params, ca_key);

    let leaf_key = KeyPair::generate().expect("leaf key");
    let leaf_params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .expect("leaf params");
    let leaf_cert = leaf_params
        .signed_by(&leaf_key, &issuer)
        .expect("leaf certificate");

    let dir = tempfile::tempdir().expect("temp dir");
    let ca_pem_path = dir.path().join("ca.pem");
    std::fs::write(&ca_pem_path, ca_cert.pem()).expect("write CA");

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(leaf_cert.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
        )
        .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let server = TestServer::start_on(listener, |_, _| Reply::Status(503), Some(acceptor));
    TlsFixture {
        server,
        ca_pem_path,
        _dir: dir,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn https_with_a_trusted_test_ca() {
    let fixture = tls_server().await;
    let url = format!("https://localhost:{}/secure", fixture.server.addr.port());
    let ca = fixture.ca_pem_path.to_str().expect("utf-8");
    let input = "over TLS: é & ünïcode\nsecond line\n";
    let run = run_with_input(
        &["send", &url, "--ca-cert", ca],
        input.as_bytes(),
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(run.code(), Some(0), "stderr: {}", run.stderr);
    let mut received: Vec<Vec<u8>> = fixture
        .server
        .answered(503)
        .iter()
        .map(|t| support::decode(t))
        .collect();
    received.sort();
    assert_eq!(
        received,
        vec![
            "over TLS: é & ünïcode".as_bytes().to_vec(),
            b"second line".to_vec()
        ]
    );
    assert!(
        fixture
            .server
            .seen()
            .iter()
            .all(|s| s.target.starts_with(b"/secure?"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_untrusted_certificate_is_refused_unless_insecure() {
    let fixture = tls_server().await;
    let url = format!("https://localhost:{}/", fixture.server.addr.port());
    let run = run_with_input(
        &["send", &url, "--drain-timeout", "1s"],
        b"not trusted\n",
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(run.code(), Some(1), "stderr: {}", run.stderr);
    assert!(
        run.stderr.to_lowercase().contains("certificate"),
        "the cause is named: {}",
        run.stderr
    );
    assert!(
        fixture.server.seen().is_empty(),
        "no request may cross an unverified connection"
    );

    let run = run_with_input(
        &["send", &url, "--insecure"],
        b"insecure but delivered\n",
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(run.code(), Some(0), "stderr: {}", run.stderr);
    run.assert_logged("--insecure");
    assert_eq!(fixture.server.answered(503).len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_system_trust_store_is_used_unless_webpki_only() {
    let fixture = tls_server().await;
    let url = format!("https://localhost:{}/", fixture.server.addr.port());
    // The system's store, here the file SSL_CERT_FILE names, holds the test CA.
    let ca = fixture.ca_pem_path.to_str().expect("utf-8");
    let env = [("SSL_CERT_FILE", ca)];
    let limit = Duration::from_secs(30);
    let webpki = ["send", &url, "--trust", "webpki", "--drain-timeout", "1s"];
    let run = support::run_with_env(&webpki, &env, b"refused\n", limit).await;
    assert_eq!(
        run.code(),
        Some(1),
        "Mozilla's roots do not know the test CA: {}",
        run.stderr
    );
    assert!(fixture.server.seen().is_empty());
    for trust in ["system", "both"] {
        let args = ["send", &url, "--trust", trust];
        let run = support::run_with_env(&args, &env, format!("{trust}\n").as_bytes(), limit).await;
        assert_eq!(run.code(), Some(0), "--trust {trust}: {}", run.stderr);
    }
    let delivered = support::decoded_set(&fixture.server.answered(503));
    assert_eq!(delivered, [b"both".to_vec(), b"system".to_vec()].into());
    // No usable certificate in the system's store is a configuration error.
    let dir = tempfile::tempdir().expect("temp dir");
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "").expect("write");
    let env = [
        ("SSL_CERT_FILE", empty.to_str().expect("utf-8")),
        ("SSL_CERT_DIR", "/nonexistent"),
    ];
    let args = ["send", &url, "--trust", "system"];
    let run = support::run_with_env(&args, &env, b"", limit).await;
    assert_eq!(run.code(), Some(2), "stderr: {}", run.stderr);
    run.assert_logged("--trust system: no usable certificate");
}

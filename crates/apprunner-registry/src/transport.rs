//! How a registry is reached: plain HTTP on loopback (and hosts named insecure), HTTPS with the
//! system's roots, parsed once per process, everywhere else.

/// The TLS configuration of every registry client: the system's trusted roots, read and parsed
/// once per process (a client of its own per build parsed them all again: milliseconds of CPU
/// per build). None when none can be read; reqwest then finds the roots itself, and says why
/// not.
pub fn tls() -> Option<&'static rustls::ClientConfig> {
    static CONFIG: std::sync::OnceLock<Option<rustls::ClientConfig>> = std::sync::OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let mut roots = rustls::RootCertStore::empty();
            let (added, _) = roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
            if added == 0 {
                return None;
            }
            let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .ok()?
                .with_root_certificates(roots)
                .with_no_client_auth();
            Some(config)
        })
        .as_ref()
}

/// Loopback registries speak plain HTTP (as Docker assumes); so do hosts named insecure.
pub fn is_plain_http(host: &str, insecure: &[String]) -> bool {
    let name = host.rsplit_once(':').map_or(host, |(h, _)| h);
    name == "localhost"
        || name.starts_with("127.")
        || name == "[::1]"
        || insecure.iter().any(|i| i == host || i == name)
}

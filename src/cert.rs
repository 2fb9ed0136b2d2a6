//! TLS files: `portcullis cert` writes a self-signed development pair, and
//! `serve --tls-cert/--tls-key` loads a pair (docs/cli.md, docs/protocol.md §1.2).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use portcullis_net::TlsServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls;

/// The names every `portcullis cert` certificate is valid for (docs/cli.md).
pub const DEFAULT_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// Why a TLS file could not be written or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertError {
    /// A file could not be read or written.
    #[error("{path:?}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A PEM file holds nothing usable.
    #[error("{path:?}: {message}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// The certificate could not be generated (a host name that is not a valid DNS name or IP).
    #[error("cannot generate the certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// rustls refused the pair (a key that does not match the certificate, ...).
    #[error("unusable certificate or key: {0}")]
    Tls(#[from] rustls::Error),
}

/// Writes `out/cert.pem` and `out/key.pem` (mode 0600): a self-signed
/// certificate valid for [`DEFAULT_HOSTS`] and every name of `hosts`.
/// Returns the two paths.
pub fn write_pair(out: &Path, hosts: &[String]) -> Result<(PathBuf, PathBuf), CertError> {
    let mut names: Vec<String> = DEFAULT_HOSTS.iter().map(|h| (*h).to_owned()).collect();
    for host in hosts {
        if !names.contains(host) {
            names.push(host.clone());
        }
    }
    let pair = rcgen::generate_simple_self_signed(names)?;
    std::fs::create_dir_all(out).map_err(|source| CertError::Io { path: out.to_owned(), source })?;
    let cert_path = out.join("cert.pem");
    let key_path = out.join("key.pem");
    write_file(&cert_path, pair.cert.pem().as_bytes(), 0o644)?;
    write_file(&key_path, pair.signing_key.serialize_pem().as_bytes(), 0o600)?;
    Ok((cert_path, key_path))
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), CertError> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let io = |source| CertError::Io { path: path.to_owned(), source };
    let mut file =
        std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(path).map_err(io)?;
    // An existing file keeps its mode through `open`: set it.
    file.set_permissions(std::fs::Permissions::from_mode(mode)).map_err(io)?;
    file.write_all(bytes).map_err(io)
}

/// Loads a PEM certificate chain and private key into a TLS server
/// configuration: TLS 1.2 and 1.3, no client certificates (docs/protocol.md §1.2).
pub fn load_server_config(cert: &Path, key: &Path) -> Result<Arc<TlsServerConfig>, CertError> {
    let pem = |path: &Path, message: String| CertError::Pem { path: path.to_owned(), message };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| pem(cert, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| pem(cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(pem(cert, "no certificate in the file".to_owned()));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| pem(key, e.to_string()))?;
    // ring, not aws-lc-rs: no C toolchain (cmake) in the build. Its provider is
    // deprecated only for lacking post-quantum key exchange; TLS 1.2/1.3 as asked.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)?;
    Ok(Arc::new(config))
}

//! Which servers the endpoint backends trust over `https://`: reqwest's
//! built-in roots (Mozilla's, bundled with it), plus the CA certificates of
//! `model.ca_cert` and of the platform's usual variables `SSL_CERT_FILE` and
//! `SSL_CERT_DIR`, which reqwest with rustls does not read by itself. Also
//! how a certificate the client refused is told apart from a server that is
//! down: retrying cannot change the certificate.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use std::path::{Path, PathBuf};

use super::error::BackendError;
use jobs::spec::ModelSpec;

/// A PEM file of CA certificates to trust (OpenSSL's variable).
pub const SSL_CERT_FILE: &str = "SSL_CERT_FILE";
/// Folders of PEM files of CA certificates, `:`-separated (OpenSSL's
/// variable).
pub const SSL_CERT_DIR: &str = "SSL_CERT_DIR";

/// A CA certificate file that cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TrustError {
    #[error(
        "`model.ca_cert` {}: {reason}; give a PEM file holding the certificate of the CA that \
         signed the endpoint's certificate",
        .path.display()
    )]
    CaCert { path: PathBuf, reason: String },
    #[error(
        "{var}={}: {reason}; point it at CA certificates in PEM, or unset it",
        .path.display()
    )]
    Environment {
        var: &'static str,
        path: PathBuf,
        reason: String,
    },
}

impl From<TrustError> for BackendError {
    fn from(e: TrustError) -> Self {
        BackendError::Config(e.to_string())
    }
}

/// Checks `model.ca_cert`, if set: it can be read and holds CA
/// certificates. `shardline run` and `submit` call it so that a wrong path
/// is a spec error before anything is submitted.
pub fn check_ca_cert(model: &ModelSpec) -> Result<(), TrustError> {
    match &model.ca_cert {
        Some(path) => ca_cert(path).map(|_| ()),
        None => Ok(()),
    }
}

/// The certificates to trust besides the built-in roots: `model.ca_cert`,
/// `SSL_CERT_FILE`, and the files of `SSL_CERT_DIR`'s folders.
pub(crate) fn extra_roots(model: &ModelSpec) -> Result<Vec<CertificateDer<'static>>, TrustError> {
    let mut ders = Vec::new();
    if let Some(path) = &model.ca_cert {
        ders.extend(ca_cert(path)?);
    }
    if let Some(path) = env_path(SSL_CERT_FILE) {
        let certs = read_bundle(&path).map_err(|reason| TrustError::Environment {
            var: SSL_CERT_FILE,
            path: path.clone(),
            reason,
        })?;
        ders.extend(certs);
    }
    if let Some(dirs) = std::env::var_os(SSL_CERT_DIR) {
        for dir in std::env::split_paths(&dirs).filter(|d| !d.as_os_str().is_empty()) {
            ders.extend(read_dir(&dir)?);
        }
    }
    Ok(ders)
}

fn ca_cert(path: &Path) -> Result<Vec<CertificateDer<'static>>, TrustError> {
    read_bundle(path).map_err(|reason| TrustError::CaCert {
        path: path.to_path_buf(),
        reason,
    })
}

fn env_path(var: &str) -> Option<PathBuf> {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// Every file of `dir` that holds CA certificates. Other files are skipped,
/// as OpenSSL skips them: system folders hold more than certificates. So is
/// a folder that does not exist: the variable often lists every usual place.
fn read_dir(dir: &Path) -> Result<Vec<CertificateDer<'static>>, TrustError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tracing::debug!(folder = %dir.display(), "a folder of SSL_CERT_DIR does not exist");
            return Ok(Vec::new());
        }
        Err(e) => {
            return Err(TrustError::Environment {
                var: SSL_CERT_DIR,
                path: dir.to_path_buf(),
                reason: format!("cannot read the folder ({e})"),
            })
        }
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if !path.is_file() {
            continue;
        }
        match read_bundle(&path) {
            Ok(certs) => found.extend(certs),
            Err(reason) => tracing::debug!(file = %path.display(), %reason,
                "skipping a file of SSL_CERT_DIR"),
        }
    }
    Ok(found)
}

/// Largest CA bundle read: the system's whole bundle is about 200 KiB.
const MAX_BUNDLE_BYTES: u64 = 16 << 20;

/// A regular file of at most [`MAX_BUNDLE_BYTES`]: `model.ca_cert` comes
/// from a job, and a worker must not hang or run out of memory on a device
/// or a pipe (`/dev/zero`) named there.
fn read_bounded(path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read the file ({e})"))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot read the file ({e})"))?;
    if !meta.is_file() {
        return Err("is not a regular file".into());
    }
    let mut bytes = Vec::new();
    file.take(MAX_BUNDLE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read the file ({e})"))?;
    if bytes.len() as u64 > MAX_BUNDLE_BYTES {
        return Err(format!(
            "is larger than {} MiB, too large for a CA bundle",
            MAX_BUNDLE_BYTES >> 20
        ));
    }
    Ok(bytes)
}

/// The certificates of a PEM file, each checked to be a usable trust
/// anchor. The error says what is wrong, without the path.
fn read_bundle(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes = read_bounded(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("is not a valid PEM file ({e})"))?;
    if certs.is_empty() {
        return Err("holds no certificate (no `-----BEGIN CERTIFICATE-----` block)".into());
    }
    for (i, der) in certs.iter().enumerate() {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(der.clone())
            .map_err(|e| format!("certificate {} is not a usable CA certificate ({e})", i + 1))?;
    }
    Ok(certs)
}

/// The certificate problem behind a failed request, if a refused server
/// certificate is what failed it (as opposed to a refused connection or a
/// timeout, which a retry may get past).
pub(crate) fn certificate_problem(error: &reqwest::Error) -> Option<rustls::Error> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = cause {
        if let Some(found) = as_certificate_error(e) {
            return Some(found);
        }
        cause = e.source();
    }
    None
}

/// `e` as a certificate error, looking inside `io::Error`s: their `source`
/// skips the error they wrap, and hyper-rustls wraps tokio-rustls's
/// `io::Error` (which wraps rustls's error) in another one.
fn as_certificate_error(e: &(dyn std::error::Error + 'static)) -> Option<rustls::Error> {
    if let Some(io) = e.downcast_ref::<std::io::Error>() {
        let inner: &(dyn std::error::Error + 'static) = io.get_ref()?;
        return as_certificate_error(inner);
    }
    match e.downcast_ref::<rustls::Error>()? {
        found @ (rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented) => {
            Some(found.clone())
        }
        _ => None,
    }
}

/// What to tell the user when `base_url`'s certificate was refused.
pub(crate) fn untrusted_message(base_url: &str, problem: &rustls::Error) -> String {
    use rustls::CertificateError as C;
    let skip = "or set ssl_verify = false in [model] to skip verification (only on a network \
                you trust)";
    let cause = match problem {
        rustls::Error::InvalidCertificate(
            C::NotValidForName | C::NotValidForNameContext { .. },
        ) => format!(
            "it names another host; put a host name the certificate names in model.base_url, \
             {skip}"
        ),
        rustls::Error::InvalidCertificate(
            C::Expired | C::ExpiredContext { .. } | C::NotValidYet | C::NotValidYetContext { .. },
        ) => format!(
            "it is outside its validity period; renew the server's certificate (or check this \
             machine's clock), {skip}"
        ),
        _ => format!(
            "it is not signed by a CA this worker trusts (a private or company CA, or a \
             self-signed certificate); set ca_cert = \"ca.pem\" in [model] to a PEM file of \
             that CA's certificate (relative to the job file), or export \
             {SSL_CERT_FILE}=/path/to/ca.pem on every worker, {skip}"
        ),
    };
    format!("endpoint {base_url} presented a TLS certificate that was refused ({problem}): {cause}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_ca_file_says_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let e = read_bundle(&missing).unwrap_err();
        assert!(e.contains("cannot read the file"), "{e}");
        // A device named by a job is refused, not read without end.
        let e = read_bundle(Path::new("/dev/zero")).unwrap_err();
        assert!(e.contains("not a regular file"), "{e}");
        let e = read_bundle(dir.path()).unwrap_err();
        assert!(e.contains("not a regular file"), "{e}");

        let empty = dir.path().join("key.pem");
        std::fs::write(
            &empty,
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        let e = read_bundle(&empty).unwrap_err();
        assert!(e.contains("no `-----BEGIN CERTIFICATE-----` block"), "{e}");

        let garbage = dir.path().join("garbage.pem");
        std::fs::write(
            &garbage,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let e = read_bundle(&garbage).unwrap_err();
        assert!(
            e.contains("certificate 1 is not a usable CA certificate"),
            "{e}"
        );

        let err = TrustError::CaCert {
            path: garbage.clone(),
            reason: e,
        }
        .to_string();
        assert!(err.contains("`model.ca_cert`"), "{err}");
        assert!(err.contains("garbage.pem"), "{err}");
    }

    #[test]
    fn a_certificate_error_is_found_inside_nested_io_errors() {
        // As hyper-rustls hands it over: tokio-rustls's `io::Error` around
        // rustls's error, inside another `io::Error`.
        let refused = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let inner = std::io::Error::new(std::io::ErrorKind::InvalidData, refused.clone());
        let outer = std::io::Error::other(inner);
        assert_eq!(as_certificate_error(&outer), Some(refused));
        let other = std::io::Error::other(std::io::Error::other("connection refused"));
        assert_eq!(as_certificate_error(&other), None);
    }

    #[test]
    fn the_message_fits_the_certificate_problem() {
        let unknown = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let m = untrusted_message("https://h/v1", &unknown);
        assert!(
            m.contains("ca_cert") && m.contains("ssl_verify = false"),
            "{m}"
        );
        assert!(
            m.contains("SSL_CERT_FILE") && m.contains("UnknownIssuer"),
            "{m}"
        );
        let name = rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName);
        let m = untrusted_message("https://h/v1", &name);
        assert!(
            m.contains("model.base_url") && !m.contains("ca_cert"),
            "{m}"
        );
    }
}

//! The cluster's certificates: a CA and a serving certificate signed by it, generated
//! on first start into `<data-dir>/pki/` and reused after. The serving certificate
//! names every address clients use (kubectl checks SANs, not the CN); it is re-issued
//! when an address is missing.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {reason}", path.display())]
    Invalid { path: PathBuf, reason: String },
    #[error("generating certificates: {0}")]
    Generate(#[from] rcgen::Error),
}

/// PEM files of the CA and of the serving certificate.
#[derive(Clone, Debug)]
pub struct Pki {
    pub dir: PathBuf,
    pub ca_cert_pem: String,
    pub server_cert_pem: String,
    pub server_key_pem: String,
}

const CA_CERT: &str = "ca.crt";
const CA_KEY: &str = "ca.key";
const SERVER_CERT: &str = "server.crt";
const SERVER_KEY: &str = "server.key";
const SANS: &str = "server.sans";

fn read(path: &Path) -> Result<String, PkiError> {
    std::fs::read_to_string(path).map_err(|source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn write(path: &Path, text: &str, secret: bool) -> Result<(), PkiError> {
    let io = |source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    };
    std::fs::write(path, text).map_err(io)?;
    if secret {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    }
    Ok(())
}

/// Loads the PKI in `dir`, creating what is missing; `hosts` are the names and
/// addresses the serving certificate must cover (127.0.0.1, ::1 and localhost always).
pub fn ensure(dir: &Path, hosts: &[String]) -> Result<Pki, PkiError> {
    std::fs::create_dir_all(dir).map_err(|source| PkiError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let (ca_cert_pem, ca_key_pem) = if dir.join(CA_CERT).exists() {
        (read(&dir.join(CA_CERT))?, read(&dir.join(CA_KEY))?)
    } else {
        let (cert, key) = new_ca()?;
        write(&dir.join(CA_KEY), &key, true)?;
        write(&dir.join(CA_CERT), &cert, false)?;
        (cert, key)
    };
    let mut sans: Vec<String> = vec!["127.0.0.1".into(), "::1".into(), "localhost".into()];
    for h in hosts {
        if !sans.contains(h) {
            sans.push(h.clone());
        }
    }
    let have = std::fs::read_to_string(dir.join(SANS)).unwrap_or_default();
    let covered = sans.iter().all(|s| have.lines().any(|l| l == s));
    if !covered || !dir.join(SERVER_CERT).exists() || !dir.join(SERVER_KEY).exists() {
        let ca_key = KeyPair::from_pem(&ca_key_pem).map_err(|e| PkiError::Invalid {
            path: dir.join(CA_KEY),
            reason: e.to_string(),
        })?;
        // The CA's parameters are fixed, so rebuilding them with its key gives the same
        // issuer name and key identifier as the certificate on disk.
        let issuer = Issuer::new(ca_params()?, ca_key);
        let (cert, key) = new_server_cert(&issuer, &sans)?;
        write(&dir.join(SERVER_KEY), &key, true)?;
        write(&dir.join(SERVER_CERT), &cert, false)?;
        write(&dir.join(SANS), &sans.join("\n"), false)?;
    }
    Ok(Pki {
        dir: dir.to_path_buf(),
        ca_cert_pem,
        server_cert_pem: read(&dir.join(SERVER_CERT))?,
        server_key_pem: read(&dir.join(SERVER_KEY))?,
    })
}

fn ca_params() -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "drover-ca");
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Drover");
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = rcgen::date_time_ymd(2025, 1, 1);
    params.not_after = rcgen::date_time_ymd(2035, 1, 1);
    Ok(params)
}

fn new_ca() -> Result<(String, String), PkiError> {
    let key = KeyPair::generate()?;
    let cert = ca_params()?.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn new_server_cert(
    issuer: &Issuer<'_, KeyPair>,
    sans: &[String],
) -> Result<(String, String), PkiError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(DnType::CommonName, "drover-apiserver");
    for s in sans {
        params.subject_alt_names.push(match s.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(s.clone().try_into()?),
        });
    }
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = rcgen::date_time_ymd(2025, 1, 1);
    params.not_after = rcgen::date_time_ymd(2035, 1, 1);
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_once_and_reissues_for_new_hosts() {
        let dir = tempfile::tempdir().expect("temp dir");
        let a = ensure(dir.path(), &[]).expect("generate");
        assert!(a.ca_cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        let b = ensure(dir.path(), &[]).expect("reuse");
        assert_eq!(
            a.server_cert_pem, b.server_cert_pem,
            "reused when nothing changed"
        );
        let c = ensure(dir.path(), &["10.1.2.3".into()]).expect("reissue");
        assert_ne!(
            a.server_cert_pem, c.server_cert_pem,
            "a new SAN re-issues the serving cert"
        );
        assert_eq!(a.ca_cert_pem, c.ca_cert_pem, "the CA stays");
    }
}

//! The cluster's PKI: a CA, certificates it signs, and the service-account key pair.
//!
//! Contract: [`Pki::create`] writes, under `<dir>/pki/`, a self-signed CA (`ca.crt`, `ca.key`;
//! a CA only, never used as a leaf), the API server's serving certificate (`apiserver.crt/.key`,
//! SANs IP:127.0.0.1, DNS:localhost, DNS:kubernetes.default.svc), and the service-account
//! signing key pair (`sa.key`, `sa.pub`: RSA 2048 made by the `openssl` CLI, or ECDSA P-256 made
//! by rcgen when `openssl` is missing; kube-apiserver accepts both). Client certificates
//! (identity = CN, groups = O) and further serving certificates are issued on demand by the
//! same CA, so every component and the fault proxy chain to `ca.crt`.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SanType,
};

/// Errors of creating the PKI.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// rcgen failed.
    #[error("cannot generate {what}")]
    Generate {
        /// What was being generated.
        what: String,
        /// The cause.
        #[source]
        source: rcgen::Error,
    },
    /// A file could not be written.
    #[error("cannot write {path}")]
    Write {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// `openssl` failed after it was found.
    #[error("openssl failed to generate the service-account key: {stderr}")]
    Openssl {
        /// Its stderr.
        stderr: String,
    },
}

/// A certificate and its key, PEM-encoded, with the files they were written to.
#[derive(Debug, Clone)]
pub struct IssuedCert {
    /// Certificate PEM.
    pub cert_pem: String,
    /// Private key PEM (PKCS#8).
    pub key_pem: String,
    /// Certificate file.
    pub cert_path: PathBuf,
    /// Key file.
    pub key_path: PathBuf,
}

/// The cluster CA and the paths of the files made at creation.
pub struct Pki {
    dir: PathBuf,
    ca: Issuer<'static, KeyPair>,
    ca_pem: String,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki").field("dir", &self.dir).finish()
    }
}

fn gen_err(what: &str) -> impl FnOnce(rcgen::Error) -> PkiError + '_ {
    move |source| PkiError::Generate { what: what.to_string(), source }
}

fn write(path: &Path, text: &str) -> Result<(), PkiError> {
    std::fs::write(path, text).map_err(|source| PkiError::Write { path: path.to_path_buf(), source })
}

impl Pki {
    /// Creates the CA, the API server certificate and the service-account keys under
    /// `<dir>/pki`.
    pub fn create(dir: &Path) -> Result<Pki, PkiError> {
        let dir = dir.join("pki");
        std::fs::create_dir_all(&dir).map_err(|source| PkiError::Write { path: dir.clone(), source })?;
        let ca_key = KeyPair::generate().map_err(gen_err("CA key"))?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(gen_err("CA"))?;
        params.distinguished_name.push(DnType::CommonName, "localcluster-ca");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let ca_cert = params.self_signed(&ca_key).map_err(gen_err("CA"))?;
        let ca_pem = ca_cert.pem();
        write(&dir.join("ca.crt"), &ca_pem)?;
        write(&dir.join("ca.key"), &ca_key.serialize_pem())?;
        let pki = Pki { dir, ca: Issuer::new(params, ca_key), ca_pem };
        pki.issue_server(
            "apiserver",
            &["127.0.0.1", "localhost", "kubernetes.default.svc", "kubernetes.default", "kubernetes"],
        )?;
        pki.service_account_keys()?;
        Ok(pki)
    }

    /// The CA certificate, PEM.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The CA certificate file.
    pub fn ca_path(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// The directory of the PKI files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn issue(
        &self,
        name: &str,
        mut params: CertificateParams,
        usage: ExtendedKeyUsagePurpose,
    ) -> Result<IssuedCert, PkiError> {
        let key = KeyPair::generate().map_err(gen_err(name))?;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages = vec![usage];
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &self.ca).map_err(gen_err(name))?;
        let issued = IssuedCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_path: self.dir.join(format!("{name}.crt")),
            key_path: self.dir.join(format!("{name}.key")),
        };
        write(&issued.cert_path, &issued.cert_pem)?;
        write(&issued.key_path, &issued.key_pem)?;
        Ok(issued)
    }

    /// Issues a serving certificate `<name>.crt/.key` for the given SANs (IPs or DNS names).
    pub fn issue_server(&self, name: &str, sans: &[&str]) -> Result<IssuedCert, PkiError> {
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(gen_err(name))?;
        for san in sans {
            params.subject_alt_names.push(match san.parse::<IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName((*san).try_into().map_err(gen_err(name))?),
            });
        }
        params.distinguished_name.push(DnType::CommonName, name);
        self.issue(name, params, ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// Issues a client certificate `<name>.crt/.key` for user `cn` in `groups`.
    pub fn issue_client(&self, name: &str, cn: &str, groups: &[&str]) -> Result<IssuedCert, PkiError> {
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(gen_err(name))?;
        params.distinguished_name.push(DnType::CommonName, cn);
        for group in groups {
            params.distinguished_name.push(DnType::OrganizationName, *group);
        }
        self.issue(name, params, ExtendedKeyUsagePurpose::ClientAuth)
    }

    /// The service-account private key file.
    pub fn sa_key_path(&self) -> PathBuf {
        self.dir.join("sa.key")
    }

    /// The service-account public key file.
    pub fn sa_pub_path(&self) -> PathBuf {
        self.dir.join("sa.pub")
    }

    fn service_account_keys(&self) -> Result<(), PkiError> {
        let key = self.sa_key_path();
        let public = self.sa_pub_path();
        let rsa = Command::new("openssl")
            .args(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"])
            .arg("-out")
            .arg(&key)
            .output();
        match rsa {
            Ok(out) if out.status.success() => {
                let out = Command::new("openssl")
                    .args(["pkey", "-pubout", "-in"])
                    .arg(&key)
                    .arg("-out")
                    .arg(&public)
                    .output()
                    .map_err(|e| PkiError::Openssl { stderr: e.to_string() })?;
                if !out.status.success() {
                    return Err(PkiError::Openssl { stderr: String::from_utf8_lossy(&out.stderr).into_owned() });
                }
                Ok(())
            }
            Ok(out) => Err(PkiError::Openssl { stderr: String::from_utf8_lossy(&out.stderr).into_owned() }),
            Err(e) => {
                tracing::info!(error = %e, "no openssl: service-account key is ECDSA P-256");
                let pair = KeyPair::generate().map_err(gen_err("service-account key"))?;
                write(&key, &pair.serialize_pem())?;
                write(&public, &pair.public_key_pem())
            }
        }
    }
}

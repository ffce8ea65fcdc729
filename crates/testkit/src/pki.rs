//! Certificates made for a test: a CA, server certificates it signs (valid, expired, for
//! another name) and a client certificate, written as PEM files into a directory.
//!
//! ```
//! let pki = hale_testkit::pki::Pki::new().unwrap();
//! assert!(std::fs::read_to_string(&pki.ca).unwrap().contains("BEGIN CERTIFICATE"));
//! assert!(pki.server.cert.exists() && pki.client.key.exists());
//! ```

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// A certificate and its key, as files.
#[derive(Clone, Debug)]
pub struct Pair {
    /// The PEM certificate.
    pub cert: PathBuf,
    /// The PEM private key.
    pub key: PathBuf,
}

/// A test CA and what it signed, in a directory of its own (removed when dropped).
#[derive(Debug)]
pub struct Pki {
    /// The directory.
    pub dir: PathBuf,
    /// The CA certificate (PEM).
    pub ca: PathBuf,
    /// A server certificate for `localhost` and `127.0.0.1`, valid now.
    pub server: Pair,
    /// A server certificate for those names that expired in 2021.
    pub expired: Pair,
    /// A server certificate valid now for `backend.internal` only.
    pub other_name: Pair,
    /// A client certificate (`CN=hale-test-client`).
    pub client: Pair,
    /// A certificate for `localhost` from a CA nobody trusts.
    pub stranger: Pair,
    /// That CA's certificate (PEM).
    pub stranger_ca: PathBuf,
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

type Error = Box<dyn std::error::Error + Send + Sync>;

impl Pki {
    /// Makes the CA and the certificates, in a new temporary directory.
    pub fn new() -> Result<Pki, Error> {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "hale-pki-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir)?;
        let (ca_pem, ca) = authority("hale test CA")?;
        let ca_path = dir.join("ca.pem");
        std::fs::write(&ca_path, ca_pem)?;
        let here = ["localhost".to_string(), "127.0.0.1".to_string()];
        let server = leaf(&dir, "server", &ca, &here, Validity::Now, Use::Server)?;
        let expired = leaf(&dir, "expired", &ca, &here, Validity::Expired, Use::Server)?;
        let other_name = leaf(
            &dir,
            "other-name",
            &ca,
            &["backend.internal".to_string()],
            Validity::Now,
            Use::Server,
        )?;
        let client = leaf(&dir, "client", &ca, &[], Validity::Now, Use::Client)?;
        let (strange_pem, strange_ca) = authority("nobody's CA")?;
        let stranger_ca = dir.join("stranger-ca.pem");
        std::fs::write(&stranger_ca, strange_pem)?;
        let stranger = leaf(
            &dir,
            "stranger",
            &strange_ca,
            &here,
            Validity::Now,
            Use::Server,
        )?;
        Ok(Pki {
            ca: ca_path,
            server,
            expired,
            other_name,
            client,
            stranger,
            stranger_ca,
            dir,
        })
    }
}

enum Validity {
    Now,
    Expired,
}

enum Use {
    Server,
    Client,
}

fn authority(name: &str) -> Result<(String, Issuer<'static, KeyPair>), Error> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), Issuer::new(params, key)))
}

fn leaf(
    dir: &Path,
    name: &str,
    issuer: &Issuer<'static, KeyPair>,
    names: &[String],
    validity: Validity,
    usage: Use,
) -> Result<Pair, Error> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(names.to_vec())?;
    params.distinguished_name.push(
        DnType::CommonName,
        match usage {
            Use::Server => names.first().map_or("server", String::as_str),
            Use::Client => "hale-test-client",
        },
    );
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![match usage {
        Use::Server => ExtendedKeyUsagePurpose::ServerAuth,
        Use::Client => ExtendedKeyUsagePurpose::ClientAuth,
    }];
    params.use_authority_key_identifier_extension = true;
    let now = time::OffsetDateTime::now_utc();
    (params.not_before, params.not_after) = match validity {
        Validity::Now => (
            now - time::Duration::days(1),
            now + time::Duration::days(30),
        ),
        Validity::Expired => (
            rcgen::date_time_ymd(2020, 1, 1),
            rcgen::date_time_ymd(2021, 1, 1),
        ),
    };
    let cert = params.signed_by(&key, issuer)?;
    let pair = Pair {
        cert: dir.join(format!("{name}.pem")),
        key: dir.join(format!("{name}.key")),
    };
    std::fs::write(&pair.cert, cert.pem())?;
    std::fs::write(&pair.key, key.serialize_pem())?;
    Ok(pair)
}

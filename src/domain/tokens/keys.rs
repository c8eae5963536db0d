//! The keys that sign and verify access tokens: from configuration (PEM
//! files; the first signs, all verify), or generated once and kept in the
//! database, encrypted under the key-encryption key when one is set.
//!
//! Crypto backend: `jsonwebtoken` 9 over `ring`, which the TLS stack
//! already builds. (10.x would mean `rust_crypto`, whose RSA signing has the
//! unfixed RUSTSEC-2023-0071 timing advisory, or `aws_lc_rs`, a C build.)

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::KeyPair as _;
use sea_orm::ConnectionTrait;
use sha2::{Digest, Sha256};

use crate::domain::secret::Secret;
use crate::error::{Error, Result};
use crate::store;

/// Where the keys come from (`keys.*`).
#[derive(Debug, Clone, Default)]
pub struct KeySettings {
    /// "EdDSA" or "RS256".
    pub algorithm: String,
    pub private_key_path: Option<std::path::PathBuf>,
    pub public_key_path: Option<std::path::PathBuf>,
    pub previous_public_key_paths: Vec<std::path::PathBuf>,
    pub encryption_key: Option<Secret>,
}

/// A public key as a JWK (RFC 7517).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicJwk {
    pub kid: String,
    pub alg: &'static str,
    /// OKP: `x`; RSA: `n` and `e` (base64url).
    pub x: Option<String>,
    pub n: Option<String>,
    pub e: Option<String>,
    pub signing: bool,
}

impl PublicJwk {
    fn okp(raw: &[u8]) -> Self {
        let x = URL_SAFE_NO_PAD.encode(raw);
        // RFC 7638 thumbprint: the required members, sorted, no spaces.
        let kid = thumbprint(&format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#));
        Self {
            kid,
            alg: "EdDSA",
            x: Some(x),
            n: None,
            e: None,
            signing: false,
        }
    }

    fn rsa(modulus: &[u8], exponent: &[u8]) -> Self {
        let strip = |b: &[u8]| {
            let start = b.iter().position(|&x| x != 0).unwrap_or(b.len());
            URL_SAFE_NO_PAD.encode(&b[start..])
        };
        let (n, e) = (strip(modulus), strip(exponent));
        let kid = thumbprint(&format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#));
        Self {
            kid,
            alg: "RS256",
            x: None,
            n: Some(n),
            e: Some(e),
            signing: false,
        }
    }

    pub fn kty(&self) -> &'static str {
        if self.alg == "EdDSA" { "OKP" } else { "RSA" }
    }

    fn algorithm(&self) -> Algorithm {
        if self.alg == "EdDSA" {
            Algorithm::EdDSA
        } else {
            Algorithm::RS256
        }
    }

    fn decoding_key(&self) -> Result<DecodingKey> {
        let key = match (&self.x, &self.n, &self.e) {
            (Some(x), _, _) => DecodingKey::from_ed_components(x),
            (None, Some(n), Some(e)) => DecodingKey::from_rsa_components(n, e),
            _ => return Err(Error::internal("a public key without its parts")),
        };
        key.map_err(|e| Error::internal(format!("public key {}: {e}", self.kid)))
    }

    fn json(&self) -> serde_json::Value {
        let mut jwk = serde_json::json!({
            "kty": self.kty(),
            "kid": self.kid,
            "alg": self.alg,
            "use": "sig",
        });
        if let Some(x) = &self.x {
            jwk["crv"] = "Ed25519".into();
            jwk["x"] = x.clone().into();
        }
        if let (Some(n), Some(e)) = (&self.n, &self.e) {
            jwk["n"] = n.clone().into();
            jwk["e"] = e.clone().into();
        }
        jwk
    }
}

fn thumbprint(canonical: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

/// A verifying key, ready for use.
pub struct Verifier {
    pub jwk: PublicJwk,
    pub algorithm: Algorithm,
    pub key: DecodingKey,
}

/// The signing key and every key that verifies.
pub struct SigningKeys {
    signer: EncodingKey,
    signer_kid: String,
    signer_algorithm: Algorithm,
    verifiers: Vec<Verifier>,
    jwks: String,
}

fn config_error(setting: &str, path: &Path, why: impl std::fmt::Display) -> Error {
    Error::invalid(setting, format!("{}: {why}", path.display()))
}

fn read_pem(setting: &str, path: &Path) -> Result<pem::Pem> {
    let text = std::fs::read(path).map_err(|e| config_error(setting, path, e))?;
    pem::parse(text).map_err(|e| config_error(setting, path, format!("not PEM: {e}")))
}

/// The public key of a PEM `PUBLIC KEY` (SPKI) file.
fn public_key_file(setting: &str, path: &Path) -> Result<PublicJwk> {
    use x509_parser::prelude::FromDer;
    use x509_parser::public_key::PublicKey;
    use x509_parser::x509::SubjectPublicKeyInfo;
    let pem = read_pem(setting, path)?;
    if pem.tag() != "PUBLIC KEY" {
        return Err(config_error(setting, path, "expected a PUBLIC KEY block"));
    }
    let (_, spki) = SubjectPublicKeyInfo::from_der(pem.contents())
        .map_err(|e| config_error(setting, path, e))?;
    // id-Ed25519 (RFC 8410).
    if spki.algorithm.algorithm.to_id_string() == "1.3.101.112" {
        let raw = spki.subject_public_key.data.as_ref();
        if raw.len() != 32 {
            return Err(config_error(setting, path, "not an Ed25519 key"));
        }
        return Ok(PublicJwk::okp(raw));
    }
    match spki.parsed() {
        Ok(PublicKey::RSA(rsa)) => Ok(PublicJwk::rsa(rsa.modulus, rsa.exponent)),
        _ => Err(config_error(
            setting,
            path,
            "only Ed25519 and RSA keys are supported",
        )),
    }
}

/// A private key file: the signing key and its public half.
fn private_key_file(algorithm: &str, path: &Path) -> Result<(EncodingKey, PublicJwk)> {
    const SETTING: &str = "keys.private_key_path";
    let text = std::fs::read(path).map_err(|e| config_error(SETTING, path, e))?;
    let pem =
        pem::parse(&text).map_err(|e| config_error(SETTING, path, format!("not PEM: {e}")))?;
    let der = pem.contents();
    match (algorithm, pem.tag()) {
        ("EdDSA", "PRIVATE KEY") => {
            let pair = ring::signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
                .map_err(|e| config_error(SETTING, path, format!("not an Ed25519 key: {e}")))?;
            Ok((
                EncodingKey::from_ed_der(der),
                PublicJwk::okp(pair.public_key().as_ref()),
            ))
        }
        ("RS256", "PRIVATE KEY" | "RSA PRIVATE KEY") => {
            let pair = if pem.tag() == "PRIVATE KEY" {
                ring::rsa::KeyPair::from_pkcs8(der)
            } else {
                ring::rsa::KeyPair::from_der(der)
            }
            .map_err(|e| config_error(SETTING, path, format!("not an RSA key: {e}")))?;
            if pair.public().modulus_len() < 256 {
                return Err(config_error(
                    SETTING,
                    path,
                    "RSA keys must be 2048 bits or more",
                ));
            }
            let parts = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(pair.public());
            let key =
                EncodingKey::from_rsa_pem(&text).map_err(|e| config_error(SETTING, path, e))?;
            Ok((key, PublicJwk::rsa(&parts.n, &parts.e)))
        }
        (alg, tag) => Err(config_error(
            SETTING,
            path,
            format!("a {tag} block cannot sign {alg} (keys.algorithm)"),
        )),
    }
}

/// The name of the generated key's row.
const GENERATED: &str = "generated";
/// Binds a ciphertext to its purpose.
const AAD: &[u8] = b"authzd/token-signing-key/v1";

fn sealing_key(kek: &Secret) -> Result<ring::aead::LessSafeKey> {
    let bytes = Sha256::digest(kek.expose().as_bytes());
    let key = ring::aead::UnboundKey::new(&ring::aead::AES_256_GCM, &bytes)
        .map_err(|_| Error::internal("AES-256-GCM key"))?;
    Ok(ring::aead::LessSafeKey::new(key))
}

fn seal(kek: &Secret, plain: &[u8]) -> Result<Vec<u8>> {
    let key = sealing_key(kek)?;
    let mut nonce = [0u8; 12];
    SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| Error::internal("no randomness for a nonce"))?;
    let mut sealed = plain.to_vec();
    key.seal_in_place_append_tag(
        ring::aead::Nonce::assume_unique_for_key(nonce),
        ring::aead::Aad::from(AAD),
        &mut sealed,
    )
    .map_err(|_| Error::internal("sealing the signing key"))?;
    let mut out = nonce.to_vec();
    out.extend(sealed);
    Ok(out)
}

fn open(kek: &Secret, stored: &[u8]) -> Result<Vec<u8>> {
    let refused = || {
        Error::invalid(
            "keys.encryption_key",
            "does not decrypt the signing key stored in the database",
        )
    };
    if stored.len() < 12 {
        return Err(refused());
    }
    let key = sealing_key(kek)?;
    let (nonce, sealed) = stored.split_at(12);
    let nonce = ring::aead::Nonce::try_assume_unique_for_key(nonce).map_err(|_| refused())?;
    let mut buffer = sealed.to_vec();
    let plain = key
        .open_in_place(nonce, ring::aead::Aad::from(AAD), &mut buffer)
        .map_err(|_| refused())?;
    Ok(plain.to_vec())
}

/// The generated Ed25519 key: created by the first replica to start, read
/// by every other.
async fn generated_key(
    db: &impl ConnectionTrait,
    kek: Option<&Secret>,
    now_ms: i64,
) -> Result<Vec<u8>> {
    if store::tokens::find_signing_key(db, GENERATED)
        .await?
        .is_none()
    {
        let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map_err(|_| Error::internal("cannot generate an Ed25519 key"))?;
        let (material, encrypted) = match kek {
            Some(kek) => (seal(kek, pkcs8.as_ref())?, true),
            None => (pkcs8.as_ref().to_vec(), false),
        };
        // A replica starting at the same moment may win: then its key is read.
        store::tokens::insert_signing_key(db, GENERATED, "EdDSA", &material, encrypted, now_ms)
            .await?;
    }
    let stored = store::tokens::find_signing_key(db, GENERATED)
        .await?
        .ok_or_else(|| Error::internal("the generated signing key vanished"))?;
    match (stored.encrypted, kek) {
        (true, Some(kek)) => open(kek, &stored.material),
        (true, None) => Err(Error::invalid(
            "keys.encryption_key",
            "the signing key stored in the database is encrypted: set the key that encrypted it",
        )),
        (false, _) => {
            tracing::warn!(
                "the token signing key is stored in clear in the database (token_signing_keys); \
                 set keys.encryption_key before the first start to encrypt it, or configure keys.private_key_path"
            );
            Ok(stored.material)
        }
    }
}

impl SigningKeys {
    pub async fn load(
        settings: &KeySettings,
        db: &impl ConnectionTrait,
        now_ms: i64,
    ) -> Result<Self> {
        let (signer, mut own) = match &settings.private_key_path {
            Some(path) => private_key_file(&settings.algorithm, path)?,
            None => {
                let pkcs8 = generated_key(db, settings.encryption_key.as_ref(), now_ms).await?;
                let pair = ring::signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(&pkcs8)
                    .map_err(|_| Error::internal("the stored signing key is not an Ed25519 key"))?;
                (
                    EncodingKey::from_ed_der(&pkcs8),
                    PublicJwk::okp(pair.public_key().as_ref()),
                )
            }
        };
        if let Some(path) = &settings.public_key_path {
            let public = public_key_file("keys.public_key_path", path)?;
            if public != own {
                return Err(config_error(
                    "keys.public_key_path",
                    path,
                    "is not the public key of keys.private_key_path",
                ));
            }
        }
        own.signing = true;
        let mut jwks = vec![own];
        for path in &settings.previous_public_key_paths {
            let key = public_key_file("keys.previous_public_key_paths", path)?;
            if !jwks.iter().any(|k| k.kid == key.kid) {
                jwks.push(key);
            }
        }
        let verifiers = jwks
            .into_iter()
            .map(|jwk| {
                Ok(Verifier {
                    algorithm: jwk.algorithm(),
                    key: jwk.decoding_key()?,
                    jwk,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let document = serde_json::json!({
            "keys": verifiers.iter().map(|v| v.jwk.json()).collect::<Vec<_>>(),
        });
        Ok(Self {
            signer,
            signer_kid: verifiers[0].jwk.kid.clone(),
            signer_algorithm: verifiers[0].algorithm,
            jwks: document.to_string(),
            verifiers,
        })
    }

    pub fn sign<T: serde::Serialize>(&self, claims: &T) -> Result<String> {
        let mut header = jsonwebtoken::Header::new(self.signer_algorithm);
        header.kid = Some(self.signer_kid.clone());
        jsonwebtoken::encode(&header, claims, &self.signer)
            .map_err(|e| Error::internal(format!("signing a token: {e}")))
    }

    pub fn verifier(&self, kid: &str) -> Option<&Verifier> {
        self.verifiers.iter().find(|v| v.jwk.kid == kid)
    }

    pub fn public_keys(&self) -> impl Iterator<Item = &PublicJwk> {
        self.verifiers.iter().map(|v| &v.jwk)
    }

    /// The JWK set document.
    pub fn jwks(&self) -> &str {
        &self.jwks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_key_opens_only_with_its_key() {
        let kek = Secret::new("0123456789abcdef0123456789abcdef".to_owned());
        let other = Secret::new("fedcba9876543210fedcba9876543210".to_owned());
        let sealed = seal(&kek, b"pkcs8 bytes").unwrap();
        assert_ne!(&sealed[12..], b"pkcs8 bytes");
        assert_eq!(open(&kek, &sealed).unwrap(), b"pkcs8 bytes");
        assert!(open(&other, &sealed).is_err());
        let mut tampered = sealed.clone();
        tampered[20] ^= 1;
        assert!(open(&kek, &tampered).is_err());
    }

    #[test]
    fn key_ids_are_rfc7638_thumbprints() {
        // RFC 8037 appendix A.3: the thumbprint of its example key.
        let x = URL_SAFE_NO_PAD
            .decode("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
            .unwrap();
        assert_eq!(
            PublicJwk::okp(&x).kid,
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
    }
}

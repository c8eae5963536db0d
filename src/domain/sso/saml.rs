//! Verifying a SAML Response: what makes authzd harder to fool than the
//! libraries that made the news (ruby-saml, samlify, node-saml, authentik,
//! Keycloak: nearly all "the verified node is not the node the application
//! read").
//!
//! The rules, in order:
//! 1. Size and shape before any cryptography: base64 of UTF-8 XML, no DTD
//!    (so no entity), no comment or processing instruction anywhere (a
//!    comment splits a NameID's text: `al<!---->ice@corp`), the root a
//!    `samlp:Response`, exactly one `saml:Assertion` in the whole
//!    document, no encrypted one, no two elements with one `ID`, no
//!    namespaced `ID` attribute.
//! 2. Every `ds:Signature` is a child of the Response or the Assertion,
//!    has one `Reference`, to its parent's `ID`, by an allowed algorithm
//!    (RSA or ECDSA with SHA-256 or stronger; no SHA-1), with only the
//!    enveloped-signature and exclusive canonicalisation transforms (no
//!    XPath, no XSLT). Which of the two is signed is checked against the
//!    provider's `require_signed_*`.
//! 3. xmlsec (through samael) verifies every signature against the
//!    certificates pinned from the provider's metadata (a certificate in
//!    the message's `KeyInfo` is never used) and returns the signed XML
//!    alone: everything identity comes from is read from that reduced
//!    document, never from the one posted.
//! 4. What the Response says outside a signature (its Status, Destination
//!    and InResponseTo when only the Assertion is signed) can only refuse:
//!    it is checked, never believed.

use base64::Engine;
use chrono::{DateTime, Utc};

use crate::model::IdentityProvider;

const SAMLP: &str = "urn:oasis:names:tc:SAML:2.0:protocol";
const SAML: &str = "urn:oasis:names:tc:SAML:2.0:assertion";
const DS: &str = "http://www.w3.org/2000/09/xmldsig#";
const EXC_C14N: &str = "http://www.w3.org/2001/10/xml-exc-c14n#";
const EXC_C14N_COMMENTS: &str = "http://www.w3.org/2001/10/xml-exc-c14n#WithComments";
const ENVELOPED: &str = "http://www.w3.org/2000/09/xmldsig#enveloped-signature";
const SUCCESS: &str = "urn:oasis:names:tc:SAML:2.0:status:Success";
const BEARER: &str = "urn:oasis:names:tc:SAML:2.0:cm:bearer";

/// The largest posted response, base64 (an assertion with a few hundred
/// group names is tens of KiB).
pub const MAX_RESPONSE_BASE64: usize = 512 * 1024;

/// Elements in a response, and children of one element: far above any
/// real assertion (hundreds of group values), far below what makes
/// xmlsec's reduction (quadratic in siblings, recursive) a burden.
const MAX_ELEMENTS: usize = 20_000;
const MAX_CHILDREN: usize = 2_000;

/// The longest `ID` remembered (the replay table's column).
const MAX_ID_CHARS: usize = 256;

/// Signature algorithms accepted, and the digests that go with them.
const SIGNATURE_ALGORITHMS: [samael::crypto::AllowedSignatureAlgorithm; 6] = {
    use samael::crypto::AllowedSignatureAlgorithm as A;
    [
        A::RsaSha256,
        A::RsaSha384,
        A::RsaSha512,
        A::EcdsaSha256,
        A::EcdsaSha384,
        A::EcdsaSha512,
    ]
};

/// Why a response was refused: the caller sees only the uniform
/// UNAUTHENTICATED; this goes to the log, the metrics and the audit record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    TooLarge,
    NotBase64,
    NotXml,
    Dtd,
    CommentOrInstruction,
    NotAResponse,
    AssertionCount,
    Encrypted,
    DuplicateId,
    NamespacedId,
    SignaturePlacement,
    SignatureReference,
    SignatureAlgorithm,
    SignatureTransform,
    UnsignedResponse,
    UnsignedAssertion,
    BadSignature,
    Status,
    Issuer,
    Audience,
    Destination,
    Recipient,
    NotYetValid,
    Expired,
    NoSubject,
    InResponseTo,
    ForeignCertificate,
    Encoding,
    TooComplex,
    BadTime,
    BadId,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TooLarge => "saml_too_large",
            Self::NotBase64 => "saml_not_base64",
            Self::NotXml => "saml_not_xml",
            Self::Dtd => "saml_dtd",
            Self::CommentOrInstruction => "saml_comment",
            Self::NotAResponse => "saml_not_a_response",
            Self::AssertionCount => "saml_assertion_count",
            Self::Encrypted => "saml_encrypted_assertion",
            Self::DuplicateId => "saml_duplicate_id",
            Self::NamespacedId => "saml_namespaced_id",
            Self::SignaturePlacement => "saml_signature_placement",
            Self::SignatureReference => "saml_signature_reference",
            Self::SignatureAlgorithm => "saml_signature_algorithm",
            Self::SignatureTransform => "saml_signature_transform",
            Self::UnsignedResponse => "saml_unsigned_response",
            Self::UnsignedAssertion => "saml_unsigned_assertion",
            Self::BadSignature => "saml_bad_signature",
            Self::Status => "saml_status",
            Self::Issuer => "saml_issuer",
            Self::Audience => "saml_audience",
            Self::Destination => "saml_destination",
            Self::Recipient => "saml_recipient",
            Self::NotYetValid => "saml_not_yet_valid",
            Self::Expired => "saml_expired",
            Self::NoSubject => "saml_no_subject",
            Self::InResponseTo => "saml_in_response_to",
            Self::ForeignCertificate => "saml_foreign_certificate",
            Self::Encoding => "saml_encoding",
            Self::TooComplex => "saml_too_complex",
            Self::BadTime => "saml_bad_time",
            Self::BadId => "saml_bad_id",
        }
    }
}

/// What the SP expects of a response to it.
pub struct Expect<'a> {
    pub idp: &'a IdentityProvider,
    pub sp_entity_id: &'a str,
    pub acs_url: &'a str,
    pub now: DateTime<Utc>,
    pub skew: chrono::Duration,
}

/// A verified assertion: everything here was read from signed XML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub assertion_id: String,
    pub name_id: String,
    /// (name, values) in document order.
    pub attributes: Vec<(String, Vec<String>)>,
    /// The request this answers, if the IdP says (absent: unsolicited).
    pub in_response_to: Option<String>,
    /// Until when the assertion could be replayed: remembered that long.
    pub not_on_or_after: DateTime<Utc>,
}

impl Verified {
    /// The values of an attribute (by `Name`), in order.
    pub fn values(&self, name: &str) -> Vec<&str> {
        self.attributes
            .iter()
            .filter(|(n, _)| n == name)
            .flat_map(|(_, v)| v.iter().map(String::as_str))
            .collect()
    }
}

fn is(node: roxmltree::Node<'_, '_>, namespace: &str, name: &str) -> bool {
    node.is_element()
        && node.tag_name().name() == name
        && node.tag_name().namespace() == Some(namespace)
}

fn child<'a, 'i>(
    node: roxmltree::Node<'a, 'i>,
    namespace: &str,
    name: &str,
) -> Option<roxmltree::Node<'a, 'i>> {
    node.children().find(|c| is(*c, namespace, name))
}

fn children<'a, 'i>(
    node: roxmltree::Node<'a, 'i>,
    namespace: &'static str,
    name: &'static str,
) -> impl Iterator<Item = roxmltree::Node<'a, 'i>> {
    node.children().filter(move |c| is(*c, namespace, name))
}

/// An element's whole text, exactly as signed; `None` if it holds
/// anything but one text node, or white space around it (`bob ` is not
/// quietly read as `bob`).
fn text_of(node: roxmltree::Node<'_, '_>) -> Option<String> {
    let mut kids = node.children();
    match (kids.next(), kids.next()) {
        (Some(t), None) if t.is_text() => t.text().filter(|s| s.trim() == *s).map(str::to_owned),
        (None, None) => Some(String::new()),
        _ => None,
    }
}

/// A time attribute: absent is `None`; present but unreadable is refused
/// (never taken as absent).
fn time(value: Option<&str>) -> Result<Option<DateTime<Utc>>, Refusal> {
    match value {
        None => Ok(None),
        Some(v) => DateTime::parse_from_rfc3339(v)
            .map(|t| Some(t.with_timezone(&Utc)))
            .map_err(|_| Refusal::BadTime),
    }
}

/// The document is read here as UTF-8; libxml2 (under xmlsec) would honour
/// another declared encoding (UTF-7's `+ADw-` is `<`) and so verify a
/// different document than the one checked. Only UTF-8 is taken.
fn check_encoding(xml: &str) -> Result<(), Refusal> {
    let xml = xml.strip_prefix('\u{feff}').unwrap_or(xml);
    if let Some(declaration) = xml.strip_prefix("<?xml") {
        let declaration = declaration.split("?>").next().unwrap_or_default();
        if let Some(rest) = declaration.split("encoding").nth(1) {
            let value: String = rest
                .trim_start_matches([' ', '=', '"', '\''])
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                .collect();
            if !value.eq_ignore_ascii_case("utf-8") && !value.eq_ignore_ascii_case("utf8") {
                return Err(Refusal::Encoding);
            }
        }
    }
    Ok(())
}

fn parse(xml: &str) -> Result<roxmltree::Document<'_>, Refusal> {
    // roxmltree refuses a DOCTYPE unless asked to allow one, and so any
    // entity declaration with it.
    roxmltree::Document::parse(xml).map_err(|e| match e {
        roxmltree::Error::DtdDetected => Refusal::Dtd,
        _ => Refusal::NotXml,
    })
}

/// Which of the Response and the Assertion carry a signature.
struct Signed {
    response: bool,
    assertion: bool,
}

/// Rules 1 and 2 on the posted document; `pinned` are the provider's
/// certificates (DER).
fn precheck(doc: &roxmltree::Document<'_>, pinned: &[Vec<u8>]) -> Result<Signed, Refusal> {
    if doc.descendants().any(|n| n.is_comment() || n.is_pi()) {
        return Err(Refusal::CommentOrInstruction);
    }
    let mut elements = 0;
    for node in doc.descendants().filter(roxmltree::Node::is_element) {
        elements += 1;
        if elements > MAX_ELEMENTS
            || node.children().filter(roxmltree::Node::is_element).count() > MAX_CHILDREN
        {
            return Err(Refusal::TooComplex);
        }
    }
    let root = doc.root_element();
    if !is(root, SAMLP, "Response") {
        return Err(Refusal::NotAResponse);
    }
    if doc
        .descendants()
        .any(|n| n.is_element() && n.tag_name().name() == "EncryptedAssertion")
    {
        return Err(Refusal::Encrypted);
    }
    // Every element named Assertion, in any namespace or none: a look-alike
    // beside the real one is exactly what wrapping attacks hide behind.
    let assertions: Vec<_> = doc
        .descendants()
        .filter(|n| n.is_element() && n.tag_name().name() == "Assertion")
        .collect();
    let [assertion] = assertions.as_slice() else {
        return Err(Refusal::AssertionCount);
    };
    if !is(*assertion, SAML, "Assertion") || assertion.parent_element() != Some(root) {
        return Err(Refusal::AssertionCount);
    }
    let mut ids = std::collections::HashSet::new();
    for node in doc.descendants().filter(roxmltree::Node::is_element) {
        for attribute in node.attributes() {
            let local = attribute.name();
            if local.eq_ignore_ascii_case("id") {
                if attribute.namespace().is_some() {
                    return Err(Refusal::NamespacedId);
                }
                if attribute.value().chars().count() > MAX_ID_CHARS {
                    return Err(Refusal::BadId);
                }
                if !ids.insert(attribute.value()) {
                    return Err(Refusal::DuplicateId);
                }
            }
        }
    }
    let mut signed = Signed {
        response: false,
        assertion: false,
    };
    for signature in doc.descendants().filter(|n| is(*n, DS, "Signature")) {
        let parent = signature
            .parent_element()
            .ok_or(Refusal::SignaturePlacement)?;
        if parent == root {
            signed.response = true;
        } else if parent == *assertion {
            signed.assertion = true;
        } else {
            return Err(Refusal::SignaturePlacement);
        }
        if children(parent, DS, "Signature").count() != 1 {
            return Err(Refusal::SignaturePlacement);
        }
        let id = parent.attribute("ID").ok_or(Refusal::SignatureReference)?;
        // xmlsec verifies with the pinned key and never reads KeyInfo: a
        // certificate there that the metadata does not have is refused
        // here, not silently ignored.
        for certificate in signature
            .descendants()
            .filter(|n| is(*n, DS, "X509Certificate"))
        {
            let text: String = certificate
                .text()
                .unwrap_or_default()
                .split_ascii_whitespace()
                .collect();
            let der = base64::engine::general_purpose::STANDARD
                .decode(text.as_bytes())
                .map_err(|_| Refusal::ForeignCertificate)?;
            if !pinned.contains(&der) {
                return Err(Refusal::ForeignCertificate);
            }
        }
        let info = child(signature, DS, "SignedInfo").ok_or(Refusal::SignatureReference)?;
        let canonical =
            child(info, DS, "CanonicalizationMethod").and_then(|n| n.attribute("Algorithm"));
        if canonical != Some(EXC_C14N) {
            return Err(Refusal::SignatureTransform);
        }
        let method = child(info, DS, "SignatureMethod").and_then(|n| n.attribute("Algorithm"));
        let Some(algorithm) = SIGNATURE_ALGORITHMS
            .iter()
            .find(|a| Some(a.signature_uri()) == method)
        else {
            return Err(Refusal::SignatureAlgorithm);
        };
        let references: Vec<_> = children(info, DS, "Reference").collect();
        let [reference] = references.as_slice() else {
            return Err(Refusal::SignatureReference);
        };
        if reference.attribute("URI") != Some(format!("#{id}").as_str()) {
            return Err(Refusal::SignatureReference);
        }
        let digest = child(*reference, DS, "DigestMethod").and_then(|n| n.attribute("Algorithm"));
        if digest != Some(algorithm.digest_uri()) {
            return Err(Refusal::SignatureAlgorithm);
        }
        if let Some(transforms) = child(*reference, DS, "Transforms") {
            for transform in transforms.children().filter(roxmltree::Node::is_element) {
                let ok = is(transform, DS, "Transform")
                    && matches!(transform.attribute("Algorithm"), Some(ENVELOPED | EXC_C14N));
                if !ok || transform.attribute("Algorithm") == Some(EXC_C14N_COMMENTS) {
                    return Err(Refusal::SignatureTransform);
                }
            }
        }
    }
    Ok(signed)
}

/// Rules 1 to 4: the verified assertion, or why not. CPU work (xmlsec):
/// run it off the async workers.
pub fn verify(expect: &Expect<'_>, saml_response: &str) -> Result<Verified, Refusal> {
    if saml_response.len() > MAX_RESPONSE_BASE64 {
        return Err(Refusal::TooLarge);
    }
    let compact: Vec<u8> = saml_response
        .bytes()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(&compact)
        .map_err(|_| Refusal::NotBase64)?;
    let xml = std::str::from_utf8(&bytes).map_err(|_| Refusal::NotXml)?;
    check_encoding(xml)?;
    let posted = parse(xml)?;
    let signed = precheck(&posted, &expect.idp.metadata.certificates)?;
    if expect.idp.require_signed_response && !signed.response {
        return Err(Refusal::UnsignedResponse);
    }
    if expect.idp.require_signed_assertions && !signed.assertion {
        return Err(Refusal::UnsignedAssertion);
    }
    if !signed.response && !signed.assertion {
        return Err(Refusal::UnsignedAssertion);
    }
    // Rule 4: what the unsigned envelope says can only refuse.
    let response = posted.root_element();
    let status = child(response, SAMLP, "Status")
        .and_then(|s| child(s, SAMLP, "StatusCode"))
        .and_then(|c| c.attribute("Value"));
    if status != Some(SUCCESS) {
        return Err(Refusal::Status);
    }
    if response.attribute("Destination") != Some(expect.acs_url) {
        return Err(Refusal::Destination);
    }
    let envelope_in_response_to = response.attribute("InResponseTo").map(str::to_owned);

    // Rule 3.
    let certificates: Vec<samael::crypto::CertificateDer> = expect
        .idp
        .metadata
        .certificates
        .iter()
        .map(|der| samael::crypto::CertificateDer::from(der.clone()))
        .collect();
    if certificates.is_empty() {
        // samael skips verification without a certificate: never ask it to.
        return Err(Refusal::BadSignature);
    }
    use samael::crypto::CryptoProvider;
    let reduced = samael::crypto::Crypto::reduce_xml_to_signed_with_allowed_algorithms(
        xml,
        &certificates,
        samael::crypto::ReduceMode::ValidateAndMarkNoAncestors,
        Some(&SIGNATURE_ALGORITHMS),
    )
    .map_err(|_| Refusal::BadSignature)?;
    let verified = parse(&reduced).map_err(|_| Refusal::BadSignature)?;
    let root = verified.root_element();
    let assertion = if is(root, SAML, "Assertion") {
        root
    } else if is(root, SAMLP, "Response") {
        let mut found = children(root, SAML, "Assertion");
        match (found.next(), found.next()) {
            (Some(a), None) => a,
            _ => return Err(Refusal::AssertionCount),
        }
    } else {
        return Err(Refusal::BadSignature);
    };
    // The reduced document holds what a signature covered and nothing
    // else; the assertion read here is the one that was verified.
    let issuer = child(assertion, SAML, "Issuer").and_then(text_of);
    if issuer.as_deref() != Some(expect.idp.metadata.entity_id.as_str()) {
        return Err(Refusal::Issuer);
    }
    if is(root, SAMLP, "Response")
        && let Some(issuer) = child(root, SAML, "Issuer")
        && text_of(issuer).as_deref() != Some(expect.idp.metadata.entity_id.as_str())
    {
        return Err(Refusal::Issuer);
    }
    let earliest = expect.now + expect.skew;
    let latest = expect.now - expect.skew;
    let conditions = child(assertion, SAML, "Conditions").ok_or(Refusal::Audience)?;
    if time(conditions.attribute("NotBefore"))?.is_some_and(|t| t > earliest) {
        return Err(Refusal::NotYetValid);
    }
    let conditions_end = time(conditions.attribute("NotOnOrAfter"))?;
    if conditions_end.is_some_and(|t| t <= latest) {
        return Err(Refusal::Expired);
    }
    let audiences: Vec<String> = children(conditions, SAML, "AudienceRestriction")
        .flat_map(|r| children(r, SAML, "Audience"))
        .filter_map(text_of)
        .collect();
    // Every restriction must admit us; there must be at least one.
    let restrictions: Vec<_> = children(conditions, SAML, "AudienceRestriction").collect();
    if restrictions.is_empty()
        || !restrictions.iter().all(|r| {
            children(*r, SAML, "Audience")
                .filter_map(text_of)
                .any(|a| a == expect.sp_entity_id)
        })
    {
        tracing::debug!(?audiences, "SAML audience mismatch");
        return Err(Refusal::Audience);
    }
    let subject = child(assertion, SAML, "Subject").ok_or(Refusal::NoSubject)?;
    let name_id = child(subject, SAML, "NameID")
        .and_then(text_of)
        .ok_or(Refusal::NoSubject)?;
    let confirmation = children(subject, SAML, "SubjectConfirmation")
        .find(|c| c.attribute("Method") == Some(BEARER))
        .and_then(|c| child(c, SAML, "SubjectConfirmationData"))
        .ok_or(Refusal::Recipient)?;
    if confirmation.attribute("Recipient") != Some(expect.acs_url) {
        return Err(Refusal::Recipient);
    }
    if time(confirmation.attribute("NotBefore"))?.is_some_and(|t| t > earliest) {
        return Err(Refusal::NotYetValid);
    }
    let confirmation_end = time(confirmation.attribute("NotOnOrAfter"))?.ok_or(Refusal::Expired)?;
    if confirmation_end <= latest {
        return Err(Refusal::Expired);
    }
    let in_response_to = confirmation.attribute("InResponseTo").map(str::to_owned);
    if envelope_in_response_to.is_some() && envelope_in_response_to != in_response_to {
        return Err(Refusal::InResponseTo);
    }
    if is(root, SAMLP, "Response") && root.attribute("Destination") != Some(expect.acs_url) {
        return Err(Refusal::Destination);
    }
    let assertion_id = assertion
        .attribute("ID")
        .ok_or(Refusal::SignatureReference)?
        .to_owned();
    let mut attributes = Vec::new();
    for statement in children(assertion, SAML, "AttributeStatement") {
        for attribute in children(statement, SAML, "Attribute") {
            let Some(name) = attribute.attribute("Name") else {
                continue;
            };
            let values = children(attribute, SAML, "AttributeValue")
                .filter_map(text_of)
                .filter(|v| !v.is_empty())
                .collect();
            attributes.push((name.to_owned(), values));
        }
    }
    // Remembered past the last instant any replica (each within the skew
    // of the true time) could still accept it.
    let not_on_or_after = match conditions_end {
        Some(end) => end.max(confirmation_end),
        None => confirmation_end,
    } + expect.skew
        + expect.skew;
    Ok(Verified {
        assertion_id,
        name_id,
        attributes,
        in_response_to,
        not_on_or_after,
    })
}

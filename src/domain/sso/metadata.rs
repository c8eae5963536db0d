//! SAML metadata: reading an identity provider's, writing ours.
//!
//! An IdP's metadata is trusted configuration (an administrator pasted
//! it), but it is still parsed defensively: no DTD (so no entity can
//! expand or reach a file), a size cap, and only the elements sign-in
//! needs are read from it, each checked for what it must be.

use base64::Engine;

use crate::error::{Error, Result};
use crate::model::IdpMetadata;

const MD: &str = "urn:oasis:names:tc:SAML:2.0:metadata";
const DS: &str = "http://www.w3.org/2000/09/xmldsig#";
const REDIRECT_BINDING: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect";
const POST_BINDING: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST";

/// The largest metadata document accepted (Entra's and Okta's are a few
/// KiB; aggregates of many entities are not what this field is for).
pub const MAX_METADATA_BYTES: usize = 256 * 1024;

/// Reads what sign-in needs from an identity provider's metadata: its
/// entity id, its HTTP-Redirect sign-in address and its signing
/// certificates. Any problem is `INVALID_ARGUMENT` naming `field`.
pub fn parse_idp_metadata(field: &str, xml: &str) -> Result<IdpMetadata> {
    let bad = |reason: String| Error::invalid(field, reason);
    if xml.len() > MAX_METADATA_BYTES {
        return Err(bad(format!(
            "must be at most {} KiB",
            MAX_METADATA_BYTES / 1024
        )));
    }
    // roxmltree refuses a DOCTYPE unless asked to allow one.
    let doc = roxmltree::Document::parse(xml)
        .map_err(|e| bad(format!("is not well-formed XML without a DTD: {e}")))?;
    let root = doc.root_element();
    if !is(root, MD, "EntityDescriptor") {
        return Err(bad(
            "must be one SAML 2.0 md:EntityDescriptor (an aggregate of several is not accepted)"
                .to_owned(),
        ));
    }
    let entity_id = root
        .attribute("entityID")
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .ok_or_else(|| bad("names no entityID".to_owned()))?;
    let mut descriptors = root.children().filter(|n| is(*n, MD, "IDPSSODescriptor"));
    let idp = descriptors
        .next()
        .ok_or_else(|| bad("has no md:IDPSSODescriptor".to_owned()))?;
    if descriptors.next().is_some() {
        return Err(bad("has more than one md:IDPSSODescriptor".to_owned()));
    }
    let sso_url = idp
        .children()
        .filter(|n| is(*n, MD, "SingleSignOnService"))
        .find(|n| n.attribute("Binding") == Some(REDIRECT_BINDING))
        .and_then(|n| n.attribute("Location"))
        .map(str::trim)
        .filter(|l| l.starts_with("https://") || l.starts_with("http://"))
        .ok_or_else(|| {
            bad("names no http(s) SingleSignOnService with the HTTP-Redirect binding".to_owned())
        })?;
    let mut certificates = Vec::new();
    for key in idp.children().filter(|n| is(*n, MD, "KeyDescriptor")) {
        // A key without `use` serves both purposes.
        if key.attribute("use").is_some_and(|u| u != "signing") {
            continue;
        }
        for cert in key.descendants().filter(|n| is(*n, DS, "X509Certificate")) {
            let text: String = cert
                .text()
                .unwrap_or_default()
                .chars()
                .filter(|c| !c.is_ascii_whitespace())
                .collect();
            let der = base64::engine::general_purpose::STANDARD
                .decode(text.as_bytes())
                .map_err(|_| bad("holds an X509Certificate that is not base64".to_owned()))?;
            if x509_parser::parse_x509_certificate(&der).is_err() {
                return Err(bad(
                    "holds an X509Certificate that is not an X.509 certificate".to_owned(),
                ));
            }
            if !certificates.contains(&der) {
                certificates.push(der);
            }
        }
    }
    if certificates.is_empty() {
        return Err(bad("names no signing certificate".to_owned()));
    }
    Ok(IdpMetadata {
        xml: xml.to_owned(),
        entity_id: entity_id.to_owned(),
        sso_url: sso_url.to_owned(),
        certificates,
    })
}

fn is(node: roxmltree::Node<'_, '_>, namespace: &str, name: &str) -> bool {
    node.is_element()
        && node.tag_name().name() == name
        && node.tag_name().namespace() == Some(namespace)
}

/// The SHA-256 fingerprint of a DER certificate, in lower-case hex: what
/// an administrator compares with the IdP's console.
pub fn fingerprint(der: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What an identity provider needs to know about authzd as one of its
/// service providers: paste it into Okta, Entra ID or Keycloak.
pub fn sp_metadata(entity_id: &str, acs_url: &str, want_assertions_signed: bool) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<md:EntityDescriptor xmlns:md="{MD}" entityID="{entity_id}">
  <md:SPSSODescriptor AuthnRequestsSigned="false" WantAssertionsSigned="{want_assertions_signed}" protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">
    <md:NameIDFormat>urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified</md:NameIDFormat>
    <md:NameIDFormat>urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress</md:NameIDFormat>
    <md:NameIDFormat>urn:oasis:names:tc:SAML:2.0:nameid-format:persistent</md:NameIDFormat>
    <md:AssertionConsumerService Binding="{POST_BINDING}" Location="{acs_url}" index="0" isDefault="true"/>
  </md:SPSSODescriptor>
</md:EntityDescriptor>
"#,
        entity_id = escape(entity_id),
        acs_url = escape(acs_url),
    )
}

/// XML escaping, for attribute values and text.
pub(super) fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(result: Result<IdpMetadata>) -> String {
        match result {
            Err(Error::InvalidArgument { field, reason }) => format!("{field}: {reason}"),
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn a_doctype_is_refused_before_any_entity_is_read() {
        let xml = r#"<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="&e;"/>"#;
        let got = field(parse_idp_metadata("idp_metadata_xml", xml));
        assert!(
            got.starts_with("idp_metadata_xml: is not well-formed XML without a DTD"),
            "{got}"
        );
    }

    #[test]
    fn the_sp_metadata_escapes_what_it_quotes() {
        let xml = sp_metadata("https://a/\"x<", "https://a/acs?x=1&y=2", true);
        let doc = roxmltree::Document::parse(&xml)
            .map(|d| d.root_element().attribute("entityID").map(str::to_owned));
        assert_eq!(doc.ok().flatten().as_deref(), Some("https://a/\"x<"));
        assert!(xml.contains("x=1&amp;y=2"));
    }
}

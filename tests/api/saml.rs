//! SAML sign-in against a real IdP (tests/idp/saml: samlify's metadata and
//! xml-crypto's signatures, run by Node on loopback, one for the whole
//! test binary), and the attack corpus: documents the IdP signed,
//! mutated the ways the SAML libraries in the news were fooled.

use std::sync::OnceLock;

use authzd::domain::sso::sign_in::Answering;
use authzd::error::{AuthFailure, Error};
use authzd::pb;
use authzd::pb::identity_provider_service_client::IdentityProviderServiceClient;
use base64::Engine;
use serde_json::{Value, json};
use tonic::Code;

use crate::console::{header, http, jar, post, set_cookies, status};
use crate::dual;
use crate::support::*;

const PUBLIC_URL: &str = "https://authzd.example.com";

/// The IdP, started once per test binary.
pub struct Idp {
    pub host: String,
    pub metadata: String,
    _child: std::sync::Mutex<std::process::Child>,
}

pub fn idp() -> &'static Idp {
    static IDP: OnceLock<Idp> = OnceLock::new();
    IDP.get_or_init(|| {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/idp/saml");
        assert!(
            dir.join("node_modules").exists(),
            "the test IdP is not installed: run ./scripts/test (it runs `npm ci` in {})",
            dir.display()
        );
        let keys = tempfile::tempdir().unwrap().keep();
        let mut child = std::process::Command::new("node")
            .arg(dir.join("idp.js"))
            .args(["0", "--key-dir"])
            .arg(&keys)
            .args([
                "--entity-id",
                "https://idp.test/saml",
                "--exit-on-stdin-close",
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("node runs the test IdP");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        let info: Value = serde_json::from_str(&line).unwrap();
        let host = format!("127.0.0.1:{}", info["port"]);
        let metadata = std::thread::scope(|s| {
            s.spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap()
                    .block_on(async { http(&host, "GET", "/metadata", &[], "").await.1 })
            })
            .join()
            .unwrap()
        });
        Idp {
            host,
            metadata,
            _child: std::sync::Mutex::new(child),
        }
    })
}

impl Idp {
    /// A Response minted by the IdP: `options` as idp.js's POST /response
    /// takes them. Returns (base64, xml).
    async fn mint(&self, options: Value) -> (String, String) {
        let mut options = options;
        options["include_xml"] = json!(true);
        let (head, body) = http(&self.host, "POST", "/response", &[], &options.to_string()).await;
        assert_eq!(status(&head), 200, "{head}{body}");
        let out: Value = serde_json::from_str(&body).unwrap();
        (
            out["saml_response"].as_str().unwrap().to_owned(),
            out["xml"].as_str().unwrap().to_owned(),
        )
    }
}

fn b64(xml: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(xml)
}

fn idps(app: &TestApp) -> IdentityProviderServiceClient<tonic::transport::Channel> {
    IdentityProviderServiceClient::new(app.channel.clone())
}

struct Sp {
    entity_id: String,
    acs: String,
}

async fn spawn(backend: Backend) -> TestApp {
    spawn_app_with(backend, |c| {
        c.console.public_url = Some(PUBLIC_URL.to_owned());
        c.user_authentication.allow_api_keys_for_saml_users = true;
    })
    .await
}

/// The provider `okta` over the test IdP, with `adjust` applied.
async fn provider(
    app: &TestApp,
    adjust: impl FnOnce(&mut pb::CreateIdentityProviderRequest),
) -> Sp {
    let mut request = pb::CreateIdentityProviderRequest {
        name: "okta".into(),
        idp_metadata_xml: idp().metadata.clone(),
        default_account: "engineering".into(),
        default_role: "read-only".into(),
        ..Default::default()
    };
    adjust(&mut request);
    let made = idps(app)
        .create_identity_provider(as_admin(request))
        .await
        .unwrap()
        .into_inner();
    Sp {
        entity_id: made.sp_entity_id,
        acs: made.acs_url,
    }
}

async fn start(app: &TestApp, idp: &str) -> pb::StartSamlLoginResponse {
    app.tokens()
        .start_saml_login(pb::StartSamlLoginRequest {
            idp: idp.into(),
            relay_state: "/keys".into(),
        })
        .await
        .unwrap()
        .into_inner()
}

/// A response to a fresh request, signed as the defaults want.
async fn answer(app: &TestApp, sp: &Sp, name_id: &str, extra: Value) -> (String, String) {
    let request = start(app, "okta").await;
    let mut options = json!({
        "acs": sp.acs,
        "audience": sp.entity_id,
        "in_response_to": request.request_id,
        "name_id": name_id,
        "sign_response": true,
        "sign_assertion": true,
    });
    if let (Some(o), Some(e)) = (options.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            o.insert(k.clone(), v.clone());
        }
    }
    idp().mint(options).await
}

async fn grant(
    app: &TestApp,
    idp: &str,
    response: &str,
) -> Result<pb::CreateTokenResponse, tonic::Status> {
    app.tokens()
        .create_token(pb::CreateTokenRequest {
            grant: Some(pb::create_token_request::Grant::Saml(pb::SamlGrant {
                idp: idp.into(),
                saml_response: response.into(),
                request_id: String::new(),
            })),
            ..Default::default()
        })
        .await
        .map(tonic::Response::into_inner)
}

/// Why the domain refused a response (what the log, the metrics and the
/// audit record say), after the wire's uniform answer was checked.
async fn refusal(app: &TestApp, response: &str) -> String {
    // In-process first: a refusal after verification has spent the request
    // (so a second try would be refused for that instead).
    let reason = match app
        .core
        .saml_sign_in(
            "okta",
            response,
            Answering::AnyRequest,
            authzd::domain::authn::sources::Source::LOCAL,
        )
        .await
    {
        Err(Error::Unauthenticated(AuthFailure::Sso(reason))) => reason.to_owned(),
        other => panic!("expected an SSO refusal, got {other:?}"),
    };
    let status = grant(app, "okta", response).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert_eq!(status.message(), "invalid credentials");
    reason
}

async fn a_signed_response_signs_in_a_just_in_time_user(backend: Backend) {
    let app = spawn(backend).await;
    let sp = provider(&app, |_| {}).await;
    let started = start(&app, "okta").await;
    // The AuthnRequest goes to the IdP's HTTP-Redirect address.
    assert!(
        started
            .redirect_url
            .starts_with(&format!("http://{}/sso?SAMLRequest=", idp().host)),
        "{}",
        started.redirect_url
    );
    assert!(started.redirect_url.ends_with("&RelayState=%2Fkeys"));
    let (response, _) = idp()
        .mint(json!({
            "acs": sp.acs, "audience": sp.entity_id, "in_response_to": started.request_id,
            "name_id": "alice@corp.example", "sign_response": true, "sign_assertion": true,
        }))
        .await;
    let pair = grant(&app, "okta", &response).await.unwrap();
    let principal = app.token_login(&pair.access_token).await.unwrap();
    assert_eq!(principal.username, "alice@corp.example");
    assert_eq!(principal.account, "engineering");
    assert_eq!(principal.user_type(), pb::UserType::Saml);
    let roles: Vec<_> = principal
        .grants
        .iter()
        .map(|g| (g.role.as_str(), g.account.as_str()))
        .collect();
    assert_eq!(roles, [("read-only", "engineering")]);
    // The account was made a user account; the user names its IdP.
    let user = app
        .users()
        .get_user(as_admin(pb::GetUserRequest {
            account: "engineering".into(),
            username: "alice@corp.example".into(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(user.idp_name, "okta");
    assert!(user.password_last_updated.is_none());
    // The same response again is a replay; a new one signs the same user in.
    assert_eq!(refusal(&app, &response).await, "saml_replay");
    let (again, _) = answer(&app, &sp, "alice@corp.example", json!({})).await;
    let pair = grant(&app, "okta", &again).await.unwrap();
    assert_eq!(
        app.token_login(&pair.access_token).await.unwrap().username,
        "alice@corp.example"
    );
    // The seed's flow: a SAML user makes their own API key (the setting is
    // on here) and uses it.
    let key = app
        .keys()
        .create_api_key(as_bearer(
            &pair.access_token,
            pb::CreateApiKeyRequest {
                name: "laptop".into(),
                expires_at: in_days(&app.core, 1),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    app.key_login(&key.value).await.unwrap();
    // The changes are the IdP's in the trail.
    let events = pb::audit_service_client::AuditServiceClient::new(app.channel.clone())
        .list_events(as_admin(pb::ListEventsRequest {
            target: "alice@corp.example".into(),
            target_kind: "user".into(),
            kind: "change".into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .events;
    // The user's creation, by the IdP (in the RPC that carried the sign-in).
    let created = events
        .iter()
        .find(|e| format!("{:?}", e.detail).contains("federation"))
        .unwrap_or_else(|| panic!("no change by the IdP: {events:?}"));
    assert_eq!(created.rpc, "CreateToken");
    assert!(
        format!("{:?}", created.detail).contains("okta"),
        "{created:?}"
    );
}

async fn the_signing_requirements_hold_both_ways(backend: Backend) {
    let app = spawn(backend).await;
    let sp = provider(&app, |_| {}).await;
    let only = |response: bool, assertion: bool| json!({ "sign_response": response, "sign_assertion": assertion });
    // Defaults: both signatures required.
    let (r, _) = answer(&app, &sp, "a@corp", only(false, true)).await;
    assert_eq!(refusal(&app, &r).await, "saml_unsigned_response");
    let (r, _) = answer(&app, &sp, "a@corp", only(true, false)).await;
    assert_eq!(refusal(&app, &r).await, "saml_unsigned_assertion");
    let (r, _) = answer(&app, &sp, "a@corp", only(false, false)).await;
    assert_eq!(refusal(&app, &r).await, "saml_unsigned_response");
    // With the response's signature optional, the assertion's alone will do.
    idps(&app)
        .update_identity_provider(as_admin(pb::UpdateIdentityProviderRequest {
            name: "okta".into(),
            require_signed_response: Some(false),
            ..Default::default()
        }))
        .await
        .unwrap();
    let (r, _) = answer(&app, &sp, "a@corp", only(false, true)).await;
    grant(&app, "okta", &r).await.unwrap();
    let (r, _) = answer(&app, &sp, "a@corp", only(true, false)).await;
    assert_eq!(refusal(&app, &r).await, "saml_unsigned_assertion");
    // And the reverse.
    idps(&app)
        .update_identity_provider(as_admin(pb::UpdateIdentityProviderRequest {
            name: "okta".into(),
            require_signed_response: Some(true),
            require_signed_assertions: Some(false),
            ..Default::default()
        }))
        .await
        .unwrap();
    let (r, _) = answer(&app, &sp, "a@corp", only(true, false)).await;
    grant(&app, "okta", &r).await.unwrap();
    let (r, _) = answer(&app, &sp, "a@corp", only(false, true)).await;
    assert_eq!(refusal(&app, &r).await, "saml_unsigned_response");
}

/// The signed assertion, and a forged copy of it naming `mallory` (its
/// signature removed, its ID changed).
fn forge(xml: &str) -> (String, String) {
    let start = xml.find("<saml:Assertion").unwrap();
    let end = xml.find("</saml:Assertion>").unwrap() + "</saml:Assertion>".len();
    let signed = xml[start..end].to_owned();
    let mut forged = signed.clone();
    if let (Some(s), Some(e)) = (forged.find("<ds:Signature"), forged.find("</ds:Signature>")) {
        forged.replace_range(s..e + "</ds:Signature>".len(), "");
    }
    let name_start = forged.find("<saml:NameID").unwrap();
    let open_end = name_start + forged[name_start..].find('>').unwrap() + 1;
    let close = forged.find("</saml:NameID>").unwrap();
    forged.replace_range(open_end..close, "mallory@corp.example");
    let forged = forged.replacen("ID=\"_", "ID=\"_forged", 1);
    (signed, forged)
}

async fn the_attack_corpus_is_refused_for_the_right_reason(backend: Backend) {
    let app = spawn(backend).await;
    let sp = provider(&app, |_| {}).await;
    let fresh = async |extra: Value| answer(&app, &sp, "alice@corp.example", extra).await;
    let (_, xml) = fresh(json!({})).await;
    let (signed, forged) = forge(&xml);
    let after_issuer = |doc: &str, insert: &str| {
        let at = doc.find("</saml:Issuer>").unwrap() + "</saml:Issuer>".len();
        let mut out = doc.to_owned();
        out.insert_str(at, insert);
        out
    };
    let mut cases: Vec<(&str, String, &str)> = Vec::new();
    // Signature wrapping: a forged assertion beside, before, after or
    // inside the signed one, or hidden where a careless reader looks.
    cases.push((
        "forged after",
        xml.replace(&signed, &format!("{signed}{forged}")),
        "saml_assertion_count",
    ));
    cases.push((
        "XSW3: forged before",
        xml.replace(&signed, &format!("{forged}{signed}")),
        "saml_assertion_count",
    ));
    cases.push((
        "forged inside",
        xml.replace("</saml:Assertion>", &format!("{forged}</saml:Assertion>")),
        "saml_assertion_count",
    ));
    cases.push((
        "XSW4: the signed one inside a forged one",
        xml.replace(
            &signed,
            &forged.replace("</saml:Assertion>", &format!("{signed}</saml:Assertion>")),
        ),
        "saml_assertion_count",
    ));
    cases.push((
        "XSW7: forged in Extensions",
        after_issuer(
            &xml,
            &format!("<samlp:Extensions>{forged}</samlp:Extensions>"),
        ),
        "saml_assertion_count",
    ));
    cases.push((
        "XSW8 (assertion): forged in the signature's ds:Object",
        xml.replacen(
            "</ds:Signature>",
            &format!("<ds:Object>{forged}</ds:Object></ds:Signature>"),
            1,
        ),
        "saml_assertion_count",
    ));
    cases.push((
        "forged in Advice",
        xml.replacen(
            "<saml:Conditions",
            &format!("<saml:Advice>{forged}</saml:Advice><saml:Conditions"),
            1,
        ),
        "saml_assertion_count",
    ));
    cases.push((
        "signed one moved into Extensions, forged in its place",
        after_issuer(
            &xml.replace(&signed, &forged),
            &format!("<samlp:Extensions>{signed}</samlp:Extensions>"),
        ),
        "saml_assertion_count",
    ));
    cases.push((
        "forged replaces signed",
        xml.replace(&signed, &forged),
        "saml_unsigned_assertion",
    ));
    cases.push((
        "assertion without namespace beside",
        xml.replace(
            &signed,
            &format!("{signed}<Assertion ID=\"_x\">mallory</Assertion>"),
        ),
        "saml_assertion_count",
    ));
    // XSW5, XSW6, XSW8: the signed assertion altered in place (its
    // signature kept), an unsigned copy of the original at the end of the
    // message, inside the signature, or in a ds:Object of it.
    let altered = signed.replacen(
        "alice@corp.example</saml:NameID>",
        "mallory@corp.example</saml:NameID>",
        1,
    );
    let unsigned_original = {
        let mut copy = signed.clone();
        if let (Some(s), Some(e)) = (copy.find("<ds:Signature"), copy.find("</ds:Signature>")) {
            copy.replace_range(s..e + "</ds:Signature>".len(), "");
        }
        copy
    };
    let altered_xml = xml.replace(&signed, &altered);
    cases.push((
        "XSW5: altered, the original copied to the end",
        altered_xml.replace(
            "</samlp:Response>",
            &format!("{unsigned_original}</samlp:Response>"),
        ),
        "saml_assertion_count",
    ));
    cases.push((
        "XSW6: altered, the original inside its signature",
        altered_xml.replacen(
            "</ds:Signature>",
            &format!("{unsigned_original}</ds:Signature>"),
            1,
        ),
        "saml_assertion_count",
    ));
    cases.push((
        "XSW8: altered, the original in a ds:Object of its signature",
        altered_xml.replacen(
            "</ds:Signature>",
            &format!("<ds:Object>{unsigned_original}</ds:Object></ds:Signature>"),
            1,
        ),
        "saml_assertion_count",
    ));
    // XSW1, XSW2: on the Response's signature. A forged Response at the
    // root keeps the genuine signature, and the genuinely signed Response
    // (its signature taken out) goes after the signature, inside it, or
    // before it.
    let (_, response_signed) = fresh(json!({"sign_assertion": false})).await;
    let response_id = response_signed
        .split("ID=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    let sig_start = response_signed.find("<ds:Signature").unwrap();
    let sig_end = response_signed.find("</ds:Signature>").unwrap() + "</ds:Signature>".len();
    let genuine_signature = response_signed[sig_start..sig_end].to_owned();
    let mut original_unsigned = response_signed.clone();
    original_unsigned.replace_range(sig_start..sig_end, "");
    let forged_root = response_signed
        .replacen(&format!("ID=\"{response_id}\""), "ID=\"_evil\"", 1)
        .replacen(
            "alice@corp.example</saml:NameID>",
            "mallory@corp.example</saml:NameID>",
            1,
        );
    cases.push((
        "XSW1: forged Response, the signed one inside its signature",
        forged_root.replacen(
            &genuine_signature,
            &genuine_signature.replace(
                "</ds:Signature>",
                &format!("{original_unsigned}</ds:Signature>"),
            ),
            1,
        ),
        "saml_assertion_count",
    ));
    cases.push((
        "XSW2: forged Response, the signed one before its signature",
        forged_root.replacen(
            &genuine_signature,
            &format!("{original_unsigned}{genuine_signature}"),
            1,
        ),
        "saml_assertion_count",
    ));
    // The same with the forged Response carrying no assertion of its own:
    // only the wrapped, genuinely signed one.
    let forged_bare = {
        let a = forged_root.find("<saml:Assertion").unwrap();
        let b = forged_root.find("</saml:Assertion>").unwrap() + "</saml:Assertion>".len();
        let mut bare = forged_root.clone();
        bare.replace_range(a..b, "");
        bare
    };
    cases.push((
        "XSW1 without a forged assertion",
        forged_bare.replacen(
            &genuine_signature,
            &genuine_signature.replace(
                "</ds:Signature>",
                &format!("{original_unsigned}</ds:Signature>"),
            ),
            1,
        ),
        "saml_assertion_count",
    ));
    // A comment in the NameID: never read as `ice@corp.example`.
    cases.push((
        "comment in NameID",
        xml.replacen(
            "alice@corp.example</saml:NameID>",
            "al<!---->ice@corp.example</saml:NameID>",
            1,
        ),
        "saml_comment",
    ));
    cases.push((
        "processing instruction",
        xml.replacen("<saml:Issuer>", "<?evil x?><saml:Issuer>", 1),
        "saml_comment",
    ));
    // IDs: one element's ID on another, or a namespaced one.
    let assertion_id = signed
        .split("ID=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    cases.push((
        "duplicate ID",
        after_issuer(&xml, &format!("<samlp:Extensions ID=\"{assertion_id}\"/>")),
        "saml_duplicate_id",
    ));
    cases.push((
        "namespaced ID",
        xml.replacen(
            "<saml:Issuer>",
            "<saml:Issuer xmlns:x=\"urn:x\" x:ID=\"_y\">",
            1,
        ),
        "saml_namespaced_id",
    ));
    // XSW9: the assertion's signature made to point at the Response.
    cases.push((
        "XSW9: an assertion signature referring to the Response",
        {
            let response_id = xml
                .split("ID=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap()
                .to_owned();
            xml.replacen(
                &format!("URI=\"#{assertion_id}\""),
                &format!("URI=\"#{response_id}\""),
                1,
            )
        },
        "saml_signature_reference",
    ));
    // A DTD, an external entity.
    cases.push((
        "DTD",
        format!("<!DOCTYPE r [<!ENTITY x SYSTEM \"file:///etc/passwd\">]>{xml}"),
        "saml_dtd",
    ));
    // Signatures: a second Reference, SHA-1, another key, a certificate
    // in KeyInfo the metadata does not have, a tampered signed text.
    let (_, two_refs) = fresh(json!({
        "extra_reference": "/*[local-name(.)='Response']/*[local-name(.)='Issuer']",
        "sign_assertion": false,
    }))
    .await;
    cases.push(("second Reference", two_refs, "saml_signature_reference"));
    let (_, sha1) = fresh(json!({"signature_algorithm": "rsa-sha1"})).await;
    cases.push(("SHA-1", sha1, "saml_signature_algorithm"));
    let (_, rogue) = fresh(json!({"signing_key": "rogue"})).await;
    cases.push((
        "another key and its certificate",
        rogue.clone(),
        "saml_foreign_certificate",
    ));
    let ours = xml
        .split("<ds:X509Certificate>")
        .nth(1)
        .unwrap()
        .split('<')
        .next()
        .unwrap()
        .to_owned();
    let theirs = rogue
        .split("<ds:X509Certificate>")
        .nth(1)
        .unwrap()
        .split('<')
        .next()
        .unwrap()
        .to_owned();
    cases.push((
        "another key claiming our certificate",
        rogue.replace(&theirs, &ours),
        "saml_bad_signature",
    ));
    // xmlsec uses the pinned key and never KeyInfo: a certificate there
    // that the metadata lacks is refused, even under a genuine signature.
    cases.push((
        "a foreign certificate beside a genuine signature",
        xml.replace(&ours, &theirs),
        "saml_foreign_certificate",
    ));
    // libxml2 would honour another declared encoding (UTF-7's `+ADw-` is
    // `<`) and verify a document other than the one checked.
    cases.push((
        "declared UTF-7",
        format!("<?xml version=\"1.0\" encoding=\"UTF-7\"?>{xml}"),
        "saml_encoding",
    ));
    cases.push((
        "signed text changed",
        xml.replacen(
            "alice@corp.example</saml:NameID>",
            "mallory@corp.example</saml:NameID>",
            1,
        ),
        "saml_bad_signature",
    ));
    // What a signature covers must also be right.
    let (_, audience) = fresh(json!({"audience": "https://other.example/sp"})).await;
    cases.push(("wrong Audience", audience, "saml_audience"));
    let (_, recipient) = fresh(json!({"recipient": "https://other.example/acs"})).await;
    cases.push(("wrong Recipient", recipient, "saml_recipient"));
    let (_, destination) = fresh(json!({"destination": "https://other.example/acs"})).await;
    cases.push(("wrong Destination", destination, "saml_destination"));
    let (_, issuer) = fresh(json!({"issuer": "https://other.example/idp"})).await;
    cases.push(("wrong Issuer", issuer, "saml_issuer"));
    let (_, expired) = fresh(
        json!({"not_before": "2020-01-01T00:00:00Z", "not_on_or_after": "2020-01-01T00:05:00Z"}),
    )
    .await;
    cases.push(("expired", expired, "saml_expired"));
    let (_, early) = fresh(
        json!({"not_before": "2099-01-01T00:00:00Z", "not_on_or_after": "2099-01-01T00:05:00Z"}),
    )
    .await;
    cases.push(("not yet valid", early, "saml_not_yet_valid"));
    let (_, unreadable) = fresh(json!({"not_on_or_after": "next Tuesday"})).await;
    cases.push(("a time that does not read", unreadable, "saml_bad_time"));
    let (_, padded) = answer(&app, &sp, " alice@corp.example", json!({})).await;
    cases.push(("white space around the NameID", padded, "saml_no_subject"));
    let (_, error) = fresh(json!({"status": "urn:oasis:names:tc:SAML:2.0:status:Responder"})).await;
    cases.push((
        "signed error Response with an assertion",
        error,
        "saml_status",
    ));
    // Requests: unknown, another IdP's, none (unsolicited), and an
    // assertion answering another request than its Response (both ours).
    let (_, unknown) = fresh(json!({"in_response_to": "id-not-ours"})).await;
    let other_request = start(&app, "okta").await.request_id;
    let (_, split) = fresh(json!({"assertion_in_response_to": other_request})).await;
    cases.push((
        "Response and assertion answering different requests",
        split,
        "saml_in_response_to",
    ));
    cases.push(("unknown InResponseTo", unknown, "saml_in_response_to"));
    let (_, unsolicited) = idp()
        .mint(
            json!({"acs": sp.acs, "audience": sp.entity_id, "name_id": "alice@corp.example",
                     "sign_response": true, "sign_assertion": true}),
        )
        .await;
    cases.push(("unsolicited", unsolicited, "saml_unsolicited"));
    for (name, document, reason) in &cases {
        assert_eq!(
            refusal(&app, &b64(document)).await,
            *reason,
            "{name}: {document}"
        );
    }
    // The clock skew (60 s): a response just past its NotOnOrAfter, or just
    // before its NotBefore, is taken within it and refused beyond it.
    let at = |seconds: i64| {
        (app.core.clock().now() + chrono::TimeDelta::seconds(seconds))
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };
    for (times, outcome) in [
        (json!({"not_on_or_after": at(-30)}), None),
        (
            json!({"not_before": at(-200), "not_on_or_after": at(-90)}),
            Some("saml_expired"),
        ),
        (json!({"not_before": at(30)}), None),
        (json!({"not_before": at(90)}), Some("saml_not_yet_valid")),
    ] {
        let (response, _) = fresh(times.clone()).await;
        match outcome {
            None => {
                let pair = grant(&app, "okta", &response).await;
                assert!(pair.is_ok(), "{times}: {pair:?}");
            }
            Some(reason) => assert_eq!(refusal(&app, &response).await, reason, "{times}"),
        }
    }
    // Size: an oversize body; a deflate bomb is never inflated (the POST
    // binding is not deflated), so it is just not XML.
    assert_eq!(
        refusal(&app, &"A".repeat(600 * 1024)).await,
        "saml_too_large"
    );
    let bomb = {
        use std::io::Write;
        let mut z = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
        z.write_all(&vec![b'<'; 20 * 1024 * 1024]).unwrap();
        base64::engine::general_purpose::STANDARD.encode(z.finish().unwrap())
    };
    assert_eq!(refusal(&app, &bomb).await, "saml_not_xml");
    // No refused document signed anyone in.
    assert_code(
        app.users()
            .get_user(as_admin(pb::GetUserRequest {
                account: "engineering".into(),
                username: "mallory@corp.example".into(),
            }))
            .await,
        Code::NotFound,
    );
}

async fn requests_are_spent_once_and_belong_to_their_provider(backend: Backend) {
    let app = spawn(backend).await;
    let sp = provider(&app, |_| {}).await;
    let other = idps(&app)
        .create_identity_provider(as_admin(pb::CreateIdentityProviderRequest {
            name: "entra".into(),
            idp_metadata_xml: idp()
                .metadata
                .replace("https://idp.test/saml", "https://idp.test/other"),
            default_account: "engineering".into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    let request = start(&app, "okta").await;
    let mint = async |id: &str| {
        idp()
            .mint(json!({"acs": sp.acs, "audience": sp.entity_id, "in_response_to": id,
                         "name_id": "alice@corp.example", "sign_response": true, "sign_assertion": true}))
            .await
            .0
    };
    grant(&app, "okta", &mint(&request.request_id).await)
        .await
        .unwrap();
    // A second response to a spent request.
    assert_eq!(
        refusal(&app, &mint(&request.request_id).await).await,
        "saml_in_response_to"
    );
    // A response to another browser's request, presented with this one's.
    let mine = start(&app, "okta").await;
    let someone_elses = start(&app, "okta").await;
    let status = app
        .tokens()
        .create_token(pb::CreateTokenRequest {
            grant: Some(pb::create_token_request::Grant::Saml(pb::SamlGrant {
                idp: "okta".into(),
                saml_response: mint(&someone_elses.request_id).await,
                request_id: mine.request_id.clone(),
            })),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    match app
        .core
        .saml_sign_in(
            "okta",
            &mint(&someone_elses.request_id).await,
            Answering::Request(&mine.request_id),
            authzd::domain::authn::sources::Source::LOCAL,
        )
        .await
    {
        Err(Error::Unauthenticated(AuthFailure::Sso(reason))) => {
            assert_eq!(reason, "saml_not_this_request")
        }
        other => panic!("expected saml_not_this_request, got {other:?}"),
    }
    // Another provider's request.
    let theirs = start(&app, "entra").await;
    assert_eq!(
        refusal(&app, &mint(&theirs.request_id).await).await,
        "saml_in_response_to"
    );
    let _ = other;
    // Unsolicited responses, once allowed.
    idps(&app)
        .update_identity_provider(as_admin(pb::UpdateIdentityProviderRequest {
            name: "okta".into(),
            allow_idp_initiated: Some(true),
            ..Default::default()
        }))
        .await
        .unwrap();
    let (unsolicited, _) = idp()
        .mint(
            json!({"acs": sp.acs, "audience": sp.entity_id, "name_id": "alice@corp.example",
                     "sign_response": true, "sign_assertion": true}),
        )
        .await;
    grant(&app, "okta", &unsolicited).await.unwrap();
    // Unknown and disabled providers start nothing.
    assert_code(
        app.tokens()
            .start_saml_login(pb::StartSamlLoginRequest {
                idp: "nobody".into(),
                relay_state: String::new(),
            })
            .await,
        Code::NotFound,
    );
    assert_invalid(
        app.tokens()
            .start_saml_login(pb::StartSamlLoginRequest {
                idp: "okta".into(),
                relay_state: "r".repeat(81),
            })
            .await,
        "relay_state",
    );
}

async fn just_in_time_rules(backend: Backend) {
    let app = spawn(backend).await;
    let sp = provider(&app, |p| {
        p.default_role = String::new();
        p.idp_role_attribute = "roles".into();
        p.idp_account_attribute = "accounts".into();
        p.idp_username_attribute = "email".into();
    })
    .await;
    app.create_account("engineering").await;
    for name in ["devs", "ops"] {
        app.groups()
            .create_group(as_admin(pb::CreateGroupRequest {
                name: name.into(),
                description: String::new(),
            }))
            .await
            .unwrap();
    }
    app.groups()
        .add_group_grants(as_admin(pb::GroupGrantsRequest {
            name: "ops".into(),
            grants: vec![pb::GroupGrant {
                role: "read-write".into(),
                account: "engineering".into(),
            }],
        }))
        .await
        .unwrap();
    idps(&app)
        .add_user_group_mappings(as_admin(pb::UserGroupMappingsRequest {
            idp: "okta".into(),
            user_groups: vec!["ops".into()],
        }))
        .await
        .unwrap();
    let sign_in = async |attributes: Value| {
        let (r, _) = answer(
            &app,
            &sp,
            "nameid-ignored",
            json!({ "attributes": attributes }),
        )
        .await;
        r
    };
    // Username from the attribute; roles and groups as asserted.
    let r = sign_in(
        json!({"email": ["bob@corp.example"], "accounts": ["engineering"],
                           "roles": ["read-only", "not-a-role"], "memberOf": ["ops", "devs"]}),
    )
    .await;
    let pair = grant(&app, "okta", &r).await.unwrap();
    let who = app.token_login(&pair.access_token).await.unwrap();
    assert_eq!(who.username, "bob@corp.example");
    let mut held: Vec<_> = who
        .grants
        .iter()
        .map(|g| (g.role.clone(), g.account.clone(), g.group.clone()))
        .collect();
    held.sort();
    // The IdP's membership is a kind of its own.
    let kinds: Vec<_> = who
        .grants
        .iter()
        .map(|g| (g.group.as_str(), g.grant_type()))
        .collect();
    assert!(
        kinds.contains(&("ops", pb::GrantType::SsoGroupMembership))
            && kinds.contains(&("", pb::GrantType::Direct)),
        "{kinds:?}"
    );
    // GetGroup lists the IdP's members like any other.
    let ops = app
        .groups()
        .get_group(as_admin(pb::GetGroupRequest { name: "ops".into() }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ops.members, ["bob@corp.example"]);
    // `devs` is not mapped to this IdP: asserting it does nothing.
    assert_eq!(
        held,
        [
            (
                "read-only".to_owned(),
                "engineering".to_owned(),
                String::new()
            ),
            (
                "read-write".to_owned(),
                "engineering".to_owned(),
                "ops".to_owned()
            ),
        ]
    );
    // The IdP is the source of truth: a dropped group and a changed role.
    let r = sign_in(
        json!({"email": ["bob@corp.example"], "accounts": ["engineering"],
                           "roles": ["read-write"]}),
    )
    .await;
    let pair = grant(&app, "okta", &r).await.unwrap();
    let who = app.token_login(&pair.access_token).await.unwrap();
    let held: Vec<_> = who
        .grants
        .iter()
        .map(|g| (g.role.as_str(), g.group.as_str()))
        .collect();
    assert_eq!(held, [("read-write", "")]);
    // An administrator's own membership in a mapped group is not the IdP's
    // to remove, even one the IdP made first (adding makes it the
    // administrator's); a name that differs only in case is the same user.
    let r = sign_in(
        json!({"email": ["Bob@Corp.example"], "accounts": ["engineering"],
                           "roles": ["read-write"], "memberOf": ["ops"]}),
    )
    .await;
    let pair = grant(&app, "okta", &r).await.unwrap();
    let who = app.token_login(&pair.access_token).await.unwrap();
    assert_eq!(who.username, "bob@corp.example");
    let ops_kind = |user: &pb::User| {
        user.roles
            .iter()
            .find(|g| g.group == "ops")
            .map(pb::RoleGrant::grant_type)
    };
    let bob = async || {
        app.users()
            .get_user(as_admin(pb::GetUserRequest {
                account: "engineering".into(),
                username: "bob@corp.example".into(),
            }))
            .await
            .unwrap()
            .into_inner()
    };
    assert_eq!(
        ops_kind(&bob().await),
        Some(pb::GrantType::SsoGroupMembership)
    );
    app.groups()
        .add_group_members(as_admin(pb::GroupMembersRequest {
            name: "ops".into(),
            usernames: vec!["bob@corp.example".into()],
        }))
        .await
        .unwrap();
    assert_eq!(ops_kind(&bob().await), Some(pb::GrantType::GroupMembership));
    let r = sign_in(
        json!({"email": ["bob@corp.example"], "accounts": ["engineering"],
                           "roles": ["read-write"]}),
    )
    .await;
    let pair = grant(&app, "okta", &r).await.unwrap();
    let who = app.token_login(&pair.access_token).await.unwrap();
    assert!(who.grants.iter().any(|g| g.group == "ops"), "{who:?}");
    assert_eq!(ops_kind(&bob().await), Some(pb::GrantType::GroupMembership));
    // A SAML user made by hand in the admin account: the IdP must not make
    // them an administrator.
    app.users()
        .create_user(as_admin(pb::CreateUserRequest {
            account: "admin".into(),
            username: "root@corp.example".into(),
            r#type: pb::UserType::Saml.into(),
            idp_name: "okta".into(),
            ..Default::default()
        }))
        .await
        .unwrap();
    // Refusals.
    app.create_account("acme").await;
    app.create_user(
        "acme",
        "carol@corp.example",
        "carol-password",
        &["read-only"],
    )
    .await;
    let cases = [
        (
            json!({"accounts": ["engineering"], "roles": ["read-only"]}),
            "sso_no_username",
        ),
        (
            json!({"email": ["carol@corp.example"], "accounts": ["engineering"], "roles": ["read-only"]}),
            "sso_native_user",
        ),
        (
            json!({"email": ["dan@corp.example"], "roles": ["read-only"]}),
            "sso_no_account",
        ),
        (
            json!({"email": ["dan@corp.example"], "accounts": ["engineering"]}),
            "sso_no_roles",
        ),
        (
            json!({"email": ["dan@corp.example"], "accounts": ["engineering"], "roles": ["nope"]}),
            "sso_no_roles",
        ),
        (
            json!({"email": ["dan@corp.example"], "accounts": ["admin"], "roles": ["read-only"]}),
            "sso_privileged_account",
        ),
        (
            json!({"email": ["root@corp.example"], "accounts": ["engineering"], "roles": ["read-only"]}),
            "sso_privileged_account",
        ),
        (
            json!({"email": ["anchore-system"], "accounts": ["engineering"], "roles": ["read-only"]}),
            "sso_reserved_username",
        ),
        (
            json!({"email": ["a@corp.example", "b@corp.example"], "accounts": ["engineering"], "roles": ["read-only"]}),
            "sso_several_usernames",
        ),
    ];
    for (attributes, reason) in cases {
        let r = sign_in(attributes.clone()).await;
        assert_eq!(refusal(&app, &r).await, reason, "{attributes}");
    }
    // Several accounts need a default home.
    idps(&app)
        .update_identity_provider(as_admin(pb::UpdateIdentityProviderRequest {
            name: "okta".into(),
            default_account: Some(String::new()),
            ..Default::default()
        }))
        .await
        .unwrap();
    let r = sign_in(
        json!({"email": ["dan@corp.example"], "accounts": ["engineering", "acme"],
                           "roles": ["read-only"]}),
    )
    .await;
    assert_eq!(refusal(&app, &r).await, "sso_several_accounts");
    // A user another IdP made cannot be taken over.
    app.users()
        .create_user(as_admin(pb::CreateUserRequest {
            account: "acme".into(),
            username: "erin@corp.example".into(),
            r#type: pb::UserType::Saml.into(),
            idp_name: "entra".into(),
            ..Default::default()
        }))
        .await
        .unwrap();
    let r = sign_in(
        json!({"email": ["erin@corp.example"], "accounts": ["acme"], "roles": ["read-only"]}),
    )
    .await;
    assert_eq!(refusal(&app, &r).await, "sso_other_idp");
}

async fn existing_users_only_when_asked(backend: Backend) {
    let app = spawn_app_with(backend, |c| {
        c.console.public_url = Some(PUBLIC_URL.to_owned());
        c.user_authentication.sso_require_existing_users = true;
    })
    .await;
    let sp = provider(&app, |_| {}).await;
    let (r, _) = answer(&app, &sp, "frank@corp.example", json!({})).await;
    assert_eq!(refusal(&app, &r).await, "sso_not_provisioned");
    app.create_account("engineering").await;
    app.users()
        .create_user(as_admin(pb::CreateUserRequest {
            account: "engineering".into(),
            username: "frank@corp.example".into(),
            r#type: pb::UserType::Saml.into(),
            idp_name: "okta".into(),
            roles: vec!["read-only".into()],
            ..Default::default()
        }))
        .await
        .unwrap();
    let (r, _) = answer(&app, &sp, "frank@corp.example", json!({})).await;
    grant(&app, "okta", &r).await.unwrap();
}

/// Any replica finishes a sign-in another started, and none takes a replay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_two_replicas_share_requests_and_replays() {
    let a = spawn(Backend::Postgres).await;
    let b = spawn_on(TestDatabase::external(&a.db.url), |c| {
        c.console.public_url = Some(PUBLIC_URL.to_owned())
    })
    .await;
    let sp = provider(&a, |_| {}).await;
    let request = start(&a, "okta").await;
    let (r, _) = idp()
        .mint(json!({"acs": sp.acs, "audience": sp.entity_id, "in_response_to": request.request_id,
                     "name_id": "gina@corp.example", "sign_response": true, "sign_assertion": true}))
        .await;
    grant(&b, "okta", &r).await.unwrap();
    assert_eq!(refusal(&a, &r).await, "saml_replay");
}

/// `disallow_native_users`: passwords are refused to every native user but
/// the bootstrap administrator (break glass); API keys are not passwords.
async fn native_passwords_can_be_turned_away_but_not_admins(backend: Backend) {
    let app = spawn_app_with(backend, |c| {
        c.user_authentication.disallow_native_users = true;
    })
    .await;
    app.create_account("acme").await;
    app.create_user("acme", "alice", "alice-password", &["read-only"])
        .await;
    let key = app.create_key("acme", "alice", "ci", 1).await;
    assert_eq!(
        app.login("alice", "alice-password")
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated
    );
    assert_eq!(
        app.grant("alice", "alice-password")
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated
    );
    match app
        .core
        .authenticate(
            &authzd::domain::authn::credentials::Credential::Password {
                username: "alice".into(),
                password: authzd::domain::secret::Secret::new("alice-password"),
            },
            authzd::domain::authn::sources::Source::LOCAL,
        )
        .await
    {
        Err(Error::Unauthenticated(AuthFailure::NativeUsersDisallowed)) => {}
        other => panic!("expected native_users_disallowed, got {other:?}"),
    }
    app.login("admin", ADMIN_PASSWORD).await.unwrap();
    app.key_login(&key).await.unwrap();
}

/// The browser's way in, over HTTP: the sign-in page's link, the
/// AuthnRequest and the cookie that binds it to this browser, the ACS's
/// page that hands the response on, and a console session at the end. A
/// response to a request this browser did not make is refused there.
async fn the_console_signs_in_through_the_acs(backend: Backend) {
    let app = spawn(backend).await;
    let sp = provider(&app, |_| {}).await;
    let host = app.http.to_string();
    let (head, page) = http(&host, "GET", "/sign-in", &[], "").await;
    assert_eq!(status(&head), 200);
    // The link starts the sign-in at the public address, where the IdP
    // sends the browser back.
    assert!(
        page.contains(&format!(r#"href="{PUBLIC_URL}/sso/saml/okta/login""#))
            && page.contains("Sign in with okta"),
        "{page}"
    );
    // "Sign in with okta": to the IdP, with a cookie naming the request.
    let login = async || {
        let (head, _) = http(&host, "GET", "/sso/saml/okta/login", &[], "").await;
        assert_eq!(status(&head), 303, "{head}");
        let location = header(&head, "location").unwrap();
        assert!(
            location.starts_with(&format!("http://{}/sso?SAMLRequest=", idp().host)),
            "{location}"
        );
        let binding = set_cookies(&head)
            .into_iter()
            .find(|c| c.starts_with("authzd-saml="))
            .unwrap_or_else(|| panic!("no binding cookie: {head}"))
            .to_owned();
        for part in ["Path=/;", "HttpOnly", "SameSite=Strict"] {
            assert!(binding.contains(part), "{binding}");
        }
        binding
    };
    let binding = login().await;
    let request_id = binding["authzd-saml=".len()..]
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let mint = async |in_response_to: Option<&str>| {
        let (response, _) = idp()
            .mint(json!({
                "acs": sp.acs, "audience": sp.entity_id, "in_response_to": in_response_to,
                "name_id": "erin@corp.example", "sign_response": true, "sign_assertion": true,
            }))
            .await;
        serde_urlencoded::to_string([("SAMLResponse", response)]).unwrap()
    };
    let form = mint(Some(&request_id)).await;
    // The ACS takes the IdP page's cross-site POST and answers a page that
    // posts it on from the console's origin; it sets and spends nothing.
    let (head, hop) = http(
        &host,
        "POST",
        "/sso/saml/okta/acs",
        &["Origin: http://idp.test", "Sec-Fetch-Site: cross-site"],
        &form,
    )
    .await;
    assert_eq!(status(&head), 200, "{head}");
    assert!(set_cookies(&head).is_empty(), "{head}");
    assert!(
        header(&head, "content-security-policy").is_some_and(|csp| csp
            .contains("form-action 'self'")
            && csp.contains("script-src 'self'")),
        "{head}"
    );
    let posted: Vec<(String, String)> = serde_urlencoded::from_str(&form).unwrap();
    assert!(
        hop.contains(r#"<form id="sso-continue" method="post" action="/sso/saml/okta/continue">"#)
            && hop.contains(&format!(r#"value="{}""#, posted[0].1)),
        "{hop}"
    );
    // Posted to the console from another site: refused before it is read.
    let (head, _) = http(
        &host,
        "POST",
        "/sso/saml/okta/continue",
        &["Sec-Fetch-Site: cross-site", &jar(&[binding.as_str()])],
        &form,
    )
    .await;
    assert_eq!(status(&head), 403, "{head}");
    let no_session = |head: &str| {
        !set_cookies(head)
            .iter()
            .any(|c| c.starts_with("authzd-access=") && !c.starts_with("authzd-access=;"))
    };
    // From the console's origin but without this sign-in's cookie (someone
    // else's response posted through a victim's browser), or with the
    // cookie of another sign-in: refused, with one message.
    let other = login().await;
    for cookies in [String::new(), jar(&[other.as_str()])] {
        let mut headers = vec!["Sec-Fetch-Site: same-origin"];
        if !cookies.is_empty() {
            headers.push(&cookies);
        }
        let (head, page) = http(&host, "POST", "/sso/saml/okta/continue", &headers, &form).await;
        assert_eq!(status(&head), 401, "{head}");
        assert!(
            page.contains("Signing in with okta did not succeed"),
            "{page}"
        );
        assert!(no_session(&head), "{head}");
        // A failure leaves the cookie: any site can post a bogus response
        // through the ACS, and must not cancel this browser's sign-in.
        assert!(set_cookies(&head).is_empty(), "{head}");
    }
    // Our cookie and a planted one beside it: neither is trusted.
    let (head, _) = post(
        &host,
        "/sso/saml/okta/continue",
        &format!(
            "{}; {}",
            jar(&[binding.as_str()]),
            &jar(&[other.as_str()])["Cookie: ".len()..]
        ),
        &form,
    )
    .await;
    assert_eq!(status(&head), 401, "{head}");
    // The ACS escapes what it hands on, and takes only a provider's name.
    let hostile =
        serde_urlencoded::to_string([("SAMLResponse", "\"><script>alert(1)</script>")]).unwrap();
    let (head, hop_page) = http(&host, "POST", "/sso/saml/okta/acs", &[], &hostile).await;
    assert_eq!(status(&head), 200, "{head}");
    assert!(
        !hop_page.contains("<script>alert") && hop_page.contains("&quot;&gt;&lt;script&gt;"),
        "{hop_page}"
    );
    let (head, _) = http(&host, "POST", "/sso/saml/ok%22ta/acs", &[], &form).await;
    assert_eq!(status(&head), 404, "{head}");
    // With its own cookie: a console session, and the cookie spent.
    let (head, _) = post(
        &host,
        "/sso/saml/okta/continue",
        &jar(&[binding.as_str()]),
        &form,
    )
    .await;
    assert_eq!(status(&head), 303, "{head}");
    assert_eq!(header(&head, "location"), Some("/keys"));
    let cookies = set_cookies(&head);
    assert!(
        cookies
            .iter()
            .any(|c| c.starts_with("authzd-saml=;") && c.contains("Max-Age=0")),
        "{head}"
    );
    let (head, page) = http(&host, "GET", "/keys", &[&jar(&cookies)], "").await;
    assert_eq!(status(&head), 200, "{head}");
    assert!(page.contains("erin@corp.example"), "{page}");
    // Unsolicited: refused until the provider allows it, then no cookie is
    // needed.
    let same_origin = ["Sec-Fetch-Site: same-origin"];
    let (head, _) = http(
        &host,
        "POST",
        "/sso/saml/okta/continue",
        &same_origin,
        &mint(None).await,
    )
    .await;
    assert_eq!(status(&head), 401, "{head}");
    idps(&app)
        .update_identity_provider(as_admin(pb::UpdateIdentityProviderRequest {
            name: "okta".into(),
            allow_idp_initiated: Some(true),
            ..Default::default()
        }))
        .await
        .unwrap();
    let (head, _) = http(
        &host,
        "POST",
        "/sso/saml/okta/continue",
        &same_origin,
        &mint(None).await,
    )
    .await;
    assert_eq!(status(&head), 303, "{head}");
    assert!(!no_session(&head), "{head}");
    // No such provider: the sign-in page says so.
    let (head, page) = http(&host, "GET", "/sso/saml/nope/login", &[], "").await;
    assert_eq!(status(&head), 404, "{head}");
    assert!(
        page.contains("No identity provider named “nope” is enabled."),
        "{page}"
    );
    let (head, page) = http(&host, "GET", "/sso/saml/n%C3%B6pe/login", &[], "").await;
    assert_eq!(status(&head), 404, "{head}");
    assert!(
        page.contains("No such identity provider is enabled."),
        "{page}"
    );
}

dual!(
    the_console_signs_in_through_the_acs,
    native_passwords_can_be_turned_away_but_not_admins,
    a_signed_response_signs_in_a_just_in_time_user,
    the_signing_requirements_hold_both_ways,
    the_attack_corpus_is_refused_for_the_right_reason,
    requests_are_spent_once_and_belong_to_their_provider,
    just_in_time_rules,
    existing_users_only_when_asked,
    a_scim_user_signs_in_and_deactivation_ends_their_tokens,
);

/// A user SCIM provisioned signs in through the IdP as the user it made;
/// deactivating them ends their tokens (access and refresh) at once, and
/// re-activating does not bring those back: they sign in again.
async fn a_scim_user_signs_in_and_deactivation_ends_their_tokens(backend: Backend) {
    let app = spawn_app_with(backend, |c| {
        c.console.public_url = Some(PUBLIC_URL.to_owned());
        c.user_authentication.sso_require_existing_users = true;
    })
    .await;
    let sp = provider(&app, |_| {}).await;
    let token = idps(&app)
        .create_scim_token(as_admin(pb::CreateScimTokenRequest { idp: "okta".into() }))
        .await
        .unwrap()
        .into_inner()
        .value;
    // Not provisioned yet: refused (sso_require_existing_users).
    let (r, _) = answer(&app, &sp, "sam@corp.example", json!({})).await;
    assert_eq!(refusal(&app, &r).await, "sso_not_provisioned");
    let (code, _, made) = crate::scim::call(
        &app,
        "POST",
        "/scim/v2/okta/Users",
        &token,
        Some(&json!({"userName": "sam@corp.example", "externalId": "00u-sam"})),
        &[],
    )
    .await;
    assert_eq!(code, 201, "{made}");
    let path = format!("/scim/v2/okta/Users/{}", made["id"].as_str().unwrap());
    let (r, _) = answer(&app, &sp, "sam@corp.example", json!({})).await;
    let pair = grant(&app, "okta", &r).await.unwrap();
    let principal = app.token_login(&pair.access_token).await.unwrap();
    assert_eq!(principal.username, "sam@corp.example");
    let pair = app.refresh(&pair.refresh_token).await.unwrap();

    let patch = |active: bool| {
        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
               "Operations": [{"op": "replace", "value": {"active": active}}]})
    };
    let (code, _, _) =
        crate::scim::call(&app, "PATCH", &path, &token, Some(&patch(false)), &[]).await;
    assert_eq!(code, 200);
    assert_eq!(
        app.token_login(&pair.access_token)
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated
    );
    assert_eq!(
        app.refresh(&pair.refresh_token).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    let (r, _) = answer(&app, &sp, "sam@corp.example", json!({})).await;
    assert_eq!(
        grant(&app, "okta", &r).await.unwrap_err().code(),
        Code::Unauthenticated
    );

    let (code, _, _) =
        crate::scim::call(&app, "PATCH", &path, &token, Some(&patch(true)), &[]).await;
    assert_eq!(code, 200);
    assert_eq!(
        app.token_login(&pair.access_token)
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated
    );
    let (r, _) = answer(&app, &sp, "sam@corp.example", json!({})).await;
    let again = grant(&app, "okta", &r).await.unwrap();
    app.token_login(&again.access_token).await.unwrap();
}

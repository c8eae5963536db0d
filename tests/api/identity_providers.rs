//! The SAML identity provider model: IdentityProviderService, its group
//! mappings, and the SP metadata each provider's administrator pastes.

use authzd::pb;
use authzd::pb::identity_provider_service_client::IdentityProviderServiceClient;
use sha2::Digest;
use tonic::Code;
use tonic::transport::Channel;

use crate::console::{header, http, status};
use crate::dual;
use crate::support::*;

const PUBLIC_URL: &str = "https://authzd.example.com";

fn idps(app: &TestApp) -> IdentityProviderServiceClient<Channel> {
    IdentityProviderServiceClient::new(app.channel.clone())
}

/// A self-signed certificate (DER) as an IdP signs with.
pub fn certificate() -> Vec<u8> {
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["idp.example".to_owned()]).unwrap();
    params.self_signed(&key).unwrap().der().to_vec()
}

fn b64(der: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(der)
}

fn sha256_hex(der: &[u8]) -> String {
    sha2::Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// IdP metadata as Okta or Keycloak publish it, the certificate's base64
/// wrapped over lines as they do.
pub fn metadata(entity_id: &str, der: &[u8]) -> String {
    let cert = b64(der)
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join("\n          ");
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="{entity_id}">
  <md:IDPSSODescriptor WantAuthnRequestsSigned="false" protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">
    <md:KeyDescriptor use="signing">
      <ds:KeyInfo xmlns:ds="http://www.w3.org/2000/09/xmldsig#">
        <ds:X509Data>
          <ds:X509Certificate>
          {cert}
          </ds:X509Certificate>
        </ds:X509Data>
      </ds:KeyInfo>
    </md:KeyDescriptor>
    <md:NameIDFormat>urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress</md:NameIDFormat>
    <md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="https://idp.example/sso/post"/>
    <md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="https://idp.example/sso/redirect"/>
  </md:IDPSSODescriptor>
</md:EntityDescriptor>
"#
    )
}

fn create(name: &str, xml: String) -> pb::CreateIdentityProviderRequest {
    pb::CreateIdentityProviderRequest {
        name: name.into(),
        idp_metadata_xml: xml,
        ..Default::default()
    }
}

async fn spawn(backend: Backend) -> TestApp {
    spawn_app_with(backend, |c| {
        c.console.public_url = Some(PUBLIC_URL.to_owned());
        c.user_authentication.allow_api_keys_for_saml_users = true;
    })
    .await
}

async fn identity_providers_are_created_read_listed_updated_and_deleted(backend: Backend) {
    let app = spawn(backend).await;
    let der = certificate();
    let made = idps(&app)
        .create_identity_provider(as_admin(create(
            "okta",
            metadata("http://www.okta.com/exk1", &der),
        )))
        .await
        .unwrap()
        .into_inner();
    // Anchore's defaults, and what was read from the metadata.
    assert!(made.enabled);
    assert!(made.require_signed_assertions);
    assert!(made.require_signed_response);
    assert!(!made.allow_idp_initiated);
    assert_eq!(made.idp_groups_attribute, "memberOf");
    assert_eq!(made.idp_entity_id, "http://www.okta.com/exk1");
    assert_eq!(made.idp_sso_url, "https://idp.example/sso/redirect");
    assert_eq!(made.signing_certificate_sha256, [sha256_hex(&der)]);
    assert_eq!(
        made.sp_entity_id,
        format!("{PUBLIC_URL}/sso/saml/okta/metadata")
    );
    assert_eq!(made.acs_url, format!("{PUBLIC_URL}/sso/saml/okta/acs"));
    assert!(!made.sp_entity_id_configured && !made.acs_url_configured);
    assert_eq!(made.created_at, made.last_updated);

    assert_code(
        idps(&app)
            .create_identity_provider(as_admin(create(
                "okta",
                metadata("http://www.okta.com/other", &certificate()),
            )))
            .await,
        Code::AlreadyExists,
    );
    idps(&app)
        .create_identity_provider(as_admin(pb::CreateIdentityProviderRequest {
            name: "entra".into(),
            idp_metadata_xml: metadata("https://sts.windows.net/t/", &certificate()),
            acs_url: "https://login.example.com/acs".into(),
            idp_groups_attribute: Some(String::new()),
            require_signed_response: Some(false),
            ..Default::default()
        }))
        .await
        .unwrap();

    let got = idps(&app)
        .get_identity_provider(as_admin(pb::GetIdentityProviderRequest {
            name: "entra".into(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.acs_url, "https://login.example.com/acs");
    assert!(got.acs_url_configured);
    // Asked for no groups attribute; the rest of the defaults hold.
    assert_eq!(got.idp_groups_attribute, "");
    assert!(!got.require_signed_response && got.require_signed_assertions);
    assert!(got.idp_metadata_xml.contains("https://sts.windows.net/t/"));

    let listed = idps(&app)
        .list_identity_providers(as_admin(pb::ListIdentityProvidersRequest::default()))
        .await
        .unwrap()
        .into_inner();
    let names: Vec<_> = listed
        .identity_providers
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(names, ["entra", "okta"]);
    // Listings leave the documents out.
    assert!(
        listed
            .identity_providers
            .iter()
            .all(|p| p.idp_metadata_xml.is_empty() && !p.idp_entity_id.is_empty())
    );

    // An update changes what it names and nothing else.
    let new_der = certificate();
    let updated = idps(&app)
        .update_identity_provider(as_admin(pb::UpdateIdentityProviderRequest {
            name: "okta".into(),
            enabled: Some(false),
            default_role: Some("read-only".into()),
            default_account: Some("engineering".into()),
            idp_username_attribute: Some("email".into()),
            idp_metadata_xml: Some(metadata("http://www.okta.com/exk1", &new_der)),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(!updated.enabled);
    assert_eq!(updated.default_role, "read-only");
    assert_eq!(updated.default_account, "engineering");
    assert_eq!(updated.idp_username_attribute, "email");
    assert_eq!(updated.signing_certificate_sha256, [sha256_hex(&new_der)]);
    assert_eq!(updated.idp_groups_attribute, "memberOf");
    assert!(updated.require_signed_assertions);
    assert_eq!(updated.created_at, made.created_at);
    assert_ne!(updated.last_updated, made.last_updated);
    // An empty string clears an optional field.
    let cleared = idps(&app)
        .update_identity_provider(as_admin(pb::UpdateIdentityProviderRequest {
            name: "okta".into(),
            idp_username_attribute: Some(String::new()),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cleared.idp_username_attribute, "");
    assert_eq!(cleared.default_role, "read-only");

    let deleted = idps(&app)
        .delete_identity_provider(as_admin(pb::DeleteIdentityProviderRequest {
            name: "okta".into(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(deleted.users_deleted, 0);
    assert_code(
        idps(&app)
            .get_identity_provider(as_admin(pb::GetIdentityProviderRequest {
                name: "okta".into(),
            }))
            .await,
        Code::NotFound,
    );
    assert_code(
        idps(&app)
            .delete_identity_provider(as_admin(pb::DeleteIdentityProviderRequest {
                name: "okta".into(),
            }))
            .await,
        Code::NotFound,
    );
    // Its issuer is free again.
    idps(&app)
        .create_identity_provider(as_admin(create(
            "okta2",
            metadata("http://www.okta.com/exk1", &der),
        )))
        .await
        .unwrap();

    // Every change is in the audit trail, by the administrator, without
    // the document.
    let events = pb::audit_service_client::AuditServiceClient::new(app.channel.clone())
        .list_events(as_admin(pb::ListEventsRequest {
            target_kind: "identity_provider".into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .events;
    let seen: Vec<(String, String)> = events
        .iter()
        .rev()
        .map(|e| (e.rpc.clone(), e.target.clone()))
        .collect();
    let expected = [
        ("CreateIdentityProvider", "okta"),
        ("CreateIdentityProvider", "entra"),
        ("UpdateIdentityProvider", "okta"),
        ("UpdateIdentityProvider", "okta"),
        ("DeleteIdentityProvider", "okta"),
        ("CreateIdentityProvider", "okta2"),
    ]
    .map(|(a, b)| (a.to_owned(), b.to_owned()));
    assert_eq!(seen, expected);
    assert!(events.iter().all(|e| e.actor == "admin"));
    let detail = format!("{:?}", events);
    assert!(!detail.contains("X509Certificate"), "{detail}");
    assert!(detail.contains(&sha256_hex(&new_der)), "{detail}");
}

async fn bad_configuration_is_invalid_argument_naming_the_field(backend: Backend) {
    let app = spawn(backend).await;
    let der = certificate();
    let good = || metadata("https://idp.example/entity", &der);
    let refused = async |request: pb::CreateIdentityProviderRequest, field: &str| {
        assert_invalid(
            idps(&app).create_identity_provider(as_admin(request)).await,
            field,
        );
    };
    for name in ["", "a/b", "a b", "ok%2F", "é"] {
        refused(create(name, good()), "name").await;
    }
    refused(create("p", String::new()), "idp_metadata_xml").await;
    refused(create("p", "not xml".into()), "idp_metadata_xml").await;
    refused(create("p", "<a><b></a>".into()), "idp_metadata_xml").await;
    // A DTD, an entity: refused before anything is expanded.
    let xxe = good().replacen(
        "<md:EntityDescriptor",
        "<!DOCTYPE md [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><md:EntityDescriptor",
        1,
    );
    refused(create("p", xxe), "idp_metadata_xml").await;
    refused(
        create("p", good().replace("use=\"signing\"", "use=\"encryption\"")),
        "idp_metadata_xml",
    )
    .await;
    refused(
        create("p", good().replace(&b64(&der)[..64], "!!!!")),
        "idp_metadata_xml",
    )
    .await;
    refused(
        create(
            "p",
            good().replace(
                &b64(&der)[..64],
                &b64(b"not a certificate at all, just text here!!"),
            ),
        ),
        "idp_metadata_xml",
    )
    .await;
    refused(
        create("p", good().replace("HTTP-Redirect", "HTTP-Artifact")),
        "idp_metadata_xml",
    )
    .await;
    refused(
        create(
            "p",
            good().replace("entityID=\"https://idp.example/entity\"", ""),
        ),
        "idp_metadata_xml",
    )
    .await;
    refused(
        pb::CreateIdentityProviderRequest {
            idp_metadata_url: "https://idp.example/metadata".into(),
            ..create("p", good())
        },
        "idp_metadata_url",
    )
    .await;
    // Plain http from anywhere but a loopback address: refused unread.
    refused(
        pb::CreateIdentityProviderRequest {
            idp_metadata_url: "http://idp.example/metadata".into(),
            ..create("p", String::new())
        },
        "idp_metadata_url",
    )
    .await;
    for acs in ["not a url", "/relative/acs", "ftp://idp.example/acs"] {
        refused(
            pb::CreateIdentityProviderRequest {
                acs_url: acs.into(),
                ..create("p", good())
            },
            "acs_url",
        )
        .await;
    }
    refused(
        pb::CreateIdentityProviderRequest {
            default_role: "no-such-role".into(),
            ..create("p", good())
        },
        "default_role",
    )
    .await;
    refused(
        pb::CreateIdentityProviderRequest {
            default_role: "read-only".into(),
            idp_role_attribute: "roles".into(),
            ..create("p", good())
        },
        "default_role",
    )
    .await;
    for account in ["admin", "anchore-system", "x"] {
        refused(
            pb::CreateIdentityProviderRequest {
                default_account: account.into(),
                ..create("p", good())
            },
            "default_account",
        )
        .await;
    }
    refused(
        pb::CreateIdentityProviderRequest {
            idp_username_attribute: " email".into(),
            ..create("p", good())
        },
        "idp_username_attribute",
    )
    .await;
    // Control characters are refused in the document too, line breaks and
    // tabs aside.
    refused(
        create(
            "p",
            good().replace("<md:NameIDFormat>", "\u{1}<md:NameIDFormat>"),
        ),
        "idp_metadata_xml",
    )
    .await;

    // One issuer, one provider: a second provider claiming it could sign
    // in as the first one's users.
    idps(&app)
        .create_identity_provider(as_admin(create("first", good())))
        .await
        .unwrap();
    refused(create("second", good()), "idp_metadata_xml").await;
    idps(&app)
        .create_identity_provider(as_admin(create(
            "second",
            metadata("https://idp.example/other", &der),
        )))
        .await
        .unwrap();
    assert_invalid(
        idps(&app)
            .update_identity_provider(as_admin(pb::UpdateIdentityProviderRequest {
                name: "second".into(),
                idp_metadata_xml: Some(good()),
                ..Default::default()
            }))
            .await,
        "idp_metadata_xml",
    );
    // Judged with the fields already set.
    idps(&app)
        .update_identity_provider(as_admin(pb::UpdateIdentityProviderRequest {
            name: "second".into(),
            default_role: Some("read-only".into()),
            ..Default::default()
        }))
        .await
        .unwrap();
    assert_invalid(
        idps(&app)
            .update_identity_provider(as_admin(pb::UpdateIdentityProviderRequest {
                name: "second".into(),
                idp_role_attribute: Some("roles".into()),
                ..Default::default()
            }))
            .await,
        "default_role",
    );
    // A default account that exists must be a user account.
    app.create_account("engineering").await;
    idps(&app)
        .update_identity_provider(as_admin(pb::UpdateIdentityProviderRequest {
            name: "second".into(),
            default_account: Some("engineering".into()),
            ..Default::default()
        }))
        .await
        .unwrap();
    assert_code(
        idps(&app)
            .update_identity_provider(as_admin(pb::UpdateIdentityProviderRequest {
                name: "missing".into(),
                enabled: Some(false),
                ..Default::default()
            }))
            .await,
        Code::NotFound,
    );
    // Nothing refused was written.
    let listed = idps(&app)
        .list_identity_providers(as_admin(pb::ListIdentityProvidersRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.identity_providers.len(), 2);
    let second = listed
        .identity_providers
        .iter()
        .find(|p| p.name == "second")
        .unwrap();
    assert_eq!(second.idp_role_attribute, "");
    assert_eq!(second.idp_entity_id, "https://idp.example/other");
}

/// `message` with the credentials of another request.
fn with_metadata<T>(metadata: &tonic::metadata::MetadataMap, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    *request.metadata_mut() = metadata.clone();
    request
}

async fn only_global_admins_manage_identity_providers(backend: Backend) {
    let app = spawn(backend).await;
    let der = certificate();
    idps(&app)
        .create_identity_provider(as_admin(create(
            "okta",
            metadata("https://idp.example/e", &der),
        )))
        .await
        .unwrap();
    app.create_account("acme").await;
    app.create_user("acme", "boss", "boss-password", &["account-user-admin"])
        .await;
    let admin_key = app.create_key("admin", "admin", "automation", 1).await;
    let boss_key = app.create_key("acme", "boss", "automation", 1).await;
    // Every RPC, reads included: an account's user admin (by password
    // and by key) and the global admin's own API key.
    for request in [
        as_key(&admin_key, ()),
        as_user("boss", "boss-password", ()),
        as_key(&boss_key, ()),
    ] {
        let meta = request.metadata().clone();
        let c = idps(&app);
        assert_code(
            c.clone()
                .create_identity_provider(with_metadata(
                    &meta,
                    create("other", metadata("https://idp.example/o", &der)),
                ))
                .await,
            Code::PermissionDenied,
        );
        assert_code(
            c.clone()
                .get_identity_provider(with_metadata(
                    &meta,
                    pb::GetIdentityProviderRequest {
                        name: "okta".into(),
                    },
                ))
                .await,
            Code::PermissionDenied,
        );
        assert_code(
            c.clone()
                .list_identity_providers(with_metadata(
                    &meta,
                    pb::ListIdentityProvidersRequest::default(),
                ))
                .await,
            Code::PermissionDenied,
        );
        assert_code(
            c.clone()
                .update_identity_provider(with_metadata(
                    &meta,
                    pb::UpdateIdentityProviderRequest {
                        name: "okta".into(),
                        enabled: Some(false),
                        ..Default::default()
                    },
                ))
                .await,
            Code::PermissionDenied,
        );
        assert_code(
            c.clone()
                .delete_identity_provider(with_metadata(
                    &meta,
                    pb::DeleteIdentityProviderRequest {
                        name: "okta".into(),
                    },
                ))
                .await,
            Code::PermissionDenied,
        );
        assert_code(
            c.clone()
                .list_user_group_mappings(with_metadata(
                    &meta,
                    pb::ListUserGroupMappingsRequest { idp: "okta".into() },
                ))
                .await,
            Code::PermissionDenied,
        );
        assert_code(
            c.clone()
                .add_user_group_mappings(with_metadata(
                    &meta,
                    pb::UserGroupMappingsRequest {
                        idp: "okta".into(),
                        user_groups: vec!["g".into()],
                    },
                ))
                .await,
            Code::PermissionDenied,
        );
    }
    // Without credentials.
    assert_code(
        idps(&app)
            .list_identity_providers(tonic::Request::new(
                pb::ListIdentityProvidersRequest::default(),
            ))
            .await,
        Code::Unauthenticated,
    );
    // The provider is as it was, and the refusals are in the trail.
    let okta = idps(&app)
        .get_identity_provider(as_admin(pb::GetIdentityProviderRequest {
            name: "okta".into(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(okta.enabled);
    let refusals = pb::audit_service_client::AuditServiceClient::new(app.channel.clone())
        .list_events(as_admin(pb::ListEventsRequest {
            outcome: "permission_denied".into(),
            rpc: "DeleteIdentityProvider".into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .events;
    assert!(!refusals.is_empty());
}

async fn user_groups_are_mapped_to_a_provider(backend: Backend) {
    let app = spawn(backend).await;
    idps(&app)
        .create_identity_provider(as_admin(create(
            "okta",
            metadata("https://idp.example/e", &certificate()),
        )))
        .await
        .unwrap();
    for name in ["devs", "ops", "sec"] {
        app.groups()
            .create_group(as_admin(pb::CreateGroupRequest {
                name: name.into(),
                description: String::new(),
            }))
            .await
            .unwrap();
    }
    let mappings = |groups: &[&str]| pb::UserGroupMappingsRequest {
        idp: "okta".into(),
        user_groups: groups.iter().map(|g| g.to_string()).collect(),
    };
    let listed = async || {
        idps(&app)
            .list_user_group_mappings(as_admin(pb::ListUserGroupMappingsRequest {
                idp: "okta".into(),
            }))
            .await
            .unwrap()
            .into_inner()
            .user_groups
    };
    assert!(listed().await.is_empty());
    let added = idps(&app)
        .add_user_group_mappings(as_admin(mappings(&["ops", "devs", "ops"])))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(added.user_groups, ["devs", "ops"]);
    // Adding again is idempotent.
    idps(&app)
        .add_user_group_mappings(as_admin(mappings(&["devs"])))
        .await
        .unwrap();
    assert_eq!(listed().await, ["devs", "ops"]);
    // A missing group changes nothing.
    let status = idps(&app)
        .add_user_group_mappings(as_admin(mappings(&["sec", "nobody"])))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert!(status.message().contains("\"nobody\""), "{status:?}");
    assert_eq!(listed().await, ["devs", "ops"]);
    assert_invalid(
        idps(&app)
            .add_user_group_mappings(as_admin(mappings(&[])))
            .await,
        "user_groups",
    );
    assert_code(
        idps(&app)
            .add_user_group_mappings(as_admin(pb::UserGroupMappingsRequest {
                idp: "missing".into(),
                user_groups: vec!["devs".into()],
            }))
            .await,
        Code::NotFound,
    );
    let removed = idps(&app)
        .remove_user_group_mappings(as_admin(mappings(&["ops"])))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(removed.user_groups, ["devs"]);
    // Deleting a group removes its mapping.
    app.groups()
        .delete_group(as_admin(pb::DeleteGroupRequest {
            name: "devs".into(),
        }))
        .await
        .unwrap();
    assert!(listed().await.is_empty());
}

async fn deleting_a_provider_deletes_its_users_and_their_keys(backend: Backend) {
    let app = spawn(backend).await;
    for (name, entity) in [
        ("okta", "https://idp.example/a"),
        ("entra", "https://idp.example/b"),
    ] {
        idps(&app)
            .create_identity_provider(as_admin(create(name, metadata(entity, &certificate()))))
            .await
            .unwrap();
    }
    app.create_account("acme").await;
    let saml = async |username: &str, idp: &str| {
        app.users()
            .create_user(as_admin(pb::CreateUserRequest {
                account: "acme".into(),
                username: username.into(),
                r#type: pb::UserType::Saml.into(),
                idp_name: idp.into(),
                roles: vec!["read-only".into()],
                ..Default::default()
            }))
            .await
            .unwrap();
    };
    saml("alice@corp", "okta").await;
    saml("bob@corp", "okta").await;
    saml("carol@corp", "entra").await;
    app.create_user("acme", "native", "native-password", &["read-only"])
        .await;
    let alice_key = app.create_key("acme", "alice@corp", "ci", 1).await;
    let carol_key = app.create_key("acme", "carol@corp", "ci", 1).await;
    app.key_login(&alice_key).await.unwrap();

    let deleted = idps(&app)
        .delete_identity_provider(as_admin(pb::DeleteIdentityProviderRequest {
            name: "okta".into(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(deleted.users_deleted, 2);
    assert_eq!(deleted.api_keys_deleted, 1);
    assert_eq!(deleted.token_families_ended, 0);
    // Their key stops working at once, here from memory too.
    assert_eq!(
        app.key_login(&alice_key).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    for gone in ["alice@corp", "bob@corp"] {
        assert_code(
            app.users()
                .get_user(as_admin(pb::GetUserRequest {
                    account: "acme".into(),
                    username: gone.into(),
                }))
                .await,
            Code::NotFound,
        );
    }
    // Another provider's users and the native user are untouched.
    app.key_login(&carol_key).await.unwrap();
    app.login("native", "native-password").await.unwrap();
}

/// What an IdP's administrator pastes: served to anyone, for each provider.
async fn the_sp_metadata_is_served_for_each_provider(backend: Backend) {
    let app = spawn(backend).await;
    idps(&app)
        .create_identity_provider(as_admin(pb::CreateIdentityProviderRequest {
            require_signed_assertions: Some(false),
            sp_entity_id: "urn:authzd:sp".into(),
            ..create("okta", metadata("https://idp.example/e", &certificate()))
        }))
        .await
        .unwrap();
    let host = app.http.to_string();
    let (head, body) = http(&host, "GET", "/sso/saml/okta/metadata", &[], "").await;
    assert_eq!(status(&head), 200, "{head}");
    assert_eq!(
        header(&head, "content-type"),
        Some("application/samlmetadata+xml")
    );
    assert!(!head.to_ascii_lowercase().contains("set-cookie"), "{head}");
    let doc = roxmltree::Document::parse(&body).unwrap();
    let root = doc.root_element();
    assert_eq!(root.attribute("entityID"), Some("urn:authzd:sp"));
    let sp = root
        .children()
        .find(|n| n.has_tag_name("SPSSODescriptor"))
        .unwrap();
    assert_eq!(sp.attribute("WantAssertionsSigned"), Some("false"));
    let acs = sp
        .children()
        .find(|n| n.has_tag_name("AssertionConsumerService"))
        .unwrap();
    assert_eq!(
        acs.attribute("Location"),
        Some(format!("{PUBLIC_URL}/sso/saml/okta/acs").as_str())
    );
    assert_eq!(
        acs.attribute("Binding"),
        Some("urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST")
    );
    let (head, _) = http(&host, "GET", "/sso/saml/nobody/metadata", &[], "").await;
    assert_eq!(status(&head), 404, "{head}");
}

/// GetUser says how each role is held (Anchore's grant types).
async fn grants_say_how_they_are_held(backend: Backend) {
    let app = spawn(backend).await;
    app.create_account("acme").await;
    app.create_user("acme", "alice", "alice-password", &["read-only"])
        .await;
    app.groups()
        .create_group(as_admin(pb::CreateGroupRequest {
            name: "devs".into(),
            description: String::new(),
        }))
        .await
        .unwrap();
    app.groups()
        .add_group_members(as_admin(pb::GroupMembersRequest {
            name: "devs".into(),
            usernames: vec!["alice".into()],
        }))
        .await
        .unwrap();
    app.groups()
        .add_group_grants(as_admin(pb::GroupGrantsRequest {
            name: "devs".into(),
            grants: vec![pb::GroupGrant {
                role: "image-analyzer".into(),
                account: "acme".into(),
            }],
        }))
        .await
        .unwrap();
    let user = app
        .users()
        .get_user(as_admin(pb::GetUserRequest {
            account: "acme".into(),
            username: "alice".into(),
        }))
        .await
        .unwrap()
        .into_inner();
    let mut held: Vec<(String, pb::GrantType, String)> = user
        .roles
        .iter()
        .map(|g| (g.role.clone(), g.grant_type(), g.group.clone()))
        .collect();
    held.sort();
    assert_eq!(
        held,
        [
            (
                "image-analyzer".to_owned(),
                pb::GrantType::GroupMembership,
                "devs".to_owned()
            ),
            ("read-only".to_owned(), pb::GrantType::Direct, String::new()),
        ]
    );
}

/// Documents by path, served over plain HTTP on loopback: `(status,
/// body)`; a 3xx's body is its Location; status 0 never answers.
type Documents = std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, (u16, String)>>>;

async fn serve_documents(documents: Documents) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let documents = documents.clone();
            tokio::spawn(async move {
                let mut head = vec![0u8; 8192];
                let n = socket.read(&mut head).await.unwrap_or(0);
                let text = String::from_utf8_lossy(&head[..n]).into_owned();
                let path = text.split_whitespace().nth(1).unwrap_or("/").to_owned();
                let found = documents.lock().unwrap().get(&path).cloned();
                let (status, body) = found.unwrap_or((404, String::new()));
                if status == 0 {
                    tokio::time::sleep(std::time::Duration::from_secs(30)).await;
                    return;
                }
                let (location, body) = if (300..400).contains(&status) {
                    (format!("Location: {body}\r\n"), String::new())
                } else {
                    (String::new(), body)
                };
                let answer = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: application/samlmetadata+xml\r\n{location}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(answer.as_bytes()).await;
            });
        }
    });
    addr
}

/// `idp_metadata_url`: read at create and update, bounded in size, time and
/// redirects, and read again by the refresher, which keeps the last good
/// document when the address fails.
async fn metadata_is_read_from_its_address(backend: Backend) {
    let app = spawn(backend).await;
    let der = certificate();
    let document = metadata("https://idp.example/entity", &der);
    let documents = Documents::default();
    let set = |path: &str, status: u16, body: String| {
        documents
            .lock()
            .unwrap()
            .insert(path.to_owned(), (status, body));
    };
    set("/metadata", 200, document.clone());
    set("/moved", 302, "/metadata".into());
    set("/loop", 302, "/loop".into());
    set("/gone", 404, String::new());
    set("/huge", 200, "x".repeat(2 * 1024 * 1024));
    set("/not-metadata", 200, "<html>login</html>".into());
    set("/silent", 0, String::new());
    let addr = serve_documents(documents.clone()).await;
    let url = |path: &str| format!("http://{addr}{path}");
    let by_url = |name: &str, path: &str| pb::CreateIdentityProviderRequest {
        name: name.into(),
        idp_metadata_url: url(path),
        ..Default::default()
    };
    let made = idps(&app)
        .create_identity_provider(as_admin(by_url("okta", "/moved")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(made.idp_metadata_url, url("/moved"));
    assert_eq!(made.idp_entity_id, "https://idp.example/entity");
    assert_eq!(made.idp_sso_url, "https://idp.example/sso/redirect");
    assert_eq!(made.signing_certificate_sha256, [sha256_hex(&der)]);
    // Each refusal names the field and says what went wrong.
    for (path, says) in [
        ("/gone", "answered HTTP 404"),
        ("/loop", "redirects more than 3 times"),
        ("/huge", "larger than 256 KiB"),
        ("/not-metadata", "must be one SAML 2.0 md:EntityDescriptor"),
        ("/silent", "did not answer within 5 s"),
    ] {
        let refused = idps(&app)
            .create_identity_provider(as_admin(by_url("other", path)))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{path}: {refused:?}");
        assert!(
            refused.message().starts_with("idp_metadata_url:") && refused.message().contains(says),
            "{path}: {}",
            refused.message()
        );
    }
    // The IdP moves its SSO address: the refresher follows, once.
    set(
        "/metadata",
        200,
        document.replace("/sso/redirect", "/sso/moved"),
    );
    assert_eq!(app.core.refresh_idp_metadata().await.unwrap(), 1);
    assert_eq!(app.core.refresh_idp_metadata().await.unwrap(), 0);
    let get = async || {
        idps(&app)
            .get_identity_provider(as_admin(pb::GetIdentityProviderRequest {
                name: "okta".into(),
            }))
            .await
            .unwrap()
            .into_inner()
    };
    assert_eq!(get().await.idp_sso_url, "https://idp.example/sso/moved");
    // The address fails or serves something else: the last document stays.
    set("/metadata", 500, String::new());
    assert_eq!(app.core.refresh_idp_metadata().await.unwrap(), 0);
    set("/metadata", 200, "<nope/>".into());
    assert_eq!(app.core.refresh_idp_metadata().await.unwrap(), 0);
    assert_eq!(get().await.idp_sso_url, "https://idp.example/sso/moved");
    // Pasting the document instead ends the reading by address.
    let updated = idps(&app)
        .update_identity_provider(as_admin(pb::UpdateIdentityProviderRequest {
            name: "okta".into(),
            idp_metadata_xml: Some(document.clone()),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.idp_metadata_url, "");
    assert_eq!(updated.idp_sso_url, "https://idp.example/sso/redirect");
    set(
        "/metadata",
        200,
        document.replace("/sso/redirect", "/sso/elsewhere"),
    );
    assert_eq!(app.core.refresh_idp_metadata().await.unwrap(), 0);
}

dual!(
    metadata_is_read_from_its_address,
    identity_providers_are_created_read_listed_updated_and_deleted,
    bad_configuration_is_invalid_argument_naming_the_field,
    only_global_admins_manage_identity_providers,
    user_groups_are_mapped_to_a_provider,
    deleting_a_provider_deletes_its_users_and_their_keys,
    the_sp_metadata_is_served_for_each_provider,
    grants_say_how_they_are_held,
);

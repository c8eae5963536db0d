//! The audit trail: every admin change recorded once in its own
//! transaction, refusals through the background writer, the listing and
//! who may read it, and the hash chain that `authzd audit verify` checks.

use std::collections::BTreeSet;
use std::time::Duration;

use authzd::domain::audit::{Break, Record, Verified};
use authzd::pb;
use authzd::pb::audit_service_client::AuditServiceClient;
use sea_orm::ConnectionTrait;
use tonic::{Code, Request};

use crate::binary::authzd_command;
use crate::dual;
use crate::support::*;

fn record(n: usize) -> Record {
    Record {
        at_ms: 1_764_460_800_000 + n as i64,
        kind: "change".into(),
        rpc: "/authz.v1.AccountService/CreateAccount".into(),
        outcome: "ok".into(),
        actor_username: Some("admin".into()),
        target_kind: Some("account".into()),
        target_name: Some(format!("acct-{n}")),
        target_account: n.is_multiple_of(2).then(|| format!("acct-{n}")),
        detail: format!("{{\"account\":\"acct-{n}\"}}"),
    }
}

async fn sql(app: &TestApp, statement: &str) {
    let conn = sea_orm::Database::connect(&app.db.url).await.unwrap();
    conn.execute_unprepared(statement).await.unwrap();
}

fn verify_cli(app: &TestApp) -> (bool, String) {
    verify_cli_with(app, &[])
}

/// `authzd audit verify`, with `--anchor` arguments.
fn verify_cli_with(app: &TestApp, anchors: &[String]) -> (bool, String) {
    let mut args = vec!["audit".to_owned(), "verify".to_owned()];
    for anchor in anchors {
        args.extend(["--anchor".to_owned(), anchor.clone()]);
    }
    let output = authzd_command()
        .args(&args)
        .env("DATABASE_URL", &app.db.url)
        .env("AUTHZD_LOG_LEVEL", "warn")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// The hash column of record `seq`, read with SQL.
async fn stored_hash(app: &TestApp, seq: i64) -> String {
    let conn = sea_orm::Database::connect(&app.db.url).await.unwrap();
    let row = conn
        .query_one_raw(sea_orm::Statement::from_string(
            conn.get_database_backend(),
            format!("SELECT hash FROM audit_events WHERE seq = {seq}"),
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get::<String>("", "hash").unwrap()
}

async fn the_chain_catches_edits_deletions_and_reordering(backend: Backend) {
    let app = spawn_app(backend).await;
    assert!(matches!(
        app.core.verify_audit().await.unwrap(),
        Verified::Intact { records: 2, .. }
    ));
    let records: Vec<Record> = (1..=6).map(record).collect();
    app.core.append_audit(&records[..2]).await.unwrap();
    app.core.append_audit(&records[2..]).await.unwrap();
    let Verified::Intact {
        records: n,
        head_seq,
        ..
    } = app.core.verify_audit().await.unwrap()
    else {
        panic!("an untouched chain is intact")
    };
    assert_eq!((n, head_seq), (8, 8));
    let (ok, text) = verify_cli(&app);
    assert!(
        ok && text.contains("audit chain intact: 8 records"),
        "{text}"
    );
    // A head the log holds (`audit chain head seq=.. hash=..`) anchors
    // the chain against a rewrite of the whole table.
    let (seq, hash) = app.core.log_audit_checkpoint().await.unwrap();
    assert_eq!(seq, 8);
    let (ok, text) = verify_cli_with(
        &app,
        &[
            format!("5:{}", stored_hash(&app, 5).await),
            format!("8:{hash}"),
        ],
    );
    assert!(ok, "{text}");
    let (ok, text) = verify_cli_with(&app, &[format!("5:{hash}")]);
    assert!(
        !ok && text.contains("record 5 does not match the anchor"),
        "{text}"
    );
    let (ok, text) = verify_cli_with(&app, &[format!("9:{hash}")]);
    assert!(
        !ok && text.contains("record 9 does not match the anchor"),
        "{text}"
    );
    let (ok, text) = verify_cli_with(&app, &["5:nothex".to_owned()]);
    assert!(!ok && text.contains("expected SEQ:HASH"), "{text}");

    // An edited column, NULL included, is caught at its record.
    sql(
        &app,
        "UPDATE audit_events SET outcome = 'refused' WHERE seq = 5",
    )
    .await;
    assert_eq!(
        app.core.verify_audit().await.unwrap(),
        Verified::Broken(Break::Edited { seq: 5 })
    );
    let (ok, text) = verify_cli(&app);
    assert!(!ok && text.contains("record 5"), "{text}");
    sql(&app, "UPDATE audit_events SET outcome = 'ok' WHERE seq = 5").await;
    sql(
        &app,
        "UPDATE audit_events SET target_account = NULL WHERE seq = 6",
    )
    .await;
    assert_eq!(
        app.core.verify_audit().await.unwrap(),
        Verified::Broken(Break::Edited { seq: 6 })
    );
    sql(
        &app,
        "UPDATE audit_events SET target_account = 'acct-4' WHERE seq = 6",
    )
    .await;
    assert!(matches!(
        app.core.verify_audit().await.unwrap(),
        Verified::Intact { .. }
    ));

    // Two records swapped: the first moved one no longer links.
    sql(&app, "UPDATE audit_events SET seq = -2 WHERE seq = 4").await;
    sql(&app, "UPDATE audit_events SET seq = 4 WHERE seq = 5").await;
    sql(&app, "UPDATE audit_events SET seq = 5 WHERE seq = -2").await;
    assert_eq!(
        app.core.verify_audit().await.unwrap(),
        Verified::Broken(Break::Unlinked { seq: 4 })
    );
    sql(&app, "UPDATE audit_events SET seq = -2 WHERE seq = 4").await;
    sql(&app, "UPDATE audit_events SET seq = 4 WHERE seq = 5").await;
    sql(&app, "UPDATE audit_events SET seq = 5 WHERE seq = -2").await;
    assert!(matches!(
        app.core.verify_audit().await.unwrap(),
        Verified::Intact { .. }
    ));

    // A record deleted in the middle, and one at the end.
    sql(&app, "DELETE FROM audit_events WHERE seq = 8").await;
    assert_eq!(
        app.core.verify_audit().await.unwrap(),
        Verified::Broken(Break::Head {
            seq: 7,
            head_seq: 8
        })
    );
    sql(&app, "DELETE FROM audit_events WHERE seq = 4").await;
    assert_eq!(
        app.core.verify_audit().await.unwrap(),
        Verified::Broken(Break::Gap {
            expected: 4,
            found: 5
        })
    );
    let (ok, text) = verify_cli(&app);
    assert!(!ok && text.contains("record 4 is missing"), "{text}");
    // The head row itself deleted: said so, not "internal error".
    sql(&app, "DELETE FROM audit_head").await;
    assert_eq!(
        app.core.verify_audit().await.unwrap(),
        Verified::Broken(Break::HeadMissing)
    );
    let (ok, text) = verify_cli(&app);
    assert!(
        !ok && text
            .contains("audit chain broken: the chain's head (the audit_head row) is missing"),
        "{text}"
    );
    assert!(!text.contains("internal error"), "{text}");
}

/// Appenders racing still form one linear chain: on Postgres the head's
/// row lock orders them, on SQLite the one writer does.
async fn concurrent_appends_form_one_chain(backend: Backend) {
    let app = spawn_app(backend).await;
    let tasks: Vec<_> = (0..4)
        .map(|t| {
            let core = app.core.clone();
            tokio::spawn(async move {
                for i in 0..10 {
                    core.append_audit(&[record(t * 100 + i)]).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    // Plus the bootstrap's two.
    assert!(matches!(
        app.core.verify_audit().await.unwrap(),
        Verified::Intact {
            records: 42,
            head_seq: 42,
            ..
        }
    ));
}

fn audit(app: &TestApp) -> AuditServiceClient<tonic::transport::Channel> {
    AuditServiceClient::new(app.channel.clone())
}

/// Every page of a listing as `request` builds it.
async fn list_all(
    app: &TestApp,
    request: impl Fn(pb::ListEventsRequest) -> Request<pb::ListEventsRequest>,
    filter: pb::ListEventsRequest,
) -> Result<Vec<pb::AuditEvent>, tonic::Status> {
    let mut events = Vec::new();
    let mut token = String::new();
    loop {
        let page = audit(app)
            .list_events(request(pb::ListEventsRequest {
                page_token: token.clone(),
                ..filter.clone()
            }))
            .await?
            .into_inner();
        events.extend(page.events);
        if page.next_page_token.is_empty() {
            return Ok(events);
        }
        token = page.next_page_token;
    }
}

/// The changes recorded after `seq`, oldest first, as the admin reads them.
async fn changes_after(app: &TestApp, seq: i64) -> Vec<pb::AuditEvent> {
    let mut events = list_all(
        app,
        as_admin,
        pb::ListEventsRequest {
            kind: "change".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    events.retain(|e| e.seq > seq);
    events.reverse();
    events
}

/// A string field of an event's detail, by path (`actor.username`).
pub fn detail<'a>(event: &'a pb::AuditEvent, path: &str) -> Option<&'a prost_types::value::Kind> {
    let mut fields = &event.detail.as_ref()?.fields;
    let mut parts = path.split('.').peekable();
    while let Some(part) = parts.next() {
        let kind = fields.get(part)?.kind.as_ref()?;
        if parts.peek().is_none() {
            return Some(kind);
        }
        match kind {
            prost_types::value::Kind::StructValue(s) => fields = &s.fields,
            _ => return None,
        }
    }
    None
}

pub fn detail_text<'a>(event: &'a pb::AuditEvent, path: &str) -> Option<&'a str> {
    match detail(event, path)? {
        prost_types::value::Kind::StringValue(s) => Some(s),
        _ => None,
    }
}

/// Asserts that exactly one change was recorded after `last`, by `rpc` on
/// the target, and returns it.
async fn one_change(
    app: &TestApp,
    last: &mut i64,
    rpc: &str,
    target: (&str, &str, &str),
) -> pb::AuditEvent {
    let new = changes_after(app, *last).await;
    assert_eq!(
        new.len(),
        1,
        "{rpc}: expected one change record, got {new:#?}"
    );
    let event = new.into_iter().next().unwrap();
    assert_eq!(event.rpc, rpc);
    assert_eq!(event.outcome, "ok");
    assert_eq!(event.actor, "admin", "{event:#?}");
    assert_eq!(
        (
            event.target_kind.as_str(),
            event.target.as_str(),
            event.target_account.as_str()
        ),
        target,
        "{event:#?}"
    );
    assert_eq!(detail_text(&event, "actor.username"), Some("admin"));
    assert_eq!(detail_text(&event, "actor.credential"), Some("password"));
    assert!(detail_text(&event, "request_id").is_some(), "{event:#?}");
    assert!(detail_text(&event, "source.peer").is_some(), "{event:#?}");
    *last = event.seq;
    event
}

async fn no_change(app: &TestApp, last: i64, what: &str) {
    let new = changes_after(app, last).await;
    assert!(new.is_empty(), "{what} left a change record: {new:#?}");
}

async fn every_admin_change_is_recorded_once_without_secrets(backend: Backend) {
    let app = spawn_app(backend).await;
    let boot = changes_after(&app, 0).await;
    assert_eq!(
        boot.iter()
            .map(|e| (e.rpc.as_str(), e.target_kind.as_str(), e.target.as_str()))
            .collect::<Vec<_>>(),
        [
            ("bootstrap", "account", "admin"),
            ("bootstrap", "user", "admin")
        ]
    );
    let mut last = boot.last().map_or(0, |e| e.seq);
    let (p1, p2) = ("first-password-1234", "second-password-5678");

    app.accounts()
        .create_account(as_admin(pb::CreateAccountRequest {
            name: "acme".into(),
            email: "a@acme.test".into(),
            ..Default::default()
        }))
        .await
        .unwrap();
    let e = one_change(
        &app,
        &mut last,
        "CreateAccount",
        ("account", "acme", "acme"),
    )
    .await;
    assert_eq!(detail_text(&e, "changes.email.to"), Some("a@acme.test"));
    assert_code(
        app.accounts()
            .create_account(as_admin(pb::CreateAccountRequest {
                name: "acme".into(),
                ..Default::default()
            }))
            .await,
        Code::AlreadyExists,
    );
    no_change(&app, last, "a refused CreateAccount").await;

    app.accounts()
        .update_account(as_admin(pb::UpdateAccountRequest {
            name: "acme".into(),
            email: "b@acme.test".into(),
        }))
        .await
        .unwrap();
    let e = one_change(
        &app,
        &mut last,
        "UpdateAccount",
        ("account", "acme", "acme"),
    )
    .await;
    assert_eq!(detail_text(&e, "changes.email.from"), Some("a@acme.test"));
    assert_eq!(detail_text(&e, "changes.email.to"), Some("b@acme.test"));

    let alice = app.create_user("acme", "alice", p1, &["read-only"]).await;
    let e = one_change(&app, &mut last, "CreateUser", ("user", "alice", "acme")).await;
    assert_eq!(detail_text(&e, "target.id"), Some(alice.id.as_str()));
    assert!(detail(&e, "changes.password.changed").is_some(), "{e:#?}");

    app.users()
        .set_password(as_admin(pb::SetPasswordRequest {
            account: "acme".into(),
            username: "alice".into(),
            password: p2.into(),
            ..Default::default()
        }))
        .await
        .unwrap();
    one_change(&app, &mut last, "SetPassword", ("user", "alice", "acme")).await;

    let created = app
        .keys()
        .create_api_key(as_admin(pb::CreateApiKeyRequest {
            account: "acme".into(),
            username: "alice".into(),
            name: "k1".into(),
            description: "ci".into(),
            expires_at: in_days(&app.core, 30),
        }))
        .await
        .unwrap()
        .into_inner();
    let e = one_change(&app, &mut last, "CreateApiKey", ("api_key", "k1", "acme")).await;
    let key_id = detail_text(&e, "target.id").unwrap().to_owned();
    assert!(created.value.contains(&key_id));
    assert_eq!(detail_text(&e, "changes.owner.to"), Some("alice"));

    app.keys()
        .update_api_key(as_admin(pb::UpdateApiKeyRequest {
            account: "acme".into(),
            username: "alice".into(),
            name: "k1".into(),
            new_name: Some("k2".into()),
            ..Default::default()
        }))
        .await
        .unwrap();
    let e = one_change(&app, &mut last, "UpdateApiKey", ("api_key", "k1", "acme")).await;
    assert_eq!(detail_text(&e, "changes.name.to"), Some("k2"));
    assert_code(
        app.keys()
            .update_api_key(as_admin(pb::UpdateApiKeyRequest {
                account: "acme".into(),
                username: "alice".into(),
                name: "k1".into(),
                new_name: Some("k3".into()),
                ..Default::default()
            }))
            .await,
        Code::NotFound,
    );
    no_change(&app, last, "an update of a missing key").await;

    let rotated = app
        .keys()
        .rotate_api_key(as_admin(pb::RotateApiKeyRequest {
            account: "acme".into(),
            username: "alice".into(),
            name: "k2".into(),
            grace_seconds: Some(0),
        }))
        .await
        .unwrap()
        .into_inner();
    one_change(&app, &mut last, "RotateApiKey", ("api_key", "k2", "acme")).await;
    app.keys()
        .update_api_key(as_admin(pb::UpdateApiKeyRequest {
            account: "acme".into(),
            username: "alice".into(),
            name: "k2".into(),
            status: pb::ApiKeyStatus::Revoked.into(),
            ..Default::default()
        }))
        .await
        .unwrap();
    let e = one_change(&app, &mut last, "UpdateApiKey", ("api_key", "k2", "acme")).await;
    assert_eq!(detail_text(&e, "op"), Some("revoke"));
    app.keys()
        .delete_api_key(as_admin(pb::DeleteApiKeyRequest {
            account: "acme".into(),
            username: "alice".into(),
            name: "k2".into(),
        }))
        .await
        .unwrap();
    one_change(&app, &mut last, "DeleteApiKey", ("api_key", "k2", "acme")).await;

    let member = pb::AddRoleMemberRequest {
        role: "read-write".into(),
        username: "alice".into(),
        account: "acme".into(),
    };
    app.roles()
        .add_role_member(as_admin(member.clone()))
        .await
        .unwrap();
    one_change(
        &app,
        &mut last,
        "AddRoleMember",
        ("role_member", "alice", "acme"),
    )
    .await;
    // Refused inside its transaction (the binding exists): no record.
    assert_code(
        app.roles().add_role_member(as_admin(member)).await,
        Code::AlreadyExists,
    );
    no_change(&app, last, "a duplicate role member").await;
    app.roles()
        .remove_role_member(as_admin(pb::RemoveRoleMemberRequest {
            role: "read-write".into(),
            username: "alice".into(),
            account: "acme".into(),
        }))
        .await
        .unwrap();
    one_change(
        &app,
        &mut last,
        "RemoveRoleMember",
        ("role_member", "alice", "acme"),
    )
    .await;

    let mut groups = app.groups();
    groups
        .create_group(as_admin(pb::CreateGroupRequest {
            name: "ops".into(),
            description: "on call".into(),
        }))
        .await
        .unwrap();
    one_change(&app, &mut last, "CreateGroup", ("group", "ops", "")).await;
    groups
        .update_group(as_admin(pb::UpdateGroupRequest {
            name: "ops".into(),
            description: "on call, 24/7".into(),
        }))
        .await
        .unwrap();
    one_change(&app, &mut last, "UpdateGroup", ("group", "ops", "")).await;
    let members = pb::GroupMembersRequest {
        name: "ops".into(),
        usernames: vec!["alice".into()],
    };
    groups
        .add_group_members(as_admin(members.clone()))
        .await
        .unwrap();
    one_change(&app, &mut last, "AddGroupMembers", ("group", "ops", "")).await;
    let grants = pb::GroupGrantsRequest {
        name: "ops".into(),
        grants: vec![pb::GroupGrant {
            role: "read-only".into(),
            account: "acme".into(),
        }],
    };
    groups
        .add_group_grants(as_admin(grants.clone()))
        .await
        .unwrap();
    one_change(&app, &mut last, "AddGroupGrants", ("group", "ops", "")).await;
    groups.remove_group_grants(as_admin(grants)).await.unwrap();
    one_change(&app, &mut last, "RemoveGroupGrants", ("group", "ops", "")).await;
    groups
        .remove_group_members(as_admin(members))
        .await
        .unwrap();
    one_change(&app, &mut last, "RemoveGroupMembers", ("group", "ops", "")).await;
    groups
        .delete_group(as_admin(pb::DeleteGroupRequest { name: "ops".into() }))
        .await
        .unwrap();
    one_change(&app, &mut last, "DeleteGroup", ("group", "ops", "")).await;

    // Signing in is no change; revoking a token family is, by whoever
    // holds the token; revoking a user's tokens is too.
    let held = app.grant("alice", p2).await.unwrap();
    no_change(&app, last, "a password grant").await;
    app.tokens()
        .revoke_token(pb::RevokeTokenRequest {
            token: held.refresh_token.clone(),
        })
        .await
        .unwrap();
    let new = changes_after(&app, last).await;
    assert_eq!(new.len(), 1, "{new:#?}");
    let e = &new[0];
    assert_eq!(
        (
            e.rpc.as_str(),
            e.target_kind.as_str(),
            e.target_account.as_str(),
            e.actor.as_str()
        ),
        ("RevokeToken", "token_family", "acme", "")
    );
    assert_eq!(detail_text(e, "actor.local"), Some("token holder"));
    assert_eq!(detail_text(e, "changes.user.to"), Some("alice"));
    last = e.seq;
    let tokens = app.grant("alice", p2).await.unwrap();
    app.tokens()
        .revoke_user_tokens(as_admin(pb::RevokeUserTokensRequest {
            account: "acme".into(),
            username: "alice".into(),
        }))
        .await
        .unwrap();
    one_change(
        &app,
        &mut last,
        "RevokeUserTokens",
        ("user", "alice", "acme"),
    )
    .await;

    app.users()
        .set_user_state(as_admin(pb::SetUserStateRequest {
            account: "acme".into(),
            username: "alice".into(),
            state: pb::UserState::Disabled.into(),
        }))
        .await
        .unwrap();
    let e = one_change(&app, &mut last, "SetUserState", ("user", "alice", "acme")).await;
    assert_eq!(detail_text(&e, "changes.state.from"), Some("enabled"));
    assert_eq!(detail_text(&e, "changes.state.to"), Some("disabled"));
    app.users()
        .delete_user(as_admin(pb::DeleteUserRequest {
            account: "acme".into(),
            username: "alice".into(),
        }))
        .await
        .unwrap();
    one_change(&app, &mut last, "DeleteUser", ("user", "alice", "acme")).await;

    assert_code(
        app.accounts()
            .delete_account(as_admin(pb::DeleteAccountRequest {
                name: "acme".into(),
            }))
            .await,
        Code::FailedPrecondition,
    );
    no_change(&app, last, "deleting an enabled account").await;
    app.set_account_state("acme", pb::AccountState::Disabled)
        .await;
    one_change(
        &app,
        &mut last,
        "SetAccountState",
        ("account", "acme", "acme"),
    )
    .await;
    app.accounts()
        .delete_account(as_admin(pb::DeleteAccountRequest {
            name: "acme".into(),
        }))
        .await
        .unwrap();
    one_change(
        &app,
        &mut last,
        "DeleteAccount",
        ("account", "acme", "acme"),
    )
    .await;

    // No record holds a password, a key value or a token.
    let everything = format!(
        "{:?}",
        list_all(&app, as_admin, pb::ListEventsRequest::default())
            .await
            .unwrap()
    );
    for secret in [
        p1,
        p2,
        ADMIN_PASSWORD,
        CALLER_KEY,
        created.value.as_str(),
        rotated.value.as_str(),
        tokens.access_token.as_str(),
        tokens.refresh_token.as_str(),
        held.access_token.as_str(),
        held.refresh_token.as_str(),
    ] {
        assert!(
            !everything.contains(secret),
            "a record holds the secret {secret:?}"
        );
    }
    // The secret part of a key, alone, appears nowhere either.
    let secret_part = created.value.rsplit('_').nth(1).unwrap();
    assert!(!everything.contains(secret_part));
    assert!(matches!(
        app.core.verify_audit().await.unwrap(),
        Verified::Intact { .. }
    ));
}

/// Polls the listing until `want` refusals match `filter` (10 s at most).
pub async fn refusals(
    app: &TestApp,
    filter: pb::ListEventsRequest,
    want: usize,
) -> Vec<pb::AuditEvent> {
    let filter = pb::ListEventsRequest {
        kind: "refusal".into(),
        ..filter
    };
    for _ in 0..100 {
        let events = list_all(app, as_admin, filter.clone()).await.unwrap();
        if events.len() >= want {
            return events;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("fewer than {want} refusals matched {filter:?}");
}

async fn refusals_lockouts_and_unlocks_are_recorded(backend: Backend) {
    let app = spawn_app_with(backend, |c| c.lockout.threshold = 3).await;
    app.create_account("acme").await;
    app.create_user("acme", "bob", "bobs-right-password", &["read-only"])
        .await;
    app.create_user("acme", "carol", "carols-password-1", &["read-only"])
        .await;
    let wrong = ["wrong-guess-one", "wrong-guess-two", "wrong-guess-three"];
    for guess in wrong {
        assert_eq!(
            app.login("bob", guess).await.unwrap_err().code(),
            Code::Unauthenticated
        );
    }
    assert_eq!(
        app.login("bob", "bobs-right-password")
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated
    );
    let events = refusals(
        &app,
        pb::ListEventsRequest {
            actor: "bob".into(),
            ..Default::default()
        },
        4,
    )
    .await;
    let outcomes: Vec<&str> = events.iter().rev().map(|e| e.outcome.as_str()).collect();
    assert_eq!(
        outcomes,
        [
            "wrong_password",
            "wrong_password",
            "wrong_password",
            "locked"
        ]
    );
    for e in &events {
        assert_eq!(e.rpc, "Authenticate");
        assert_eq!(detail_text(e, "credential"), Some("password"));
        assert_eq!(detail_text(e, "claimed_username"), Some("bob"));
        assert!(detail_text(e, "source.address").is_some(), "{e:#?}");
    }

    // The lock is a change authzd made, in the same transaction.
    let locks = list_all(
        &app,
        as_admin,
        pb::ListEventsRequest {
            target: "bob".into(),
            kind: "change".into(),
            rpc: "Authenticate".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(locks.len(), 1, "{locks:#?}");
    assert_eq!(detail_text(&locks[0], "op"), Some("lock"));
    assert_eq!(detail_text(&locks[0], "actor.local"), Some("lockout"));
    assert_eq!(locks[0].actor, "");
    app.users()
        .unlock_user(as_admin(pb::UnlockUserRequest {
            account: "acme".into(),
            username: "bob".into(),
        }))
        .await
        .unwrap();
    let unlocks = list_all(
        &app,
        as_admin,
        pb::ListEventsRequest {
            rpc: "UnlockUser".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(unlocks.len(), 1);
    assert_eq!(unlocks[0].actor, "admin");
    assert_eq!(unlocks[0].target, "bob");

    // A revoked key: its public id, never its value.
    let value = app.create_key("acme", "bob", "robot", 30).await;
    app.keys()
        .update_api_key(as_admin(pb::UpdateApiKeyRequest {
            account: "acme".into(),
            username: "bob".into(),
            name: "robot".into(),
            status: pb::ApiKeyStatus::Revoked.into(),
            ..Default::default()
        }))
        .await
        .unwrap();
    assert_eq!(
        app.key_login(&value).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    let revoked = refusals(
        &app,
        pb::ListEventsRequest {
            outcome: "key_revoked".into(),
            ..Default::default()
        },
        1,
    )
    .await;
    let key_id = value.split('_').nth(1).unwrap();
    assert_eq!(detail_text(&revoked[0], "api_key_id"), Some(key_id));
    assert_eq!(detail_text(&revoked[0], "credential"), Some("api_key"));

    // An admin action refused: who, what, where.
    assert_code(
        app.users()
            .create_user(as_user(
                "carol",
                "carols-password-1",
                pb::CreateUserRequest {
                    account: "acme".into(),
                    username: "mallory".into(),
                    password: "mallorys-password".into(),
                    ..Default::default()
                },
            ))
            .await,
        Code::PermissionDenied,
    );
    let denied = refusals(
        &app,
        pb::ListEventsRequest {
            outcome: "permission_denied".into(),
            ..Default::default()
        },
        1,
    )
    .await;
    assert_eq!(denied[0].actor, "carol");
    assert_eq!(denied[0].rpc, "CreateUser");
    assert_eq!(denied[0].target_account, "acme");
    assert_eq!(detail_text(&denied[0], "action"), Some("createUser"));
    assert_eq!(
        detail_text(&denied[0], "actor.credential"),
        Some("password")
    );

    // Refused before any handler runs: a header that is no credential at
    // all, and a calling service without a valid caller key.
    let mut garbage = Request::new(pb::ListAccountsRequest::default());
    garbage
        .metadata_mut()
        .insert("authorization", "Basic !!!".parse().unwrap());
    assert_code(
        app.accounts().list_accounts(garbage).await,
        Code::Unauthenticated,
    );
    let early = refusals(
        &app,
        pb::ListEventsRequest {
            outcome: "malformed".into(),
            rpc: "ListAccounts".into(),
            ..Default::default()
        },
        1,
    )
    .await;
    assert!(
        detail_text(&early[0], "source.peer").is_some(),
        "{early:#?}"
    );
    let mut no_key = Request::new(pb::AuthenticateRequest {
        credentials: Some(pb::authenticate_request::Credentials::Authorization(basic(
            "bob",
            "bobs-right-password",
        ))),
        ..Default::default()
    });
    no_key.metadata_mut().insert(
        "authorization",
        "Bearer not-the-caller-key".parse().unwrap(),
    );
    assert_code(app.auth().authenticate(no_key).await, Code::Unauthenticated);
    let early = refusals(
        &app,
        pb::ListEventsRequest {
            outcome: "unknown_caller_key".into(),
            ..Default::default()
        },
        1,
    )
    .await;
    assert_eq!(early[0].rpc, "Authenticate");
    assert_eq!(detail_text(&early[0], "credential"), Some("caller_key"));

    let everything = format!(
        "{:?}",
        list_all(&app, as_admin, pb::ListEventsRequest::default())
            .await
            .unwrap()
    );
    for secret in wrong.iter().copied().chain([
        "bobs-right-password",
        "carols-password-1",
        "not-the-caller-key",
        value.as_str(),
    ]) {
        assert!(!everything.contains(secret), "a record holds {secret:?}");
    }
    assert!(matches!(
        app.core.verify_audit().await.unwrap(),
        Verified::Intact { .. }
    ));
}

async fn listing_filters_pages_and_permissions(backend: Backend) {
    let app = spawn_app(backend).await;
    for account in ["acme", "globex"] {
        app.create_account(account).await;
    }
    app.create_user(
        "acme",
        "acme-admin",
        "acme-admin-pass",
        &["account-user-admin"],
    )
    .await;
    app.create_user("acme", "acme-viewer", "acme-viewer-pass", &["read-only"])
        .await;
    app.create_user("globex", "globex-user", "globex-user-pass", &["read-only"])
        .await;
    let as_acme_admin = |m: pb::ListEventsRequest| as_user("acme-admin", "acme-admin-pass", m);

    // An account's user administrator reads its account's records only.
    let acme = list_all(&app, as_acme_admin, pb::ListEventsRequest::default())
        .await
        .unwrap();
    assert!(!acme.is_empty());
    assert!(acme.iter().all(|e| e.target_account == "acme"), "{acme:#?}");
    assert!(acme.iter().any(|e| e.target == "acme-viewer"));
    assert_code(
        audit(&app)
            .list_events(as_acme_admin(pb::ListEventsRequest {
                target_account: "globex".into(),
                ..Default::default()
            }))
            .await,
        Code::PermissionDenied,
    );
    assert_code(
        audit(&app)
            .list_events(as_user(
                "acme-viewer",
                "acme-viewer-pass",
                pb::ListEventsRequest::default(),
            ))
            .await,
        Code::PermissionDenied,
    );
    // Both refusals are recorded (and written before the pages below).
    let denied = refusals(
        &app,
        pb::ListEventsRequest {
            outcome: "permission_denied".into(),
            ..Default::default()
        },
        2,
    )
    .await;
    assert!(denied.iter().all(|e| e.rpc == "ListEvents"));

    // Reading is no change: an API key may read.
    let key = app.create_key("acme", "acme-admin", "reader", 30).await;
    let by_key = list_all(
        &app,
        |m| as_key(&key, m),
        pb::ListEventsRequest {
            kind: "change".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(!by_key.is_empty(), "the key read nothing");
    assert!(by_key.iter().all(|e| e.target_account == "acme"));
    assert!(
        by_key
            .iter()
            .any(|e| e.rpc == "CreateApiKey" && e.target == "reader"),
        "the key's own creation is among what it reads: {by_key:#?}"
    );

    // A global administrator reads everything, or one account in context.
    let all = list_all(&app, as_admin, pb::ListEventsRequest::default())
        .await
        .unwrap();
    let accounts: BTreeSet<&str> = all.iter().map(|e| e.target_account.as_str()).collect();
    assert!(accounts.contains("acme") && accounts.contains("globex") && accounts.contains("admin"));
    let globex = list_all(
        &app,
        |m| in_account(as_admin(m), "globex"),
        pb::ListEventsRequest::default(),
    )
    .await
    .unwrap();
    assert!(!globex.is_empty() && globex.iter().all(|e| e.target_account == "globex"));

    // Filters, alone and together.
    let created = list_all(
        &app,
        as_admin,
        pb::ListEventsRequest {
            rpc: "CreateUser".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let names: BTreeSet<&str> = created.iter().map(|e| e.target.as_str()).collect();
    assert_eq!(
        names,
        BTreeSet::from(["acme-admin", "acme-viewer", "globex-user"])
    );
    let one = list_all(
        &app,
        as_admin,
        pb::ListEventsRequest {
            rpc: "CreateUser".into(),
            target: "acme-viewer".into(),
            actor: "admin".into(),
            outcome: "ok".into(),
            target_kind: "user".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(one.len(), 1);
    let at = one[0].time.unwrap();
    let later = prost_types::Timestamp {
        seconds: at.seconds + 1,
        nanos: 0,
    };
    let window = |since, until| pb::ListEventsRequest {
        rpc: "CreateUser".into(),
        target: "acme-viewer".into(),
        since,
        until,
        ..Default::default()
    };
    assert_eq!(
        list_all(&app, as_admin, window(Some(at), Some(later)))
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(
        list_all(&app, as_admin, window(Some(later), None))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        list_all(&app, as_admin, window(None, Some(at)))
            .await
            .unwrap()
            .is_empty()
    );

    // Pages of two: newest first, every record once.
    let mut paged = Vec::new();
    let mut token = String::new();
    loop {
        let page = audit(&app)
            .list_events(as_admin(pb::ListEventsRequest {
                page_size: 2,
                page_token: token.clone(),
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner();
        assert!(page.events.len() <= 2);
        paged.extend(page.events.iter().map(|e| e.seq));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert!(paged.windows(2).all(|w| w[0] > w[1]), "{paged:?}");
    let everything: Vec<i64> = list_all(&app, as_admin, pb::ListEventsRequest::default())
        .await
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(paged, everything);
    assert_invalid(
        audit(&app)
            .list_events(as_admin(pb::ListEventsRequest {
                page_token: "not-a-token".into(),
                ..Default::default()
            }))
            .await,
        "page_token",
    );

    // A deleted account's name taken again: its new administrator does not
    // read the old tenant's history.
    app.set_account_state("globex", pb::AccountState::Disabled)
        .await;
    app.accounts()
        .delete_account(as_admin(pb::DeleteAccountRequest {
            name: "globex".into(),
        }))
        .await
        .unwrap();
    assert_eq!(app.purge().await, 1);
    // The two tenants' records told apart by their order, not their time:
    // the new one created a minute "before" the old one's records (a
    // clock stepped back), which covers the shared millisecond too.
    app.core.clock().advance(chrono::TimeDelta::seconds(-60));
    app.create_account("globex").await;
    app.create_user(
        "globex",
        "new-admin",
        "new-admin-pass",
        &["account-user-admin"],
    )
    .await;
    let reused = list_all(
        &app,
        |m| as_user("new-admin", "new-admin-pass", m),
        pb::ListEventsRequest::default(),
    )
    .await
    .unwrap();
    assert!(
        reused.iter().any(|e| e.target == "new-admin"),
        "{reused:#?}"
    );
    assert!(
        reused.iter().all(|e| e.target != "globex-user"),
        "the old tenant's records leaked: {reused:#?}"
    );
}

/// With a queue of one, a burst of refused keys overflows it: what was
/// not written was counted, and nothing else is missing.
async fn a_full_refusal_queue_drops_and_counts_honestly(backend: Backend) {
    let app = spawn_app_with(backend, |c| {
        c.audit.queue_size = 1;
        c.audit.batch_size = 1;
        // Every refusal its own record, so the queue is what bounds them.
        c.audit.refusals_per_source = u32::MAX;
        c.rate_limit.enabled = false;
    })
    .await;
    const ATTEMPTS: usize = 200;
    let attempts: Vec<_> = (0..ATTEMPTS)
        .map(|i| {
            let channel = app.channel.clone();
            tokio::spawn(async move {
                AuthServiceClient::new(channel)
                    .authenticate(as_service(pb::AuthenticateRequest {
                        credentials: Some(pb::authenticate_request::Credentials::Authorization(
                            basic("_api_key", &format!("azk_unknown{i}_nosecret_x")),
                        )),
                        ..Default::default()
                    }))
                    .await
            })
        })
        .collect();
    for attempt in attempts {
        assert_code(attempt.await.unwrap(), Code::Unauthenticated);
    }
    let mut written = 0;
    for _ in 0..100 {
        written = list_all(
            &app,
            as_admin,
            pb::ListEventsRequest {
                kind: "refusal".into(),
                rpc: "Authenticate".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .len();
        if written + app.core.auditor().dropped() as usize == ATTEMPTS {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let dropped = app.core.auditor().dropped() as usize;
    assert_eq!(
        written + dropped,
        ATTEMPTS,
        "written {written}, dropped {dropped}"
    );
    assert!(
        dropped > 0,
        "a queue of one took {ATTEMPTS} refusals at once"
    );
    assert!(written > 0);
}

async fn retention_purges_behind_a_checkpoint_that_verifies(backend: Backend) {
    let app = spawn_app_with(backend, |c| c.audit.retention_days = 30).await;
    app.create_account("old-one").await;
    app.create_account("old-two").await;
    let old_anchor = format!("3:{}", stored_hash(&app, 3).await);
    app.core.clock().advance(chrono::TimeDelta::days(31));
    app.create_account("recent").await;
    let purged = app.core.purge_audit().await.unwrap();
    assert_eq!(purged, 4, "the bootstrap's two and two old accounts");
    let Verified::Intact { records, .. } = app.core.verify_audit().await.unwrap() else {
        panic!("a purged chain verifies from its checkpoint")
    };
    assert_eq!(records, 2, "the recent change and the checkpoint");
    let (ok, text) = verify_cli_with(&app, &[old_anchor]);
    assert!(
        ok && text.contains("anchor 3: purged by retention"),
        "{text}"
    );
    let all = list_all(&app, as_admin, pb::ListEventsRequest::default())
        .await
        .unwrap();
    assert_eq!(all[0].kind, "checkpoint");
    assert!(matches!(
        detail(&all[0], "purged_through"),
        Some(prost_types::value::Kind::NumberValue(n)) if *n == 4.0
    ));
    assert!(all.iter().all(|e| e.target != "old-one"));
    // Nothing more to purge.
    assert_eq!(app.core.purge_audit().await.unwrap(), 0);

    // Removing the first remaining record is no purge: the checkpoint does
    // not vouch for where the chain now starts.
    sql(&app, "DELETE FROM audit_events WHERE seq = 5").await;
    assert_eq!(
        app.core.verify_audit().await.unwrap(),
        Verified::Broken(Break::Purged { first: 6 })
    );
    let (ok, text) = verify_cli(&app);
    assert!(!ok && text.contains("no retention checkpoint"), "{text}");
}

/// Every record is one JSON line on the `audit` log target, and the head
/// is logged at start-up as an anchor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_is_a_json_line_on_the_audit_target() {
    let db = TestDatabase::new(Backend::Sqlite).await;
    let server = crate::binary::Server::start(&db).await;
    server.wait_for_logged("audit chain head", 1).await;
    let channel = connect(&server.addr).await;
    AccountServiceClient::new(channel)
        .create_account(as_admin(pb::CreateAccountRequest {
            name: "logged".into(),
            ..Default::default()
        }))
        .await
        .unwrap();
    // The bootstrap's two records, then this one.
    server.wait_for_logged("audit record", 3).await;
    let lines: Vec<serde_json::Value> = server
        .log_events()
        .into_iter()
        .filter(|e| e["target"] == "audit" && e["fields"]["message"] == "audit record")
        .collect();
    let created = lines
        .iter()
        .find(|e| e["fields"]["rpc"] == "CreateAccount")
        .unwrap_or_else(|| panic!("no CreateAccount record in {lines:#?}"));
    let fields = &created["fields"];
    assert_eq!(fields["seq"], 3);
    assert_eq!(fields["kind"], "change");
    assert_eq!(fields["actor"], "admin");
    assert_eq!(fields["target_name"], "logged");
    assert_eq!(fields["hash"].as_str().map(str::len), Some(64));
    let detail: serde_json::Value =
        serde_json::from_str(fields["detail"].as_str().unwrap()).unwrap();
    assert_eq!(detail["op"], "create");
    assert_eq!(detail["target"]["name"], "logged");
    assert!(!server.stderr().contains(ADMIN_PASSWORD));
    server.stop();
}

/// An API-key check refused at the key-id index (no database read), as
/// a calling service asks it for an end user at `address`.
async fn refused_key(channel: tonic::transport::Channel, address: String, i: usize) {
    let answer = AuthServiceClient::new(channel)
        .authenticate(as_service(pb::AuthenticateRequest {
            credentials: Some(pb::authenticate_request::Credentials::Authorization(basic(
                "_api_key",
                &format!("azk_unknown{i}_nosecret_x"),
            ))),
            client_address: address,
        }))
        .await;
    let status = answer.unwrap_err();
    assert!(
        matches!(
            status.code(),
            Code::Unauthenticated | Code::ResourceExhausted
        ),
        "{status:?}"
    );
}

/// The refusal records from `address`: (individual, counted) with the
/// counted ones' total, and their outcomes.
fn from_address<'a>(events: &'a [pb::AuditEvent], address: &str) -> Vec<&'a pb::AuditEvent> {
    events
        .iter()
        .filter(|e| detail_text(e, "source.address") == Some(address))
        .collect()
}

fn count_of(event: &pb::AuditEvent) -> u64 {
    match detail(event, "count") {
        Some(prost_types::value::Kind::NumberValue(n)) => *n as u64,
        other => panic!("no count in {event:?}: {other:?}"),
    }
}

/// A flood of 10,000 refused requests from one address writes a handful of
/// records an interval, whose counts add up to every refusal; a refusal from
/// another address in the middle of it has its own record within seconds.
/// Rate-limited refusals are always counted, never recorded one by one.
async fn a_flood_from_one_source_is_counted_not_recorded_one_by_one(backend: Backend) {
    const FLOOD: usize = 10_000;
    let app = spawn_app_with(backend, |c| {
        c.audit.refusal_interval_seconds = 1;
        c.audit.refusals_per_source = 20;
        c.rate_limit.enabled = false;
    })
    .await;
    let flooder = "203.0.113.9";
    let started = std::time::Instant::now();
    let mut flood = tokio::task::JoinSet::new();
    for worker in 0..16 {
        let channel = app.channel.clone();
        flood.spawn(async move {
            for i in (worker..FLOOD).step_by(16) {
                refused_key(channel.clone(), flooder.to_owned(), i).await;
            }
        });
    }
    // In the middle of it, another address's one refusal.
    tokio::time::sleep(Duration::from_millis(200)).await;
    refused_key(app.channel.clone(), "198.51.100.77".to_owned(), 0).await;
    let mut seen = None;
    for _ in 0..50 {
        let events = list_all(
            &app,
            as_admin,
            pb::ListEventsRequest {
                kind: "refusal".into(),
                rpc: "Authenticate".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        if let Some(e) = from_address(&events, "198.51.100.77").first() {
            seen = Some(((*e).clone(), started.elapsed()));
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (other, after) = seen.expect("the other address's refusal was never recorded");
    assert_eq!(other.rpc, "Authenticate");
    assert!(after < Duration::from_secs(5), "recorded after {after:?}");
    while let Some(done) = flood.join_next().await {
        done.unwrap();
    }
    let flood_took = started.elapsed();

    // Everything is written by the next interval or two.
    let mut total = 0;
    let mut events = Vec::new();
    for _ in 0..50 {
        events = list_all(
            &app,
            as_admin,
            pb::ListEventsRequest {
                kind: "refusal".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let own: Vec<_> = from_address(&events, flooder)
            .into_iter()
            .filter(|e| e.rpc == "Authenticate")
            .collect();
        let counted: u64 = from_address(&events, flooder)
            .into_iter()
            .filter(|e| e.rpc == "counted")
            .map(count_of)
            .sum();
        total = own.len() as u64 + counted;
        if total == FLOOD as u64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(total, FLOOD as u64, "refusals recorded or counted");
    let records = from_address(&events, flooder).len();
    // 20 records and one count per interval started during the flood.
    let intervals = flood_took.as_secs() as usize + 2;
    assert!(
        records <= 21 * intervals,
        "{records} records for {FLOOD} refusals over {flood_took:?}"
    );
    let counted = from_address(&events, flooder)
        .into_iter()
        .find(|e| e.rpc == "counted")
        .unwrap();
    // The same refusal as the other address's (a key of the wrong shape).
    assert_eq!(counted.outcome, "malformed");
    assert_eq!(counted.outcome, other.outcome);
    assert_eq!(detail_text(counted, "credential"), Some("api_key"));
    assert!(detail(counted, "first_at_ms").is_some());
    assert!(detail(counted, "last_at_ms").is_some());
    assert_eq!(app.core.auditor().dropped(), 0);
    let verified = app.core.verify_audit().await.unwrap();
    assert!(matches!(verified, Verified::Intact { .. }), "{verified:?}");
}

/// Rate-limited refusals never get a record each.
async fn rate_limited_refusals_are_counted(backend: Backend) {
    let app = spawn_app_with(backend, |c| {
        c.audit.refusal_interval_seconds = 1;
        c.rate_limit.burst = 5;
        c.rate_limit.failures_per_second = 1;
    })
    .await;
    let source = "203.0.113.44";
    let mut attempts = tokio::task::JoinSet::new();
    for i in 0..60 {
        attempts.spawn(refused_key(app.channel.clone(), source.to_owned(), i));
    }
    while let Some(done) = attempts.join_next().await {
        done.unwrap();
    }
    let mut limited = Vec::new();
    for _ in 0..50 {
        let events = list_all(
            &app,
            as_admin,
            pb::ListEventsRequest {
                kind: "refusal".into(),
                outcome: "rate_limited".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        limited = from_address(&events, source).into_iter().cloned().collect();
        if !limited.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(!limited.is_empty(), "no rate-limited refusal was recorded");
    assert!(limited.iter().all(|e| e.rpc == "counted"), "{limited:?}");
    assert!(limited.len() <= 3, "{} records", limited.len());
    let counted: u64 = limited.iter().map(count_of).sum();
    assert!(counted >= 50, "{counted} rate-limited refusals counted");
}

dual!(
    concurrent_appends_form_one_chain,
    a_flood_from_one_source_is_counted_not_recorded_one_by_one,
    rate_limited_refusals_are_counted,
    a_full_refusal_queue_drops_and_counts_honestly,
    the_chain_catches_edits_deletions_and_reordering,
    every_admin_change_is_recorded_once_without_secrets,
    refusals_lockouts_and_unlocks_are_recorded,
    listing_filters_pages_and_permissions,
    retention_purges_behind_a_checkpoint_that_verifies,
);

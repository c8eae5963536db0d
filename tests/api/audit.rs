//! The audit chain (issue 13, in progress): records appended in commit
//! order form one chain, and `authzd audit verify` finds an edited,
//! deleted or reordered record.

use authzd::domain::audit::{Break, Record, Verified};
use sea_orm::ConnectionTrait;

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
    let output = authzd_command()
        .args(["audit", "verify"])
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

async fn the_chain_catches_edits_deletions_and_reordering(backend: Backend) {
    let app = spawn_app(backend).await;
    assert!(matches!(
        app.core.verify_audit().await.unwrap(),
        Verified::Intact { records: 0, .. }
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
    assert_eq!((n, head_seq), (6, 6));
    let (ok, text) = verify_cli(&app);
    assert!(
        ok && text.contains("audit chain intact: 6 records"),
        "{text}"
    );

    // An edited column, NULL included, is caught at its record.
    sql(
        &app,
        "UPDATE audit_events SET outcome = 'refused' WHERE seq = 3",
    )
    .await;
    assert_eq!(
        app.core.verify_audit().await.unwrap(),
        Verified::Broken(Break::Edited { seq: 3 })
    );
    let (ok, text) = verify_cli(&app);
    assert!(!ok && text.contains("record 3"), "{text}");
    sql(&app, "UPDATE audit_events SET outcome = 'ok' WHERE seq = 3").await;
    sql(
        &app,
        "UPDATE audit_events SET target_account = NULL WHERE seq = 4",
    )
    .await;
    assert_eq!(
        app.core.verify_audit().await.unwrap(),
        Verified::Broken(Break::Edited { seq: 4 })
    );
    sql(
        &app,
        "UPDATE audit_events SET target_account = 'acct-4' WHERE seq = 4",
    )
    .await;
    assert!(matches!(
        app.core.verify_audit().await.unwrap(),
        Verified::Intact { .. }
    ));

    // Two records swapped: the first moved one no longer links.
    sql(&app, "UPDATE audit_events SET seq = -2 WHERE seq = 2").await;
    sql(&app, "UPDATE audit_events SET seq = 2 WHERE seq = 3").await;
    sql(&app, "UPDATE audit_events SET seq = 3 WHERE seq = -2").await;
    assert_eq!(
        app.core.verify_audit().await.unwrap(),
        Verified::Broken(Break::Unlinked { seq: 2 })
    );
    sql(&app, "UPDATE audit_events SET seq = -2 WHERE seq = 2").await;
    sql(&app, "UPDATE audit_events SET seq = 2 WHERE seq = 3").await;
    sql(&app, "UPDATE audit_events SET seq = 3 WHERE seq = -2").await;
    assert!(matches!(
        app.core.verify_audit().await.unwrap(),
        Verified::Intact { .. }
    ));

    // A record deleted in the middle, and one at the end.
    sql(&app, "DELETE FROM audit_events WHERE seq = 6").await;
    assert_eq!(
        app.core.verify_audit().await.unwrap(),
        Verified::Broken(Break::Head {
            seq: 5,
            head_seq: 6
        })
    );
    sql(&app, "DELETE FROM audit_events WHERE seq = 2").await;
    assert_eq!(
        app.core.verify_audit().await.unwrap(),
        Verified::Broken(Break::Gap {
            expected: 2,
            found: 3
        })
    );
    let (ok, text) = verify_cli(&app);
    assert!(!ok && text.contains("record 2 is missing"), "{text}");
}

dual!(the_chain_catches_edits_deletions_and_reordering);

/// Appenders racing on Postgres still form one linear chain: the head's
/// row lock orders them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_form_one_chain() {
    let app = spawn_app(Backend::Postgres).await;
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
    assert!(matches!(
        app.core.verify_audit().await.unwrap(),
        Verified::Intact {
            records: 40,
            head_seq: 40,
            ..
        }
    ));
}

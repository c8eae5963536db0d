//! Generated requests to every RPC of the API, as an administrator (by
//! password and by API key) and as a plain user: random strings (control
//! characters, invalid UTF-8, huge ones), huge and negative numbers,
//! unknown enum values, random page tokens and credentials, and now and
//! then garbage bytes. Whatever comes in: no INTERNAL or UNKNOWN, no
//! change to the identity data from a refused request, and the server
//! still SERVING at the end.
//!
//! Bounded by case count: `AUTHZD_FUZZ_CASES` per RPC and identity
//! (default 24), `AUTHZD_FUZZ_SEED` to replay a run (the seed is printed).

use std::collections::BTreeMap;

use prost_types::field_descriptor_proto::{Label, Type};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sea_orm::{ConnectionTrait, DatabaseConnection};
use tonic::Code;

use crate::dual;
use crate::support::*;
use crate::wire::{self, Api, length_delimited, number, varint};

const WORDS: [&str; 14] = [
    "acme",
    "alice",
    "admin",
    "fuzz_user",
    "read-only",
    "full-control",
    "account-user-admin",
    "listImages",
    "selfListApiKeys",
    "builders",
    "fuzz-key",
    "ops@acme.example",
    "okta",
    "ghost",
];

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Gen<'a> {
    api: &'a Api,
    rng: StdRng,
}

impl Gen<'_> {
    fn string(&mut self) -> Vec<u8> {
        let rng = &mut self.rng;
        match rng.random_range(0..12) {
            0..=5 => WORDS[rng.random_range(0..WORDS.len())].as_bytes().to_vec(),
            6 => Vec::new(),
            7 => {
                // Any code point, control characters and bidi overrides included.
                let len = rng.random_range(1..40);
                (0..len)
                    .map(|_| match rng.random_range(0..4) {
                        0 => char::from_u32(rng.random_range(0..0x20)).unwrap_or('\0'),
                        1 => ['\u{202E}', '\u{200B}', '\u{FEFF}', '\u{7F}', '\u{85}']
                            [rng.random_range(0..5)],
                        2 => char::from_u32(rng.random_range(0x20..0x7f)).unwrap_or('x'),
                        _ => char::from_u32(rng.random_range(0xa0..0x2_0000)).unwrap_or('é'),
                    })
                    .collect::<String>()
                    .into_bytes()
            }
            8 => "a".repeat(rng.random_range(100..3000)).into_bytes(),
            9 => (0..rng.random_range(1..16)).map(|_| rng.random()).collect(),
            10 => {
                let word = WORDS[rng.random_range(0..WORDS.len())];
                format!("{}\0{}", &word[..1], &word[1..]).into_bytes()
            }
            _ => (0..rng.random_range(1..20))
                .map(|_| rng.random_range(b' '..=b'~'))
                .collect(),
        }
    }

    fn number(&mut self) -> u64 {
        let rng = &mut self.rng;
        match rng.random_range(0..8) {
            0 => 0,
            1 => rng.random_range(1..5),
            2 => 99,
            3 => u64::MAX, // -1 as an int32/int64 varint
            4 => i32::MAX as u64,
            5 => i64::MIN as u64,
            6 => rng.random_range(1_000..10_000_000),
            _ => rng.random(),
        }
    }

    fn message(&mut self, name: &str, depth: u32) -> Vec<u8> {
        let Some(descriptor) = self.api.message(name) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for field in &descriptor.field {
            if !self.rng.random_bool(0.7) {
                continue;
            }
            let n = number(field);
            let count = match field.label() {
                Label::Repeated => self.rng.random_range(0..4),
                _ => 1,
            };
            for _ in 0..count {
                match field.r#type() {
                    Type::String => out.extend(length_delimited(n, &self.string())),
                    Type::Message if depth < 3 => {
                        let nested = field.type_name().trim_start_matches('.').to_owned();
                        let inner = self.message(&nested, depth + 1);
                        out.extend(length_delimited(n, &inner));
                    }
                    Type::Bool => out.extend(varint(n, self.rng.random_range(0..3))),
                    Type::Enum | Type::Int32 | Type::Int64 | Type::Uint32 | Type::Uint64 => {
                        out.extend(varint(n, self.number()))
                    }
                    _ => {}
                }
            }
        }
        out
    }

    fn body(&mut self, input: &str) -> Vec<u8> {
        if self.rng.random_bool(0.04) {
            return (0..self.rng.random_range(1..32))
                .map(|_| self.rng.random())
                .collect();
        }
        self.message(input, 0)
    }

    /// Now and then a credential that is not the identity's.
    fn credential(&mut self, usual: &str) -> String {
        if !self.rng.random_bool(0.1) {
            return usual.to_owned();
        }
        let raw = String::from_utf8_lossy(&self.string()).into_owned();
        match self.rng.random_range(0..4) {
            0 => format!("Basic {raw}"),
            1 => basic(&raw, &raw),
            2 => basic("_api_key", &raw),
            _ => format!("Bearer {raw}"),
        }
    }
}

/// The change counter: every write to accounts, users, bindings, groups or
/// keys bumps it (database triggers), so an unchanged value means
/// unchanged identity data.
async fn changes(db: &DatabaseConnection) -> i64 {
    db.query_one_raw(sea_orm::Statement::from_string(
        db.get_database_backend(),
        "SELECT seq FROM change_counter",
    ))
    .await
    .unwrap()
    .map(|row| row.try_get::<i64>("", "seq").unwrap())
    .unwrap_or(0)
}

async fn generated_requests_never_break_the_server(backend: Backend) {
    let app = spawn_app_with(backend, |c| {
        // The purge would change data behind a refused request's back.
        c.server.background_purge = false;
        // Random credentials fail by the thousand from one address; the
        // limit would refuse the rest before they reach the handlers.
        c.rate_limit.enabled = false;
    })
    .await;
    app.create_account("acme").await;
    app.create_user("acme", "fuzz_user", "fuzz-user-password", &["read-only"])
        .await;
    let admin_key = app.create_key("admin", "admin", "fuzz-admin-key", 30).await;
    let db = sea_orm::Database::connect(&app.db.url).await.unwrap();
    let api = Api::load();
    let seed = setting("AUTHZD_FUZZ_SEED", 0x5eed_a17d);
    let cases = setting("AUTHZD_FUZZ_CASES", 24);
    assert!(cases >= 1, "AUTHZD_FUZZ_CASES=0 would fuzz nothing");
    let mut generator = Gen {
        api: &api,
        rng: StdRng::seed_from_u64(seed),
    };
    let identities = [
        ("admin", basic("admin", ADMIN_PASSWORD)),
        ("admin key", basic("_api_key", &admin_key)),
        ("user", basic("fuzz_user", "fuzz-user-password")),
    ];
    let service_key = format!("Bearer {CALLER_KEY}");
    let mut codes: BTreeMap<String, usize> = BTreeMap::new();
    let mut answered = 0;
    let mut unreached = Vec::new();
    for method in api.methods() {
        // An answer other than a refusal of the caller: the request got
        // past authentication to the method's own checks.
        let mut reached = false;
        for (who, credential) in &identities {
            for case in 0..cases {
                let body = generator.body(&method.input);
                let usual = if method.service == "AuthService" {
                    &service_key
                } else {
                    credential
                };
                let mut metadata = vec![("authorization", generator.credential(usual))];
                if generator.rng.random_bool(0.2) {
                    let account = String::from_utf8_lossy(&generator.string()).into_owned();
                    metadata.push(("x-anchore-account", account));
                }
                // What the client cannot send (metadata that is not ASCII)
                // is left out before the call, so every call is answered.
                metadata.retain(|(_, v)| {
                    v.parse::<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>()
                        .is_ok()
                });
                let before = changes(&db).await;
                let result = wire::call(&app.channel, &method.path, body.clone(), &metadata).await;
                let code = match &result {
                    Ok(_) => Code::Ok,
                    Err(status) => status.code(),
                };
                answered += 1;
                reached |= !matches!(code, Code::Unauthenticated | Code::PermissionDenied);
                *codes.entry(format!("{code:?}")).or_default() += 1;
                let replay = format!(
                    "{} as {who}, case {case}, seed {seed:#x}, body {body:02x?}, metadata {metadata:?}",
                    method.path
                );
                // A reset stream (a panic without the catch), a server error
                // or an unavailable database (it is up) is a bug.
                assert!(
                    !matches!(
                        code,
                        Code::Internal | Code::Unknown | Code::Cancelled | Code::Unavailable
                    ),
                    "{code:?} for {replay}: {result:?}"
                );
                if code != Code::Ok {
                    assert_eq!(
                        changes(&db).await,
                        before,
                        "a refused request ({code:?}) changed identity data: {replay}"
                    );
                }
            }
        }
        if !reached {
            unreached.push(method.path.clone());
        }
    }
    eprintln!("fuzz ({backend:?}): {answered} requests, seed {seed:#x}, answers {codes:?}");
    assert_eq!(
        answered,
        api.methods().len() * identities.len() * cases as usize
    );
    assert!(
        unreached.is_empty(),
        "no request reached these methods past authentication: {unreached:?}"
    );
    wait_for_status(
        &app.channel,
        pb_health::health_check_response::ServingStatus::Serving,
    )
    .await;
    // Random requests may have locked admin (lockout stays on, so its
    // paths are fuzzed too) or set its password: after a reset, the
    // server still works.
    app.core
        .break_glass_reset_password(
            "admin",
            &authzd::domain::secret::Secret::new(ADMIN_PASSWORD),
        )
        .await
        .unwrap();
    app.login("admin", ADMIN_PASSWORD).await.unwrap();
}

dual!(generated_requests_never_break_the_server);

//! The docs' grpcurl examples, run as written: every `sh` block of the
//! README, `docs/envoy.md` and `docs/grpcurl.md`, in order, in one bash session,
//! against the release binary. A `# ⇒ text` line after a command is
//! expected output; `# ⇒ Code: X` means the command must fail with X.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::binary::Server;
use crate::support::{Backend, TestDatabase};

/// The settings the docs' setup block tells the reader to start with.
const DOC_ADMIN_PASSWORD: &str = "secret-pass";
const DOC_CALLER_KEY: &str = "caller-key-0123456789abcdef";
const DOC_ADDR: &str = "127.0.0.1:50051";

#[derive(Debug)]
struct Step {
    line: usize,
    command: String,
    expect: Vec<String>,
}

/// The commands of the ```sh blocks, each with its `# ⇒` lines.
fn steps(markdown: &str) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    let mut in_block = false;
    let mut pending: Option<Step> = None;
    for (i, line) in markdown.lines().enumerate() {
        if line.starts_with("```") {
            in_block = !in_block && line.trim() == "```sh";
            continue;
        }
        if !in_block {
            continue;
        }
        if let Some(step) = pending.as_mut() {
            step.command.push('\n');
            step.command.push_str(line);
            if !line.ends_with('\\') {
                steps.extend(pending.take());
            }
            continue;
        }
        let trimmed = line.trim();
        if let Some(text) = trimmed.strip_prefix("# ⇒ ") {
            steps
                .last_mut()
                .unwrap_or_else(|| panic!("line {}: ⇒ before any command", i + 1))
                .expect
                .push(text.to_owned());
        } else if trimmed.is_empty() || trimmed.starts_with('#') {
        } else {
            let step = Step {
                line: i + 1,
                command: line.to_owned(),
                expect: Vec::new(),
            };
            if line.ends_with('\\') {
                pending = Some(step);
            } else {
                steps.push(step);
            }
        }
    }
    assert!(
        pending.is_none() && !in_block,
        "an unterminated block or command"
    );
    steps
}

fn grpc_code(name: &str) -> u8 {
    let names = [
        "OK",
        "Canceled",
        "Unknown",
        "InvalidArgument",
        "DeadlineExceeded",
        "NotFound",
        "AlreadyExists",
        "PermissionDenied",
        "ResourceExhausted",
        "FailedPrecondition",
        "Aborted",
        "OutOfRange",
        "Unimplemented",
        "Internal",
        "Unavailable",
        "DataLoss",
        "Unauthenticated",
    ];
    names
        .iter()
        .position(|n| *n == name)
        .map(|c| c as u8)
        .unwrap_or_else(|| panic!("unknown gRPC code {name:?}"))
}

fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// One bash script that runs the steps and stops at the first that does
/// not answer as documented.
fn script(source: &str, steps: &[Step], addr: &str) -> String {
    let mut out = String::from(
        "set -u -o pipefail\nT=$(mktemp -d)\n\
         report() { printf '%s:%s: %s\\n--- command ---\\n%s\\n--- exit %s ---\\n--- stdout ---\\n%s\\n--- stderr ---\\n%s\\n' \
         \"$1\" \"$2\" \"$4\" \"$3\" \"$rc\" \"$(cat $T/out)\" \"$(cat $T/err)\" >&2; exit 1; }\n",
    );
    for step in steps {
        let command = step.command.replace(DOC_ADDR, addr);
        let failure = step
            .expect
            .iter()
            .find_map(|e| e.strip_prefix("Code: "))
            .map(grpc_code);
        let (exit, stream) = match failure {
            Some(code) => (64 + u32::from(code), "err"),
            None => (0, "out"),
        };
        let here = format!("{source} {} {}", step.line, quote(&command));
        out.push_str(&format!("{{\n{command}\n}} >$T/out 2>$T/err; rc=$?\n"));
        out.push_str(&format!(
            "[ $rc -eq {exit} ] || report {here} 'expected exit {exit}'\n"
        ));
        for text in &step.expect {
            let quoted = quote(text);
            out.push_str(&format!(
                "grep -qF -- {quoted} $T/{stream} || report {here} {}\n",
                quote(&format!("expected {stream} to contain: {text}"))
            ));
        }
    }
    out
}

/// A directory holding `grpcurl`, for PATH.
fn grpcurl_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let bin = std::env::var_os("GRPCURL")
        .filter(|p| !p.is_empty())
        .expect("GRPCURL is not set: run the suite with ./scripts/test, which installs grpcurl");
    std::os::unix::fs::symlink(bin, dir.path().join("grpcurl")).unwrap();
    dir
}

/// Runs the `sh` steps of `docs`, one after the other, in one bash session
/// against one server (as a reader goes from one page to the next on the
/// same database); returns the number of steps of each.
async fn run_docs(backend: Backend, docs: &[&str]) -> Vec<usize> {
    let steps: Vec<Vec<Step>> = docs
        .iter()
        .map(|doc| {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(doc);
            steps(&std::fs::read_to_string(&path).unwrap())
        })
        .collect();
    let doc = docs.join(" then ");
    let db = TestDatabase::new(backend).await;
    let server = Server::start_with(&db, |c| {
        c.env("AUTHZD_ADMIN_PASSWORD", DOC_ADMIN_PASSWORD)
            .env("AUTHZD_SERVER_CALLER_KEYS", DOC_CALLER_KEY);
    })
    .await;
    let bin = grpcurl_dir();
    let path_var = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let script: String = docs
        .iter()
        .zip(&steps)
        .map(|(doc, steps)| script(doc, steps, &server.addr))
        .collect();
    let run = tokio::process::Command::new("bash")
        .arg("-c")
        .arg(&script)
        .env("PATH", path_var)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(240), run)
        .await
        .expect("the cookbook took over 4 minutes")
        .unwrap();
    assert!(
        output.status.success(),
        "{doc} does not run as written on {backend:?}:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    server.stop();
    steps.iter().map(Vec::len).collect()
}

/// A newcomer's path: the README's taste, the Envoy page's example, then
/// the whole cookbook, on the one database the README started.
async fn the_readme_envoy_page_and_cookbook_run_as_written(backend: Backend) {
    let steps = run_docs(backend, &["README.md", "docs/envoy.md", "docs/grpcurl.md"]).await;
    assert!(
        steps[0] >= 3,
        "only {} commands found in README.md",
        steps[0]
    );
    assert!(
        steps[1] >= 2,
        "only {} commands found in docs/envoy.md",
        steps[1]
    );
    let steps = steps[2];
    assert!(steps > 60, "only {steps} commands found in docs/grpcurl.md");
    // Every RPC of every service appears in it.
    let markdown =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/grpcurl.md"))
            .unwrap();
    let set: prost_types::FileDescriptorSet =
        prost::Message::decode(authzd::pb::FILE_DESCRIPTOR_SET).unwrap();
    for file in set.file {
        for service in &file.service {
            for method in &service.method {
                let rpc = format!("{}.{}/{}", file.package(), service.name(), method.name());
                assert!(markdown.contains(&rpc), "docs/grpcurl.md never calls {rpc}");
            }
        }
    }
}

/// The string literals inside every `assert…(…)` call of a Rust source.
fn asserted_literals(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let bytes = text.as_bytes();
    let mut at = 0;
    while let Some(i) = text[at..].find("assert") {
        let start = at + i;
        at = start + 6;
        let Some(open) = text[at..].find('(').map(|o| at + o) else {
            break;
        };
        // Only `assert!(`, `assert_eq!(`, `assert_invalid(`…: no other
        // token between the name and its parenthesis.
        if text[at..open].contains(|c: char| c.is_whitespace() || c == ';') {
            continue;
        }
        let (mut depth, mut j, mut literal, mut in_string) = (0usize, open, Vec::new(), false);
        while j < bytes.len() {
            let c = bytes[j];
            if in_string {
                if c == b'\\' && j + 1 < bytes.len() {
                    literal.extend_from_slice(&bytes[j..j + 2]);
                    j += 2;
                    continue;
                }
                if c == b'"' {
                    in_string = false;
                    found.push(String::from_utf8_lossy(&std::mem::take(&mut literal)).into_owned());
                } else {
                    literal.push(c);
                }
            } else if c == b'"' {
                in_string = true;
            } else if c == b'(' {
                depth += 1;
            } else if c == b')' {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    break;
                }
            }
            j += 1;
        }
        at = j.max(at);
    }
    found
}

/// Every message the errors table of docs/authorization.md quotes is one
/// that the cookbook or a test asserts.
#[test]
fn every_error_message_the_docs_quote_is_asserted() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let docs = std::fs::read_to_string(root.join("docs/authorization.md")).unwrap();
    let table = docs
        .split("## Errors")
        .nth(1)
        .expect("docs/authorization.md has an Errors section");
    let mut asserted: String = std::fs::read_to_string(root.join("docs/grpcurl.md"))
        .unwrap()
        .lines()
        .filter_map(|l| l.trim().strip_prefix("# ⇒ Message: "))
        .collect::<Vec<_>>()
        .join("\n");
    // Only string literals inside `assert…(…)` calls count: a message in
    // a comment or an input is not asserted.
    for entry in std::fs::read_dir(root.join("tests/api")).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for literal in asserted_literals(&text) {
            asserted.push('\n');
            asserted.push_str(&literal.replace("\\\"", "\""));
        }
    }
    let mut quoted = 0;
    for row in table.lines().filter(|l| l.starts_with("| `")) {
        let when = row.splitn(3, '|').nth(2).unwrap_or_default();
        // Backticked texts with a space are messages; single words are names.
        for (i, part) in when.split('`').enumerate() {
            if i % 2 == 1 && part.contains(' ') {
                quoted += 1;
                assert!(
                    asserted.contains(part),
                    "docs/authorization.md quotes {part:?}, which no test asserts"
                );
            }
        }
    }
    assert!(
        quoted >= 10,
        "only {quoted} messages found in the errors table"
    );
}

crate::dual!(the_readme_envoy_page_and_cookbook_run_as_written);

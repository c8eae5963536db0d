//! The layers, held by reading the imports: the model builds on nothing
//! of the crate's but the error type; store and cache build on the model,
//! never on the domain or a face; the domain never on a face.

use std::path::{Path, PathBuf};

fn sources(dir: &str) -> Vec<(PathBuf, String)> {
    fn walk(dir: &Path, out: &mut Vec<(PathBuf, String)>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs")
                && let Ok(text) = std::fs::read_to_string(&path)
            {
                out.push((path, text));
            }
        }
    }
    let mut out = Vec::new();
    walk(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(dir),
        &mut out,
    );
    assert!(!out.is_empty(), "no sources under src/{dir}");
    out
}

/// Each `crate::<module>` a layer names, outside comments, that is not
/// in `allowed`.
fn reaches(dir: &str, allowed: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for (path, text) in sources(dir) {
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            for (at, _) in code.match_indices("crate::") {
                let module: String = code[at + 7..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !allowed.contains(&module.as_str()) {
                    found.push(format!("{}:{}: crate::{module}", path.display(), n + 1));
                }
            }
        }
    }
    found
}

#[test]
fn the_model_builds_on_nothing_but_the_error_type() {
    let found = reaches("model", &["model", "error"]);
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn store_and_cache_build_on_the_model_not_the_domain() {
    for layer in ["store", "cache"] {
        let found = reaches(layer, &["model", "error", "store", "cache", "telemetry"]);
        assert!(found.is_empty(), "{found:#?}");
    }
}

#[test]
fn the_domain_never_reaches_a_face() {
    let found: Vec<String> = reaches(
        "domain",
        &[
            "model",
            "error",
            "store",
            "cache",
            "domain",
            "telemetry",
            "config",
        ],
    );
    assert!(found.is_empty(), "{found:#?}");
}

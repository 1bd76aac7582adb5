//! The committed machine-readable contracts, in `schemas/`: the HTTP API's OpenAPI description
//! (`openapi.json`) and each JSON topic's message schema (`topics/<topic>.json`), all generated from
//! the code. `kappa schemas write` regenerates them; `kappa schemas check` (and a test) fails when
//! a committed file differs from what the code generates.

use std::path::{Path, PathBuf};

/// Every generated file: its path under `schemas/`, and its content.
pub fn files() -> Vec<(PathBuf, String)> {
    let mut out = vec![(
        PathBuf::from("openapi.json"),
        crate::serving::api::openapi_json(),
    )];
    for (topic, schema) in crate::wire::schema::topic_schemas() {
        out.push((
            Path::new("topics").join(format!("{topic}.json")),
            crate::wire::schema::render(&schema),
        ));
    }
    out
}

/// Writes every file under `dir`; returns the paths written.
pub fn write(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for (rel, content) in files() {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, content)?;
        written.push(path);
    }
    Ok(written)
}

/// The files under `dir` that are missing or differ from what the code generates.
pub fn stale(dir: &Path) -> Vec<PathBuf> {
    files()
        .into_iter()
        .filter(|(rel, content)| {
            std::fs::read_to_string(dir.join(rel)).ok().as_ref() != Some(content)
        })
        .map(|(rel, _)| dir.join(rel))
        .collect()
}

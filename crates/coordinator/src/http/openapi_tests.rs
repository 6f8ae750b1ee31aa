//! `docs/openapi.json` is the OpenAPI document the coordinator serves at `/v1/openapi.json`,
//! so the API can be read and diffed without starting one. The test renders the document and
//! compares it with the file; with `CROWDCLOUD_BLESS=1` it writes the file instead.

use std::path::PathBuf;

/// The command that writes the file again, for the message of a stale one.
const BLESS: &str = "CROWDCLOUD_BLESS=1 cargo test -p coordinator --lib openapi_tests";

fn committed_path() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/openapi.json"
    ))
}

/// The document as the file holds it: pretty-printed, with a trailing newline.
fn rendered() -> String {
    let mut text = serde_json::to_string_pretty(&super::openapi_document())
        .expect("the OpenAPI document is JSON");
    text.push('\n');
    text
}

#[test]
fn docs_openapi_json_is_the_served_document() {
    let path = committed_path();
    let rendered = rendered();
    if std::env::var_os("CROWDCLOUD_BLESS").is_some_and(|bless| bless == "1") {
        std::fs::write(&path, &rendered)
            .unwrap_or_else(|error| panic!("cannot write {}: {error}", path.display()));
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed == rendered {
        return;
    }
    let line = committed
        .lines()
        .zip(rendered.lines())
        .position(|(old, new)| old != new)
        .unwrap_or_else(|| committed.lines().count().min(rendered.lines().count()));
    panic!(
        "docs/openapi.json is not the document the coordinator serves (they differ from line {}: \
         {:?} in the file, {:?} served); write it again with `{BLESS}` and commit it",
        line + 1,
        committed.lines().nth(line).unwrap_or("(end of file)"),
        rendered.lines().nth(line).unwrap_or("(end of document)"),
    );
}

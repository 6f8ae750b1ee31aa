//! The web app: its files, served with a strict Content-Security-Policy, and the routes it
//! reads beside the CLI's: the pool's history of figures, the presets, a job's attempts, and a
//! job's results as one zip.
//!
//! The app's files live in `crates/coordinator/web/` and are built into the binary
//! (`ASSETS`), so the coordinator serves them with no directory of its own and a page always
//! matches the API it talks to. Nothing in them is inline: the policy allows scripts and
//! styles from this origin only, and WebAssembly compiled by the app's own workers.

use std::io::Write as _;
use std::sync::OnceLock;

use axum::Json;
use axum::body::Body as HttpBody;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use tokio::sync::mpsc;

use wire::{ApiError, AttemptPage, BlobHash, ErrorCode, JobId, MetricsHistory, PresetList};

use super::jobs::{PAGE_MAX, PageQuery, next_offset};
use super::{ApiResult, AppState, Failure, Query, Requester, parse_path};

/// The policy of every page and file of the app: nothing inline, nothing from elsewhere.
/// `wasm-unsafe-eval` lets the lending page compile the tasks it runs; `blob:` images are the
/// results the page fetched with its token and shows.
pub(crate) const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; \
script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; img-src 'self' blob: data:; \
connect-src 'self'; worker-src 'self'; manifest-src 'self'; base-uri 'none'; \
form-action 'none'; frame-ancestors 'none'";

macro_rules! assets {
    ($($path:literal => $kind:expr),* $(,)?) => {
        /// The app's files: path under `/app/`, content type, bytes.
        pub(crate) const ASSETS: &[(&str, &str, &[u8])] = &[
            $(($path, $kind, include_bytes!(concat!("../../web/", $path)))),*
        ];
    };
}

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

// BEGIN ASSETS
/// Files of `web/` that record the vendored packages rather than make up the app.
#[cfg(test)]
const NOT_SERVED: &[&str] = &["package.json", "vendor/SOURCES.md"];

// The first is the page; a test keeps the list equal to the files of `web/` but NOT_SERVED.
assets! {
    "index.html" => "text/html; charset=utf-8",
    "app.css" => CSS,
    "js/api.js" => JS,
    "js/args.js" => JS,
    "js/dom.js" => JS,
    "js/format.js" => JS,
    "js/lend.js" => JS,
    "js/lend/attempt.js" => JS,
    "js/lend/cache.js" => JS,
    "js/lend/client.js" => JS,
    "js/lend/device.js" => JS,
    "js/lend/features.js" => JS,
    "js/lend/identity.js" => JS,
    "js/lend/lender.js" => JS,
    "js/lend/register.js" => JS,
    "js/lend/sandbox.js" => JS,
    "js/lend/worker.js" => JS,
    "js/main.js" => JS,
    "js/poll.js" => JS,
    "js/ppm.js" => JS,
    "js/upload.js" => JS,
    "js/views/job.js" => JS,
    "js/views/jobs.js" => JS,
    "js/views/nodes.js" => JS,
    "js/views/parts.js" => JS,
    "js/views/picture.js" => JS,
    "js/views/pipeline.js" => JS,
    "js/views/pool.js" => JS,
    "js/views/results.js" => JS,
    "js/views/submit.js" => JS,
    "js/views/timeline.js" => JS,
    "vendor/LICENSES/browser_wasi_shim.txt" => "text/plain; charset=utf-8",
    "vendor/LICENSES/noble-hashes.txt" => "text/plain; charset=utf-8",
    "vendor/LICENSES/uplot.txt" => "text/plain; charset=utf-8",
    "vendor/browser_wasi_shim/debug.js" => JS,
    "vendor/browser_wasi_shim/fd.js" => JS,
    "vendor/browser_wasi_shim/fs_mem.js" => JS,
    "vendor/browser_wasi_shim/fs_opfs.js" => JS,
    "vendor/browser_wasi_shim/index.js" => JS,
    "vendor/browser_wasi_shim/strace.js" => JS,
    "vendor/browser_wasi_shim/wasi.js" => JS,
    "vendor/browser_wasi_shim/wasi_defs.js" => JS,
    "vendor/noble-hashes/_blake.js" => JS,
    "vendor/noble-hashes/_md.js" => JS,
    "vendor/noble-hashes/_u64.js" => JS,
    "vendor/noble-hashes/blake2.js" => JS,
    "vendor/noble-hashes/blake3.js" => JS,
    "vendor/noble-hashes/utils.js" => JS,
    "vendor/uPlot.esm.js" => JS,
    "vendor/uPlot.min.css" => CSS,
}
// END ASSETS

/// Headers every file of the app is served with.
fn page_headers(content_type: &'static str) -> [(HeaderName, HeaderValue); 6] {
    [
        (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        // A page always matches the coordinator that serves it: ask again after an upgrade.
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
    ]
}

/// `GET /`: the app's one page.
pub(crate) async fn index(headers: HeaderMap) -> Response {
    asset_response("index.html", &headers)
}

/// `GET /app/{*path}`: a file of the app.
pub(crate) async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    asset_response(&path, &headers)
}

/// A file of the app, or 304 when the browser's copy is current: every file is asked for
/// again on each use (`no-cache`), and a phone's workers would otherwise fetch the same
/// modules for every task.
fn asset_response(path: &str, request: &HeaderMap) -> Response {
    let Some(index) = ASSETS.iter().position(|(name, _, _)| *name == path) else {
        return Failure::new(
            ErrorCode::NotFound,
            format!("no file {path:?} in the web app; open / for the app"),
        )
        .into_response();
    };
    let (_, kind, bytes) = ASSETS[index];
    let tag = etag(index);
    let current = request
        .get(header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|wanted| wanted.split(',').any(|one| one.trim() == tag));
    let etag = [(header::ETAG, HeaderValue::from_static(tag))];
    if current {
        return (StatusCode::NOT_MODIFIED, page_headers(kind), etag).into_response();
    }
    (page_headers(kind), etag, bytes).into_response()
}

/// The ETag of `ASSETS[index]`: the start of its BLAKE3 hash, worked out once.
fn etag(index: usize) -> &'static str {
    static TAGS: OnceLock<Vec<String>> = OnceLock::new();
    let tags = TAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|(_, _, bytes)| format!("\"{}\"", &BlobHash::of(bytes).to_hex()[..32]))
            .collect()
    });
    &tags[index]
}

#[utoipa::path(get, path = "/v1/metrics/history", tag = "meta",
    responses(
        (status = 200, body = MetricsHistory,
            description = "the last hour of the pool's figures, a sample every interval_ms"),
        (status = 401, body = ApiError, description = "no valid API token"),
    ),
    security(("requester" = [])))]
pub(crate) async fn history(
    State(shared): State<AppState>,
    _requester: Requester,
) -> Json<MetricsHistory> {
    Json(shared.metrics.history())
}

#[utoipa::path(get, path = "/v1/presets", tag = "jobs",
    responses(
        (status = 200, body = PresetList,
            description = "programs the pool holds, which any requester's job may name as its module"),
        (status = 401, body = ApiError, description = "no valid API token"),
    ),
    security(("requester" = [])))]
pub(crate) async fn presets(
    State(shared): State<AppState>,
    _requester: Requester,
) -> Json<PresetList> {
    Json(PresetList {
        presets: shared.presets().to_vec(),
    })
}

#[utoipa::path(get, path = "/v1/jobs/{job}/attempts", tag = "jobs",
    params(("job" = JobId, Path, description = "job id (j-…)"), PageQuery),
    responses(
        (status = 200, body = AttemptPage),
        (status = 400, body = ApiError, description = "the job id or a query parameter is not valid"),
        (status = 401, body = ApiError, description = "no valid API token"),
        (status = 404, body = ApiError, description = "no job of this requester has this id"),
    ),
    security(("requester" = [])))]
pub(crate) async fn attempts(
    State(shared): State<AppState>,
    Requester(requester): Requester,
    Path(job): Path<String>,
    Query(query): Query<PageQuery>,
) -> ApiResult<Json<AttemptPage>> {
    let job: JobId = parse_path(&job)?;
    shared.read(|state, _| state.check_owner(job, requester))?;
    shared.store.flush().await?;
    let (offset, limit) = query.window();
    let attempts = shared.store.attempt_page(job, offset, limit).await?;
    let next_offset = next_offset((offset, limit), attempts.len());
    Ok(Json(AttemptPage {
        attempts,
        next_offset,
    }))
}

/// Files one results zip may hold: a job's every task's stdout, stderr and outputs, within the
/// bound on tasks per job.
const ZIP_FILES_MAX: usize = 1_000_000;
/// Bytes gathered before they go out as one chunk of the zip.
const ZIP_CHUNK_BYTES: usize = 256 << 10;

#[utoipa::path(get, path = "/v1/jobs/{job}/results.zip", tag = "jobs",
    params(("job" = JobId, Path, description = "job id (j-…)")),
    responses(
        (status = 200, content_type = "application/zip", body = Vec<u8>,
            description = "every task's INDEX/stdout, INDEX/stderr and INDEX/output/PATH, stored uncompressed"),
        (status = 400, body = ApiError, description = "the job id is malformed, or it has more files than one zip holds"),
        (status = 401, body = ApiError, description = "no valid API token"),
        (status = 404, body = ApiError, description = "no job of this requester has this id"),
    ),
    security(("requester" = [])))]
pub(crate) async fn results_zip(
    State(shared): State<AppState>,
    Requester(requester): Requester,
    Path(job): Path<String>,
) -> ApiResult<Response> {
    let job: JobId = parse_path(&job)?;
    shared.read(|state, _| state.check_owner(job, requester))?;
    shared.store.flush().await?;
    let files = result_files(&shared, job).await?;
    let (sender, mut receiver) = mpsc::channel::<std::io::Result<Bytes>>(4);
    let runtime = tokio::runtime::Handle::current();
    let blobs = shared.blobs.clone();
    tokio::task::spawn_blocking(move || {
        let mut out = ChunkSender {
            sender: sender.clone(),
            buffer: BytesMut::new(),
        };
        if let Err(error) = write_zip(&runtime, &blobs, files, &mut out) {
            tracing::warn!(%job, %error, "a results zip stopped");
            let _ = sender.blocking_send(Err(error));
        }
    });
    let body = HttpBody::from_stream(futures::stream::poll_fn(move |cx| receiver.poll_recv(cx)));
    let disposition = format!("attachment; filename=\"{job}.zip\"");
    Ok((
        [
            (header::CONTENT_TYPE, "application/zip".to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        body,
    )
        .into_response())
}

/// Every file of a job's results, named as `crowdcloud results` lays them out.
async fn result_files(shared: &AppState, job: JobId) -> ApiResult<Vec<(String, BlobHash)>> {
    let mut files = Vec::new();
    let mut offset = 0;
    loop {
        let page = shared.store.task_page(job, offset, PAGE_MAX).await?;
        for task in &page {
            let named = task.result_files().into_iter();
            files.extend(named.map(|(name, hash)| (format!("{}/{name}", task.index), hash)));
        }
        if files.len() > ZIP_FILES_MAX {
            return Err(Failure::bad_request(format!(
                "the job has more than {ZIP_FILES_MAX} result files, more than one zip holds; \
                 fetch them with `crowdcloud results`"
            )));
        }
        if page.len() < PAGE_MAX as usize {
            return Ok(files);
        }
        offset += PAGE_MAX;
    }
}

fn write_zip(
    runtime: &tokio::runtime::Handle,
    blobs: &blobstore::BlobStore,
    files: Vec<(String, BlobHash)>,
    out: &mut ChunkSender,
) -> std::io::Result<()> {
    let mut zip = zip::ZipWriter::new_stream(out);
    for (name, hash) in files {
        let (size, mut stream) = runtime
            .block_on(blobs.get_stream(&hash))
            .map_err(std::io::Error::other)?;
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored)
            .large_file(size >= u64::from(u32::MAX));
        zip.start_file(name, options)
            .map_err(std::io::Error::other)?;
        while let Some(chunk) = runtime.block_on(stream.next()) {
            zip.write_all(&chunk.map_err(std::io::Error::other)?)?;
        }
    }
    let out = zip.finish().map_err(std::io::Error::other)?;
    out.into_inner().flush_all()
}

/// Hands the zip to the response in chunks; fails once the client has gone, which stops the
/// writing.
struct ChunkSender {
    sender: mpsc::Sender<std::io::Result<Bytes>>,
    buffer: BytesMut,
}

impl ChunkSender {
    fn flush_all(&mut self) -> std::io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = self.buffer.split().freeze();
        self.sender
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::Error::other("the client stopped reading the zip"))
    }
}

impl std::io::Write for &mut ChunkSender {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(bytes);
        if self.buffer.len() >= ZIP_CHUNK_BYTES {
            self.flush_all()?;
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The content type a blob is served with: an image type only when its bytes are that image,
/// so a result can be shown inline and nothing else can pass for one.
pub(crate) fn blob_content_type(head: &[u8]) -> &'static str {
    match infer::get(head).map(|kind| kind.mime_type()) {
        Some(kind @ ("image/png" | "image/jpeg" | "image/gif" | "image/webp")) => kind,
        _ if is_svg(head) => "image/svg+xml",
        _ => "application/octet-stream",
    }
}

/// Whether a document starts as SVG does: an `<svg` root, after an optional XML declaration,
/// comments and white space.
fn is_svg(head: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(&head[..head.len().min(1024)]) else {
        // The cut may fall inside a character; the first kilobyte decides either way.
        return std::str::from_utf8(&head[..head.len().min(1024).saturating_sub(3)])
            .is_ok_and(starts_as_svg);
    };
    starts_as_svg(text)
}

fn starts_as_svg(mut text: &str) -> bool {
    loop {
        text = text.trim_start();
        if let Some(rest) = text.strip_prefix("<?xml") {
            let Some(end) = rest.find("?>") else {
                return false;
            };
            text = &rest[end + 2..];
        } else if let Some(rest) = text.strip_prefix("<!--") {
            let Some(end) = rest.find("-->") else {
                return false;
            };
            text = &rest[end + 3..];
        } else if let Some(rest) = text.strip_prefix("<!DOCTYPE svg") {
            let Some(end) = rest.find('>') else {
                return false;
            };
            text = &rest[end + 1..];
        } else {
            return text.starts_with("<svg");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_are_served_as_images_only_when_their_bytes_are_images() {
        let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
        assert_eq!(blob_content_type(png), "image/png");
        assert_eq!(
            blob_content_type(b"\xff\xd8\xff\xe0\0\x10JFIF"),
            "image/jpeg"
        );
        assert_eq!(
            blob_content_type(b"<?xml version=\"1.0\"?>\n<!-- a -->\n<svg xmlns=\"x\"/>"),
            "image/svg+xml"
        );
        for not_an_image in [
            &b"<html><script>alert(1)</script>"[..],
            b"hello <svg",
            b"P6\n4 4\n255\n",
            b"",
            b"<?xml never closed <svg",
        ] {
            assert_eq!(blob_content_type(not_an_image), "application/octet-stream");
        }
    }

    #[test]
    fn the_job_page_says_what_a_private_job_is_sealed_from_in_the_clis_words() {
        let (_, _, page) = ASSETS
            .iter()
            .find(|(path, _, _)| *path == "js/views/job.js")
            .expect("the job page is served");
        let page = std::str::from_utf8(page).unwrap();
        assert!(page.contains(&format!("'{}'", wire::private::PRIVATE_JOB_TRUTH)));
    }

    #[test]
    fn every_file_of_the_web_app_is_served_and_every_served_file_exists() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("web");
        let mut on_disk = Vec::new();
        let mut stack = vec![dir.clone()];
        while let Some(folder) = stack.pop() {
            for entry in std::fs::read_dir(&folder).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    let relative = path.strip_prefix(&dir).unwrap();
                    on_disk.push(relative.to_string_lossy().replace('\\', "/"));
                }
            }
        }
        on_disk.retain(|path| !NOT_SERVED.contains(&path.as_str()));
        on_disk.sort();
        let mut served: Vec<String> = ASSETS.iter().map(|(p, _, _)| (*p).to_owned()).collect();
        served.sort();
        assert_eq!(served, on_disk, "list the web app's files in ASSETS");
    }

    #[test]
    fn a_file_the_browser_holds_is_answered_not_modified() {
        let first = asset_response("js/main.js", &HeaderMap::new());
        assert_eq!(first.status(), 200);
        let tag = first.headers()[header::ETAG].clone();
        let mut asked = HeaderMap::new();
        asked.insert(header::IF_NONE_MATCH, tag.clone());
        let again = asset_response("js/main.js", &asked);
        assert_eq!(again.status(), 304);
        assert_eq!(again.headers()[header::ETAG], tag);
        let other = asset_response("js/api.js", &asked);
        assert_eq!(other.status(), 200, "another file's tag does not match");
    }

    #[test]
    fn pages_forbid_inline_script_and_framing() {
        let response = asset_response("index.html", &HeaderMap::new());
        let policy = response.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap();
        assert!(policy.contains("script-src 'self' 'wasm-unsafe-eval';"));
        assert!(!policy.contains("unsafe-inline"));
        assert!(policy.contains("frame-ancestors 'none'"));
        let html = std::str::from_utf8(ASSETS[0].2).unwrap();
        assert!(
            !html.contains("<script>") && !html.contains(" style="),
            "{html}"
        );
        assert_eq!(
            asset_response("../Cargo.toml", &HeaderMap::new()).status(),
            404
        );
    }
}

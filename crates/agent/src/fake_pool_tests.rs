//! The agent against a fake coordinator that speaks just enough of the node protocol over plain
//! HTTP: a node the pool refuses (removed or banned) stops promptly and says so instead of
//! retrying for ever, and a cheater's made-up result reaches the coordinator as an ordinary
//! attempt's would, its stdout uploaded before the report names it. A node sent a private
//! job's attempt without a key wrapped to it ends it as `no_key` having fetched nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use wire::{
    ApiError, AttemptGrant, AttemptId, BlobHash, ChallengeResponse, ErrorCode, HeartbeatResponse,
    JobId, JobRuntime, LeaseResponse, Limits, Outcome, RegisterRequest, RegisterResponse,
    ReportAck, ReportRequest, ReportResponse,
};

use crate::cheat::{Cheat, CheatConfig, CheatStrategy};
use crate::{AgentConfig, AgentError, AgentSummary, PolicyOverrides};

/// How the fake pool treats the node once it registered.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Its node token still works, but every node route answers 403.
    Forbidden,
    /// Its node token stops working (401) and registering again is refused with 403.
    ForgottenThenForbidden,
    /// Its node token stops working (401) and so does its join token (401).
    ForgottenThenUnauthorized,
    /// It gets one attempt of `job()`, and its uploads and report are kept.
    OneAttempt,
    /// As `OneAttempt`, the job private and its key wrapped to no one (`None`) or to another
    /// node (`Some`).
    PrivateAttempt { wrapped_elsewhere: bool },
}

struct FakePool {
    mode: Mode,
    registrations: AtomicU32,
    leases: AtomicU32,
    /// Each upload's path and bytes.
    uploads: Mutex<Vec<(String, Vec<u8>)>>,
    reports: Mutex<Vec<ReportRequest>>,
    reported: Notify,
}

const FUEL_MAX: u64 = 5_000;

fn job() -> (JobRuntime, AttemptGrant) {
    let runtime = JobRuntime {
        requirements: None,
        job_id: JobId(3),
        name: "guest".to_owned(),
        module: BlobHash::of(b"a module the cheater never fetches"),
        env: Default::default(),
        mounts: Vec::new(),
        limits: Limits {
            fuel_max: FUEL_MAX,
            ..Limits::default()
        },
        deterministic: None,
        checkpoint: None,
        private: None,
        hold_outputs: false,
    };
    let grant = AttemptGrant {
        attempt_id: AttemptId(11),
        job_id: JobId(3),
        task_index: 2,
        args: vec!["2".to_owned()],
        stdin: None,
        inputs: Vec::new(),
        checkpoint: None,
        memory_bytes_max: None,
        peers: Vec::new(),
    };
    (runtime, grant)
}

impl FakePool {
    async fn answer(&self, path: &str, body: &[u8]) -> (u16, String) {
        let registered = self.registrations.load(Ordering::SeqCst) > 0;
        match (path, self.mode) {
            ("/v1/nodes/challenge", Mode::ForgottenThenUnauthorized) if registered => {
                refused(ErrorCode::Unauthorized, "the join token is not valid")
            }
            ("/v1/nodes/challenge", _) => ok(&ChallengeResponse {
                nonce: "00".repeat(32),
                expires_in_ms: 60_000,
            }),
            ("/v1/nodes/register", _) if registered => {
                refused(ErrorCode::Forbidden, "node n-1 is banned from this pool")
            }
            ("/v1/nodes/register", _) => self.register(body),
            (_, Mode::Forbidden) => refused(ErrorCode::Forbidden, "node n-1 is banned"),
            (_, Mode::ForgottenThenForbidden | Mode::ForgottenThenUnauthorized) => {
                refused(ErrorCode::Unauthorized, "the node token is not valid")
            }
            (_, Mode::OneAttempt | Mode::PrivateAttempt { .. }) => {
                self.serve_attempt(path, body).await
            }
        }
    }

    fn register(&self, body: &[u8]) -> (u16, String) {
        self.registrations.fetch_add(1, Ordering::SeqCst);
        let request: RegisterRequest = serde_json::from_slice(body).unwrap();
        let mut key = [0u8; 32];
        hex::decode_to_slice(&request.public_key, &mut key).unwrap();
        ok(&RegisterResponse {
            node_id: wire::auth::node_id_of(&key),
            node_token: "ccn_test".to_owned(),
            lease_ms: 1_000,
            heartbeat_ms: 100,
            pool_name: "test".to_owned(),
        })
    }

    async fn serve_attempt(&self, path: &str, body: &[u8]) -> (u16, String) {
        match path {
            "/v1/nodes/lease" if self.leases.fetch_add(1, Ordering::SeqCst) == 0 => {
                let (mut runtime, grant) = job();
                if let Mode::PrivateAttempt { wrapped_elsewhere } = self.mode {
                    runtime.private = Some(private_runtime(wrapped_elsewhere));
                }
                ok(&LeaseResponse {
                    jobs: vec![runtime],
                    attempts: vec![grant],
                })
            }
            "/v1/nodes/lease" => {
                // A long poll that found no work.
                tokio::time::sleep(Duration::from_millis(200)).await;
                ok(&LeaseResponse::default())
            }
            "/v1/nodes/heartbeat" => ok(&HeartbeatResponse {
                cancel: Vec::new(),
                lease_ms: 1_000,
                heartbeat_ms: 100,
                ..HeartbeatResponse::default()
            }),
            // A report may ask for the next attempts (`?slots_free=`): this pool has none.
            path if path.split('?').next() == Some("/v1/nodes/report") => {
                let request: ReportRequest = serde_json::from_slice(body).unwrap();
                let acks = request.reports.iter().map(|report| ReportAck {
                    attempt_id: report.attempt_id,
                    accepted: true,
                    message: None,
                });
                let response = ReportResponse {
                    acks: acks.collect(),
                    lease: None,
                };
                self.reports.lock().push(request);
                self.reported.notify_one();
                ok(&response)
            }
            path if path.starts_with("/v1/blobs/") => {
                self.uploads.lock().push((path.to_owned(), body.to_vec()));
                (200, "null".to_owned())
            }
            _ => refused(ErrorCode::NotFound, "not in the fake pool"),
        }
    }
}

/// A private job's runtime whose key, if any, is wrapped to some other node's key.
fn private_runtime(wrapped_elsewhere: bool) -> wire::PrivateRuntime {
    let key = wrapped_elsewhere.then(|| {
        let elsewhere = seal::EncryptionSecret::generate().public();
        let wrapped = seal::wrap(
            &seal::DataKey::generate(),
            &elsewhere,
            seal::WrapContext::JobKey,
        )
        .unwrap();
        wire::WrappedKey(wrapped.to_hex())
    });
    wire::PrivateRuntime {
        manifest: wire::private::ManifestRef::Blob(BlobHash::of(
            b"a manifest the node never fetches",
        )),
        key,
        module_sealed: false,
    }
}

fn ok(body: &impl serde::Serialize) -> (u16, String) {
    (200, serde_json::to_string(body).unwrap())
}

fn refused(code: ErrorCode, message: &str) -> (u16, String) {
    let error = ApiError::new(code, message);
    (code.http_status(), serde_json::to_string(&error).unwrap())
}

/// Serves one request per connection, enough for the agent's client.
async fn serve(listener: TcpListener, pool: Arc<FakePool>) {
    while let Ok((mut stream, _)) = listener.accept().await {
        let pool = Arc::clone(&pool);
        tokio::spawn(async move {
            let Some((path, body)) = read_request(&mut stream).await else {
                return;
            };
            let (status, answer) = pool.answer(&path, &body).await;
            let head = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n\
                 content-length: {}\r\nconnection: close\r\n\r\n",
                answer.len()
            );
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(answer.as_bytes()).await;
        });
    }
}

/// The path (with its query) and body of one HTTP/1.1 request.
async fn read_request(stream: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    let mut request = None;
    loop {
        if request.is_none()
            && let Some(end) = buffer.windows(4).position(|window| window == b"\r\n\r\n")
        {
            let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
            let path = head.split_whitespace().nth(1)?.to_owned();
            let length = head
                .lines()
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().ok())?
                })
                .unwrap_or(0);
            request = Some((path, end + 4, length));
        }
        if let Some((path, start, length)) = &request
            && buffer.len() >= start + length
        {
            return Some((path.clone(), buffer[*start..start + length].to_vec()));
        }
        let read = stream.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
}

/// A fake pool in `mode` and an agent's configuration for it; the data dir lives as long as the
/// `TempDir`.
async fn fake_pool(mode: Mode) -> (Arc<FakePool>, AgentConfig, tempfile::TempDir) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let pool = Arc::new(FakePool {
        mode,
        registrations: AtomicU32::new(0),
        leases: AtomicU32::new(0),
        uploads: Mutex::new(Vec::new()),
        reports: Mutex::new(Vec::new()),
        reported: Notify::new(),
    });
    tokio::spawn(serve(listener, Arc::clone(&pool)));
    let data_dir = tempfile::tempdir().unwrap();
    let mut config = AgentConfig::new(&url, "ccj_test", data_dir.path().join("agent"));
    config.slots = 1;
    (pool, config, data_dir)
}

/// Runs an agent until it stops by itself; gives how it ended and how long it ran.
async fn run_until_it_stops(config: AgentConfig) -> (Result<AgentSummary, AgentError>, Duration) {
    let started = Instant::now();
    let ended = tokio::time::timeout(
        Duration::from_secs(30),
        crate::run(config, std::future::pending()),
    )
    .await
    .expect("a refused agent stops by itself");
    (ended, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_node_stops_promptly_saying_the_pool_refused_it() {
    for mode in [
        Mode::Forbidden,
        Mode::ForgottenThenForbidden,
        Mode::ForgottenThenUnauthorized,
    ] {
        let (_pool, config, _data_dir) = fake_pool(mode).await;
        let (ended, took) = run_until_it_stops(config).await;
        let error = ended.expect_err("a refused node fails");
        assert!(matches!(error, AgentError::Removed(_)), "{error:?}");
        let message = error.to_string();
        assert!(
            message.starts_with("the pool refused this node: "),
            "{message}"
        );
        // A few heartbeat intervals, and the registration's retries of a 401.
        assert!(took < Duration::from_secs(5), "took {took:?}: {message}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cheater_uploads_and_reports_its_lie_as_an_ordinary_attempt() {
    let (pool, mut config, _data_dir) = fake_pool(Mode::OneAttempt).await;
    // Work runs whatever the machine's owner does, as in CI.
    let mut overrides = PolicyOverrides::default();
    overrides.dedicated();
    config.policy = crate::OwnerPolicy::load(None, &overrides).unwrap();
    let cheat = CheatConfig {
        strategy: CheatStrategy::Always,
        group_key: Some("ring".to_owned()),
    };
    config.cheat = Some(cheat.clone());
    let reported = pool.reported.notified();
    let summary = tokio::time::timeout(Duration::from_secs(30), crate::run(config, reported))
        .await
        .expect("the cheater reports")
        .unwrap();
    assert_eq!(summary.attempts_reported, 1);

    let (runtime, grant) = job();
    let lie = Cheat::new(cheat).fabricate(&runtime, &grant);
    let report = pool.reports.lock()[0].reports[0].clone();
    assert_eq!(report.attempt_id, grant.attempt_id);
    assert_eq!(report.outcome, Outcome::Succeeded);
    assert_eq!(report.usage.fuel_used, lie.fuel_used);
    assert!((1..=FUEL_MAX).contains(&report.usage.fuel_used));
    assert_eq!((report.stderr, report.outputs.len()), (None, 0));
    let stdout = report.stdout.expect("the lie is on stdout");
    assert_eq!(stdout.hash, BlobHash::of(&lie.stdout));
    assert_eq!(stdout.size_bytes, lie.stdout.len() as u64);
    let uploads = pool.uploads.lock().clone();
    let expected_path = format!("/v1/blobs/{}?attempt={}", stdout.hash, grant.attempt_id);
    assert_eq!(uploads, vec![(expected_path, lie.stdout)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_the_key_of_a_private_job_fetches_nothing_and_says_no_key() {
    for wrapped_elsewhere in [false, true] {
        let (pool, mut config, _data_dir) =
            fake_pool(Mode::PrivateAttempt { wrapped_elsewhere }).await;
        let mut overrides = PolicyOverrides::default();
        overrides.dedicated();
        config.policy = crate::OwnerPolicy::load(None, &overrides).unwrap();
        let reported = pool.reported.notified();
        let summary = tokio::time::timeout(Duration::from_secs(30), crate::run(config, reported))
            .await
            .expect("the node reports")
            .unwrap();
        assert_eq!(summary.attempts_reported, 1);
        let report = pool.reports.lock()[0].reports[0].clone();
        assert_eq!(report.outcome, Outcome::NoKey);
        assert!(report.stdout.is_none() && report.outputs.is_empty());
        assert!(
            pool.uploads.lock().is_empty(),
            "a node without the key asks for no blob, module or manifest"
        );
    }
}

//! The HTTP client of the `/v1/` API, shared by the requester CLI and the provider agent.
//!
//! Typed calls in, typed results out: every non-2xx answer becomes [`ClientError::Api`] with the
//! coordinator's [`ApiError`], so callers can show its sentence or act on its code. Blob
//! transfers stream from and to files and are checked against their hash. A job planned from
//! local files ([`jobspec::JobPlan`]) is uploaded and turned into its submission here
//! ([`Client::upload_plan`]).
//!
//! Over `https://`, a client made with [`Client::pinned`] trusts exactly one certificate, named
//! by its SHA-256 fingerprint; a different one fails with [`ClientError::WrongCertificate`],
//! which says what to do.

mod coordinators;
pub mod peer;
pub mod pinned;
pub mod private;
mod submit;
mod trust;

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use futures::TryStreamExt;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::AsyncWriteExt;

pub use wire::Fingerprint;
use wire::{
    ApiError, AttemptId, BlobHash, ChallengeRequest, ChallengeResponse, ErrorCode, HealthResponse,
    HeartbeatRequest, HeartbeatResponse, JobId, JobList, JobRuntime, JobStatus, JobSubmission,
    JobSubmitted, LeaseRequest, LeaseResponse, NodeList, RegisterRequest, RegisterResponse,
    ReleaseRequest, ReleaseResponse, ReportRequest, ReportResponse, TaskPage, TaskStatus,
    WhyResponse,
};

use crate::coordinators::Coordinators;
use crate::pinned::Pin;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{error}")]
    Api { status: u16, error: ApiError },
    #[error("cannot reach the coordinator at {url}: {message}; is it running (`crowdcloud up`)?")]
    Unreachable { url: String, message: String },
    #[error(
        "the coordinator's answer is not understood: {0}; are client and coordinator the same version?"
    )]
    Decode(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot upload {path}")]
    Upload {
        path: String,
        #[source]
        source: Box<ClientError>,
    },
    #[error("cannot read the mount directory {path}")]
    MountDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the file name {0} is not UTF-8; rename it")]
    NotUtf8Name(String),
    #[error("the downloaded bytes of blob {0} do not match its hash; try again")]
    Corrupt(BlobHash),
    #[error("{0}")]
    Seal(String),
    #[error("the coordinator URL {0:?} is not valid; give it as http://HOST:PORT")]
    BadUrl(String),
    #[error(
        "the coordinator at {url} presented certificate {presented}, not the pinned {pinned}: \
         someone on the network may be impersonating it, or its owner made a new certificate; \
         if the owner confirms the new fingerprint, run `crowdcloud join` again (or pass --fingerprint)"
    )]
    WrongCertificate {
        url: String,
        pinned: Fingerprint,
        presented: Fingerprint,
    },
}

impl ClientError {
    /// The coordinator's error code, if the coordinator answered.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Api { error, .. } => Some(error.code),
            ClientError::Upload { source, .. } => source.code(),
            _ => None,
        }
    }

    /// Whether retrying the same request later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Unreachable { .. } => true,
            ClientError::Api { status, .. } => *status >= 500,
            ClientError::Upload { source, .. } => source.is_transient(),
            _ => false,
        }
    }
}

pub type Result<T> = std::result::Result<T, ClientError>;

/// Extra time a long-poll request gets beyond its own wait, for the answer to arrive.
const LONG_POLL_SLACK: Duration = Duration::from_secs(10);
/// How often a followed pipeline is read while none of its stages runs.
const BETWEEN_STAGES: Duration = Duration::from_millis(20);
/// How long a heartbeat may take.
const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a heartbeat may take when another coordinator stands by.
const HEARTBEAT_TIMEOUT_WITH_STANDBY: Duration = Duration::from_secs(2);
/// How long any other request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// Whether a coordinator that failed a request took it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NotTaken {
    /// It refused the connection, or stands by: the next coordinator may take the request.
    Surely,
    /// It did not answer in time: the next coordinator is tried by the next request.
    Unanswered,
    /// It answered, or broke off: the request is not sent elsewhere.
    Maybe,
}

#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    coordinators: std::sync::Arc<Coordinators>,
    token: Option<String>,
    pin: Option<Pin>,
}

impl Client {
    /// A client of the coordinator at `base_url` (`http://host:port`), authenticating with
    /// `token` (an API token or a node token) where one is given.
    pub fn new(base_url: &str, token: Option<String>) -> Result<Client> {
        Self::plain(base_url, token, Self::builder())
    }

    /// A client that opens its connections from `local_address` and keeps up to `idle_max` of
    /// them open between requests: for a benchmark that plays many nodes from one process,
    /// where one source address has too few ports and closed connections would pile up in
    /// TIME_WAIT.
    pub fn many_from(base_url: &str, local_address: IpAddr, idle_max: usize) -> Result<Client> {
        let builder = Self::builder()
            .local_address(local_address)
            .pool_max_idle_per_host(idle_max);
        Self::plain(base_url, None, builder)
    }

    /// A client without a pinned certificate, its connections made by `builder`.
    fn plain(
        base_url: &str,
        token: Option<String>,
        builder: reqwest::ClientBuilder,
    ) -> Result<Client> {
        // The ring provider is installed once per process; later calls find it in place.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let coordinators = Coordinators::parse(base_url, false)?;
        let http = builder
            .build()
            .map_err(|error| ClientError::BadUrl(format!("{base_url}: {error}")))?;
        Ok(Client {
            http,
            coordinators: std::sync::Arc::new(coordinators),
            token,
            pin: None,
        })
    }

    fn builder() -> reqwest::ClientBuilder {
        reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .pool_max_idle_per_host(64)
            // Well inside the coordinator's idle timeout (60 s by default), so the client never
            // sends a request on a connection the coordinator is closing at that moment.
            .pool_idle_timeout(Duration::from_secs(20))
    }

    /// A client of the coordinator at `base_url` (`https://host:port`) that trusts exactly the
    /// certificate with `fingerprint`, whatever its names or issuer.
    pub fn pinned(
        base_url: &str,
        token: Option<String>,
        fingerprint: Fingerprint,
    ) -> Result<Client> {
        Self::with_pin(base_url, token, Some(fingerprint))
    }

    fn with_pin(
        base_url: &str,
        token: Option<String>,
        fingerprint: Option<Fingerprint>,
    ) -> Result<Client> {
        let coordinators = Coordinators::parse(base_url, true)?;
        let pin = Pin {
            pinned: fingerprint,
            presented: Default::default(),
        };
        let config = pinned::client_config(pin.clone())
            .map_err(|error| ClientError::BadUrl(format!("{base_url}: {error}")))?;
        let http = Self::builder()
            .tls_backend_preconfigured(config)
            .build()
            .map_err(|error| ClientError::BadUrl(format!("{base_url}: {error}")))?;
        Ok(Client {
            http,
            coordinators: std::sync::Arc::new(coordinators),
            token: None,
            pin: Some(pin),
        }
        .with_optional_token(token))
    }

    fn with_optional_token(self, token: Option<String>) -> Client {
        Client { token, ..self }
    }

    /// Asks the coordinator at `base_url` (`https://…`) for its health, accepting whatever
    /// certificate it presents, and returns that certificate's fingerprint. Sends no token.
    /// Trusting the answer is the caller's decision: `crowdcloud join` binds the fingerprint
    /// into its code exchange, which fails if anyone stood in between.
    pub async fn learn_fingerprint(base_url: &str) -> Result<(HealthResponse, Fingerprint)> {
        let client = Self::with_pin(base_url, None, None)?;
        let health = client.health().await?;
        let presented = client
            .pin
            .as_ref()
            .and_then(Pin::presented)
            .ok_or_else(|| ClientError::Unreachable {
                url: client.base().to_owned(),
                message: "no certificate was presented".to_owned(),
            })?;
        Ok((health, presented))
    }

    /// The certificate this client pins, if any.
    pub fn pinned_fingerprint(&self) -> Option<Fingerprint> {
        self.pin.as_ref().and_then(|pin| pin.pinned)
    }

    /// A request that failed before an answer: a refused certificate, or the network.
    fn connection_error(&self, error: &reqwest::Error) -> ClientError {
        if let Some(pin) = &self.pin
            && let (Some(pinned), Some(presented)) = (pin.pinned, pin.presented())
            && pinned != presented
        {
            return ClientError::WrongCertificate {
                url: self.base().to_owned(),
                pinned,
                presented,
            };
        }
        ClientError::Unreachable {
            url: self.base().to_owned(),
            message: error_chain(error),
        }
    }

    /// The URL of the coordinator this client uses now.
    pub fn base_url(&self) -> &str {
        self.base()
    }

    fn base(&self) -> &str {
        self.coordinators.url(self.coordinators.current())
    }

    /// The same connection pool with another token.
    pub fn with_token(&self, token: String) -> Client {
        Client {
            token: Some(token),
            ..self.clone()
        }
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let builder = self
            .http
            .request(method, format!("{}{path}", self.base()))
            .timeout(REQUEST_TIMEOUT);
        match &self.token {
            Some(token) => builder.bearer_auth(token),
            None => builder,
        }
    }

    /// Sends `builder`'s request to the coordinator in use, and, while coordinators refuse it
    /// without taking it, to the next ones (see `coordinators`).
    async fn send(&self, builder: RequestBuilder) -> Result<reqwest::Response> {
        let (_, request) = builder.build_split();
        let mut request = request.map_err(|error| ClientError::BadUrl(error_chain(&error)))?;
        let mut tries_left = self.coordinators.count();
        loop {
            tries_left -= 1;
            let used = self.coordinators.current();
            self.coordinators.aim(&mut request, used);
            let spare = (tries_left > 0).then(|| request.try_clone()).flatten();
            let (error, not_taken) = match self.send_once(request, used).await {
                Ok(response) => return Ok(response),
                Err(failed) => failed,
            };
            if self.coordinators.count() == 1 || not_taken == NotTaken::Maybe {
                return Err(error);
            }
            self.coordinators.move_on(used);
            match (not_taken, spare) {
                (NotTaken::Surely, Some(spare)) => request = spare,
                _ => return Err(error),
            }
        }
    }

    /// One request to coordinator `used`, and on failure whether it surely did not take it.
    async fn send_once(
        &self,
        request: reqwest::Request,
        used: usize,
    ) -> std::result::Result<reqwest::Response, (ClientError, NotTaken)> {
        let executed = if self.coordinators.count() == 1 {
            self.http.execute(request).await
        } else {
            tokio::select! {
                executed = self.http.execute(request) => executed,
                // Another request found this coordinator gone or frozen.
                () = self.coordinators.left(used) => {
                    let error = ClientError::Unreachable {
                        url: self.coordinators.url(used).to_owned(),
                        message: "no answer before the client moved on to another coordinator"
                            .to_owned(),
                    };
                    return Err((error, NotTaken::Unanswered));
                }
            }
        };
        let response = match executed {
            Ok(response) => response,
            Err(error) => {
                let not_taken = if error.is_connect() {
                    NotTaken::Surely
                } else if error.is_timeout() {
                    NotTaken::Unanswered
                } else {
                    NotTaken::Maybe
                };
                return Err((self.connection_error(&error), not_taken));
            }
        };
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let body = response.bytes().await.unwrap_or_default();
        let error = serde_json::from_slice::<ApiError>(&body).unwrap_or_else(|_| {
            ApiError::new(
                code_of(status),
                format!(
                    "the coordinator answered {status}: {}",
                    String::from_utf8_lossy(&body)
                        .chars()
                        .take(200)
                        .collect::<String>()
                ),
            )
        });
        let not_taken = if error.code == ErrorCode::Standby {
            NotTaken::Surely
        } else {
            NotTaken::Maybe
        };
        let error = ClientError::Api {
            status: status.as_u16(),
            error,
        };
        Err((error, not_taken))
    }

    async fn json<T: DeserializeOwned>(&self, builder: RequestBuilder) -> Result<T> {
        let response = self.send(builder).await?;
        let bytes = response
            .bytes()
            .await
            .map_err(|error| ClientError::Unreachable {
                url: self.base().to_owned(),
                message: error_chain(&error),
            })?;
        serde_json::from_slice(&bytes).map_err(|error| ClientError::Decode(error.to_string()))
    }

    async fn post<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T> {
        self.json(self.request(Method::POST, path).json(body)).await
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.json(self.request(Method::GET, path)).await
    }

    pub async fn health(&self) -> Result<HealthResponse> {
        self.get("/v1/health").await
    }

    /// The coordinator's metrics, in the Prometheus text format.
    pub async fn metrics(&self) -> Result<String> {
        let response = self.send(self.request(Method::GET, "/metrics")).await?;
        response
            .text()
            .await
            .map_err(|error| ClientError::Unreachable {
                url: self.base().to_owned(),
                message: error_chain(&error),
            })
    }

    // Requester calls.

    pub async fn submit(&self, job: &JobSubmission) -> Result<JobSubmitted> {
        self.post("/v1/jobs", job).await
    }

    /// Submits a job and waits for it to end, in one exchange: the answer carries the job's
    /// status once it ended, or as it was after `timeout`.
    pub async fn submit_and_wait(
        &self,
        job: &JobSubmission,
        timeout: Duration,
    ) -> Result<JobSubmitted> {
        let path = format!("/v1/jobs?wait_ms={}", timeout.as_millis());
        self.json(
            self.request(Method::POST, &path)
                .json(job)
                .timeout(timeout + LONG_POLL_SLACK),
        )
        .await
    }

    /// Submits a pipeline: its stages, each a job, started as the stages they read complete.
    pub async fn submit_pipeline(
        &self,
        pipeline: &wire::PipelineSubmission,
    ) -> Result<wire::PipelineSubmitted> {
        self.post("/v1/pipelines", pipeline).await
    }

    pub async fn pipeline(&self, pipeline: wire::PipelineId) -> Result<wire::PipelineStatus> {
        self.get(&format!("/v1/pipelines/{pipeline}")).await
    }

    /// The pipeline once it has ended, or as it is after `timeout`: waits on its running
    /// stage's job, and looks again shortly between a stage's end and the next one's start,
    /// which the coordinator makes at once.
    pub async fn wait_pipeline_end(
        &self,
        pipeline: wire::PipelineId,
        timeout: Duration,
    ) -> Result<wire::PipelineStatus> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let status = self.pipeline(pipeline).await?;
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if status.state.is_terminal() || left.is_zero() {
                return Ok(status);
            }
            let running = status
                .stages
                .iter()
                .find(|stage| stage.state == wire::StageState::Running);
            match running {
                Some(stage) => {
                    self.wait_job_end(stage.job_id, left.min(Duration::from_secs(30)))
                        .await?;
                }
                None => tokio::time::sleep(BETWEEN_STAGES.min(left)).await,
            }
        }
    }

    /// Cancels a pipeline: its running stage is cancelled and the waiting ones never run.
    pub async fn cancel_pipeline(
        &self,
        pipeline: wire::PipelineId,
    ) -> Result<wire::PipelineStatus> {
        self.post(&format!("/v1/pipelines/{pipeline}/cancel"), &())
            .await
    }

    /// Why task `index` of `job` ran, or whose result it took.
    pub async fn explain(&self, job: JobId, index: u32) -> Result<wire::Explanation> {
        self.get(&format!("/v1/jobs/{job}/tasks/{index}/explain"))
            .await
    }

    pub async fn jobs(&self, limit: usize) -> Result<JobList> {
        self.get(&format!("/v1/jobs?limit={limit}")).await
    }

    pub async fn job(&self, job: JobId) -> Result<JobStatus> {
        self.get(&format!("/v1/jobs/{job}")).await
    }

    /// The job once its version passes `after`, or as it is after `timeout`.
    pub async fn wait_job(&self, job: JobId, after: u64, timeout: Duration) -> Result<JobStatus> {
        let path = format!(
            "/v1/jobs/{job}/wait?after={after}&timeout_ms={}",
            timeout.as_millis()
        );
        self.json(
            self.request(Method::GET, &path)
                .timeout(timeout + LONG_POLL_SLACK),
        )
        .await
    }

    /// The job once it has ended, or as it is after `timeout`.
    pub async fn wait_job_end(&self, job: JobId, timeout: Duration) -> Result<JobStatus> {
        let path = format!(
            "/v1/jobs/{job}/wait?until=ended&timeout_ms={}",
            timeout.as_millis()
        );
        self.json(
            self.request(Method::GET, &path)
                .timeout(timeout + LONG_POLL_SLACK),
        )
        .await
    }

    pub async fn tasks(&self, job: JobId, offset: u32, limit: u32) -> Result<TaskPage> {
        self.get(&format!(
            "/v1/jobs/{job}/tasks?offset={offset}&limit={limit}"
        ))
        .await
    }

    /// Every task of a job, page by page.
    pub async fn all_tasks(&self, job: JobId) -> Result<Vec<TaskStatus>> {
        let mut tasks = Vec::new();
        let mut offset = Some(0);
        while let Some(start) = offset {
            let page = self.tasks(job, start, 1000).await?;
            tasks.extend(page.tasks);
            offset = page.next_offset;
        }
        Ok(tasks)
    }

    pub async fn why(&self, job: JobId) -> Result<WhyResponse> {
        self.get(&format!("/v1/jobs/{job}/why")).await
    }

    /// Attempts of a job from `offset` on, in the order they were granted.
    pub async fn attempts(&self, job: JobId, offset: u32) -> Result<wire::AttemptPage> {
        self.get(&format!("/v1/jobs/{job}/attempts?offset={offset}"))
            .await
    }

    /// The programs the pool offers every requester.
    pub async fn presets(&self) -> Result<wire::PresetList> {
        self.get("/v1/presets").await
    }

    /// The last hour of the pool's figures.
    pub async fn metrics_history(&self) -> Result<wire::MetricsHistory> {
        self.get("/v1/metrics/history").await
    }

    pub async fn cancel(&self, job: JobId) -> Result<JobStatus> {
        self.post(&format!("/v1/jobs/{job}/cancel"), &()).await
    }

    /// Deletes an ended job for good: its blobs on the coordinator now, and on the nodes that
    /// ran it as each confirms.
    pub async fn delete_job(&self, job: JobId) -> Result<wire::JobDeletion> {
        self.json(self.request(Method::DELETE, &format!("/v1/jobs/{job}")))
            .await
    }

    /// Where the deletion of a job stands: which nodes have confirmed.
    pub async fn deletion(&self, job: JobId) -> Result<wire::JobDeletion> {
        self.get(&format!("/v1/jobs/{job}/deletion")).await
    }

    pub async fn nodes(&self) -> Result<NodeList> {
        self.get("/v1/nodes").await
    }

    /// The caller's credits: balance and history (and, for the pool's owner, every owner's).
    pub async fn credits(&self) -> Result<wire::Credits> {
        self.get("/v1/credits").await
    }

    /// Gives the requester named `requester` some whole credits (owner only).
    pub async fn grant_credits(&self, grant: &wire::CreditGrant) -> Result<wire::CreditGranted> {
        self.post("/v1/credits/grant", grant).await
    }

    /// Lends this pool's idle slots to another pool (owner only).
    pub async fn add_peer(
        &self,
        request: &wire::federation::PeerRequest,
    ) -> Result<wire::federation::Peer> {
        self.post("/v1/federation/peers", request).await
    }

    /// The pools this one lends to (owner only).
    pub async fn peers(&self) -> Result<wire::federation::PeerList> {
        self.get("/v1/federation/peers").await
    }

    /// Stops lending to a pool (owner only).
    pub async fn remove_peer(&self, peer: wire::PeerId) -> Result<wire::federation::Peer> {
        self.post(&format!("/v1/federation/peers/{peer}/remove"), &())
            .await
    }

    /// Takes a node out of the pool for good (owner only).
    pub async fn remove_node(&self, node: wire::NodeId) -> Result<wire::NodeRemoved> {
        self.post(&format!("/v1/nodes/{node}/remove"), &()).await
    }

    /// Whether the coordinator holds the blob and this caller may use it.
    pub async fn has_blob(&self, hash: &BlobHash) -> Result<bool> {
        match self
            .send(self.request(Method::HEAD, &format!("/v1/blobs/{hash}")))
            .await
        {
            Ok(_) => Ok(true),
            Err(ClientError::Api { status: 404, .. }) => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Uploads `bytes` under their hash (skipped when the coordinator has them for us).
    pub async fn upload_bytes(&self, bytes: Bytes) -> Result<BlobHash> {
        let hash = BlobHash::of(&bytes);
        self.put_blob(hash, bytes).await?;
        Ok(hash)
    }

    /// Uploads a blob, which must hash to `hash`.
    pub async fn put_blob(&self, hash: BlobHash, body: impl Into<reqwest::Body>) -> Result<()> {
        self.put_bytes_at(&format!("/v1/blobs/{hash}"), body).await
    }

    /// A node uploads an output of `attempt`, which it holds; it must hash to `hash`.
    pub async fn put_output(
        &self,
        attempt: AttemptId,
        hash: BlobHash,
        body: impl Into<reqwest::Body>,
    ) -> Result<()> {
        self.put_bytes_at(&format!("/v1/blobs/{hash}?attempt={attempt}"), body)
            .await
    }

    /// A node uploads an output file of `attempt`, streaming it; it must hash to `hash`.
    pub async fn put_output_file(
        &self,
        attempt: AttemptId,
        hash: BlobHash,
        path: &Path,
    ) -> Result<()> {
        self.put_file_at(&format!("/v1/blobs/{hash}?attempt={attempt}"), path)
            .await
    }

    /// Uploads a checkpoint of an attempt this node holds (a file that hashes to `hash`),
    /// saved when its task had used `fuel_used` in all, streaming it.
    pub async fn put_checkpoint_file(
        &self,
        attempt: AttemptId,
        hash: BlobHash,
        fuel_used: u64,
        path: &Path,
    ) -> Result<()> {
        let url_path = format!("/v1/blobs/{hash}?attempt={attempt}&checkpoint_fuel={fuel_used}");
        self.put_file_at(&url_path, path).await
    }

    async fn put_bytes_at(&self, url_path: &str, body: impl Into<reqwest::Body>) -> Result<()> {
        let builder = self
            .request(Method::PUT, url_path)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(body);
        self.send(builder).await.map(|_| ())
    }

    /// Uploads a file as a blob, streaming it; skips the upload when the coordinator has it for
    /// us already. Returns its hash and size.
    pub async fn upload_file(&self, path: &Path) -> Result<(BlobHash, u64)> {
        let (hash, size) = hash_file(path).await?;
        if !self.has_blob(&hash).await? {
            self.put_file(hash, path).await?;
        }
        Ok((hash, size))
    }

    /// Uploads a file, which must hash to `hash`, streaming it.
    pub async fn put_file(&self, hash: BlobHash, path: &Path) -> Result<()> {
        self.put_file_at(&format!("/v1/blobs/{hash}"), path).await
    }

    async fn put_file_at(&self, url_path: &str, path: &Path) -> Result<()> {
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|source| io_error(path, source))?;
        let size = file
            .metadata()
            .await
            .map_err(|source| io_error(path, source))?
            .len();
        let stream = tokio_util::io::ReaderStream::new(file);
        let builder = self
            .request(Method::PUT, url_path)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .header(reqwest::header::CONTENT_LENGTH, size)
            .timeout(REQUEST_TIMEOUT * 10)
            .body(reqwest::Body::wrap_stream(stream));
        self.send(builder).await.map(|_| ())
    }

    /// A whole blob in memory, checked against its hash.
    pub async fn download(&self, hash: &BlobHash) -> Result<Bytes> {
        let response = self
            .send(self.request(Method::GET, &format!("/v1/blobs/{hash}")))
            .await?;
        let bytes = response
            .bytes()
            .await
            .map_err(|error| ClientError::Unreachable {
                url: self.base().to_owned(),
                message: error_chain(&error),
            })?;
        if BlobHash::of(&bytes) != *hash {
            return Err(ClientError::Corrupt(*hash));
        }
        Ok(bytes)
    }

    /// Streams a blob into `path` (through a temporary file beside it, renamed only once the
    /// hash matched); returns the size.
    pub async fn download_to(&self, hash: &BlobHash, path: &Path) -> Result<u64> {
        let response = self
            .send(
                self.request(Method::GET, &format!("/v1/blobs/{hash}"))
                    .timeout(REQUEST_TIMEOUT * 10),
            )
            .await?;
        write_verified(response, hash, path, u64::MAX, self.base()).await
    }

    // Node calls.

    /// A nonce for one registration with `join_token`, to put in the request and sign.
    pub async fn challenge(&self, join_token: &str) -> Result<ChallengeResponse> {
        let request = ChallengeRequest {
            join_token: join_token.to_owned(),
        };
        self.post("/v1/nodes/challenge", &request).await
    }

    /// Registers with a request signed over a nonce from [`Client::challenge`].
    pub async fn register(&self, request: &RegisterRequest) -> Result<RegisterResponse> {
        self.post("/v1/nodes/register", request).await
    }

    /// Asks for work, waiting up to `request.wait_ms` for some.
    pub async fn lease(&self, request: &LeaseRequest) -> Result<LeaseResponse> {
        let timeout = Duration::from_millis(request.wait_ms.into()) + LONG_POLL_SLACK;
        self.json(
            self.request(Method::POST, "/v1/nodes/lease")
                .json(request)
                .timeout(timeout),
        )
        .await
    }

    /// Holds the node's presence request open until the coordinator answers it: while one is
    /// open, the coordinator knows the node's process is alive.
    pub async fn presence(&self) -> Result<()> {
        let hold = Duration::from_millis(wire::limits::PRESENCE_HOLD_MS);
        let builder = self
            .request(Method::POST, "/v1/nodes/presence")
            .timeout(hold + LONG_POLL_SLACK);
        self.send(builder).await.map(|_| ())
    }

    pub async fn heartbeat(&self, request: &HeartbeatRequest) -> Result<HeartbeatResponse> {
        // Well inside a lease: a coordinator that froze must not hold the node's heartbeats
        // until its leases run out elsewhere. With a standby to move to, a silent coordinator
        // is given up sooner: a heartbeat is answered in milliseconds.
        let timeout = if self.coordinators.count() > 1 {
            HEARTBEAT_TIMEOUT_WITH_STANDBY
        } else {
            HEARTBEAT_TIMEOUT
        };
        self.json(
            self.request(Method::POST, "/v1/nodes/heartbeat")
                .json(request)
                .timeout(timeout),
        )
        .await
    }

    pub async fn report(&self, request: &ReportRequest) -> Result<ReportResponse> {
        self.post("/v1/nodes/report", request).await
    }

    /// [`Client::report`], asking at once for attempts for `slots_free` slots, which the
    /// answer's `lease` carries (a coordinator that predates this leaves it out).
    pub async fn report_and_lease(
        &self,
        request: &ReportRequest,
        slots_free: u32,
    ) -> Result<ReportResponse> {
        self.post(
            &format!("/v1/nodes/report?slots_free={slots_free}"),
            request,
        )
        .await
    }

    pub async fn release(&self, request: &ReleaseRequest) -> Result<ReleaseResponse> {
        self.post("/v1/nodes/release", request).await
    }

    pub async fn job_runtime(&self, job: JobId) -> Result<JobRuntime> {
        self.get(&format!("/v1/nodes/jobs/{job}/runtime")).await
    }
}

/// BLAKE3 and size of a file, read in chunks.
pub async fn hash_file(path: &Path) -> Result<(BlobHash, u64)> {
    let path_owned = path.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut hasher = blake3::Hasher::new();
        let size = hasher
            .update_reader(std::fs::File::open(&path_owned)?)?
            .count();
        Ok::<_, std::io::Error>((BlobHash::from(hasher.finalize()), size))
    })
    .await
    .map_err(|error| io_error(path, std::io::Error::other(error)))?
    .map_err(|source| io_error(path, source))
}

fn io_error(path: &Path, source: std::io::Error) -> ClientError {
    ClientError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn code_of(status: StatusCode) -> ErrorCode {
    match status.as_u16() {
        400 => ErrorCode::BadRequest,
        401 => ErrorCode::Unauthorized,
        403 => ErrorCode::Forbidden,
        404 => ErrorCode::NotFound,
        409 => ErrorCode::Conflict,
        413 => ErrorCode::PayloadTooLarge,
        429 => ErrorCode::TooManyRequests,
        503 => ErrorCode::Unavailable,
        _ => ErrorCode::Internal,
    }
}

/// An error with its causes, which reqwest keeps in its source chain.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Streams `response`'s body to `path` through a partial file, and keeps it only when it is at
/// most `size_max` bytes and its hash is `hash`; `from` names the server in errors.
pub(crate) async fn write_verified(
    response: reqwest::Response,
    hash: &BlobHash,
    path: &Path,
    size_max: u64,
    from: &str,
) -> Result<u64> {
    let partial = path.with_extension(format!("partial-{}", std::process::id()));
    let mut file = tokio::fs::File::create(&partial)
        .await
        .map_err(|source| io_error(&partial, source))?;
    let mut hasher = blake3::Hasher::new();
    let mut size = 0u64;
    let mut stream = response.bytes_stream();
    let written: Result<()> = async {
        while let Some(chunk) =
            stream
                .try_next()
                .await
                .map_err(|error| ClientError::Unreachable {
                    url: from.to_owned(),
                    message: error_chain(&error),
                })?
        {
            hasher.update(&chunk);
            size += chunk.len() as u64;
            if size > size_max {
                return Err(ClientError::Corrupt(*hash));
            }
            file.write_all(&chunk)
                .await
                .map_err(|source| io_error(&partial, source))?;
        }
        file.flush()
            .await
            .map_err(|source| io_error(&partial, source))
    }
    .await;
    drop(file);
    let verified = written.and_then(|()| {
        if BlobHash::from(hasher.finalize()) == *hash {
            Ok(())
        } else {
            Err(ClientError::Corrupt(*hash))
        }
    });
    if let Err(error) = verified {
        let _ = tokio::fs::remove_file(&partial).await;
        return Err(error);
    }
    tokio::fs::rename(&partial, path)
        .await
        .map_err(|source| io_error(path, source))?;
    Ok(size)
}

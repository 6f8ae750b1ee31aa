//! Pipelines on a real pool: a word count with map, shuffle and reduce over real agents, one
//! of them killed mid-map; stages given up when what they read failed; bad graphs refused.

use std::collections::BTreeMap;
use std::time::Duration;

use wire::{
    ErrorCode, JobState, JobSubmission, Limits, PipelineStatus, PipelineSubmission, StageInput,
    StageState, StageSubmission, TaskSpec,
};

use crate::harness::{Agent, Pool, eventually, probe};

/// The pipeline once it ended, waiting at most `limit`.
async fn ended(owner: &client::Client, id: wire::PipelineId, limit: Duration) -> PipelineStatus {
    eventually("the pipeline to end", limit, || async move {
        let status = owner.pipeline(id).await.ok()?;
        status.state.is_terminal().then_some(status)
    })
    .await
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `count` books of made-up words from a small vocabulary, so words repeat across books, and
/// the count of every word as this test makes it.
/// Drawn from `seed`: another seed, other books of about the same sizes.
fn books_seeded(count: usize, seed: u64) -> (Vec<String>, BTreeMap<String, u64>) {
    let vocabulary: Vec<String> = (0..300).map(|index| format!("w{index:03}x")).collect();
    let mut state = seed;
    let mut counts = BTreeMap::new();
    let books = (0..count)
        .map(|book| {
            let mut text = String::new();
            for word in 0..200 + book * 7 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let chosen = &vocabulary[(state % vocabulary.len() as u64) as usize];
                // Capitals and punctuation: the guest lowercases and splits on them.
                let shown = if word % 5 == 0 {
                    chosen.to_uppercase()
                } else {
                    chosen.clone()
                };
                text.push_str(&shown);
                text.push_str(if word % 11 == 0 { ",\n" } else { " " });
                *counts.entry(chosen.clone()).or_insert(0) += 1;
            }
            text
        })
        .collect();
    (books, counts)
}

/// Writes `count` books, the wordfreq module and `count.toml` (map per book into 4 parts, a
/// reduce per part, one gather) into `dir`; returns the count the pipeline must come to.
fn write_word_count(dir: &std::path::Path, count: usize) -> BTreeMap<String, u64> {
    write_word_count_as(dir, (count, 0x9e37_79b9_7f4a_7c15), ("", ""))
}

/// [`write_word_count`] with books drawn from `seed`, and `head` at the top of the spec.
fn write_word_count_as(
    dir: &std::path::Path,
    (count, seed): (usize, u64),
    (head, reduce): (&str, &str),
) -> BTreeMap<String, u64> {
    let (books, expected) = books_seeded(count, seed);
    std::fs::create_dir(dir.join("books")).unwrap();
    for (index, book) in books.iter().enumerate() {
        std::fs::write(dir.join(format!("books/book-{index:02}.txt")), book).unwrap();
    }
    std::fs::write(dir.join("wordfreq.wasm"), guests::WORDFREQ).unwrap();
    std::fs::write(
        dir.join("count.toml"),
        head.to_owned()
            + "name = \"word count\"\n\
         [[stages]]\nname = \"map\"\nmodule = \"wordfreq.wasm\"\n\
         per_input = { dir = \"books\", args = [\"map\", \"4\"] }\n\
         [[stages]]\nname = \"reduce\"\nmodule = \"wordfreq.wasm\"\n\
         partition = { stage = \"map\", parts = 4 }\nargs = [\"reduce\"]\n"
            + reduce
            + "[[stages]]\nname = \"gather\"\nmodule = \"wordfreq.wasm\"\nall = \"reduce\"\n\
         args = [\"reduce\"]\n",
    )
    .unwrap();
    expected
}

/// Submits the pipeline spec at `spec` with the CLI and waits until its map stage finished
/// more than `maps_done` tasks: the pipeline's id as printed, and parsed.
async fn submitted_and_mapping(
    pool: &Pool,
    spec: &std::path::Path,
    maps_done: u32,
) -> (String, wire::PipelineId) {
    let submitted = pool.cli(&["submit", spec.to_str().unwrap()]).await;
    assert!(submitted.status.success(), "{}", text(&submitted.stderr));
    let pipeline = text(&submitted.stdout).trim().to_owned();
    let id: wire::PipelineId = pipeline.parse().expect("submit prints the pipeline id");
    let owner = &pool.owner;
    eventually(
        "the map stage to get going",
        Duration::from_secs(60),
        || async move {
            let status = owner.pipeline(id).await.ok()?;
            (status.stages[0].counts.succeeded > maps_done).then_some(())
        },
    )
    .await;
    (pipeline, id)
}

/// The word count's result, fetched with the CLI into `out`.
async fn fetched_count(
    pool: &Pool,
    pipeline: &str,
    out: &std::path::Path,
) -> BTreeMap<String, u64> {
    let fetched = pool
        .cli(&["results", pipeline, "--out", out.to_str().unwrap()])
        .await;
    assert!(fetched.status.success(), "{}", text(&fetched.stderr));
    read_counts(&out.join("0/output/counts.txt"))
}

/// `status` shows each stage and the graph as text.
async fn shows_the_graph(pool: &Pool, pipeline: &str) {
    let shown = pool.cli(&["status", pipeline]).await;
    let shown = text(&shown.stdout);
    assert!(
        shown.contains("reduce <- 4 partitions of map's outputs"),
        "{shown}"
    );
    assert!(shown.contains("gather <- all outputs of reduce"), "{shown}");
    assert!(shown.contains("completed"), "{shown}");
}

/// A `word<TAB>count` file as a map.
fn read_counts(path: &std::path::Path) -> BTreeMap<String, u64> {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .map(|line| {
            let (word, count) = line.split_once('\t').expect("word<TAB>count");
            (word.to_owned(), count.parse().unwrap())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_word_count_maps_shuffles_and_reduces_on_real_agents_one_killed_mid_map() {
    let pool = Pool::start(3_000).await;
    let mut doomed = pool.agent("doomed", 2).await;
    let _steady = pool.agent("steady", 2).await;
    let _third = pool.agent("third", 2).await;
    pool.wait_online(&["doomed", "steady", "third"]).await;
    let work = tempfile::tempdir().unwrap();
    let expected = write_word_count(work.path(), 60);
    let spec = work.path().join("count.toml");
    // One agent dies as soon as the map has begun to finish: its attempts run elsewhere.
    let (pipeline, id) = submitted_and_mapping(&pool, &spec, 0).await;
    doomed.kill().await;
    let owner = &pool.owner;

    let ended = ended(owner, id, Duration::from_secs(120)).await;
    assert_eq!(ended.state, JobState::Completed, "{ended:?}");
    let tasks: Vec<u32> = ended.stages.iter().map(|s| s.counts.succeeded).collect();
    assert_eq!(
        tasks,
        [60, 4, 1],
        "a map per book, a reduce per part, one gather"
    );

    shows_the_graph(&pool, &pipeline).await;
    let out = work.path().join("results");
    assert_eq!(
        fetched_count(&pool, &pipeline, &out).await,
        expected,
        "the pipeline's count is the count made here"
    );

    let partial = pool
        .cli(&[
            "results",
            &pipeline,
            "--stage",
            "reduce",
            "--out",
            out.join("reduce").to_str().unwrap(),
        ])
        .await;
    assert!(partial.status.success(), "{}", text(&partial.stderr));
    for part in 0..4 {
        assert!(
            out.join(format!("reduce/{part}/output/counts.txt"))
                .exists()
        );
    }
}

/// Bytes of blobs the coordinator has received and sent, from its metrics.
async fn coordinator_blob_bytes(pool: &Pool) -> (u64, u64) {
    let metrics = pool.owner.metrics().await.unwrap();
    let counter = |name: &str| -> u64 {
        let line = metrics
            .lines()
            .find(|line| line.starts_with(&format!("crowdcloud_{name}_total ")))
            .unwrap_or_else(|| panic!("no {name} in {metrics}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    (counter("blob_bytes_in"), counter("blob_bytes_out"))
}

/// A word count that ran: what the coordinator received and sent for it besides the books
/// (which the requester uploads and the maps fetch from it either way), and its stages.
struct Counted {
    bytes_in: u64,
    bytes_out: u64,
    status: PipelineStatus,
}

/// Submits a word count over 24 books drawn from `seed`, with `head` atop its spec, calling
/// `meanwhile` once its map stage has begun to finish; checks its count once it completed.
async fn count_words(pool: &Pool, seed: u64, head: &str, meanwhile: impl AsyncFnOnce()) -> Counted {
    let work = tempfile::tempdir().unwrap();
    let expected = write_word_count_as(work.path(), (24, seed), (head, ""));
    let spec = work.path().join("count.toml");
    let books: u64 = std::fs::read_dir(work.path().join("books"))
        .unwrap()
        .map(|book| book.unwrap().metadata().unwrap().len())
        .sum();
    let (in_before, out_before) = coordinator_blob_bytes(pool).await;
    let (pipeline, id) = submitted_and_mapping(pool, &spec, 1).await;
    meanwhile().await;
    let status = ended(&pool.owner, id, Duration::from_secs(120)).await;
    if status.state != JobState::Completed {
        // What failed, as the requester and the owner would look into it.
        let job = status.stages[1].job_id.to_string();
        let shown = pool.cli(&["status", &job]).await;
        let log = pool.coordinator_log();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        panic!("{status:?}\n{}\n{}", text(&shown.stdout), tail.join("\n"));
    }
    let (bytes_in, bytes_out) = coordinator_blob_bytes(pool).await;
    let out = work.path().join("results");
    assert_eq!(
        fetched_count(pool, &pipeline, &out).await,
        expected,
        "the count is the count made here ({head:?})"
    );
    Counted {
        bytes_in: bytes_in - in_before - books,
        bytes_out: bytes_out - out_before - books,
        status,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn with_locality_nodes_intermediates_stay_on_nodes_and_a_lost_ones_maker_runs_again() {
    let pool = Pool::start(3_000).await;
    let serve = ["--peer-listen", "127.0.0.1:0"];
    // The first agent starts alone, so the maps it keeps are surely its own alone.
    let mut doomed = pool.agent_joined("doomed", 2, &pool.join_token, &serve);
    pool.wait_online(&["doomed"]).await;
    // The first run puts the module in the agent's cache, so the measured runs fetch the same
    // things but for the intermediates.
    count_words(&pool, 1, "", async || {}).await;

    // Only the maker of each intermediate keeps it (no copies), and the maker dies once it
    // made some: what it alone had is made again by the tasks that made it.
    let others = std::sync::Mutex::new(Vec::new());
    let join_others = async || {
        for name in ["steady", "third"] {
            let agent = pool.agent_joined(name, 2, &pool.join_token, &serve);
            others.lock().unwrap().push(agent);
        }
        pool.wait_online(&["steady", "third"]).await;
        doomed.kill().await;
    };
    let nodes = count_words(&pool, 2, "locality = \"nodes\"\ncopies = 0\n", join_others).await;
    let map = pool.owner.job(nodes.status.stages[0].job_id).await.unwrap();
    assert!(
        map.recalled > 0,
        "the maps whose parts were lost ran again: {map:?}"
    );

    // Side by side on the same warm agents, nobody killed: intermediates through the
    // coordinator, and kept on the nodes with one copy each.
    let coordinator = count_words(&pool, 3, "", async || {}).await;
    let nodes = count_words(&pool, 4, "locality = \"nodes\"\n", async || {}).await;
    assert!(
        nodes.bytes_out * 4 < coordinator.bytes_out,
        "the coordinator sent {} bytes for the pipeline that fetches node to node, {} for the \
         same work fetched from it",
        nodes.bytes_out,
        coordinator.bytes_out
    );
    assert!(
        nodes.bytes_in * 4 < coordinator.bytes_in,
        "the coordinator received {} bytes for the pipeline that keeps intermediates on nodes, \
         {} for the same work kept in it",
        nodes.bytes_in,
        coordinator.bytes_in
    );
}

/// A word count whose maps all ran on two agents (`one`, `two`: they serve peers), and whose
/// reduces wait for a node labelled `role=reduce`, which [`reduced`] starts. `head` goes at
/// the top of its spec.
struct Mapped {
    work: tempfile::TempDir,
    expected: BTreeMap<String, u64>,
    pipeline: String,
    id: wire::PipelineId,
    mappers: [Agent; 2],
}

async fn mapped(pool: &Pool, head: &str) -> Mapped {
    let serve = ["--peer-listen", "127.0.0.1:0"];
    let mappers = ["one", "two"].map(|name| pool.agent_joined(name, 2, &pool.join_token, &serve));
    pool.wait_online(&["one", "two"]).await;
    let work = tempfile::tempdir().unwrap();
    let reducers_only = "requirements = { labels = { role = \"reduce\" } }\n";
    let expected = write_word_count_as(work.path(), (24, 5), (head, reducers_only));
    let spec = work.path().join("count.toml");
    let (pipeline, id) = submitted_and_mapping(pool, &spec, 23).await;
    Mapped {
        work,
        expected,
        pipeline,
        id,
        mappers,
    }
}

/// [`mapped`], its parts kept on the two agents that made them, and no copies.
async fn kept_parts(pool: &Pool) -> Mapped {
    mapped(pool, "locality = \"nodes\"\ncopies = 0\n").await
}

/// Starts the reducer, waits for the count to be made right, and gives the map stage's job.
async fn reduced(pool: &Pool, kept: Mapped) -> wire::JobStatus {
    let args = ["--peer-listen", "127.0.0.1:0", "--label", "role=reduce"];
    let _reducer = pool.agent_joined("reducer", 2, &pool.join_token, &args);
    let status = ended(&pool.owner, kept.id, Duration::from_secs(120)).await;
    assert_eq!(status.state, JobState::Completed, "{status:?}");
    let out = kept.work.path().join("results");
    assert_eq!(
        fetched_count(pool, &kept.pipeline, &out).await,
        kept.expected
    );
    pool.owner.job(status.stages[0].job_id).await.unwrap()
}

/// An agent killed (SIGKILL) while it runs reduces: they run again on another, and no
/// intermediate is lost, so no map runs again. It joins once every map is done and is the only
/// node the reduces may run on, so the reduces it was given were not done when it died.
#[tokio::test(flavor = "multi_thread")]
async fn an_agent_killed_mid_reduce_loses_no_intermediate() {
    let pool = Pool::start(3_000).await;
    let mapped = mapped(&pool, "").await;
    let owner = &pool.owner;
    let id = mapped.id;
    let reduce = owner.pipeline(id).await.unwrap().stages[1].job_id;
    let mut doomed = pool.agent_joined("doomed", 2, &pool.join_token, &["--label", "role=reduce"]);
    eventually(
        "a reduce to run on the doomed agent",
        Duration::from_secs(60),
        || async move { (owner.job(reduce).await.ok()?.tasks.running > 0).then_some(()) },
    )
    .await;
    doomed.kill().await;
    let map = reduced(&pool, mapped).await;
    assert_eq!(
        (map.recalled, map.attempts),
        (0, 24),
        "no map ran again: {map:?}"
    );
    let reduce = owner.job(reduce).await.unwrap();
    assert!(
        reduce.attempts > u64::from(reduce.tasks.total),
        "the killed agent's reduces ran again: {reduce:?}"
    );
}

/// A coordinator killed mid-pipeline starts again knowing what only the nodes had, not who
/// has it: the nodes name what they keep when asked, and no map runs again.
#[tokio::test(flavor = "multi_thread")]
async fn a_coordinator_that_starts_again_hears_what_nodes_keep_and_runs_no_map_again() {
    // The nodes have two lease terms to be asked and to answer, six heartbeats: 12 s here,
    // which leaves a slow machine seconds to spare.
    let mut pool = Pool::start(6_000).await;
    let kept = kept_parts(&pool).await;
    pool.restart_coordinator_hard().await;
    let map = reduced(&pool, kept).await;
    assert_eq!(map.recalled, 0, "no map ran again: {map:?}");
    assert!(
        pool.coordinator_log().contains("kept blobs named"),
        "{}",
        pool.coordinator_log()
    );
}

/// The owner of a node deletes the parts it kept from its disk while its agent runs: the
/// agent finds them gone and says so, and the maps that made them run again, instead of the
/// reduces waiting for them for as long as the node stays up.
#[tokio::test(flavor = "multi_thread")]
async fn parts_deleted_under_a_running_agent_are_made_again() {
    let pool = Pool::start(3_000).await;
    let kept = kept_parts(&pool).await;
    let mut keep: Vec<String> = std::fs::read_dir(kept.work.path().join("books"))
        .unwrap()
        .map(|book| wire::BlobHash::of(&std::fs::read(book.unwrap().path()).unwrap()).to_hex())
        .collect();
    keep.push(wire::BlobHash::of(guests::WORDFREQ).to_hex());
    let blobs = kept.mappers[0].dir.join("cache/blobs");
    let mut deleted = 0;
    for file in std::fs::read_dir(&blobs).unwrap() {
        let file = file.unwrap();
        if !keep.contains(&file.file_name().to_string_lossy().into_owned()) {
            std::fs::remove_file(file.path()).unwrap();
            deleted += 1;
        }
    }
    assert!(deleted > 0, "agent one kept parts in {}", blobs.display());
    let pipeline = kept.pipeline.clone();
    let map = reduced(&pool, kept).await;
    assert!(
        map.recalled > 0,
        "the maps whose parts were deleted ran again: {map:?}"
    );
    // The owner looking into the map stage's job learns both.
    let shown = text(&pool.cli(&["status", &map.job_id.to_string()]).await.stdout);
    assert!(
        shown.contains(&format!("stage:    map of pipeline {pipeline}")),
        "{shown}"
    );
    assert!(shown.contains("every copy of what it made"), "{shown}");
}

fn stage(name: &str, input: Option<StageInput>, job: JobSubmission) -> StageSubmission {
    StageSubmission {
        name: name.to_owned(),
        input,
        job,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stage_whose_source_failed_is_not_run_and_says_why_and_so_are_its_readers() {
    let pool = Pool::start(3_000).await;
    let _agent = pool.agent("worker", 2).await;
    let probe_module = pool.upload_wasm(guests::PROBE).await;
    let limits = Limits::default();
    let failing = pool.submission(
        probe_module,
        vec![probe(&["echo", "fine"]), probe(&["exit", "3"])],
        limits,
    );
    let template = pool.submission(probe_module, vec![probe(&["ls", "/input"])], limits);
    let pipeline = PipelineSubmission {
        name: "doomed".to_owned(),
        stages: vec![
            stage("first", None, failing),
            stage(
                "second",
                Some(StageInput::Each("first".into())),
                template.clone(),
            ),
            stage("third", Some(StageInput::All("second".into())), template),
        ],
        locality: wire::Locality::Coordinator,
        copies: 0,
    };
    let submitted = pool.owner.submit_pipeline(&pipeline).await.unwrap();
    let owner = &pool.owner;
    let id = submitted.pipeline_id;
    let ended = ended(owner, id, Duration::from_secs(60)).await;
    assert_eq!(ended.state, JobState::Failed);
    let states: Vec<StageState> = ended.stages.iter().map(|s| s.state).collect();
    assert_eq!(
        states,
        [StageState::Failed, StageState::NotRun, StageState::NotRun]
    );
    assert_eq!(
        ended.stages[1].reason.as_deref(),
        Some("not run, because stage first failed")
    );
    assert_eq!(
        ended.stages[2].reason.as_deref(),
        Some("not run, because stage second was not run")
    );
    let missing = owner.job(ended.stages[1].job_id).await.unwrap_err();
    assert_eq!(
        missing.code(),
        Some(ErrorCode::NotFound),
        "no job ran for it"
    );
}

/// Pipelines that must be refused, each with what the refusal says.
fn bad_graphs(job: &JobSubmission) -> Vec<(Vec<StageSubmission>, &'static str)> {
    let derived = |input: StageInput| Some(input);
    vec![
        (
            vec![
                stage("a", derived(StageInput::Each("b".into())), job.clone()),
                stage("b", derived(StageInput::Each("a".into())), job.clone()),
            ],
            "which is not a stage listed before it",
        ),
        (
            vec![
                stage("a", None, job.clone()),
                stage("b", derived(StageInput::All("nowhere".into())), job.clone()),
            ],
            "reads \"nowhere\"",
        ),
        (
            vec![stage(
                "a",
                derived(StageInput::Each("a".into())),
                job.clone(),
            )],
            "reads its own outputs",
        ),
        (
            vec![
                stage("a", None, job.clone()),
                stage(
                    "b",
                    derived(StageInput::Partition {
                        stage: "a".into(),
                        parts: wire::limits::PARTITIONS_MAX + 1,
                    }),
                    job.clone(),
                ),
            ],
            "give 1 to 10000 parts",
        ),
        (
            vec![stage("a", None, job.clone()), stage("a", None, job.clone())],
            "two stages are named a",
        ),
        (
            vec![
                stage("a", None, job.clone()),
                stage(
                    "b",
                    derived(StageInput::Each("a".into())),
                    JobSubmission {
                        tasks: vec![TaskSpec::default(), TaskSpec::default()],
                        ..job.clone()
                    },
                ),
            ],
            "give exactly one task",
        ),
        (
            (0..=wire::limits::STAGES_PER_PIPELINE_MAX)
                .map(|index| stage(&format!("s{index}"), None, job.clone()))
                .collect(),
            "give 1 to 16 stages",
        ),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_graphs_are_refused_at_submit_and_change_nothing() {
    let pool = Pool::start(3_000).await;
    let module = pool.upload_wasm(guests::PROBE).await;
    let job = pool.submission(module, vec![probe(&["echo", "x"])], Limits::default());
    let cases = bad_graphs(&job);
    for (stages, expected) in cases {
        let pipeline = PipelineSubmission {
            name: "bad".to_owned(),
            stages,
            locality: wire::Locality::Coordinator,
            copies: 0,
        };
        let error = pool.owner.submit_pipeline(&pipeline).await.unwrap_err();
        assert_eq!(error.code(), Some(ErrorCode::BadRequest), "{error}");
        assert!(error.to_string().contains(expected), "{expected}: {error}");
    }
    let jobs = pool.owner.jobs(100).await.unwrap();
    assert!(jobs.jobs.is_empty(), "no stage of a refused pipeline ran");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pipeline_submitted_before_its_coordinator_was_killed_runs_to_its_end_after() {
    let mut pool = Pool::start(3_000).await;
    let module = pool.upload_wasm(guests::PROBE).await;
    let limits = Limits::default();
    let make = pool.submission(module, vec![probe(&["files", "3"])], limits);
    let look = pool.submission(module, vec![probe(&["ls", "/input"])], limits);
    let pipeline = PipelineSubmission {
        name: "restarted".to_owned(),
        stages: vec![
            stage("make", None, make),
            stage("look", Some(StageInput::Each("make".into())), look),
        ],
        locality: wire::Locality::Coordinator,
        copies: 0,
    };
    // No agent yet: the pipeline is only stored when the coordinator dies.
    let submitted = pool.owner.submit_pipeline(&pipeline).await.unwrap();
    pool.restart_coordinator_hard().await;
    let _agent = pool.agent("worker", 2).await;
    let owner = &pool.owner;
    let id = submitted.pipeline_id;
    let ended = ended(owner, id, Duration::from_secs(60)).await;
    assert_eq!(ended.state, JobState::Completed, "{ended:?}");
    assert_eq!(ended.stages[1].job_id, submitted.stages[1].job_id);
    let looked = owner.all_tasks(ended.stages[1].job_id).await.unwrap();
    let mut listed = Vec::new();
    for task in &looked {
        listed.push(text(&pool.stdout(task).await).trim().to_owned());
    }
    listed.sort();
    assert_eq!(
        listed,
        ["f0", "f1", "f2"],
        "one task per file the first stage made"
    );
}

/// Submits the spec with the CLI and waits for the pipeline to end.
async fn run_spec(pool: &Pool, spec: &std::path::Path) -> PipelineStatus {
    let submitted = pool.cli(&["submit", spec.to_str().unwrap()]).await;
    assert!(submitted.status.success(), "{}", text(&submitted.stderr));
    let id: wire::PipelineId = text(&submitted.stdout).trim().parse().unwrap();
    let status = ended(&pool.owner, id, Duration::from_secs(120)).await;
    assert_eq!(status.state, JobState::Completed, "{status:?}");
    status
}

/// Attempts made per task of a stage's job: 0 for a task that took an earlier result.
async fn attempts_of(pool: &Pool, job: wire::JobId) -> Vec<u32> {
    let tasks = pool.owner.all_tasks(job).await.unwrap();
    tasks.iter().map(|task| task.attempts).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pipeline_run_again_runs_nothing_and_a_changed_book_reruns_only_what_reads_it() {
    runs_nothing_again_and_reruns_what_changed(Pool::start(3_000).await).await;
}

/// A word count run three times on `pool`: as it is, again, and with one book changed.
pub async fn runs_nothing_again_and_reruns_what_changed(pool: Pool) {
    let _one = pool.agent("one", 2).await;
    let _two = pool.agent("two", 2).await;
    let work = tempfile::tempdir().unwrap();
    let mut expected = write_word_count(work.path(), 12);
    let spec = work.path().join("count.toml");
    let first = run_spec(&pool, &spec).await;

    let again = run_spec(&pool, &spec).await;
    for stage in &again.stages {
        let attempts = attempts_of(&pool, stage.job_id).await;
        assert!(
            attempts.iter().all(|n| *n == 0),
            "{}: {attempts:?}",
            stage.name
        );
    }
    let reused = pool.owner.explain(again.stages[0].job_id, 3).await.unwrap();
    assert!(reused.reused_from.is_some(), "{reused:?}");

    let book = work.path().join("books/book-07.txt");
    let mut text_of_book = std::fs::read_to_string(&book).unwrap();
    text_of_book.push_str(" zzzextra zzzextra zzzextra\n");
    std::fs::write(&book, text_of_book).unwrap();
    *expected.entry("zzzextra".to_owned()).or_insert(0) += 3;
    let third = run_spec(&pool, &spec).await;

    let map = attempts_of(&pool, third.stages[0].job_id).await;
    let ran: Vec<usize> = (0..map.len()).filter(|index| map[*index] > 0).collect();
    assert_eq!(ran, [7], "only the changed book's map ran");
    let why = pool.owner.explain(third.stages[0].job_id, 7).await.unwrap();
    assert_eq!(why.ran_because, ["its inputs changed: book-07.txt changed"]);
    assert_eq!(why.compared_with, Some(again.stages[0].job_id));

    // A reduce reruns exactly when a part it reads changed: map 7's part of it.
    let parts_before = pool.owner.all_tasks(first.stages[0].job_id).await.unwrap()[7]
        .outputs
        .clone();
    let parts_after = pool.owner.all_tasks(third.stages[0].job_id).await.unwrap()[7]
        .outputs
        .clone();
    let changed: Vec<usize> = (0..4)
        .filter(|part| parts_before[*part].hash != parts_after[*part].hash)
        .collect();
    let reduce = attempts_of(&pool, third.stages[1].job_id).await;
    let reran: Vec<usize> = (0..reduce.len())
        .filter(|index| reduce[*index] > 0)
        .collect();
    assert_eq!(
        reran, changed,
        "the reduces of the changed parts, and only they, ran"
    );
    assert_eq!(attempts_of(&pool, third.stages[2].job_id).await, [1]);

    let out = work.path().join("third");
    let pipeline = third.pipeline_id.to_string();
    let fetched = pool
        .cli(&["results", &pipeline, "--out", out.to_str().unwrap()])
        .await;
    assert!(fetched.status.success(), "{}", text(&fetched.stderr));
    assert_eq!(read_counts(&out.join("0/output/counts.txt")), expected);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cancelled_pipeline_stops_its_running_stage_and_never_runs_the_next() {
    let pool = Pool::start(3_000).await;
    let _agent = pool.agent("worker", 1).await;
    let module = pool.upload_wasm(guests::PROBE).await;
    let limits = Limits::default();
    let slow = pool.submission(module, vec![probe(&["sleep", "60000"])], limits);
    let next = pool.submission(module, vec![probe(&["ls", "/input"])], limits);
    let pipeline = PipelineSubmission {
        name: "cancelled".to_owned(),
        stages: vec![
            stage("slow", None, slow),
            stage("next", Some(StageInput::All("slow".into())), next),
        ],
        locality: wire::Locality::Coordinator,
        copies: 0,
    };
    let submitted = pool.owner.submit_pipeline(&pipeline).await.unwrap();
    let owner = &pool.owner;
    let slow_job = submitted.stages[0].job_id;
    eventually(
        "the slow stage to run",
        Duration::from_secs(30),
        || async move {
            let status = owner.job(slow_job).await.ok()?;
            (status.tasks.running == 1).then_some(())
        },
    )
    .await;
    let pipeline = submitted.pipeline_id.to_string();
    let cancelled = pool.cli(&["cancel", &pipeline]).await;
    assert!(cancelled.status.success(), "{}", text(&cancelled.stderr));
    assert_eq!(
        text(&cancelled.stdout).trim(),
        format!("pipeline {pipeline} cancelled")
    );
    let status = owner.pipeline(submitted.pipeline_id).await.unwrap();
    let states: Vec<StageState> = status.stages.iter().map(|s| s.state).collect();
    assert_eq!(states, [StageState::Cancelled, StageState::NotRun]);
    let again = pool.cli(&["cancel", &pipeline]).await;
    assert!(!again.status.success(), "a pipeline is cancelled once");
    assert!(
        text(&again.stderr).contains("already ended"),
        "{}",
        text(&again.stderr)
    );
}

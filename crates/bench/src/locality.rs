//! `crowdcloud bench stages`, its locality part: the same pipelines with `locality =
//! "coordinator"` and with `"nodes"` (one copy of each intermediate), side by side on one pool
//! whose agents serve peers, and the bytes of blobs the coordinator received and sent for
//! each, from its `/metrics`. A word count (a map per book into PARTS parts, a reduce per
//! part), whose books are the maps' inputs, uploaded before and fetched from the coordinator
//! in both; and a render whose tiles one task gathers, whose first stage makes its data. What
//! differs is where the intermediates go and where their readers fetch them.

use std::path::Path;
use std::time::Instant;

use serde::Serialize;

use wire::{
    BlobHash, InputFile, JobState, JobSubmission, Locality, PipelineSubmission, StageInput,
    StageSubmission, TaskSpec,
};

use crate::pool::{CoordinatorOptions, LocalPool};
use crate::report::Better;
use crate::stages::{stage_job, wait_pipeline};
use crate::{BenchError, Check, Figure};

#[derive(Debug, Clone, Copy, Serialize)]
pub struct LocalityOptions {
    pub books: u32,
    /// Words in each book.
    pub words: u32,
    pub parts: u32,
    pub agents: u32,
    pub slots: u32,
}

/// One run of the word count.
struct Run {
    ingress_bytes: u64,
    egress_bytes: u64,
    /// The part of it that was not the books: the intermediates, and the reduces' module.
    beyond_books_bytes: u64,
    took_ms: f64,
    completed: bool,
}

/// Both pairs of runs: the word count's, and the tiles'.
struct Measured {
    words: (Run, Run),
    tiles: (Run, Run),
}

pub async fn run(
    binary: &Path,
    options: &LocalityOptions,
) -> Result<(Vec<Figure>, Vec<Check>), BenchError> {
    let mut pool = LocalPool::start(binary, &CoordinatorOptions::default()).await?;
    let serve = ["--peer-listen", "127.0.0.1:0"];
    for index in 0..options.agents {
        let join_token = pool.join_token.clone();
        pool.spawn_agent_with(&format!("peer-{index}"), options.slots, &join_token, &serve)?;
    }
    let measured = measure(&pool, options).await;
    pool.stop().await;
    let Measured { words, tiles } = measured?;
    let mut figures = word_count_figures(&words);
    figures.extend(tile_figures(&tiles));
    let checks = vec![
        Check::new(
            "the word count completed with either locality",
            words.0.completed && words.1.completed,
        ),
        Check::new(
            "the tiles and their gather completed with either locality",
            tiles.0.completed && tiles.1.completed,
        ),
    ];
    Ok((figures, checks))
}

fn kib(bytes: u64) -> f64 {
    bytes as f64 / 1024.0
}

fn word_count_figures((coordinator, nodes): &(Run, Run)) -> Vec<Figure> {
    let against = "locality = coordinator";
    vec![
        Figure::new(
            "coordinator ingress, word count with locality = nodes",
            kib(nodes.ingress_bytes),
            "KiB",
            Better::Lower,
        )
        .baseline(against, Some(kib(coordinator.ingress_bytes))),
        Figure::new(
            "coordinator egress beyond the books, locality = nodes",
            kib(nodes.beyond_books_bytes),
            "KiB",
            Better::Lower,
        )
        .baseline(against, Some(kib(coordinator.beyond_books_bytes))),
        Figure::new(
            "coordinator egress, word count with locality = nodes",
            kib(nodes.egress_bytes),
            "KiB",
            Better::Lower,
        )
        .baseline(against, Some(kib(coordinator.egress_bytes))),
        Figure::new(
            "word count with locality = nodes, submit to end",
            nodes.took_ms,
            "ms",
            Better::Lower,
        )
        .baseline(against, Some(coordinator.took_ms)),
    ]
}

fn tile_figures((coordinator, nodes): &(Run, Run)) -> Vec<Figure> {
    let against = "locality = coordinator";
    let name = format!("{TILES} tiles of {TILE_PX}x{TILE_PX} rendered, then gathered by one task");
    vec![
        Figure::new(
            &format!("coordinator egress, {name}, locality = nodes"),
            kib(nodes.egress_bytes),
            "KiB",
            Better::Lower,
        )
        .baseline(against, Some(kib(coordinator.egress_bytes))),
        Figure::new(
            &format!("coordinator ingress, {name}, locality = nodes"),
            kib(nodes.ingress_bytes),
            "KiB",
            Better::Lower,
        )
        .baseline(against, Some(kib(coordinator.ingress_bytes))),
        Figure::new(
            &format!("{name}, locality = nodes, submit to end"),
            nodes.took_ms,
            "ms",
            Better::Lower,
        )
        .baseline(against, Some(coordinator.took_ms)),
    ]
}

async fn measure(pool: &LocalPool, options: &LocalityOptions) -> Result<Measured, BenchError> {
    pool.wait_online(options.agents as usize).await?;
    let slots = options.agents * options.slots;
    let module = pool.owner.upload_bytes(guests::WORDFREQ.into()).await?;
    warm_up(pool, module, slots, &["count"]).await?;
    // Books of their own for each run, of the same sizes: no run finds the other's in the
    // agents' caches.
    let books = upload_books(pool, options, 0).await?;
    let coordinator =
        word_count(pool, module, books.as_ref(), options, Locality::Coordinator).await?;
    let books = upload_books(pool, options, options.books).await?;
    let nodes = word_count(pool, module, books.as_ref(), options, Locality::Nodes).await?;
    let modules = (
        pool.owner.upload_bytes(guests::RENDER.into()).await?,
        pool.owner.upload_bytes(guests::PROBE.into()).await?,
    );
    warm_up(pool, modules.0, slots, &["--width", "1", "--height", "1"]).await?;
    warm_up(pool, modules.1, slots, &["echo", "ready"]).await?;
    // The second run's tiles are a pixel to the right: no run finds the other's in a cache.
    let tiles = (
        render_and_gather(pool, modules, Locality::Coordinator, 0).await?,
        render_and_gather(pool, modules, Locality::Nodes, 1).await?,
    );
    Ok(Measured {
        words: (coordinator, nodes),
        tiles,
    })
}

/// Runs `module` on every slot, so that the measured runs find it in the agents' caches and
/// fetch the same things but for their data.
async fn warm_up(
    pool: &LocalPool,
    module: BlobHash,
    slots: u32,
    args: &[&str],
) -> Result<(), BenchError> {
    let job = stage_job(module, "warm-up", slots, args);
    let submitted = pool.owner.submit(&job).await?;
    pool.job_end(submitted.job_id, None).await?;
    Ok(())
}

/// Books `first..first + options.books`, uploaded, and their bytes in all.
struct Books {
    hashes: Vec<BlobHash>,
    bytes: u64,
}

impl Books {
    fn as_ref(&self) -> (&[BlobHash], u64) {
        (&self.hashes, self.bytes)
    }
}

async fn upload_books(
    pool: &LocalPool,
    options: &LocalityOptions,
    first: u32,
) -> Result<Books, BenchError> {
    let mut books = Books {
        hashes: Vec::with_capacity(options.books as usize),
        bytes: 0,
    };
    for index in first..first + options.books {
        let text = book(index, options.words);
        books.bytes += text.len() as u64;
        books
            .hashes
            .push(pool.owner.upload_bytes(text.into_bytes().into()).await?);
    }
    Ok(books)
}

async fn word_count(
    pool: &LocalPool,
    module: BlobHash,
    (books, books_bytes): (&[BlobHash], u64),
    options: &LocalityOptions,
    locality: Locality,
) -> Result<Run, BenchError> {
    // The locality in the job names, so the two runs' tasks have different keys and the
    // second takes no result of the first.
    let name = format!("{locality:?}").to_lowercase();
    let parts = options.parts.to_string();
    let mut map = stage_job(module, &format!("map-{name}"), 0, &["map", &parts]);
    map.tasks = books
        .iter()
        .map(|book| TaskSpec {
            args: vec!["map".to_owned(), parts.clone()],
            inputs: vec![InputFile {
                name: "book.txt".to_owned(),
                blob: *book,
            }],
            ..TaskSpec::default()
        })
        .collect();
    let reads = StageInput::Partition {
        stage: "map".to_owned(),
        parts: options.parts,
    };
    let reduce = stage_job(module, &format!("reduce-{name}"), 1, &["reduce"]);
    let pipeline = two_stages(
        format!("word count, locality = {name}"),
        ("map", map),
        ("reduce", reads, reduce),
        locality,
    );
    measured_run(pool, &pipeline, books_bytes).await
}

/// Tiles each render run makes, and their side in pixels: 48 distinct tiles of 48 KiB.
const TILES: u32 = 48;
const TILE_PX: u32 = 128;

/// A pipeline whose first stage makes its data: [`TILES`] tiles of a ray-traced picture,
/// `shift` pixels to the right (so two runs make other bytes at the same cost), then one task
/// given all of them (`probe ls /input`, a stand-in for
/// stitching them: what it computes does not change what moves). Beyond the intermediates,
/// only the two modules come from the coordinator, and they are in the agents' caches after
/// the first run.
async fn render_and_gather(
    pool: &LocalPool,
    (render, probe): (BlobHash, BlobHash),
    locality: Locality,
    shift: u32,
) -> Result<Run, BenchError> {
    let name = format!("{locality:?}").to_lowercase();
    let columns = 8;
    let (width, height) = (columns * TILE_PX + 1, (TILES / columns) * TILE_PX);
    let mut tiles = stage_job(render, &format!("render-{name}"), 0, &[]);
    tiles.tasks = (0..TILES)
        .map(|index| {
            let x0 = (index % columns) * TILE_PX + shift;
            let y0 = (index / columns) * TILE_PX;
            let args = [
                ("--width", width),
                ("--height", height),
                ("--x0", x0),
                ("--y0", y0),
                ("--w", TILE_PX),
                ("--h", TILE_PX),
                ("--samples", 1),
            ];
            TaskSpec {
                args: args
                    .iter()
                    .flat_map(|(flag, value)| [flag.to_string(), value.to_string()])
                    .collect(),
                ..TaskSpec::default()
            }
        })
        .collect();
    let gather = stage_job(probe, &format!("gather-{name}"), 1, &["ls", "/input"]);
    let reads = StageInput::All("render".to_owned());
    let pipeline = two_stages(
        format!("tiles, locality = {name}"),
        ("render", tiles),
        ("gather", reads, gather),
        locality,
    );
    measured_run(pool, &pipeline, 0).await
}

/// A pipeline of `first` and `second`, which reads it as `reads` says; one copy of each
/// intermediate with `locality = "nodes"`.
fn two_stages(
    name: String,
    (first, first_job): (&str, JobSubmission),
    (second, reads, second_job): (&str, StageInput, JobSubmission),
    locality: Locality,
) -> PipelineSubmission {
    let stage = |name: &str, input, job| StageSubmission {
        name: name.to_owned(),
        input,
        job,
    };
    PipelineSubmission {
        name,
        stages: vec![
            stage(first, None, first_job),
            stage(second, Some(reads), second_job),
        ],
        locality,
        copies: u32::from(locality == Locality::Nodes),
    }
}

/// Runs `pipeline` to its end: the coordinator's blob bytes in and out meanwhile, and the
/// part of what went out beyond `inputs_bytes`.
async fn measured_run(
    pool: &LocalPool,
    pipeline: &PipelineSubmission,
    inputs_bytes: u64,
) -> Result<Run, BenchError> {
    let (in_before, out_before) = blob_bytes(pool).await?;
    let started = Instant::now();
    let ran = wait_pipeline(pool, pipeline, std::time::Duration::from_secs(600)).await?;
    let took_ms = started.elapsed().as_secs_f64() * 1000.0;
    let (bytes_in, bytes_out) = blob_bytes(pool).await?;
    let egress_bytes = bytes_out.saturating_sub(out_before);
    Ok(Run {
        ingress_bytes: bytes_in.saturating_sub(in_before),
        egress_bytes,
        beyond_books_bytes: egress_bytes.saturating_sub(inputs_bytes),
        took_ms,
        completed: ran.status.state == JobState::Completed,
    })
}

/// Bytes of blobs the coordinator has received and sent (`crowdcloud_blob_bytes_in_total`,
/// `crowdcloud_blob_bytes_out_total`).
async fn blob_bytes(pool: &LocalPool) -> Result<(u64, u64), BenchError> {
    let text = pool.owner.metrics().await?;
    let counter = |name: &str| {
        let prefix = format!("crowdcloud_{name}_total ");
        text.lines()
            .find_map(|line| line.strip_prefix(prefix.as_str()))
            .and_then(|value| value.trim().parse().ok())
            .ok_or_else(|| BenchError::Setup(format!("the coordinator's /metrics has no {name}")))
    };
    Ok((counter("blob_bytes_in")?, counter("blob_bytes_out")?))
}

/// Book `index`: `words` words of a 5,000-word vocabulary, drawn from the index.
fn book(index: u32, words: u32) -> String {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64 ^ (u64::from(index) << 32 | 1);
    let mut text = String::with_capacity(words as usize * 8);
    for _ in 0..words {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        text.push_str(&format!("w{:04}x ", state % 5_000));
    }
    text
}

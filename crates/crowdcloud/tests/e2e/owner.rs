//! Owner first: a real agent (in this process, so a script can stand in for the owner's
//! keyboard, charger and programs) against a real coordinator process. The owner comes back,
//! runs something heavy, unplugs the laptop and leaves again; the attempts pause and resume,
//! their fuel stands still while paused, the coordinator shows the node paused with the
//! reason, a policy file edited on the fly takes effect, and a pause longer than the policy
//! allows gives the work back to run on another node.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agent::owner::governor::{CpuReading, IdleReading, PowerReading, PowerSource, Readings};
use agent::owner::signals::Signals;
use agent::owner::status::{AgentState, AgentStatus, read_status};
use agent::{AgentConfig, OwnerPolicy, PolicyOverrides};
use wire::{JobState, Limits, NodeState, TaskSpec};

use crate::harness::{BINARY, Pool, eventually};

/// The owner, as the agent's signals see them; the test changes it between phases.
#[derive(Debug)]
struct ScriptedOwner {
    readings: Mutex<Readings>,
}

impl ScriptedOwner {
    fn away() -> Self {
        Self {
            readings: Mutex::new(Readings {
                idle: IdleReading::IdleFor { idle_ms: 600_000 },
                power: PowerReading {
                    source: PowerSource::Mains,
                    battery_percent: Some(95),
                },
                owner_cpu: CpuReading::OwnerPercent(4),
                machine_cores: 4,
            }),
        }
    }

    fn change(&self, change: impl FnOnce(&mut Readings)) {
        change(&mut self.readings.lock().unwrap());
    }
}

impl Signals for ScriptedOwner {
    fn read(&self) -> Readings {
        self.readings.lock().unwrap().clone()
    }

    fn minute_of_day(&self) -> u16 {
        12 * 60
    }
}

/// Rounds of a little CPU work and a 20 ms sleep: long enough in wall time to outlast the
/// phases of the test, with fuel that grows steadily while it runs.
const WORK_AND_SLEEP_WAT: &str = r#"
(module
  (import "wasi_snapshot_preview1" "poll_oneoff"
    (func $poll_oneoff (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (local $round i32)
    (local $i i32)
    ;; One subscription at 0: the monotonic clock, 20 ms from now.
    (i32.store8 (i32.const 8) (i32.const 0))
    (i32.store (i32.const 16) (i32.const 1))
    (i64.store (i32.const 24) (i64.const 20000000))
    (block $done
      (loop $rounds
        (br_if $done (i32.ge_u (local.get $round) (i32.const 1000)))
        (local.set $i (i32.const 0))
        (block $burnt
          (loop $burn
            (br_if $burnt (i32.ge_u (local.get $i) (i32.const 200000)))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br $burn)))
        (drop (call $poll_oneoff (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128)))
        (local.set $round (i32.add (local.get $round) (i32.const 1)))
        (br $rounds)))))
"#;

const POLICY: &str = r#"
slots = 2
idle_for = "5m"
ac_only = true
owner_cpu_max = "30%"
owner_cpu_for = "0s"
release_after = "1h"
"#;

/// A phase change must show within this; the agent itself reacts within a governor tick
/// (250 ms). Generous for a loaded 2-core CI machine.
const REACTION_LIMIT: Duration = Duration::from_secs(5);

fn status(dir: &Path) -> Option<AgentStatus> {
    read_status(dir).ok().flatten()
}

/// Waits until the agent's status satisfies `check`; gives how long that took.
async fn status_until(
    dir: &Path,
    what: &str,
    limit: Duration,
    check: impl Fn(&AgentStatus) -> bool,
) -> (AgentStatus, Duration) {
    let started = Instant::now();
    let check = &check;
    let status = eventually(what, limit, || async move {
        status(dir).filter(|status| check(status))
    })
    .await;
    (status, started.elapsed())
}

fn all_paused(status: &AgentStatus) -> bool {
    status.state == AgentState::Paused
        && status.running.len() == 2
        && status.running.iter().all(|attempt| attempt.paused)
}

fn all_running(status: &AgentStatus) -> bool {
    status.state == AgentState::Working
        && status.running.len() == 2
        && status.running.iter().all(|attempt| !attempt.paused)
}

fn fuel(status: &AgentStatus) -> Vec<u64> {
    status
        .running
        .iter()
        .map(|attempt| attempt.fuel_used)
        .collect()
}

/// The status as rewritten after `after`; the agent rewrites it every second.
async fn newer_status(dir: &Path, after: &AgentStatus) -> AgentStatus {
    let since = after.updated_at_ms;
    status_until(dir, "a newer status", REACTION_LIMIT, |status| {
        status.updated_at_ms > since
    })
    .await
    .0
}

/// Pause: the status shows every attempt paused, the fuel stands still across later rewrites,
/// and the coordinator lists the node as paused with the reason.
async fn expect_pause(pool: &Pool, dir: &Path, phase: &str, reason: &str) -> Duration {
    let (paused, latency) = status_until(dir, phase, REACTION_LIMIT, all_paused).await;
    assert!(
        paused.reason.contains(reason),
        "{phase}: {:?} should say {reason:?}",
        paused.reason
    );
    // The guest stops at its next epoch tick, a few ms after the flag; from then on its fuel
    // must not move.
    let settled = newer_status(dir, &paused).await;
    let later = newer_status(dir, &newer_status(dir, &settled).await).await;
    assert!(all_paused(&later), "{phase}: still paused");
    assert_eq!(
        fuel(&settled),
        fuel(&later),
        "{phase}: fuel does not advance while paused"
    );
    let owner = &pool.owner;
    eventually(
        "the coordinator to show the node paused",
        REACTION_LIMIT,
        || async move {
            let nodes = owner.nodes().await.ok()?;
            let node = nodes.nodes.into_iter().find(|node| node.name == "laptop")?;
            (node.state == NodeState::Paused
                && node
                    .state_reason
                    .as_deref()
                    .is_some_and(|r| r.contains(reason)))
            .then_some(())
        },
    )
    .await;
    println!("{phase}: paused within {latency:?}");
    latency
}

async fn expect_resume(dir: &Path, phase: &str) -> Duration {
    let (_, latency) = status_until(dir, phase, REACTION_LIMIT, all_running).await;
    println!("{phase}: resumed within {latency:?}");
    latency
}

fn agent_status_cli(dir: &Path) -> String {
    let output = std::process::Command::new(BINARY)
        .args(["agent", "status", "--data-dir"])
        .arg(dir)
        .output()
        .expect("running crowdcloud agent status");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn write_policy(path: &PathBuf, text: &str) {
    // Aside and renamed, as an editor saves: the agent never reads half a file.
    let aside = path.with_extension("tmp");
    std::fs::write(&aside, text).unwrap();
    std::fs::rename(&aside, path).unwrap();
}

/// An agent run in this process, as the owner's machine, and how to stop it.
struct InProcess {
    stop: tokio::sync::oneshot::Sender<()>,
    run: tokio::task::JoinHandle<Result<agent::AgentSummary, agent::AgentError>>,
}

impl InProcess {
    /// Starts the agent `name` (with `slots`, else the agent's default) under the policy file,
    /// followed live, and `signals`; waits until the pool has it online.
    async fn start(
        pool: &Pool,
        (name, slots): (&str, Option<u32>),
        policy_file: &Path,
        signals: Arc<dyn Signals>,
    ) -> Self {
        let dir = pool.dir.path().join(name);
        let mut config = AgentConfig::new(&pool.url, &pool.join_token, dir);
        config.name = name.to_owned();
        if let Some(slots) = slots {
            config.slots = slots;
        }
        config.policy = OwnerPolicy::load(Some(policy_file), &PolicyOverrides::default()).unwrap();
        config.policy_file = Some(policy_file.to_owned());
        config.signals = signals;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let run = tokio::spawn(agent::run(config, async move {
            let _ = stopped.await;
        }));
        pool.wait_online(&[name]).await;
        Self { stop, run }
    }

    /// Stops the agent as its owner would, and what it did.
    async fn stop(self) -> agent::AgentSummary {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(60), self.run)
            .await
            .expect("the agent stops")
            .unwrap()
            .unwrap()
    }
}

/// Waits until the paused agent in `dir` has given back every attempt it held.
async fn all_given_back(dir: &Path) {
    status_until(
        dir,
        "the held attempts given back",
        Duration::from_secs(30),
        |s| s.state == AgentState::Paused && s.running.is_empty(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_owner_comes_and_goes_and_work_pauses_resumes_and_moves() {
    let pool = Pool::start(10_000).await;
    let dir = pool.dir.path().join("laptop");
    let policy_file = pool.dir.path().join("policy.toml");
    write_policy(&policy_file, POLICY);
    let owner = Arc::new(ScriptedOwner::away());
    let laptop = InProcess::start(&pool, ("laptop", Some(2)), &policy_file, owner.clone()).await;

    let module = pool
        .upload_wasm(&wat::parse_str(WORK_AND_SLEEP_WAT).unwrap())
        .await;
    let job = pool
        .submit(
            module,
            vec![TaskSpec::default(), TaskSpec::default()],
            Limits::default(),
        )
        .await;
    let (started, _) = status_until(
        &dir,
        "both attempts running",
        Duration::from_secs(60),
        |s| all_running(s) && s.running.iter().all(|attempt| attempt.fuel_used > 0),
    )
    .await;
    assert_eq!(
        agent_status_cli(&dir).lines().next(),
        Some("running 2 tasks")
    );

    // The owner is back at the keyboard.
    owner.change(|r| r.idle = IdleReading::IdleFor { idle_ms: 3_000 });
    expect_pause(&pool, &dir, "owner at the keyboard", "the owner is active").await;
    let paused_fuel = fuel(&status(&dir).unwrap());
    owner.change(|r| r.idle = IdleReading::IdleFor { idle_ms: 600_000 });
    expect_resume(&dir, "owner away again").await;
    let base = paused_fuel.clone();
    let base = &base;
    status_until(
        &dir,
        "fuel to advance after resuming",
        REACTION_LIMIT,
        |s| fuel(s).iter().zip(base).all(|(now, before)| now > before),
    )
    .await;
    assert!(
        paused_fuel
            .iter()
            .zip(fuel(&started).iter())
            .all(|(paused, first)| paused >= first)
    );

    // The owner starts something heavy.
    owner.change(|r| r.owner_cpu = CpuReading::OwnerPercent(80));
    expect_pause(&pool, &dir, "owner's programs busy", "use 80 % of the CPU").await;
    owner.change(|r| r.owner_cpu = CpuReading::OwnerPercent(4));
    expect_resume(&dir, "owner's programs calm").await;

    // The laptop is unplugged.
    owner.change(|r| {
        r.power = PowerReading {
            source: PowerSource::Battery,
            battery_percent: Some(41),
        }
    });
    expect_pause(&pool, &dir, "on battery", "on battery at 41 %").await;
    assert_eq!(
        agent_status_cli(&dir).lines().next(),
        Some("paused: on battery at 41 % (2 tasks held)")
    );

    // A broken edit of the policy file changes nothing.
    let before = status(&dir).unwrap();
    write_policy(&policy_file, "hours = \"noon\"\n");
    let later = newer_status(
        &dir,
        &newer_status(&dir, &newer_status(&dir, &before).await).await,
    )
    .await;
    assert_eq!(
        later.policy, before.policy,
        "an invalid policy file is ignored"
    );
    assert!(all_paused(&later));

    owner.change(|r| {
        r.power = PowerReading {
            source: PowerSource::Mains,
            battery_percent: Some(42),
        }
    });
    expect_resume(&dir, "plugged in again").await;

    // The owner narrows the hours to the night (it is noon) and lets pauses last 1 s: the
    // edit takes effect live, and the held attempts go back to the pool.
    write_policy(
        &policy_file,
        &format!("{POLICY}\nhours = [\"22:00-07:00\"]\nrelease_after = \"1s\"\n")
            .replace("release_after = \"1h\"\n", ""),
    );
    let (reloaded, _) = status_until(&dir, "the new policy", REACTION_LIMIT, |s| {
        s.state == AgentState::Paused && s.reason.contains("outside the allowed hours")
    })
    .await;
    assert!(
        reloaded.policy.contains("hours 22:00-07:00"),
        "{}",
        reloaded.policy
    );
    all_given_back(&dir).await;

    // Another node finishes them.
    let _elsewhere = pool.agent("elsewhere", 2).await;
    let finished = pool.finish(job, Duration::from_secs(180)).await;
    assert_eq!(finished.state, JobState::Completed, "{finished:?}");
    let nodes = pool.owner.nodes().await.unwrap();
    let succeeded = |name: &str| {
        nodes
            .nodes
            .iter()
            .find(|node| node.name == name)
            .map(|node| node.tasks_succeeded)
    };
    assert_eq!(succeeded("elsewhere"), Some(2));
    assert_eq!(succeeded("laptop"), Some(0));

    let summary = laptop.stop().await;
    assert_eq!(summary.attempts_released, 2);
    assert_eq!(summary.attempts_reported, 0);
    assert_eq!(agent_status_cli(&dir).lines().next(), Some("not running"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_refuses_a_pool_its_owner_did_not_allow() {
    let pool = Pool::start(10_000).await;
    let dir = pool.dir.path().join("picky");
    let mut config = AgentConfig::new(&pool.url, &pool.join_token, dir.clone());
    config.signals = Arc::new(ScriptedOwner::away());

    config.policy.pools = vec!["http://192.0.2.1:7878".to_owned()];
    let refused = agent::run(config.clone(), std::future::pending())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("not in the owner's allow-list"),
        "{refused}"
    );

    config.policy.pools = vec!["work".to_owned()];
    let refused = agent::run(config.clone(), std::future::pending())
        .await
        .unwrap_err()
        .to_string();
    assert!(refused.contains("the pool \"family\""), "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_an_owner_lends_reaches_the_coordinator_without_a_restart() {
    let pool = Pool::start(3_000).await;
    let policy_file = pool.dir.path().join("policy.toml");
    write_policy(&policy_file, "cores = 1\nmemory = \"1GiB\"\n");
    let signals = Arc::new(ScriptedOwner::away());
    let desk = InProcess::start(&pool, ("desk", None), &policy_file, signals).await;

    let lent = || async {
        let nodes = pool.owner.nodes().await.ok()?;
        let node = nodes.nodes.into_iter().find(|node| node.name == "desk")?;
        Some((node.capabilities.cores, node.capabilities.memory_bytes))
    };
    assert_eq!(lent().await, Some((1, 1 << 30)));

    write_policy(&policy_file, "cores = 2\nmemory = \"2GiB\"\n");
    eventually(
        "the coordinator to see what the node lends now",
        Duration::from_secs(20),
        || async { (lent().await == Some((2, 2 << 30))).then_some(()) },
    )
    .await;

    desk.stop().await;
}

/// A task that checkpoints moves when its owner's pause lasts longer than `release_after`:
/// the paused attempt is given back, and another node resumes it from its latest checkpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pause_past_release_after_moves_a_checkpointed_task_which_resumes_elsewhere() {
    let pool = Pool::start(10_000).await;
    let dir = pool.dir.path().join("laptop");
    let policy_file = pool.dir.path().join("policy.toml");
    let policy = POLICY.replace("release_after = \"1h\"", "release_after = \"1s\"");
    write_policy(&policy_file, &policy);
    let owner = Arc::new(ScriptedOwner::away());
    let laptop = InProcess::start(&pool, ("laptop", Some(1)), &policy_file, owner.clone()).await;
    let module = pool.upload_wasm(guests::COLLATZ).await;
    let job = crate::checkpoints::submit_collatz(&pool, module).await;
    let saved = crate::checkpoints::checkpoints_at_least(&pool, job, 1).await;

    // The owner comes back and stays: the attempt pauses at once, and a second later it goes
    // back to the pool with the checkpoint it saved.
    owner.change(|r| r.idle = IdleReading::IdleFor { idle_ms: 3_000 });
    all_given_back(&dir).await;
    let elsewhere = pool.agent("elsewhere", 1).await;
    let ended = pool.finish(job, Duration::from_secs(240)).await;
    assert_eq!(ended.state, JobState::Completed, "{ended:?}");
    let sequence = crate::checkpoints::resumed_from(&elsewhere.log())
        .expect("the other node says what it resumed from");
    assert!(sequence >= saved.saved, "{sequence} < {saved:?}");
    let summary = laptop.stop().await;
    assert_eq!(summary.attempts_released, 1);
}

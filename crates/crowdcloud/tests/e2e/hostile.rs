//! Hostile guests through the whole pool: each fails with its typed reason, the agent carries on,
//! and nothing is left on the node's disk.

use std::time::Duration;

use wire::{JobState, Limits, Outcome, TaskState};

use crate::harness::{Pool, probe};

/// Whether an outcome is the one a case expects.
type Expect = fn(&Outcome) -> bool;

#[tokio::test(flavor = "multi_thread")]
async fn hostile_tasks_fail_with_their_reasons_and_the_agent_carries_on() {
    let pool = Pool::start(5_000).await;
    let agent = pool.agent("target", 2).await;
    pool.wait_online(&["target"]).await;
    let module = pool.upload_wasm(guests::PROBE).await;
    let limits = Limits {
        memory_bytes_max: 64 << 20,
        fuel_max: 2_000_000_000,
        deadline_ms: 1_500,
        stdout_bytes_max: 1 << 20,
        stderr_bytes_max: 1 << 20,
        output_bytes_max: 8 << 20,
        output_files_max: 100,
    };
    let cases: Vec<(&[&str], Expect)> = vec![
        (&["spin"], |o| {
            matches!(o, Outcome::DeadlineExceeded | Outcome::OutOfFuel)
        }),
        (&["sleep", "600000"], |o| *o == Outcome::DeadlineExceeded),
        (&["alloc", "1024"], |o| *o == Outcome::MemoryLimit),
        (&["stdout-flood"], |o| {
            *o == Outcome::OutputTooLarge {
                what: "stdout".into(),
            }
        }),
        (&["output-flood"], |o| {
            *o == Outcome::OutputTooLarge {
                what: "/output".into(),
            }
        }),
        (&["files", "1000"], |o| {
            matches!(o, Outcome::OutputTooLarge { .. })
        }),
        (&["read", "/etc/passwd"], |o| {
            *o == Outcome::ExitCode { code: 3 }
        }),
        (&["escape"], |o| *o == Outcome::Succeeded),
        // Rust keeps its stack in linear memory: running off it is an out-of-bounds access.
        (
            &["recurse"],
            |o| matches!(o, Outcome::Trap { message } if message.contains("out of bounds")),
        ),
        (&["env"], |o| *o == Outcome::Succeeded),
    ];
    let tasks = cases.iter().map(|(args, _)| probe(args)).collect();
    let job = pool.submit(module, tasks, limits).await;
    let status = pool.finish(job, Duration::from_secs(120)).await;
    assert_eq!(status.state, JobState::Failed, "the hostile tasks failed");
    let results = pool.owner.all_tasks(job).await.unwrap();
    for (task, (args, expected)) in results.iter().zip(&cases) {
        let outcome = task.outcome.as_ref().expect("every task ended");
        assert!(expected(outcome), "{args:?} ended as {outcome:?}");
        assert_eq!(task.attempts, 1, "{args:?}: a guest failure is not retried");
    }
    let stdout_of = |index: usize| {
        let task = &results[index];
        let owner = pool.owner.clone();
        let stdout = task.stdout;
        async move {
            match stdout {
                Some(blob) => {
                    String::from_utf8(owner.download(&blob.hash).await.unwrap().to_vec()).unwrap()
                }
                None => String::new(),
            }
        }
    };
    let escape = stdout_of(7).await;
    assert!(!escape.contains("ESCAPED"), "{escape}");
    assert!(escape.contains("denied"), "{escape}");
    let env = stdout_of(9).await;
    assert!(
        !env.contains("PATH=") && !env.contains("HOME="),
        "no host env leaks in: {env}"
    );

    // The agent survived every one of them and still works.
    let job = pool
        .submit(module, vec![probe(&["echo", "alive"])], Limits::default())
        .await;
    let status = pool.finish(job, Duration::from_secs(60)).await;
    assert_eq!(status.state, JobState::Completed);
    assert_eq!(status.nodes[0].node_name, "target");
    let task = &pool.owner.all_tasks(job).await.unwrap()[0];
    assert_eq!(task.state, TaskState::Succeeded);
    let leftovers = std::fs::read_dir(agent.dir.join("work")).unwrap().count();
    assert_eq!(leftovers, 0, "no attempt directory is left on the node");
}

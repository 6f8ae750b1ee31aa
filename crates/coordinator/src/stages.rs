//! The stage driver: starts a pipeline's waiting stages once the stages they read completed,
//! beside the pool (see `pool::pipelines`).
//!
//! The outputs a stage is made from are rows of the store, not of the pool, so the driver
//! reads them after a flush (every verdict and ended job queued before is then in), makes the
//! stage's tasks with [`derive`], and hands them to the pool in a `StartStage` command, which
//! checks the stage still waits. A stage whose tasks cannot be made (a part numbered past the
//! partitions, more inputs than a task may have) is given up with the reason. The pool's rows
//! are the queue: a coordinator stopped halfway goes on at its next start.

use std::sync::Arc;
use std::time::Duration;

use store::Commit;
use wire::{InputFile, OutputFile, PipelineId, StageInput, TaskSpec};

use crate::pool::{EndPipeline, Found, GiveUpStage, PoolError, StageWork, StartStage};
use crate::service::Shared;

/// How long the driver waits before it looks again at a stage the pool's bounds held back.
const RECHECK_AFTER: Duration = Duration::from_secs(1);

/// Starts, gives up and ends stages until the coordinator stops: at start, and after every
/// change that may let a stage go on.
pub(crate) async fn drive_stages(shared: Arc<Shared>) {
    let mut stopping = shared.stopping.subscribe();
    loop {
        let recheck = match drive_once(&shared).await {
            Ok(held_back) => held_back.then_some(RECHECK_AFTER),
            Err(error) => {
                tracing::warn!(%error, "could not start a pipeline's stage; trying again shortly");
                Some(RECHECK_AFTER)
            }
        };
        if !crate::service::woken(&shared.stages, recheck, &mut stopping).await {
            return;
        }
    }
}

/// One pass over the pool's pipelines; whether a stage was held back by the pool's bounds.
async fn drive_once(shared: &Shared) -> Result<bool, store::StoreError> {
    let work = shared.read(|pool, _| pool.stage_work());
    if work.is_empty() {
        return Ok(false);
    }
    shared.store.flush().await?;
    let mut held_back = false;
    for item in work {
        let commit = match item {
            StageWork::Start {
                pipeline,
                stage,
                reads,
                input,
                requester,
                mut job,
            } => {
                let outputs = shared.store.task_outputs(reads).await?;
                let template = job.tasks.pop().expect("a waiting stage has its template");
                let tasks = derive(&input, &template, &outputs);
                let reusable = match &tasks {
                    Ok(tasks) => {
                        job.tasks = tasks.clone();
                        crate::reuse::reusable(shared, requester, &job).await?
                    }
                    Err(_) => Vec::new(),
                };
                let (held, commit) = start(shared, (pipeline, stage), tasks, reusable);
                held_back |= held;
                commit
            }
            StageWork::GiveUp {
                pipeline,
                stage,
                reason,
            } => give_up(shared, pipeline, stage, reason),
            StageWork::End { pipeline } => shared.apply(EndPipeline { pipeline }).1,
        };
        shared.committed(commit).await?;
    }
    Ok(held_back)
}

/// Starts a stage with the tasks made for it, or gives it up when they could not be made or
/// the pool refuses them for good; whether the pool's bounds held it back for now.
fn start(
    shared: &Shared,
    (pipeline, stage): (PipelineId, usize),
    tasks: Result<Vec<TaskSpec>, String>,
    reusable: Found,
) -> (bool, Commit) {
    let tasks = match tasks {
        Ok(tasks) => tasks,
        Err(reason) => {
            return (
                false,
                give_up(shared, pipeline, stage, format!("not run: {reason}")),
            );
        }
    };
    let unfinished_max = shared.config.unfinished_max();
    let (started, commit) = shared.apply(StartStage {
        pipeline,
        stage,
        tasks,
        reusable,
        unfinished_max,
    });
    match started {
        Ok(job) => tracing::info!(%pipeline, stage, %job, "stage started"),
        Err(PoolError::TooMuchUnfinished(_)) => return (true, commit),
        // It no longer waits: started or given up by an earlier pass.
        Err(PoolError::Conflict(_) | PoolError::NotFound(_)) => {}
        Err(error) => {
            let reason = format!("not run: {}", error.message());
            return (false, give_up(shared, pipeline, stage, reason));
        }
    }
    (false, commit)
}

fn give_up(shared: &Shared, pipeline: PipelineId, stage: usize, reason: String) -> Commit {
    tracing::info!(%pipeline, stage, %reason, "stage given up");
    let give_up = GiveUpStage {
        pipeline,
        stage,
        reason,
    };
    shared.apply(give_up).1
}

/// A stage's tasks, made from the outputs of the stage it reads (`(task index, its output
/// files)`, in task order): see [`StageInput`] for the rule of each kind. Each task is the
/// template with the files added to its inputs.
pub(crate) fn derive(
    input: &StageInput,
    template: &TaskSpec,
    outputs: &[(u32, Vec<OutputFile>)],
) -> Result<Vec<TaskSpec>, String> {
    let with = |files: Vec<InputFile>| -> Result<TaskSpec, String> {
        let mut task = template.clone();
        task.inputs.extend(files);
        if task.inputs.len() > wire::limits::INPUTS_PER_TASK_MAX {
            return Err(format!(
                "a task would get {} input files and a task may have {}; make fewer outputs, \
                 or more partitions",
                task.inputs.len(),
                wire::limits::INPUTS_PER_TASK_MAX
            ));
        }
        Ok(task)
    };
    let tasks = match input {
        StageInput::Each(_) => outputs
            .iter()
            .flat_map(|(_, files)| files)
            .map(|file| with(vec![input_file(flat(&file.path), file)]))
            .collect::<Result<Vec<_>, _>>()?,
        StageInput::All(_) => {
            let files = outputs.iter().flat_map(|(task, files)| {
                files
                    .iter()
                    .map(move |file| input_file(format!("{task}-{}", flat(&file.path)), file))
            });
            vec![with(files.collect())?]
        }
        StageInput::Partition { stage, parts } => partition(stage, *parts, outputs)?
            .into_iter()
            .map(with)
            .collect::<Result<Vec<_>, _>>()?,
    };
    if tasks.is_empty() || tasks.len() > wire::limits::TASKS_PER_JOB_MAX {
        return Err(format!(
            "the stage it reads made {} files, and a stage has 1 to {} tasks",
            tasks.len(),
            wire::limits::TASKS_PER_JOB_MAX
        ));
    }
    Ok(tasks)
}

/// Part `i` of every task, for each of the `parts` tasks.
fn partition(
    stage: &str,
    parts: u32,
    outputs: &[(u32, Vec<OutputFile>)],
) -> Result<Vec<Vec<InputFile>>, String> {
    let mut tasks = vec![Vec::new(); parts as usize];
    for (task, files) in outputs {
        for file in files {
            let Some(part) = file.path.strip_prefix("part-") else {
                continue;
            };
            let index = part.parse::<u32>().ok().filter(|index| *index < parts);
            let Some(index) = index else {
                return Err(format!(
                    "task {task} of stage {stage} wrote {}, and the partitions are part-0 to \
                     part-{}: write only parts below `parts`, or raise it",
                    file.path,
                    parts - 1
                ));
            };
            let name = format!("part-{index}-from-{task}");
            tasks[index as usize].push(input_file(name, file));
        }
    }
    Ok(tasks)
}

fn input_file(name: String, file: &OutputFile) -> InputFile {
    InputFile {
        name,
        blob: file.hash,
    }
}

/// An output path as a plain file name: `/` becomes `__`.
fn flat(path: &str) -> String {
    path.replace('/', "__")
}

#[cfg(test)]
mod tests {
    use wire::BlobHash;

    use super::*;

    fn output(path: &str) -> OutputFile {
        OutputFile {
            path: path.to_owned(),
            hash: BlobHash::of(path.as_bytes()),
            size_bytes: 1,
        }
    }

    fn template() -> TaskSpec {
        TaskSpec {
            args: vec!["reduce".to_owned()],
            ..TaskSpec::default()
        }
    }

    fn names(task: &TaskSpec) -> Vec<&str> {
        task.inputs
            .iter()
            .map(|input| input.name.as_str())
            .collect()
    }

    #[test]
    fn each_makes_one_task_per_file_in_task_then_path_order() {
        let outputs = [
            (0, vec![output("a.txt"), output("dir/b.txt")]),
            (2, vec![output("c.txt")]),
        ];
        let tasks = derive(&StageInput::Each("split".into()), &template(), &outputs).unwrap();
        let inputs: Vec<Vec<&str>> = tasks.iter().map(names).collect();
        assert_eq!(inputs, [["a.txt"], ["dir__b.txt"], ["c.txt"]]);
        assert!(tasks.iter().all(|task| task.args == ["reduce"]));
        assert_eq!(tasks[1].inputs[0].blob, BlobHash::of(b"dir/b.txt"));
    }

    #[test]
    fn all_gives_one_task_every_file_named_after_its_task() {
        let outputs = [(0, vec![output("x")]), (1, vec![output("x")])];
        let tasks = derive(&StageInput::All("map".into()), &template(), &outputs).unwrap();
        assert_eq!(tasks.len(), 1);
        assert_eq!(names(&tasks[0]), ["0-x", "1-x"]);
    }

    #[test]
    fn a_partition_gives_task_i_part_i_of_every_task() {
        let outputs = [
            (
                0,
                vec![output("part-0"), output("part-1"), output("log.txt")],
            ),
            (1, vec![output("part-1")]),
        ];
        let input = StageInput::Partition {
            stage: "map".into(),
            parts: 3,
        };
        let tasks = derive(&input, &template(), &outputs).unwrap();
        let inputs: Vec<Vec<&str>> = tasks.iter().map(names).collect();
        assert_eq!(
            inputs,
            [
                vec!["part-0-from-0"],
                vec!["part-1-from-0", "part-1-from-1"],
                vec![]
            ]
        );
    }

    #[test]
    fn a_part_past_the_partitions_stops_the_stage_with_the_reason() {
        let outputs = [(4, vec![output("part-7")])];
        let input = StageInput::Partition {
            stage: "map".into(),
            parts: 4,
        };
        let error = derive(&input, &template(), &outputs).unwrap_err();
        assert!(
            error.contains("task 4 of stage map wrote part-7"),
            "{error}"
        );
    }

    #[test]
    fn a_gather_past_the_inputs_a_task_may_have_is_refused() {
        let files = (0..=wire::limits::INPUTS_PER_TASK_MAX)
            .map(|index| output(&format!("f{index}")))
            .collect();
        let outputs = [(0, files)];
        let error = derive(&StageInput::All("map".into()), &template(), &outputs).unwrap_err();
        assert!(error.contains("input files"), "{error}");
    }

    #[test]
    fn a_stage_with_nothing_to_read_is_refused() {
        let error = derive(&StageInput::Each("map".into()), &template(), &[]).unwrap_err();
        assert!(error.contains("made 0 files"), "{error}");
    }
}

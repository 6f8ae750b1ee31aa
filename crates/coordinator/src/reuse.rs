//! Finding the results a pipeline's tasks may take instead of running ("resume for free"):
//! each task's key (`wire::key`) looked up among the requester's succeeded tasks in the store.
//! The pool keeps only the results whose key is still the task's own when it takes the job
//! (see `pool::reuse`).

use store::StoreError;
use wire::{JobSubmission, RequesterId};

use crate::pool::Found;
use crate::service::Shared;

/// The results of `requester`'s earlier tasks that the tasks of `job` (as the pool keeps it:
/// its verification mode set) may take, with the keys they were found under.
pub(crate) async fn reusable(
    shared: &Shared,
    requester: RequesterId,
    job: &JobSubmission,
) -> Result<Found, StoreError> {
    let job_key = wire::key::JobKey::of(job);
    let keys: Vec<(u32, wire::BlobHash)> = job
        .tasks
        .iter()
        .enumerate()
        .map(|(index, task)| (index as u32, job_key.key(index as u32, task)))
        .collect();
    let found = shared.store.reusable(requester, &keys).await?;
    let key_of = |index: u32| keys[index as usize].1;
    Ok(found
        .into_iter()
        .map(|(index, reused)| (index, key_of(index), reused))
        .collect())
}

/// Why task `index` ran, or whose result it took, from its history.
pub(crate) fn explain(index: u32, history: &store::TaskHistory) -> wire::Explanation {
    let parts = wire::key::KeyParts::of(&history.job, index, &history.task);
    let mut explanation = wire::Explanation {
        index,
        key: parts.key().to_hex(),
        reused_from: history.reused_from,
        compared_with: history.earlier.as_ref().map(|(job, _, _)| *job),
        ran_because: Vec::new(),
    };
    if history.reused_from.is_some() {
        return explanation;
    }
    let earlier = match &history.earlier {
        None => {
            let name = &history.job.name;
            explanation.ran_because = vec![format!(
                "no earlier job of yours is named {name:?}: nothing to take a result from"
            )];
            return explanation;
        }
        Some((_, _, None)) => {
            explanation.ran_because =
                vec![format!("the earlier job had no task {index}: it is new")];
            return explanation;
        }
        Some((_, job, Some(task))) => wire::key::KeyParts::of(job, index, task),
    };
    let earlier_task = history
        .earlier
        .as_ref()
        .and_then(|(_, _, task)| task.as_ref());
    explanation.ran_because = parts
        .changed_from(&earlier)
        .into_iter()
        .map(|part| match (part, earlier_task) {
            ("inputs", Some(before)) => inputs_changed(&history.task, before),
            (part, _) => format!("its {part} changed"),
        })
        .collect();
    if explanation.ran_because.is_empty() {
        explanation.ran_because.push(
            "its key is the earlier task's, but that task had no good result when this one \
             came (it had not succeeded, or its result was taken back)"
                .to_owned(),
        );
    }
    explanation
}

/// Which inputs are new, changed or gone, by name.
fn inputs_changed(now: &wire::TaskSpec, before: &wire::TaskSpec) -> String {
    let before_blobs: std::collections::BTreeMap<&str, wire::BlobHash> = before
        .inputs
        .iter()
        .map(|input| (input.name.as_str(), input.blob))
        .collect();
    let mut changed: Vec<String> = now
        .inputs
        .iter()
        .filter_map(|input| match before_blobs.get(input.name.as_str()) {
            None => Some(format!("{} is new", input.name)),
            Some(blob) if *blob != input.blob => Some(format!("{} changed", input.name)),
            Some(_) => None,
        })
        .collect();
    let names: std::collections::BTreeSet<&str> =
        now.inputs.iter().map(|input| input.name.as_str()).collect();
    let gone = before
        .inputs
        .iter()
        .filter(|input| !names.contains(input.name.as_str()));
    changed.extend(gone.map(|input| format!("{} is gone", input.name)));
    format!("its inputs changed: {}", changed.join(", "))
}

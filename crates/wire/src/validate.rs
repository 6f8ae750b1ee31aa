//! Checks of everything a requester or a node sends, before it touches any state.
//!
//! Each check returns the first problem as [`WireError::Invalid`] naming the field
//! (`tasks[3].inputs[0].name`) and what to do, so a bad spec is fixed in one look.
//!
//! Every string a client sends has a byte bound, since the coordinator keeps it and shows it to
//! everyone (`crowdcloud nodes`, the web app). Names and one-line reasons may not hold
//! control characters, which a terminal would obey; free-text messages (a trap's backtrace) may,
//! and the CLI shows them escaped. The `fit_*` functions are the sender's side of the same rules:
//! the agent cuts what it says to fit, so an honest node is never refused.

use std::collections::{BTreeMap, BTreeSet};

use crate::WireError;
use crate::job::{JobSubmission, Limits, Mount, Requirements, TaskSpec};
use crate::limits::{self, ceiling};
use crate::node::{
    Capabilities, HeartbeatRequest, LeaseRequest, NodeActivity, Outcome, RegisterRequest,
    ReleaseRequest, ReportRequest,
};
use crate::pipeline::{PipelineSubmission, StageInput};

/// Guest paths the sandbox owns; mounts may not shadow them.
pub const RESERVED_GUEST_DIRS: [&str; 3] = ["/input", "/output", "/scratch"];

fn invalid(field: impl Into<String>, problem: impl Into<String>) -> WireError {
    WireError::Invalid {
        field: field.into(),
        problem: problem.into(),
    }
}

/// A line of text for people (a name, a reason): at most `bytes_max` bytes, no control
/// characters.
/// A pool's name, a slash and a node's name.
pub const RAN_ON_BYTES_MAX: usize = 2 * limits::DEVICE_NAME_BYTES_MAX + 1;

fn line(text: &str, field: &str, bytes_max: usize) -> Result<(), WireError> {
    if text.len() > bytes_max {
        return Err(invalid(
            field,
            format!(
                "{} bytes is more than the {bytes_max} allowed; shorten it",
                text.len()
            ),
        ));
    }
    if text.chars().any(char::is_control) {
        return Err(invalid(field, "remove control characters from it"));
    }
    Ok(())
}

/// Free text such as a trap's message: any characters, at most `bytes_max` bytes.
fn message(text: &str, field: &str, bytes_max: usize) -> Result<(), WireError> {
    if text.len() > bytes_max {
        return Err(invalid(
            field,
            format!(
                "{} bytes is more than the {bytes_max} allowed; cut the message",
                text.len()
            ),
        ));
    }
    Ok(())
}

/// Cuts `text` to at most `bytes_max` bytes (at least 3) on a character boundary, ending it
/// with `…` when anything was cut.
pub fn cut_to_bytes(text: &mut String, bytes_max: usize) {
    if text.len() <= bytes_max {
        return;
    }
    let mut end = bytes_max.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push('…');
}

/// A reason as [`heartbeat`] and [`release_request`] take it: control characters written out
/// as escapes, cut to [`limits::REASON_BYTES_MAX`].
pub fn fit_reason(reason: &str) -> String {
    fit_line(reason, limits::REASON_BYTES_MAX)
}

/// `text` as one line of at most `bytes_max` bytes: control characters written out as escapes,
/// cut at a character boundary.
pub fn fit_line(text: &str, bytes_max: usize) -> String {
    let mut fitted = String::with_capacity(text.len().min(bytes_max));
    for character in text.chars() {
        if character.is_control() {
            fitted.extend(character.escape_default());
        } else {
            fitted.push(character);
        }
        if fitted.len() > bytes_max {
            break;
        }
    }
    cut_to_bytes(&mut fitted, bytes_max);
    fitted
}

/// Cuts the outcome's message, if it has one, to [`limits::OUTCOME_MESSAGE_BYTES_MAX`].
pub fn fit_outcome(outcome: &mut Outcome) {
    match outcome {
        Outcome::Trap { message }
        | Outcome::InvalidOutput { message }
        | Outcome::ModuleRejected { message }
        | Outcome::NodeError { message }
        | Outcome::SealBroken { message }
        | Outcome::OutputTooLarge { what: message } => {
            cut_to_bytes(message, limits::OUTCOME_MESSAGE_BYTES_MAX);
        }
        _ => {}
    }
}

/// The text an outcome carries. Every variant is named, so a new one with text is bounded too.
fn outcome_text(outcome: &Outcome) -> Option<&str> {
    match outcome {
        Outcome::Trap { message }
        | Outcome::InvalidOutput { message }
        | Outcome::ModuleRejected { message }
        | Outcome::NodeError { message }
        | Outcome::SealBroken { message }
        | Outcome::OutputTooLarge { what: message } => Some(message),
        Outcome::Succeeded
        | Outcome::ExitCode { .. }
        | Outcome::OutOfFuel
        | Outcome::DeadlineExceeded
        | Outcome::MemoryLimit
        | Outcome::Cancelled
        | Outcome::NoKey
        | Outcome::Lost { .. }
        | Outcome::Inconclusive { .. } => None,
    }
}

/// A job that asks for its results to be checked must be deterministic or name a validator,
/// and leaves replicas to the checks.
fn verify_mode(job: &JobSubmission) -> Result<(), WireError> {
    if job.verify.is_some() && job.deterministic.is_none() && job.validator.is_none() {
        return Err(invalid(
            "verify",
            "checking results compares them byte for byte, which needs deterministic mode: \
             add `deterministic = { seed = 1 }` to the job spec, or name a `validator` that \
             says whether two results are equivalent",
        ));
    }
    if let Some(validator) = &job.validator {
        validator_args(&validator.args)?;
    }
    if job.verify.is_some() && job.replicas > 1 {
        return Err(invalid(
            "verify",
            "a job whose results are checked runs the replicas its checks need: remove \
             `replicas` from the job spec",
        ));
    }
    Ok(())
}

pub fn job_submission(job: &JobSubmission) -> Result<(), WireError> {
    if job.name.is_empty() || job.name.len() > limits::JOB_NAME_BYTES_MAX {
        return Err(invalid(
            "name",
            format!(
                "give the job a name of 1 to {} bytes",
                limits::JOB_NAME_BYTES_MAX
            ),
        ));
    }
    if job.name.chars().any(char::is_control) {
        return Err(invalid("name", "remove control characters from the name"));
    }
    env(&job.env)?;
    if job.mounts.len() > limits::MOUNTS_PER_JOB_MAX {
        return Err(invalid(
            "mounts",
            format!("at most {} mounts per job", limits::MOUNTS_PER_JOB_MAX),
        ));
    }
    mounts(&job.mounts)?;
    requirements(&job.requirements, "requirements")?;
    job_limits(&job.limits)?;
    if !(1..=limits::ATTEMPTS_MAX).contains(&job.max_attempts) {
        return Err(invalid(
            "max_attempts",
            format!("must be between 1 and {}", limits::ATTEMPTS_MAX),
        ));
    }
    if !(1..=limits::REPLICAS_MAX.min(job.max_attempts)).contains(&job.replicas) {
        return Err(invalid(
            "replicas",
            format!(
                "must be between 1 and {}, and at most max_attempts ({})",
                limits::REPLICAS_MAX,
                job.max_attempts
            ),
        ));
    }
    verify_mode(job)?;
    success_exit_codes(&job.success_exit_codes)?;
    if let Some(spec) = &job.checkpoint {
        checkpoint(spec, job)?;
    }
    if let Some(policy) = &job.on_failure {
        on_failure(policy, job)?;
    }
    if let Some(private) = &job.private {
        private_job(private, job)?;
    }
    if job.tasks.is_empty() {
        return Err(invalid("tasks", "a job needs at least one task"));
    }
    if job.tasks.len() > limits::TASKS_PER_JOB_MAX {
        return Err(invalid(
            "tasks",
            format!(
                "{} tasks is more than the {} a job may have; split the work into several jobs",
                job.tasks.len(),
                limits::TASKS_PER_JOB_MAX
            ),
        ));
    }
    for (index, task) in job.tasks.iter().enumerate() {
        task_spec(task, &format!("tasks[{index}]"))?;
    }
    Ok(())
}

/// A private job names the requester's key, its manifest and at least one node that may run
/// it, and asks for nothing the coordinator would have to read its data for.
fn private_job(private: &crate::PrivateJob, job: &JobSubmission) -> Result<(), WireError> {
    hex_digits(&private.requester_key, "private.requester_key", 64)?;
    private.requester_wrap.check("private.requester_wrap")?;
    if let Some(inline) = private.manifest.inline_bytes() {
        inline?;
    }
    if private.keys.is_empty() {
        return Err(invalid(
            "private.keys",
            "the job's key is wrapped to no node, so no node could run it: let nodes with an \
             encryption key join, or name ones that have joined (`crowdcloud nodes`)",
        ));
    }
    if private.keys.len() > crate::private::KEY_HOLDERS_MAX {
        return Err(invalid(
            "private.keys",
            format!(
                "wrap the job's key to at most {} nodes",
                crate::private::KEY_HOLDERS_MAX
            ),
        ));
    }
    for (node, wrap) in &private.keys {
        wrap.check(&format!("private.keys.{node}"))?;
    }
    if job.checkpoint.is_some() {
        return Err(invalid(
            "checkpoint",
            "a checkpoint is a task's state saved through the coordinator, which would hold a \
             private job's data in the clear: submit a checkpointing job without `private`",
        ));
    }
    if job.validator.is_some() {
        return Err(invalid(
            "validator",
            "a validator runs on the coordinator's machine, which cannot read a private job's \
             results: make the job deterministic and let replicas be compared by digest, or \
             submit it without `private`",
        ));
    }
    Ok(())
}

/// A grant names 1 to [`crate::private::KEY_HOLDERS_MAX`] nodes, each with a well-formed wrap.
pub fn key_grant(grant: &crate::KeyGrant) -> Result<(), WireError> {
    if grant.keys.is_empty() || grant.keys.len() > crate::private::KEY_HOLDERS_MAX {
        return Err(invalid(
            "keys",
            format!(
                "grant the key to 1 to {} nodes at once",
                crate::private::KEY_HOLDERS_MAX
            ),
        ));
    }
    for (node, wrap) in &grant.keys {
        wrap.check(&format!("keys.{node}"))?;
    }
    Ok(())
}

/// `text` is exactly `digits` lowercase hex digits.
pub fn hex_digits(text: &str, field: &str, digits: usize) -> Result<(), WireError> {
    let good = text.len() == digits
        && text
            .bytes()
            .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte));
    if good {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!("expected {digits} lowercase hex digits"),
        ))
    }
}

fn env(vars: &BTreeMap<String, String>) -> Result<(), WireError> {
    if vars.len() > limits::ENV_VARS_MAX {
        return Err(invalid(
            "env",
            format!("at most {} variables", limits::ENV_VARS_MAX),
        ));
    }
    for (name, value) in vars {
        let field = format!("env.{name}");
        if name.is_empty() || name.contains('=') || name.contains('\0') {
            return Err(invalid(
                field,
                "a variable name must be non-empty, without '=' or NUL",
            ));
        }
        if value.contains('\0') {
            return Err(invalid(field, "a value may not contain NUL"));
        }
        if name.len() + value.len() > limits::ENV_VAR_BYTES_MAX {
            return Err(invalid(
                field,
                format!(
                    "name and value together exceed {} bytes",
                    limits::ENV_VAR_BYTES_MAX
                ),
            ));
        }
    }
    Ok(())
}

/// A single file name: what may appear in `/input`.
/// Checks a pipeline: the bounds, unique stage names, every stage reading only an earlier
/// stage (so the graph has no cycle), and each stage's job as [`job_submission`] does.
pub fn pipeline_submission(pipeline: &PipelineSubmission) -> Result<(), WireError> {
    if pipeline.name.is_empty()
        || pipeline.name.len() > limits::JOB_NAME_BYTES_MAX
        || pipeline.name.chars().any(char::is_control)
    {
        return Err(invalid(
            "name",
            format!(
                "give the pipeline a name of 1 to {} bytes, without control characters",
                limits::JOB_NAME_BYTES_MAX
            ),
        ));
    }
    if !(1..=limits::STAGES_PER_PIPELINE_MAX).contains(&pipeline.stages.len()) {
        return Err(invalid(
            "stages",
            format!("give 1 to {} stages", limits::STAGES_PER_PIPELINE_MAX),
        ));
    }
    copies(pipeline)?;
    let mut earlier = BTreeSet::new();
    for (index, stage) in pipeline.stages.iter().enumerate() {
        let field = format!("stages[{index}]");
        stage_name(&stage.name, &field)?;
        if let Some(input) = &stage.input {
            stage_input(input, &stage.name, &earlier, &field)?;
        }
        let tasks_wanted = stage.input.is_some().then_some(1);
        if tasks_wanted.is_some_and(|wanted| stage.job.tasks.len() != wanted) {
            return Err(invalid(
                format!("{field}.job.tasks"),
                format!(
                    "stage {} takes its tasks from another stage: give exactly one task, the \
                     template of its tasks",
                    stage.name
                ),
            ));
        }
        if stage.job.private.is_some() {
            return Err(invalid(
                format!("{field}.job.private"),
                "a stage reads an earlier stage's outputs on the nodes, and a private job's \
                 outputs are sealed to its requester: submit private work as single jobs",
            ));
        }
        job_submission(&stage.job).map_err(|error| match error {
            WireError::Invalid {
                field: inner,
                problem,
            } => invalid(format!("{field}.job.{inner}"), problem),
            other => other,
        })?;
        if !earlier.insert(stage.name.as_str()) {
            return Err(invalid(
                format!("{field}.name"),
                format!(
                    "two stages are named {}; give each stage its own name",
                    stage.name
                ),
            ));
        }
    }
    Ok(())
}

/// Copies are of intermediates kept on nodes, and a few at most.
fn copies(pipeline: &PipelineSubmission) -> Result<(), WireError> {
    let copies = pipeline.copies;
    if copies > 0 && pipeline.locality != crate::Locality::Nodes {
        return Err(invalid(
            "copies",
            "copies are of intermediates kept on nodes: set locality to nodes, or give 0 copies",
        ));
    }
    if copies > crate::peer::COPIES_MAX {
        return Err(invalid(
            "copies",
            format!(
                "{copies} copies asked; give 0 to {} copies of each intermediate besides its \
                 maker's",
                crate::peer::COPIES_MAX
            ),
        ));
    }
    Ok(())
}

fn stage_name(name: &str, field: &str) -> Result<(), WireError> {
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_';
    if name.is_empty() || name.len() > limits::STAGE_NAME_BYTES_MAX || !name.chars().all(allowed) {
        return Err(invalid(
            format!("{field}.name"),
            format!(
                "name the stage with 1 to {} lowercase letters, digits, '-' or '_'",
                limits::STAGE_NAME_BYTES_MAX
            ),
        ));
    }
    Ok(())
}

fn stage_input(
    input: &StageInput,
    stage: &str,
    earlier: &BTreeSet<&str>,
    field: &str,
) -> Result<(), WireError> {
    let read = input.stage();
    if !earlier.contains(read) {
        let problem = if read == stage {
            format!("stage {stage} reads its own outputs; a stage reads only earlier stages")
        } else {
            format!(
                "stage {stage} reads {read:?}, which is not a stage listed before it; list \
                 the stages a stage reads before it"
            )
        };
        return Err(invalid(format!("{field}.input"), problem));
    }
    if let StageInput::Partition { parts, .. } = input
        && !(1..=limits::PARTITIONS_MAX).contains(parts)
    {
        return Err(invalid(
            format!("{field}.input.partition.parts"),
            format!("give 1 to {} parts", limits::PARTITIONS_MAX),
        ));
    }
    Ok(())
}

pub fn file_name(name: &str, field: &str) -> Result<(), WireError> {
    if name.is_empty()
        || name == "."
        || name == ".."
        || name.contains('/')
        || name.contains('\\')
        || name.chars().any(char::is_control)
        || name.len() > limits::NAME_BYTES_MAX
    {
        return Err(invalid(
            field,
            format!(
                "{name:?} is not a plain file name (1 to {} bytes, no '/', '\\', control \
                 characters, '.' or '..')",
                limits::NAME_BYTES_MAX
            ),
        ));
    }
    Ok(())
}

/// A relative path of plain names joined by `/`: what may appear in a mount or in `/output`.
pub fn relative_path(path: &str, field: &str) -> Result<(), WireError> {
    if path.is_empty() || path.len() > limits::PATH_BYTES_MAX || path.starts_with('/') {
        return Err(invalid(
            field,
            format!(
                "{path:?} must be a relative path of 1 to {} bytes",
                limits::PATH_BYTES_MAX
            ),
        ));
    }
    for component in path.split('/') {
        file_name(component, field)?;
    }
    Ok(())
}

fn guest_path(path: &str, field: &str) -> Result<(), WireError> {
    let Some(rest) = path.strip_prefix('/') else {
        return Err(invalid(
            field,
            format!("{path:?} must be an absolute path such as \"/share\""),
        ));
    };
    relative_path(rest, field)?;
    for reserved in RESERVED_GUEST_DIRS {
        if path == reserved || path.starts_with(&format!("{reserved}/")) {
            return Err(invalid(
                field,
                format!("{path:?} is reserved for the sandbox; mount somewhere else"),
            ));
        }
    }
    Ok(())
}

fn mounts(mounts: &[Mount]) -> Result<(), WireError> {
    let mut files_total = 0usize;
    let mut seen: Vec<&str> = Vec::with_capacity(mounts.len());
    for (index, mount) in mounts.iter().enumerate() {
        let field = format!("mounts[{index}]");
        guest_path(&mount.guest_path, &format!("{field}.guest_path"))?;
        for other in &seen {
            let nested = |outer: &str, inner: &str| inner.starts_with(&format!("{outer}/"));
            if *other == mount.guest_path
                || nested(other, &mount.guest_path)
                || nested(&mount.guest_path, other)
            {
                return Err(invalid(
                    format!("{field}.guest_path"),
                    format!("{:?} overlaps the mount at {other:?}", mount.guest_path),
                ));
            }
        }
        seen.push(&mount.guest_path);
        files_total += mount.files.len();
        if files_total > limits::MOUNT_FILES_MAX {
            return Err(invalid(
                "mounts",
                format!("more than {} files in all mounts", limits::MOUNT_FILES_MAX),
            ));
        }
        let mut paths = BTreeSet::new();
        for (file_index, file) in mount.files.iter().enumerate() {
            let file_field = format!("{field}.files[{file_index}].path");
            relative_path(&file.path, &file_field)?;
            if !paths.insert(file.path.as_str()) {
                return Err(invalid(
                    file_field,
                    format!("{:?} appears twice", file.path),
                ));
            }
        }
        no_file_is_a_directory(&paths, &format!("{field}.files"))?;
    }
    Ok(())
}

/// A file may not also be the directory of another ("a" and "a/b"): no tree holds both.
fn no_file_is_a_directory(paths: &BTreeSet<&str>, field: &str) -> Result<(), WireError> {
    for path in paths {
        let prefix = format!("{path}/");
        if paths
            .range(prefix.as_str()..)
            .next()
            .is_some_and(|next| next.starts_with(&prefix))
        {
            return Err(invalid(
                field,
                format!("{path:?} is both a file and a directory"),
            ));
        }
    }
    Ok(())
}

pub fn labels(labels: &BTreeMap<String, String>, field: &str) -> Result<(), WireError> {
    if labels.len() > limits::LABELS_MAX {
        return Err(invalid(
            field,
            format!("at most {} labels", limits::LABELS_MAX),
        ));
    }
    for (key, value) in labels {
        let ok = |text: &str| {
            !text.is_empty()
                && text.len() <= limits::LABEL_BYTES_MAX
                && text
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_./:".contains(&b))
        };
        if !ok(key) || !ok(value) {
            return Err(invalid(
                format!("{field}.{key}"),
                format!(
                    "labels are 1 to {} characters of letters, digits and - _ . / :",
                    limits::LABEL_BYTES_MAX
                ),
            ));
        }
    }
    Ok(())
}

fn requirements(req: &Requirements, field: &str) -> Result<(), WireError> {
    labels(&req.labels, &format!("{field}.labels"))?;
    for (name, value) in [("arch", &req.arch), ("os", &req.os)] {
        if let Some(value) = value
            && (value.is_empty()
                || value.len() > 32
                || !value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_'))
        {
            return Err(invalid(
                format!("{field}.{name}"),
                format!("{value:?} is not a {name} name such as \"x86_64\" or \"linux\""),
            ));
        }
    }
    Ok(())
}

fn job_limits(limits: &Limits) -> Result<(), WireError> {
    let checks: [(&str, u64, u64); 7] = [
        (
            "limits.memory_bytes_max",
            limits.memory_bytes_max,
            ceiling::MEMORY_BYTES_MAX,
        ),
        ("limits.fuel_max", limits.fuel_max, ceiling::FUEL_MAX),
        (
            "limits.deadline_ms",
            limits.deadline_ms,
            ceiling::DEADLINE_MS,
        ),
        (
            "limits.output_bytes_max",
            limits.output_bytes_max,
            ceiling::OUTPUT_BYTES_MAX,
        ),
        (
            "limits.output_files_max",
            limits.output_files_max.into(),
            crate::limits::OUTPUT_FILES_MAX.into(),
        ),
        (
            "limits.stdout_bytes_max",
            limits.stdout_bytes_max,
            ceiling::STDOUT_BYTES_MAX,
        ),
        (
            "limits.stderr_bytes_max",
            limits.stderr_bytes_max,
            ceiling::STDERR_BYTES_MAX,
        ),
    ];
    for (field, value, max) in checks {
        if value == 0 || value > max {
            return Err(invalid(
                field,
                format!("{value} is out of range: give 1 to {max}"),
            ));
        }
    }
    // A WebAssembly page is 64 KiB; less than one page cannot run anything.
    if limits.memory_bytes_max < 65_536 {
        return Err(invalid(
            "limits.memory_bytes_max",
            "give at least 65536 bytes (one WebAssembly page)",
        ));
    }
    Ok(())
}

fn success_exit_codes(codes: &[i32]) -> Result<(), WireError> {
    exit_codes("success_exit_codes", codes, limits::SUCCESS_EXIT_CODES_MAX)
}

/// A list of at most `max` exit codes a program can give besides 0.
fn exit_codes(field: &str, codes: &[i32], max: usize) -> Result<(), WireError> {
    if codes.len() > max {
        return Err(invalid(field, format!("name at most {max} exit codes")));
    }
    if let Some(code) = codes.iter().find(|code| !(1..=255).contains(*code)) {
        return Err(invalid(
            field,
            format!("{code} is not an exit code a program can give besides 0: give 1 to 255"),
        ));
    }
    Ok(())
}

/// A job's failure policy: bounded retries and escalation, exit codes a program can give that
/// mean nothing else to the job, and no checks of results, where a failure is one node's word.
fn on_failure(policy: &crate::OnFailure, job: &JobSubmission) -> Result<(), WireError> {
    use crate::failure::{MEMORY_ESCALATE_MAX, RETRIES_MAX};
    if job.verify.is_some() {
        return Err(invalid(
            "on_failure",
            "a job whose results are checked takes no failure policy: one node's failure is \
             not evidence enough to retry or stop the job on; remove retries, unless_exit, \
             abort_on and memory_escalate, or `verify`",
        ));
    }
    if policy.retries > RETRIES_MAX {
        return Err(invalid(
            "on_failure.retries",
            format!("give at most {RETRIES_MAX} retries"),
        ));
    }
    if policy.memory_escalate > MEMORY_ESCALATE_MAX {
        return Err(invalid(
            "on_failure.memory_escalate",
            format!("give a factor of at most {MEMORY_ESCALATE_MAX}"),
        ));
    }
    if policy.memory_escalate > 1 && policy.retries == 0 {
        return Err(invalid(
            "on_failure.memory_escalate",
            "more memory is for the next attempt, and there is none: give retries too",
        ));
    }
    for (field, codes) in [
        ("on_failure.unless_exit", &policy.unless_exit),
        ("on_failure.abort_on", &policy.abort_on),
    ] {
        failure_exit_codes(field, codes, job)?;
    }
    Ok(())
}

fn failure_exit_codes(field: &str, codes: &[i32], job: &JobSubmission) -> Result<(), WireError> {
    exit_codes(field, codes, crate::failure::EXIT_CODES_MAX)?;
    let saved = job.checkpoint.as_ref().map(|spec| spec.exit_code);
    if let Some(code) = codes
        .iter()
        .find(|code| job.success_exit_codes.contains(code) || saved == Some(**code))
    {
        return Err(invalid(
            field,
            format!(
                "{code} already means success or \"checkpoint saved\" to this job: name \
                 another code"
            ),
        ));
    }
    Ok(())
}

/// A job's checkpoints: an interval its tasks can keep, an exit code that means nothing else,
/// a bounded size, and no checks of results, which would trust one node's checkpoint in the
/// result of the next.
fn checkpoint(spec: &crate::CheckpointSpec, job: &JobSubmission) -> Result<(), WireError> {
    use crate::checkpoint::{BYTES_MAX_CEILING, INTERVAL_MS_MAX, INTERVAL_MS_MIN};
    if !(INTERVAL_MS_MIN..=INTERVAL_MS_MAX).contains(&spec.interval_ms) {
        return Err(invalid(
            "checkpoint.interval",
            format!(
                "give an interval of {} s to {} h: each checkpoint restarts the task",
                INTERVAL_MS_MIN / 1000,
                INTERVAL_MS_MAX / 3_600_000
            ),
        ));
    }
    if !(1..=255).contains(&spec.exit_code) || job.success_exit_codes.contains(&spec.exit_code) {
        return Err(invalid(
            "checkpoint.exit_code",
            format!(
                "{} cannot say \"checkpoint saved\": give 1 to 255, not one of success_exit_codes",
                spec.exit_code
            ),
        ));
    }
    if !(1..=BYTES_MAX_CEILING).contains(&spec.bytes_max) {
        return Err(invalid(
            "checkpoint.size_max",
            format!("give 1 byte to {} MiB", BYTES_MAX_CEILING / limits::MIB),
        ));
    }
    Ok(())
}

fn validator_args(args: &[String]) -> Result<(), WireError> {
    let bytes: usize = args.iter().map(String::len).sum();
    if args.len() > limits::VALIDATOR_ARGS_MAX || bytes > limits::VALIDATOR_ARGS_BYTES_MAX {
        return Err(invalid(
            "validator.args",
            format!(
                "give at most {} arguments of {} bytes together",
                limits::VALIDATOR_ARGS_MAX,
                limits::VALIDATOR_ARGS_BYTES_MAX
            ),
        ));
    }
    if args.iter().any(|arg| arg.contains('\0')) {
        return Err(invalid("validator.args", "an argument may not contain NUL"));
    }
    Ok(())
}

fn task_spec(task: &TaskSpec, field: &str) -> Result<(), WireError> {
    if task.args.len() > limits::ARGS_PER_TASK_MAX {
        return Err(invalid(
            format!("{field}.args"),
            format!("at most {} arguments", limits::ARGS_PER_TASK_MAX),
        ));
    }
    let mut args_bytes = 0usize;
    for arg in &task.args {
        if arg.contains('\0') {
            return Err(invalid(
                format!("{field}.args"),
                "an argument may not contain NUL",
            ));
        }
        args_bytes += arg.len();
    }
    if args_bytes > limits::ARGS_BYTES_PER_TASK_MAX {
        return Err(invalid(
            format!("{field}.args"),
            format!(
                "arguments total {args_bytes} bytes, more than {}; pass large data as input files",
                limits::ARGS_BYTES_PER_TASK_MAX
            ),
        ));
    }
    if task.inputs.len() > limits::INPUTS_PER_TASK_MAX {
        return Err(invalid(
            format!("{field}.inputs"),
            format!("at most {} input files", limits::INPUTS_PER_TASK_MAX),
        ));
    }
    let mut names = BTreeSet::new();
    for (index, input) in task.inputs.iter().enumerate() {
        let input_field = format!("{field}.inputs[{index}].name");
        file_name(&input.name, &input_field)?;
        if !names.insert(input.name.as_str()) {
            return Err(invalid(
                input_field,
                format!("{:?} appears twice", input.name),
            ));
        }
    }
    Ok(())
}

pub fn registration(request: &RegisterRequest) -> Result<(), WireError> {
    if request.name.is_empty() {
        return Err(invalid(
            "name",
            format!("a node name has 1 to {} bytes", limits::NAME_BYTES_MAX),
        ));
    }
    line(&request.name, "name", limits::NAME_BYTES_MAX)?;
    if !(1..=limits::SLOTS_PER_NODE_MAX).contains(&request.slots) {
        return Err(invalid(
            "slots",
            format!("offer 1 to {} slots", limits::SLOTS_PER_NODE_MAX),
        ));
    }
    labels(&request.labels, "labels")?;
    line(
        &request.agent_version,
        "agent_version",
        limits::AGENT_VERSION_BYTES_MAX,
    )?;
    capabilities(&request.capabilities, "capabilities")?;
    if let Some(key) = &request.capabilities.encryption_key {
        let public_key = hex::decode(&request.public_key)
            .ok()
            .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
            .ok_or_else(|| invalid("public_key", "expected 64 hex digits"))?;
        key.verify(&public_key).map_err(|_| {
            invalid(
                "capabilities.encryption_key",
                "the encryption key is not signed by the node's identity key: start the agent \
                 again so it signs the key it holds",
            )
        })?;
    }
    Ok(())
}

fn capabilities(caps: &Capabilities, field: &str) -> Result<(), WireError> {
    if let Some(address) = &caps.peer_address {
        peer_address(address, &format!("{field}.peer_address"))?;
    }
    line(
        &caps.arch,
        &format!("{field}.arch"),
        limits::PLATFORM_NAME_BYTES_MAX,
    )?;
    line(
        &caps.os,
        &format!("{field}.os"),
        limits::PLATFORM_NAME_BYTES_MAX,
    )?;
    if !(MODULE_BYTES_MIN..=limits::MODULE_BYTES_MAX).contains(&caps.module_bytes_max) {
        return Err(invalid(
            format!("{field}.module_bytes_max"),
            format!(
                "between {MODULE_BYTES_MIN} and {} bytes",
                limits::MODULE_BYTES_MAX
            ),
        ));
    }
    if caps.wasi_interfaces.len() > crate::wasi::WASI_INTERFACES_MAX {
        return Err(invalid(
            format!("{field}.wasi_interfaces"),
            format!("at most {} interfaces", crate::wasi::WASI_INTERFACES_MAX),
        ));
    }
    for interface in &caps.wasi_interfaces {
        line(
            interface,
            &format!("{field}.wasi_interfaces"),
            crate::wasi::WASI_INTERFACE_BYTES_MAX,
        )?;
    }
    if caps.wasm_features.len() > crate::wasm::FEATURES_MAX {
        return Err(invalid(
            format!("{field}.wasm_features"),
            format!("at most {} features", crate::wasm::FEATURES_MAX),
        ));
    }
    for feature in &caps.wasm_features {
        line(
            feature,
            &format!("{field}.wasm_features"),
            crate::wasm::FEATURE_BYTES_MAX,
        )?;
    }
    Ok(())
}

/// The smallest module cap a node may report: less could not compile even a small guest.
pub const MODULE_BYTES_MIN: u64 = limits::MIB;

pub fn lease_request(request: &LeaseRequest) -> Result<(), WireError> {
    if request.slots_free > limits::SLOTS_PER_NODE_MAX {
        return Err(invalid(
            "slots_free",
            format!("at most {}", limits::SLOTS_PER_NODE_MAX),
        ));
    }
    if request.wait_ms > limits::LEASE_WAIT_MS_MAX {
        return Err(invalid(
            "wait_ms",
            format!("at most {}", limits::LEASE_WAIT_MS_MAX),
        ));
    }
    Ok(())
}

pub fn heartbeat(request: &HeartbeatRequest) -> Result<(), WireError> {
    if request.running.len() > limits::ATTEMPTS_PER_HEARTBEAT_MAX {
        return Err(invalid(
            "running",
            format!("at most {} attempts", limits::ATTEMPTS_PER_HEARTBEAT_MAX),
        ));
    }
    if let NodeActivity::Paused { reason } = &request.activity {
        line(reason, "activity.reason", limits::REASON_BYTES_MAX)?;
    }
    if request.copied.len() > crate::peer::COPIES_PER_HEARTBEAT_MAX {
        return Err(invalid(
            "copied",
            format!(
                "at most {} copies per heartbeat; name the rest in the next",
                crate::peer::COPIES_PER_HEARTBEAT_MAX
            ),
        ));
    }
    if request.kept.len() > crate::peer::KEPT_NAMED_PER_HEARTBEAT_MAX {
        return Err(invalid(
            "kept",
            format!(
                "at most {} kept blobs per heartbeat; name the rest in the next",
                crate::peer::KEPT_NAMED_PER_HEARTBEAT_MAX
            ),
        ));
    }
    if request.dropped.len() > crate::peer::DROPPED_PER_HEARTBEAT_MAX {
        return Err(invalid(
            "dropped",
            format!(
                "at most {} dropped blobs per heartbeat; name the rest in the next",
                crate::peer::DROPPED_PER_HEARTBEAT_MAX
            ),
        ));
    }
    if request.forgotten.len() > crate::deletion::FORGETS_PER_HEARTBEAT_MAX {
        return Err(invalid(
            "forgotten",
            format!(
                "at most {} deleted jobs per heartbeat",
                crate::deletion::FORGETS_PER_HEARTBEAT_MAX
            ),
        ));
    }
    match &request.capabilities {
        Some(caps) => capabilities(caps, "capabilities"),
        None => Ok(()),
    }
}

pub fn release_request(request: &ReleaseRequest) -> Result<(), WireError> {
    if request.attempts.len() > limits::ATTEMPTS_PER_HEARTBEAT_MAX {
        return Err(invalid(
            "attempts",
            format!(
                "release at most {} attempts at once",
                limits::ATTEMPTS_PER_HEARTBEAT_MAX
            ),
        ));
    }
    line(&request.reason, "reason", limits::REASON_BYTES_MAX)
}

pub fn report_request(request: &ReportRequest) -> Result<(), WireError> {
    if request.reports.len() > limits::REPORTS_PER_REQUEST_MAX {
        return Err(invalid(
            "reports",
            format!(
                "at most {} reports per request",
                limits::REPORTS_PER_REQUEST_MAX
            ),
        ));
    }
    for (index, report) in request.reports.iter().enumerate() {
        let field = format!("reports[{index}]");
        if matches!(
            report.outcome,
            Outcome::Lost { .. } | Outcome::Inconclusive { .. }
        ) {
            return Err(invalid(
                format!("{field}.outcome"),
                "\"lost\" and \"inconclusive\" are set by the coordinator, not reported",
            ));
        }
        if let Some(text) = outcome_text(&report.outcome) {
            message(
                text,
                &format!("{field}.outcome"),
                limits::OUTCOME_MESSAGE_BYTES_MAX,
            )?;
        }
        if report.outputs.len() > limits::OUTPUT_FILES_MAX as usize {
            return Err(invalid(format!("{field}.outputs"), "too many output files"));
        }
        let mut paths = BTreeSet::new();
        for (output_index, output) in report.outputs.iter().enumerate() {
            let output_field = format!("{field}.outputs[{output_index}].path");
            relative_path(&output.path, &output_field)?;
            if !paths.insert(output.path.as_str()) {
                return Err(invalid(output_field, "appears twice"));
            }
        }
        no_file_is_a_directory(&paths, &format!("{field}.outputs"))?;
        if let Some(digest) = &report.sealed_digest {
            hex_digits(digest, &format!("{field}.sealed_digest"), 64)?;
        }
        if let Some(ran_on) = &report.ran_on {
            line(ran_on, &format!("{field}.ran_on"), RAN_ON_BYTES_MAX)?;
        }
    }
    Ok(())
}

/// A peer listener's address: an IP address and a port, as peers dial it without a lookup.
fn peer_address(address: &str, field: &str) -> Result<(), WireError> {
    let parsed = (address.len() <= crate::peer::PEER_ADDRESS_BYTES_MAX)
        .then(|| address.parse::<std::net::SocketAddr>().ok())
        .flatten();
    match parsed {
        Some(socket) if !socket.ip().is_unspecified() && socket.port() != 0 => Ok(()),
        _ => Err(invalid(
            field,
            "give the address peers reach the node's listener at as ip:port, e.g. \
             192.168.1.20:7412 (not 0.0.0.0, not port 0)",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::BlobHash;
    use crate::job::{InputFile, MountFile};

    fn job() -> JobSubmission {
        JobSubmission {
            name: "sweep".to_owned(),
            module: BlobHash::of(b"module"),
            env: BTreeMap::new(),
            mounts: vec![],
            requirements: Requirements::default(),
            limits: Limits::default(),
            max_attempts: 3,
            replicas: 1,
            deterministic: None,
            verify: None,
            validator: None,
            success_exit_codes: Vec::new(),
            checkpoint: None,
            on_failure: None,
            tasks: vec![TaskSpec::default()],
            private: None,
        }
    }

    #[test]
    fn a_failure_policy_is_bounded_unambiguous_and_for_unchecked_jobs_only() {
        let policy = crate::OnFailure {
            retries: 3,
            unless_exit: vec![2],
            abort_on: vec![42],
            memory_escalate: 2,
        };
        let mut ok = job();
        ok.on_failure = Some(Box::new(policy.clone()));
        assert_eq!(job_submission(&ok), Ok(()));
        let bad = |change: &dyn Fn(&mut crate::OnFailure, &mut JobSubmission)| {
            let mut bad = ok.clone();
            let mut policy = policy.clone();
            change(&mut policy, &mut bad);
            bad.on_failure = Some(Box::new(policy));
            problem(&bad)
        };
        let message = bad(&|p, _| p.retries = crate::failure::RETRIES_MAX + 1);
        assert!(message.starts_with("on_failure.retries"), "{message}");
        let message = bad(&|p, _| p.memory_escalate = 17);
        assert!(
            message.starts_with("on_failure.memory_escalate"),
            "{message}"
        );
        let message = bad(&|p, _| p.retries = 0);
        assert!(message.contains("give retries too"), "{message}");
        let message = bad(&|p, _| p.abort_on = vec![0]);
        assert!(message.starts_with("on_failure.abort_on"), "{message}");
        let message = bad(&|p, _| p.unless_exit = (1..=33).collect());
        assert!(message.starts_with("on_failure.unless_exit"), "{message}");
        let message = bad(&|_, job| job.success_exit_codes = vec![42]);
        assert!(message.contains("already means success"), "{message}");
        let message = bad(&|_, job| {
            job.deterministic = Some(crate::Deterministic { seed: 1 });
            job.verify = Some(crate::VerifyMode::Replicate);
        });
        assert!(message.contains("results are checked"), "{message}");
    }

    #[test]
    fn checkpoints_need_a_keepable_interval_and_a_free_exit_code() {
        let spec = crate::CheckpointSpec {
            interval_ms: 60_000,
            exit_code: 85,
            bytes_max: limits::MIB,
        };
        let mut ok = job();
        ok.checkpoint = Some(spec);
        assert_eq!(job_submission(&ok), Ok(()));
        let bad = |change: &dyn Fn(&mut JobSubmission)| {
            let mut bad = ok.clone();
            change(&mut bad);
            problem(&bad)
        };
        let with = |spec: crate::CheckpointSpec| {
            move |job: &mut JobSubmission| job.checkpoint = Some(spec)
        };
        for interval_ms in [0, 999, 24 * 3_600_000 + 1] {
            let message = bad(&with(crate::CheckpointSpec {
                interval_ms,
                ..spec
            }));
            assert!(message.starts_with("checkpoint.interval"), "{message}");
        }
        for exit_code in [0, 256, -1] {
            let message = bad(&with(crate::CheckpointSpec { exit_code, ..spec }));
            assert!(message.starts_with("checkpoint.exit_code"), "{message}");
        }
        let message = bad(&|job: &mut JobSubmission| job.success_exit_codes = vec![85]);
        assert!(message.starts_with("checkpoint.exit_code"), "{message}");
        for bytes_max in [0, limits::GIB + 1] {
            let message = bad(&with(crate::CheckpointSpec { bytes_max, ..spec }));
            assert!(message.starts_with("checkpoint.size_max"), "{message}");
        }
        // A job whose results are checked checkpoints too: the pool keeps checks apart.
        let mut checked = ok.clone();
        checked.verify = Some(crate::VerifyMode::Adaptive);
        checked.deterministic = Some(crate::Deterministic { seed: 1 });
        assert_eq!(job_submission(&checked), Ok(()));
    }

    fn problem(job: &JobSubmission) -> String {
        job_submission(job).unwrap_err().to_string()
    }

    #[test]
    fn a_peer_address_is_an_ip_and_a_port_peers_can_dial() {
        let heartbeat_with = |address: &str| HeartbeatRequest {
            capabilities: Some(Capabilities {
                peer_address: Some(address.to_owned()),
                ..Capabilities::default()
            }),
            ..HeartbeatRequest::default()
        };
        for good in ["192.168.1.20:7412", "127.0.0.1:1", "[::1]:7412"] {
            assert!(heartbeat(&heartbeat_with(good)).is_ok(), "{good}");
        }
        let long = format!("{}:1", "1".repeat(300));
        for bad in [
            "0.0.0.0:7412",
            "[::]:7412",
            "127.0.0.1:0",
            "example.com:7412",
            "7412",
            &long,
        ] {
            let refused = heartbeat(&heartbeat_with(bad)).unwrap_err().to_string();
            assert!(refused.contains("ip:port"), "{bad}: {refused}");
        }
    }

    #[test]
    fn a_plain_job_is_valid() {
        assert_eq!(job_submission(&job()), Ok(()));
    }

    #[test]
    fn success_exit_codes_are_few_and_real_exit_codes() {
        let mut sat = job();
        sat.success_exit_codes = vec![10, 20];
        assert_eq!(job_submission(&sat), Ok(()));
        for codes in [vec![0], vec![256], vec![-1], (1..=33).collect()] {
            let mut bad = job();
            bad.success_exit_codes = codes;
            assert!(problem(&bad).starts_with("success_exit_codes"));
        }
        let exit = |code| crate::Outcome::ExitCode { code };
        assert!(JobSubmission::succeeded(&exit(10), &sat.success_exit_codes));
        assert!(!JobSubmission::succeeded(
            &exit(11),
            &sat.success_exit_codes
        ));
        assert!(JobSubmission::succeeded(&crate::Outcome::Succeeded, &[]));
        assert!(!JobSubmission::succeeded(&crate::Outcome::OutOfFuel, &[10]));
    }

    #[test]
    fn a_job_without_tasks_or_name_is_refused() {
        let mut no_tasks = job();
        no_tasks.tasks.clear();
        assert!(problem(&no_tasks).starts_with("tasks:"));
        let mut no_name = job();
        no_name.name.clear();
        assert!(problem(&no_name).starts_with("name:"));
    }

    #[test]
    fn input_names_that_climb_or_repeat_are_refused() {
        for name in ["..", "a/b", "", ".", "x\0y"] {
            let mut bad = job();
            bad.tasks[0].inputs = vec![InputFile {
                name: name.to_owned(),
                blob: BlobHash::of(b""),
            }];
            assert!(
                problem(&bad).starts_with("tasks[0].inputs[0].name"),
                "{name:?}"
            );
        }
        let mut twice = job();
        let input = InputFile {
            name: "a".to_owned(),
            blob: BlobHash::of(b""),
        };
        twice.tasks[0].inputs = vec![input.clone(), input];
        assert!(problem(&twice).contains("appears twice"));
    }

    #[test]
    fn mounts_may_not_shadow_sandbox_dirs_overlap_or_climb() {
        let mount = |path: &str, file: &str| Mount {
            guest_path: path.to_owned(),
            files: vec![MountFile {
                path: file.to_owned(),
                blob: BlobHash::of(b""),
            }],
        };
        for (path, file) in [
            ("/output", "a"),
            ("/input/x", "a"),
            ("share", "a"),
            ("/", "a"),
            ("/share", "../a"),
            ("/share", "/a"),
            ("/a/../b", "x"),
        ] {
            let mut bad = job();
            bad.mounts = vec![mount(path, file)];
            assert!(job_submission(&bad).is_err(), "{path} {file}");
        }
        let mut nested = job();
        nested.mounts = vec![mount("/share", "a"), mount("/share/deep", "b")];
        assert!(problem(&nested).contains("overlaps"));
        let mut file_and_dir = job();
        file_and_dir.mounts = vec![Mount {
            guest_path: "/share".to_owned(),
            files: vec![
                MountFile {
                    path: "a".to_owned(),
                    blob: BlobHash::of(b""),
                },
                MountFile {
                    path: "a/b".to_owned(),
                    blob: BlobHash::of(b""),
                },
            ],
        }];
        assert!(problem(&file_and_dir).contains("both a file and a directory"));
        let mut fine = job();
        fine.mounts = vec![mount("/share", "models/small.bin"), mount("/data", "x")];
        assert_eq!(job_submission(&fine), Ok(()));
    }

    #[test]
    fn limits_out_of_range_are_refused() {
        let mut zero_fuel = job();
        zero_fuel.limits.fuel_max = 0;
        assert!(problem(&zero_fuel).starts_with("limits.fuel_max"));
        let mut huge_memory = job();
        huge_memory.limits.memory_bytes_max = u64::MAX;
        assert!(problem(&huge_memory).starts_with("limits.memory_bytes_max"));
        let mut attempts = job();
        attempts.max_attempts = 0;
        assert!(problem(&attempts).starts_with("max_attempts"));
        let mut verified = job();
        verified.verify = Some(crate::VerifyMode::Replicate);
        assert!(problem(&verified).contains("deterministic"));
        verified.deterministic = Some(crate::Deterministic { seed: 1 });
        assert_eq!(job_submission(&verified), Ok(()));
        verified.replicas = 2;
        assert!(problem(&verified).contains("remove `replicas`"));
        let mut replicas = job();
        replicas.replicas = 0;
        assert!(problem(&replicas).starts_with("replicas"));
        replicas.replicas = replicas.max_attempts + 1;
        assert!(problem(&replicas).starts_with("replicas"));
        replicas.replicas = limits::REPLICAS_MAX + 1;
        replicas.max_attempts = limits::ATTEMPTS_MAX;
        assert!(problem(&replicas).starts_with("replicas"));
    }

    #[test]
    fn env_and_labels_are_checked() {
        let mut bad_env = job();
        bad_env.env.insert("A=B".to_owned(), "x".to_owned());
        assert!(problem(&bad_env).starts_with("env."));
        let mut bad_label = job();
        bad_label
            .requirements
            .labels
            .insert("region".to_owned(), "eu west".to_owned());
        assert!(problem(&bad_label).starts_with("requirements.labels.region"));
    }

    fn heartbeat_paused(reason: &str) -> HeartbeatRequest {
        HeartbeatRequest {
            running: vec![],
            slots_free: 1,
            activity: NodeActivity::Paused {
                reason: reason.to_owned(),
            },
            capabilities: None,
            forgotten: Vec::new(),
            copied: Vec::new(),
            kept: Vec::new(),
            dropped: Vec::new(),
        }
    }

    fn report(outcome: Outcome, output_path: &str) -> ReportRequest {
        ReportRequest {
            reports: vec![crate::node::AttemptReport {
                attempt_id: crate::ids::AttemptId(1),
                outcome,
                usage: crate::node::Usage::default(),
                stdout: None,
                stderr: None,
                ran_on: None,
                outputs: vec![crate::node::OutputFile {
                    path: output_path.to_owned(),
                    hash: BlobHash::of(b""),
                    size_bytes: 0,
                }],
                sealed_digest: None,
            }],
        }
    }

    #[test]
    fn pause_reasons_are_one_bounded_line() {
        assert_eq!(heartbeat(&heartbeat_paused("on battery at 41 %")), Ok(()));
        let long = "x".repeat(limits::REASON_BYTES_MAX + 1);
        let escapes = "\u{1b}]0;owned\u{7}\u{1b}[2J";
        for reason in [long.as_str(), escapes, "two\nlines"] {
            let refused = heartbeat(&heartbeat_paused(reason)).unwrap_err();
            assert!(
                refused.to_string().starts_with("activity.reason"),
                "{refused}"
            );
        }
    }

    #[test]
    fn release_reasons_are_one_bounded_line() {
        let release = |reason: &str| ReleaseRequest {
            attempts: vec![],
            reason: reason.to_owned(),
        };
        assert_eq!(release_request(&release("shutting down")), Ok(()));
        assert!(release_request(&release("\u{1b}[31mred")).is_err());
        let long = "x".repeat(limits::REASON_BYTES_MAX + 1);
        assert!(release_request(&release(&long)).is_err());
    }

    #[test]
    fn outcome_messages_are_bounded_but_may_span_lines() {
        let trap = |message: String| Outcome::Trap { message };
        let backtrace = "wasm trap: unreachable\n  0: func[3]\n  1: _start".to_owned();
        assert_eq!(report_request(&report(trap(backtrace), "out.txt")), Ok(()));
        let huge = "\u{1b}[2J".repeat(20_000);
        let refused = report_request(&report(trap(huge.clone()), "out.txt")).unwrap_err();
        assert!(
            refused.to_string().starts_with("reports[0].outcome"),
            "{refused}"
        );
        let node_error = Outcome::NodeError { message: huge };
        assert!(report_request(&report(node_error, "out.txt")).is_err());
    }

    #[test]
    fn fitted_outcomes_and_reasons_pass_their_checks() {
        let mut trap = Outcome::Trap {
            message: "é".repeat(limits::OUTCOME_MESSAGE_BYTES_MAX),
        };
        fit_outcome(&mut trap);
        assert_eq!(report_request(&report(trap.clone(), "a")), Ok(()));
        assert!(trap.to_string().ends_with('…'));
        let reason = fit_reason(&"\u{1b}]0;x\u{7}".repeat(1000));
        assert!(reason.len() <= limits::REASON_BYTES_MAX);
        assert!(reason.starts_with("\\u{1b}]0;x\\u{7}"), "{reason}");
        assert_eq!(heartbeat(&heartbeat_paused(&reason)), Ok(()));
        assert_eq!(fit_reason("on battery"), "on battery");
    }

    #[test]
    fn output_names_with_control_characters_are_refused() {
        for path in ["a\u{1b}[2J.txt", "dir/\u{9b}31m", "tab\there"] {
            let refused = report_request(&report(Outcome::Succeeded, path)).unwrap_err();
            assert!(
                refused
                    .to_string()
                    .starts_with("reports[0].outputs[0].path"),
                "{refused}"
            );
        }
        assert_eq!(
            report_request(&report(Outcome::Succeeded, "frames/ünïcode 1.png")),
            Ok(())
        );
    }

    #[test]
    fn node_names_versions_and_platforms_hold_no_control_characters() {
        let request = |name: &str, version: &str, os: &str| RegisterRequest {
            join_token: String::new(),
            public_key: String::new(),
            signature: String::new(),
            nonce: String::new(),
            name: name.to_owned(),
            capabilities: Capabilities {
                os: os.to_owned(),
                arch: "x86_64".to_owned(),
                ..Capabilities::default()
            },
            labels: BTreeMap::new(),
            slots: 1,
            agent_version: version.to_owned(),
        };
        assert_eq!(registration(&request("laptop", "0.1.0", "linux")), Ok(()));
        for (bad, field) in [
            (request("\u{1b}[2Jlaptop", "0.1.0", "linux"), "name"),
            (request("laptop", "0.1\u{1b}[0m", "linux"), "agent_version"),
            (request("laptop", "0.1.0", "li\u{7}nux"), "capabilities.os"),
            (request("laptop", &"9".repeat(65), "linux"), "agent_version"),
            (request(&"n".repeat(256), "0.1.0", "linux"), "name"),
            (
                RegisterRequest {
                    capabilities: Capabilities {
                        module_bytes_max: limits::MODULE_BYTES_MAX + 1,
                        ..request("laptop", "0.1.0", "linux").capabilities
                    },
                    ..request("laptop", "0.1.0", "linux")
                },
                "capabilities.module_bytes_max",
            ),
            (
                RegisterRequest {
                    capabilities: Capabilities {
                        wasi_interfaces: vec!["wasi:io/streams".to_owned(); 65],
                        ..Capabilities::default()
                    },
                    ..request("laptop", "0.1.0", "linux")
                },
                "capabilities.wasi_interfaces",
            ),
            (
                RegisterRequest {
                    capabilities: Capabilities {
                        wasi_interfaces: vec!["wasi:io/\u{1b}[2J".to_owned()],
                        ..Capabilities::default()
                    },
                    ..request("laptop", "0.1.0", "linux")
                },
                "capabilities.wasi_interfaces",
            ),
            (
                RegisterRequest {
                    capabilities: Capabilities {
                        wasm_features: vec!["simd".to_owned(); 33],
                        ..Capabilities::default()
                    },
                    ..request("laptop", "0.1.0", "linux")
                },
                "capabilities.wasm_features",
            ),
        ] {
            let refused = registration(&bad).unwrap_err().to_string();
            assert!(refused.starts_with(field), "{refused}");
        }
    }
}

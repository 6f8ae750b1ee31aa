//! The TOML job spec and the quick forms (`--tasks N`, `--inputs DIR`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use wire::limits::default;
use wire::{CheckpointSpec, Deterministic, Limits, Requirements};

use crate::quantity::{parse_bytes, parse_duration_ms};
use crate::{JobPlan, MountPlan, ScriptPlan, SpecError, TaskPlan, ValidatorPlan};

/// A job spec file, or one `[[stages]]` table of a pipeline spec: the same fields, read by the
/// same code, so a stage is written as a job is. The stage-only keys (`each`, `all`,
/// `partition`, `args`) are refused in a job file by [`parse`] and checked in a stage by
/// `crate::pipeline`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SpecFile {
    pub(crate) name: Option<String>,
    pub(crate) module: Option<String>,
    /// A script run under its language's runtime instead of a module: `analyze.py`.
    pub(crate) program: Option<String>,
    /// With a program: a directory of pure-Python packages, importable by the script.
    packages: Option<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    requirements: RequirementsFile,
    #[serde(default)]
    limits: LimitsFile,
    max_attempts: Option<u32>,
    replicas: Option<u32>,
    /// `federate = false`: no task leaves this pool for one it federates with.
    federate: Option<bool>,
    deterministic: Option<DeterministicFile>,
    verify: Option<wire::VerifyMode>,
    validator: Option<ValidatorFile>,
    #[serde(default)]
    success_exit_codes: Vec<i32>,
    checkpoint: Option<CheckpointFile>,
    /// `private = true`, or `[private]` naming the nodes trusted with the data.
    private: Option<PrivateFile>,
    /// Attempts after the program failed (see `wire::OnFailure`).
    retries: Option<u32>,
    unless_exit: Option<Vec<i32>>,
    abort_on: Option<Vec<i32>>,
    memory_escalate: Option<u32>,
    #[serde(default)]
    mounts: Vec<MountFile>,
    #[serde(default)]
    pub(crate) tasks: Vec<TaskFile>,
    pub(crate) sweep: Option<SweepFile>,
    pub(crate) per_input: Option<PerInputFile>,
    /// Stage only: one task per output file of the named earlier stage.
    pub(crate) each: Option<String>,
    /// Stage only: one task given every output file of the named earlier stage.
    pub(crate) all: Option<String>,
    /// Stage only: one task per part of the named earlier stage's outputs.
    pub(crate) partition: Option<PartitionFile>,
    /// Stage only, with `each`, `all` or `partition`: the template task's args.
    pub(crate) args: Option<Vec<String>>,
}

/// `private = true`, or `private = { nodes = ["n-…"], labels = { jurisdiction = "de" } }`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum PrivateFile {
    Flag(bool),
    Trust(PrivateTrustFile),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PrivateTrustFile {
    #[serde(default)]
    nodes: Vec<wire::NodeId>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    /// Seal the module too.
    #[serde(default)]
    module: bool,
}

fn private_of(file: Option<PrivateFile>) -> Option<crate::PrivatePlan> {
    match file? {
        PrivateFile::Flag(false) => None,
        PrivateFile::Flag(true) => Some(crate::PrivatePlan::default()),
        PrivateFile::Trust(trust) => Some(crate::PrivatePlan {
            nodes: trust.nodes,
            labels: trust.labels,
            module: trust.module,
        }),
    }
}

/// `partition = { stage = "map", parts = 8 }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PartitionFile {
    pub(crate) stage: String,
    pub(crate) parts: u32,
}

/// `validator = { module = "compare.wasm", args = [...] }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ValidatorFile {
    module: String,
    #[serde(default)]
    args: Vec<String>,
}

/// `checkpoint = { interval = "5m", exit_code = 85, size_max = "64MiB" }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckpointFile {
    interval: Option<Quantity>,
    exit_code: Option<i32>,
    size_max: Option<Quantity>,
}

fn checkpoint_of(file: &Option<CheckpointFile>) -> Result<Option<CheckpointSpec>, SpecError> {
    let Some(file) = file else {
        return Ok(None);
    };
    if file.interval.is_none() {
        return Err(invalid(
            "checkpoint.interval",
            "say how often tasks checkpoint, e.g. interval = \"5m\"",
        ));
    }
    Ok(Some(CheckpointSpec {
        interval_ms: ms_of(&file.interval, "checkpoint.interval", 0)?,
        exit_code: file
            .exit_code
            .unwrap_or(wire::checkpoint::DEFAULT_EXIT_CODE),
        bytes_max: bytes_of(
            &file.size_max,
            "checkpoint.size_max",
            wire::checkpoint::DEFAULT_BYTES_MAX,
        )?,
    }))
}

/// A number, or text with a unit.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Quantity {
    Number(u64),
    Text(String),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RequirementsFile {
    memory: Option<Quantity>,
    cores: Option<u32>,
    arch: Option<String>,
    os: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    /// `browser` or `native`: only nodes of that runtime.
    runtime: Option<wire::NodeRuntime>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsFile {
    memory: Option<Quantity>,
    fuel: Option<u64>,
    deadline: Option<Quantity>,
    output: Option<Quantity>,
    output_files: Option<u32>,
    stdout: Option<Quantity>,
    stderr: Option<Quantity>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeterministicFile {
    seed: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MountFile {
    guest_path: String,
    dir: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TaskFile {
    #[serde(default)]
    args: Vec<String>,
    stdin: Option<String>,
    #[serde(default)]
    inputs: Vec<InputFile>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum InputFile {
    /// A path; the file keeps its name in `/input`.
    Path(String),
    Named {
        name: String,
        path: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SweepFile {
    count: u32,
    #[serde(default)]
    args: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PerInputFile {
    dir: String,
    #[serde(default)]
    args: Vec<String>,
}

pub(crate) fn invalid(field: &str, problem: impl Into<String>) -> SpecError {
    SpecError::Invalid {
        field: field.to_owned(),
        problem: problem.into(),
    }
}

fn bytes_of(quantity: &Option<Quantity>, field: &str, default: u64) -> Result<u64, SpecError> {
    match quantity {
        None => Ok(default),
        Some(Quantity::Number(value)) => Ok(*value),
        Some(Quantity::Text(text)) => parse_bytes(text, field),
    }
}

fn ms_of(quantity: &Option<Quantity>, field: &str, default: u64) -> Result<u64, SpecError> {
    match quantity {
        None => Ok(default),
        Some(Quantity::Number(value)) => Ok(*value),
        Some(Quantity::Text(text)) => parse_duration_ms(text, field),
    }
}

/// Reads a TOML job spec; relative paths in it are taken from `base_dir`. A pipeline spec (one
/// with `[[stages]]`, see [`crate::is_pipeline`]) is read by [`crate::parse_pipeline`].
pub fn parse(text: &str, base_dir: &Path) -> Result<JobPlan, SpecError> {
    if crate::is_pipeline(text) {
        return Err(invalid(
            "stages",
            "this is a pipeline spec ([[stages]]), not a job spec; submit it as a pipeline",
        ));
    }
    let mut file: SpecFile = toml::from_str(text).map_err(syntax)?;
    stage_keys_refused(&file)?;
    let name = file.name.take();
    job_of(file, base_dir, name, false)
}

pub(crate) fn syntax(error: toml::de::Error) -> SpecError {
    SpecError::Syntax(error.to_string())
}

/// A job file has none of the keys that only a pipeline's stage takes.
fn stage_keys_refused(file: &SpecFile) -> Result<(), SpecError> {
    let reads = [
        ("each", file.each.is_some()),
        ("all", file.all.is_some()),
        ("partition", file.partition.is_some()),
    ];
    if let Some((key, _)) = reads.iter().find(|(_, given)| *given) {
        return Err(invalid(
            key,
            "only a pipeline's stage takes its tasks from another stage; write the job as a \
             [[stages]] table of a pipeline spec, or give its tasks",
        ));
    }
    if file.args.is_some() {
        return Err(invalid(
            "args",
            "a job gives its tasks' args in [[tasks]], [sweep] or [per_input]; top-level args \
             are only for a pipeline stage that reads another (each, all or partition)",
        ));
    }
    Ok(())
}

/// The job a spec file or a stage table describes, named `name` (by default after its module).
/// With `template`, its one task is the template of a stage that reads another: the `args`
/// given, no stdin, no inputs; otherwise its tasks are the file's own.
pub(crate) fn job_of(
    file: SpecFile,
    base_dir: &Path,
    name: Option<String>,
    template: bool,
) -> Result<JobPlan, SpecError> {
    let resolve = |path: &str| base_dir.join(path);
    let (module, script) = program_of(&file, base_dir)?;
    let tasks = if template {
        vec![TaskPlan {
            args: file.args.clone().unwrap_or_default(),
            ..TaskPlan::default()
        }]
    } else {
        tasks_of(&file, base_dir)?
    };
    let name = name.unwrap_or_else(|| default_name(&module));
    let limits = limits_of(&file.limits)?;
    let on_failure = on_failure_of(&file);
    let requirements = Requirements {
        memory_bytes_min: bytes_of(&file.requirements.memory, "requirements.memory", 0)?,
        cores_min: file.requirements.cores.unwrap_or(0),
        arch: file.requirements.arch,
        os: file.requirements.os,
        labels: file.requirements.labels,
        runtime: file.requirements.runtime,
        home_pool: file.federate == Some(false),
    };
    let plan = JobPlan {
        name,
        module,
        env: file.env,
        mounts: file
            .mounts
            .iter()
            .map(|mount| MountPlan {
                guest_path: mount.guest_path.clone(),
                dir: resolve(&mount.dir),
            })
            .collect(),
        requirements,
        limits,
        max_attempts: file.max_attempts.unwrap_or(default::MAX_ATTEMPTS),
        replicas: file.replicas.unwrap_or(default::REPLICAS),
        deterministic: file.deterministic.map(|d| Deterministic { seed: d.seed }),
        verify: file.verify,
        validator: file.validator.map(|validator| ValidatorPlan {
            module: resolve(&validator.module),
            args: validator.args,
        }),
        success_exit_codes: file.success_exit_codes,
        checkpoint: checkpoint_of(&file.checkpoint)?,
        on_failure,
        private: private_of(file.private),
        script,
        tasks,
    };
    check(&plan)?;
    Ok(plan)
}

/// The failure policy the spec's keys give, or none when it names none of them.
fn on_failure_of(file: &SpecFile) -> Option<Box<wire::OnFailure>> {
    let named = file.retries.is_some()
        || file.unless_exit.is_some()
        || file.abort_on.is_some()
        || file.memory_escalate.is_some();
    named.then(|| {
        Box::new(wire::OnFailure {
            retries: file.retries.unwrap_or(0),
            unless_exit: file.unless_exit.clone().unwrap_or_default(),
            abort_on: file.abort_on.clone().unwrap_or_default(),
            memory_escalate: file.memory_escalate.unwrap_or(0),
        })
    })
}

/// What the job runs: a module, or a script (its path stands as the module until the caller
/// puts its runtime there; see [`ScriptPlan`]).
fn program_of(
    file: &SpecFile,
    base_dir: &Path,
) -> Result<(PathBuf, Option<ScriptPlan>), SpecError> {
    match (&file.module, &file.program) {
        (Some(module), None) if file.packages.is_none() => Ok((base_dir.join(module), None)),
        (Some(_), None) => Err(invalid(
            "packages",
            "packages go with a Python `program`, not a module",
        )),
        (None, Some(program)) if program.ends_with(".py") => {
            let packages = file.packages.as_deref().map(|dir| base_dir.join(dir));
            Ok((base_dir.join(program), Some(ScriptPlan { packages })))
        }
        (None, Some(program)) => Err(invalid(
            "program",
            format!("{program:?} is not a Python script (.py), the one kind of program there is"),
        )),
        _ => Err(invalid(
            "module",
            "give the job either a `module` (a .wasm) or a `program` (a .py script)",
        )),
    }
}

/// The tasks a spec file gives, in whichever of its three ways.
fn tasks_of(file: &SpecFile, base_dir: &Path) -> Result<Vec<TaskPlan>, SpecError> {
    let sources = usize::from(!file.tasks.is_empty())
        + usize::from(file.sweep.is_some())
        + usize::from(file.per_input.is_some());
    if sources != 1 {
        return Err(invalid(
            "tasks",
            "give the tasks in exactly one way: [[tasks]] entries, a [sweep] or a [per_input]",
        ));
    }
    let resolve = |path: &str| base_dir.join(path);
    if let Some(sweep) = &file.sweep {
        return sweep_tasks(sweep.count, &sweep.args);
    }
    if let Some(per_input) = &file.per_input {
        return per_input_tasks(&resolve(&per_input.dir), &per_input.args);
    }
    Ok(file
        .tasks
        .iter()
        .map(|task| TaskPlan {
            args: task.args.clone(),
            stdin: task.stdin.as_deref().map(resolve),
            inputs: task
                .inputs
                .iter()
                .map(|input| match input {
                    InputFile::Path(path) => (file_name_of(path), resolve(path)),
                    InputFile::Named { name, path } => (name.clone(), resolve(path)),
                })
                .collect(),
        })
        .collect())
}

/// The limits a spec file sets, with the defaults for those it leaves out.
fn limits_of(limits: &LimitsFile) -> Result<Limits, SpecError> {
    Ok(Limits {
        memory_bytes_max: bytes_of(&limits.memory, "limits.memory", default::MEMORY_BYTES_MAX)?,
        fuel_max: limits.fuel.unwrap_or(default::FUEL_MAX),
        deadline_ms: ms_of(&limits.deadline, "limits.deadline", default::DEADLINE_MS)?,
        output_bytes_max: bytes_of(&limits.output, "limits.output", default::OUTPUT_BYTES_MAX)?,
        output_files_max: limits.output_files.unwrap_or(default::OUTPUT_FILES_MAX),
        stdout_bytes_max: bytes_of(&limits.stdout, "limits.stdout", default::STDOUT_BYTES_MAX)?,
        stderr_bytes_max: bytes_of(&limits.stderr, "limits.stderr", default::STDERR_BYTES_MAX)?,
    })
}

pub(crate) fn default_name(module: &Path) -> String {
    module
        .file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .unwrap_or_else(|| "job".to_owned())
}

fn file_name_of(path: &str) -> String {
    Path::new(path)
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn expand(template: &[String], index: u32, name: &str) -> Vec<String> {
    template
        .iter()
        .map(|arg| {
            arg.replace("{i}", &index.to_string())
                .replace("{name}", name)
        })
        .collect()
}

fn sweep_tasks(count: u32, args: &[String]) -> Result<Vec<TaskPlan>, SpecError> {
    if count == 0 || count as usize > wire::limits::TASKS_PER_JOB_MAX {
        return Err(invalid(
            "sweep.count",
            format!("give 1 to {} tasks", wire::limits::TASKS_PER_JOB_MAX),
        ));
    }
    Ok((0..count)
        .map(|index| TaskPlan {
            args: expand(args, index, ""),
            ..TaskPlan::default()
        })
        .collect())
}

fn per_input_tasks(dir: &Path, args: &[String]) -> Result<Vec<TaskPlan>, SpecError> {
    let file_error = |problem: String| SpecError::File {
        path: dir.display().to_string(),
        problem,
    };
    let entries = std::fs::read_dir(dir).map_err(|error| file_error(error.to_string()))?;
    let mut files: Vec<(String, PathBuf)> = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|error| file_error(error.to_string()))?;
        if entry
            .file_type()
            .map_err(|error| file_error(error.to_string()))?
            .is_file()
        {
            let name = entry.file_name().into_string().map_err(|name| {
                file_error(format!("the file name {name:?} is not UTF-8; rename it"))
            })?;
            files.push((name, entry.path()));
        }
    }
    if files.is_empty() {
        return Err(file_error(
            "holds no files: one task is made per file".to_owned(),
        ));
    }
    files.sort();
    Ok(files
        .into_iter()
        .enumerate()
        .map(|(index, (name, path))| TaskPlan {
            args: expand(args, index as u32, &name),
            stdin: None,
            inputs: vec![(name, path)],
        })
        .collect())
}

/// `crowdcloud submit MODULE --tasks N -- ARGS…`: N tasks with `{i}` in the args replaced by the
/// task index.
pub fn sweep(module: PathBuf, count: u32, args: &[String]) -> Result<JobPlan, SpecError> {
    plain(module, sweep_tasks(count, args)?)
}

/// `crowdcloud submit MODULE --inputs DIR -- ARGS…`: one task per file of DIR, the file in its
/// `/input`; `{name}` in the args is the file's name, `{i}` the task index.
pub fn per_input(module: PathBuf, dir: &Path, args: &[String]) -> Result<JobPlan, SpecError> {
    plain(module, per_input_tasks(dir, args)?)
}

/// A job of `tasks` running `module`, named after it, everything else at its default.
fn plain(module: PathBuf, tasks: Vec<TaskPlan>) -> Result<JobPlan, SpecError> {
    let plan = JobPlan {
        name: default_name(&module),
        module,
        env: BTreeMap::new(),
        mounts: Vec::new(),
        requirements: Requirements::default(),
        limits: Limits::default(),
        max_attempts: default::MAX_ATTEMPTS,
        replicas: default::REPLICAS,
        deterministic: None,
        verify: None,
        validator: None,
        success_exit_codes: Vec::new(),
        checkpoint: None,
        on_failure: None,
        private: None,
        script: None,
        tasks,
    };
    check(&plan)?;
    Ok(plan)
}

/// Runs the coordinator's own checks on the plan (with stand-in hashes for the files), so a
/// spec that would be refused is refused before anything is uploaded.
pub fn check(plan: &JobPlan) -> Result<(), SpecError> {
    wire::validate::job_submission(&stand_in_submission(plan)).map_err(from_wire)
}

/// The wire error as a spec error, its field kept.
pub(crate) fn from_wire(error: wire::WireError) -> SpecError {
    match error {
        wire::WireError::Invalid { field, problem } => SpecError::Invalid { field, problem },
        other => SpecError::Syntax(other.to_string()),
    }
}

/// The submission the plan will become, with a stand-in hash for every file.
pub(crate) fn stand_in_submission(plan: &JobPlan) -> wire::JobSubmission {
    let stand_in = wire::BlobHash([0; 32]);
    wire::JobSubmission {
        mounts: plan
            .mounts
            .iter()
            .map(|mount| wire::Mount {
                guest_path: mount.guest_path.clone(),
                files: vec![wire::MountFile {
                    path: "stand-in".to_owned(),
                    blob: stand_in,
                }],
            })
            .collect(),
        validator: plan.validator.as_ref().map(|validator| wire::Validator {
            module: stand_in,
            args: validator.args.clone(),
        }),
        private: plan.private.as_ref().map(|private| {
            Box::new(wire::PrivateJob {
                module_sealed: private.module,
                requester_key: "0".repeat(64),
                requester_wrap: wire::WrappedKey("0".repeat(wire::private::WRAPPED_KEY_HEX_DIGITS)),
                manifest: wire::private::ManifestRef::Blob(stand_in),
                keys: BTreeMap::from([(
                    wire::NodeId(1),
                    wire::WrappedKey("0".repeat(wire::private::WRAPPED_KEY_HEX_DIGITS)),
                )]),
            })
        }),
        tasks: plan
            .tasks
            .iter()
            .map(|task| wire::TaskSpec {
                args: task.args.clone(),
                stdin: task.stdin.as_ref().map(|_| stand_in),
                inputs: task
                    .inputs
                    .iter()
                    .map(|(name, _)| wire::InputFile {
                        name: name.clone(),
                        blob: stand_in,
                    })
                    .collect(),
            })
            .collect(),
        ..plan.bare_submission(stand_in)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_validator_lets_a_verified_job_go_without_deterministic_mode() {
        let spec = r#"
            module = "pi.wasm"
            verify = "replicate"
            validator = { module = "compare.wasm", args = ["--absolute", "0.01"] }
            [sweep]
            count = 2
        "#;
        let plan = parse(spec, Path::new("/jobs")).unwrap();
        let validator = plan.validator.unwrap();
        assert_eq!(validator.module, PathBuf::from("/jobs/compare.wasm"));
        assert_eq!(validator.args, ["--absolute", "0.01"]);
        let without = spec.replace("validator = ", "# ");
        let problem = parse(&without, Path::new("/jobs")).unwrap_err().to_string();
        assert!(problem.contains("validator"), "{problem}");
        let bad = spec.replace("args = [", "arguments = [");
        assert!(parse(&bad, Path::new("/jobs")).is_err());
    }

    #[test]
    fn a_job_may_ask_for_browser_tabs_or_agents_and_nothing_else() {
        let spec = |runtime: &str| {
            format!(
                "module = \"m.wasm\"\n[sweep]\ncount = 1\n[requirements]\nruntime = \"{runtime}\""
            )
        };
        let plan = parse(&spec("browser"), Path::new("/")).unwrap();
        assert_eq!(plan.requirements.runtime, Some(wire::NodeRuntime::Browser));
        let plan = parse(&spec("native"), Path::new("/")).unwrap();
        assert_eq!(plan.requirements.runtime, Some(wire::NodeRuntime::Native));
        let problem = parse(&spec("phone"), Path::new("/"))
            .unwrap_err()
            .to_string();
        assert!(
            problem.contains("browser") && problem.contains("native"),
            "{problem}"
        );
    }

    #[test]
    fn a_program_is_a_python_script_with_its_packages_and_never_beside_a_module() {
        let spec = "program = \"analyze.py\"\npackages = \"lib\"\n[sweep]\ncount = 1";
        let plan = parse(spec, Path::new("/jobs")).unwrap();
        assert_eq!(plan.module, PathBuf::from("/jobs/analyze.py"));
        let packages = plan.script.unwrap().packages;
        assert_eq!(packages, Some(PathBuf::from("/jobs/lib")));
        let problem = |text: &str| parse(text, Path::new("/")).unwrap_err().to_string();
        assert!(problem("program = \"a.rb\"\n[sweep]\ncount = 1").starts_with("program"));
        let both = "module = \"m.wasm\"\nprogram = \"a.py\"\n[sweep]\ncount = 1";
        assert!(problem(both).contains("either"));
        assert!(problem("[sweep]\ncount = 1").contains("either"));
        let stray = "module = \"m.wasm\"\npackages = \"lib\"\n[sweep]\ncount = 1";
        assert!(problem(stray).starts_with("packages"));
        let plain = parse("module = \"m.wasm\"\n[sweep]\ncount = 1", Path::new("/")).unwrap();
        assert_eq!(plain.script, None);
    }

    #[test]
    fn failure_keys_become_the_jobs_policy_and_are_checked() {
        let spec = "module = \"m.wasm\"\nretries = 3\nunless_exit = [2]\nabort_on = [42]\n\
                    memory_escalate = 2\n[sweep]\ncount = 1";
        let plan = parse(spec, Path::new("/jobs")).unwrap();
        let expected = wire::OnFailure {
            retries: 3,
            unless_exit: vec![2],
            abort_on: vec![42],
            memory_escalate: 2,
        };
        assert_eq!(plan.on_failure, Some(Box::new(expected)));
        let plain = parse("module = \"m.wasm\"\n[sweep]\ncount = 1", Path::new("/")).unwrap();
        assert_eq!(plain.on_failure, None);
        let problem = |text: &str| parse(text, Path::new("/")).unwrap_err().to_string();
        let alone = "module = \"m.wasm\"\nmemory_escalate = 2\n[sweep]\ncount = 1";
        assert!(problem(alone).contains("give retries too"));
        let many = "module = \"m.wasm\"\nretries = 11\n[sweep]\ncount = 1";
        assert!(problem(many).starts_with("on_failure.retries"));
    }

    #[test]
    fn checkpoints_are_read_with_units_and_checked() {
        let spec = "module = \"long.wasm\"\ncheckpoint = { interval = \"5m\", size_max = \"8MiB\" }\n[sweep]\ncount = 1";
        let plan = parse(spec, Path::new("/jobs")).unwrap();
        let checkpoint = plan.checkpoint.unwrap();
        assert_eq!(checkpoint.interval_ms, 300_000);
        assert_eq!(checkpoint.bytes_max, 8 << 20);
        assert_eq!(checkpoint.exit_code, wire::checkpoint::DEFAULT_EXIT_CODE);
        let too_often = spec.replace("5m", "10ms");
        let problem = parse(&too_often, Path::new("/jobs"))
            .unwrap_err()
            .to_string();
        assert!(problem.starts_with("checkpoint.interval"), "{problem}");
    }

    #[test]
    fn success_exit_codes_are_read_and_checked() {
        let spec = "module = \"sat.wasm\"\nsuccess_exit_codes = [10, 20]\n[sweep]\ncount = 1";
        let plan = parse(spec, Path::new("/jobs")).unwrap();
        assert_eq!(plan.success_exit_codes, [10, 20]);
        let bad = spec.replace("20]", "300]");
        let problem = parse(&bad, Path::new("/jobs")).unwrap_err().to_string();
        assert!(problem.contains("success_exit_codes"), "{problem}");
    }

    #[test]
    fn a_full_spec_parses_with_units_and_relative_paths() {
        let spec = r#"
            name = "count words"
            module = "wc.wasm"
            max_attempts = 5
            replicas = 2
            federate = false
            deterministic = { seed = 7 }
            [env]
            LANG = "C"
            [requirements]
            memory = "1GiB"
            cores = 2
            labels = { region = "eu" }
            [limits]
            memory = "128MiB"
            deadline = "90s"
            fuel = 1_000_000
            [[mounts]]
            guest_path = "/share"
            dir = "data"
            [[tasks]]
            args = ["-l"]
            stdin = "in.txt"
            inputs = ["texts/a.txt", { name = "b", path = "other/b.txt" }]
        "#;
        let plan = parse(spec, Path::new("/jobs")).unwrap();
        assert_eq!(plan.name, "count words");
        assert_eq!(plan.module, PathBuf::from("/jobs/wc.wasm"));
        assert_eq!(plan.limits.memory_bytes_max, 128 << 20);
        assert_eq!(plan.limits.deadline_ms, 90_000);
        assert_eq!(plan.limits.fuel_max, 1_000_000);
        assert_eq!(plan.limits.stdout_bytes_max, default::STDOUT_BYTES_MAX);
        assert_eq!(plan.requirements.memory_bytes_min, 1 << 30);
        assert_eq!(plan.requirements.labels["region"], "eu");
        assert!(
            plan.requirements.home_pool,
            "federate = false keeps it home"
        );
        assert_eq!(plan.deterministic, Some(Deterministic { seed: 7 }));
        assert_eq!((plan.max_attempts, plan.replicas), (5, 2));
        assert_eq!(plan.mounts[0].dir, PathBuf::from("/jobs/data"));
        let task = &plan.tasks[0];
        assert_eq!(task.stdin, Some(PathBuf::from("/jobs/in.txt")));
        assert_eq!(
            task.inputs,
            vec![
                ("a.txt".to_owned(), PathBuf::from("/jobs/texts/a.txt")),
                ("b".to_owned(), PathBuf::from("/jobs/other/b.txt")),
            ]
        );
    }

    #[test]
    fn a_sweep_expands_the_task_index() {
        let plan = parse(
            "module = \"m.wasm\"\n[sweep]\ncount = 3\nargs = [\"--seed\", \"s{i}\"]",
            Path::new("."),
        )
        .unwrap();
        assert_eq!(plan.name, "m");
        let args: Vec<_> = plan.tasks.iter().map(|t| t.args[1].as_str()).collect();
        assert_eq!(args, ["s0", "s1", "s2"]);
    }

    #[test]
    fn per_input_makes_one_task_per_file_in_name_order() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["b.txt", "a.txt"] {
            std::fs::write(dir.path().join(name), name).unwrap();
        }
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let plan = per_input(PathBuf::from("m.wasm"), dir.path(), &["{name}".to_owned()]).unwrap();
        assert_eq!(plan.tasks.len(), 2);
        assert_eq!(plan.tasks[0].args, ["a.txt"]);
        assert_eq!(plan.tasks[0].inputs[0].0, "a.txt");
    }

    #[test]
    fn bad_specs_name_what_is_wrong() {
        let problem = |text: &str| parse(text, Path::new(".")).unwrap_err().to_string();
        assert!(problem("module = \"m.wasm\"").contains("exactly one way"));
        assert!(problem("module = \"m.wasm\"\nbogus = 1\n[sweep]\ncount = 1").contains("bogus"));
        assert!(problem("modul = 3").contains("modul"));
        assert!(
            problem("module = \"m.wasm\"\n[limits]\nmemory = \"lots\"\n[sweep]\ncount = 1")
                .starts_with("limits.memory")
        );
        assert!(
            problem("module = \"m.wasm\"\n[limits]\nmemory = 0\n[sweep]\ncount = 1")
                .starts_with("limits.memory_bytes_max")
        );
        assert!(problem("module = \"m.wasm\"\n[[mounts]]\nguest_path = \"/output\"\ndir = \"d\"\n[sweep]\ncount = 1")
            .contains("reserved"));
        assert!(problem("module = \"m.wasm\"\n[sweep]\ncount = 0").starts_with("sweep.count"));
        assert!(
            problem("module = [").contains("line 1"),
            "{}",
            problem("module = [")
        );
    }
}

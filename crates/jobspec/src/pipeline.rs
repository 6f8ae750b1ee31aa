//! The TOML pipeline spec: a name and `[[stages]]` tables, each read as a job file is (see
//! `crate::spec`), plus the keys only a stage takes (`name`, `each`, `all`, `partition`,
//! `args`). The pipeline's rules — stage names, the order stages read each other in, the
//! partition bounds — are checked here with the stage that breaks them, before anything is
//! uploaded; `wire::validate::pipeline_submission` then runs on the whole plan as the
//! coordinator would.

use std::path::Path;

use serde::Deserialize;

use wire::StageInput;
use wire::limits::{
    JOB_NAME_BYTES_MAX, PARTITIONS_MAX, STAGE_NAME_BYTES_MAX, STAGES_PER_PIPELINE_MAX,
};

use crate::spec::{
    SpecFile, default_name, from_wire, invalid, job_of, stand_in_submission, syntax,
};
use crate::{PipelinePlan, SpecError, StagePlan};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PipelineFile {
    name: Option<String>,
    stages: Vec<SpecFile>,
    locality: Option<String>,
    copies: Option<u32>,
}

/// Whether `text` is a pipeline spec rather than a job spec: TOML with a top-level `stages`
/// key. Text that is not TOML is no pipeline ([`crate::parse`] then says what is wrong).
pub fn is_pipeline(text: &str) -> bool {
    toml::from_str::<toml::Table>(text).is_ok_and(|table| table.contains_key("stages"))
}

/// Reads a TOML pipeline spec; relative paths in it are taken from `base_dir`. Each stage's job
/// is named `"{pipeline name}/{stage name}"`.
pub fn parse_pipeline(text: &str, base_dir: &Path) -> Result<PipelinePlan, SpecError> {
    let table: toml::Table = toml::from_str(text).map_err(syntax)?;
    top_level_keys(&table)?;
    let file: PipelineFile = toml::from_str(text).map_err(syntax)?;
    let count = file.stages.len();
    if !(1..=STAGES_PER_PIPELINE_MAX).contains(&count) {
        return Err(invalid(
            "stages",
            format!(
                "{count} stages given; give 1 to {STAGES_PER_PIPELINE_MAX} [[stages]] tables \
                 (split a longer pipeline into several)"
            ),
        ));
    }
    let name = pipeline_name(&file)?;
    let (locality, copies) = locality_of(&file)?;
    let names: Vec<Option<String>> = file.stages.iter().map(|s| s.name.clone()).collect();
    let mut stages = Vec::with_capacity(count);
    for (index, stage) in file.stages.into_iter().enumerate() {
        stages.push(stage_of(stage, index, &name, &names, base_dir)?);
    }
    let plan = PipelinePlan {
        name,
        stages,
        locality,
        copies,
    };
    check_pipeline(&plan)?;
    Ok(plan)
}

/// Runs the coordinator's own checks on the pipeline (with stand-in hashes for the files), e.g.
/// again after a stage's script was replaced by its runtime.
pub fn check_pipeline(plan: &PipelinePlan) -> Result<(), SpecError> {
    let submission = wire::PipelineSubmission {
        name: plan.name.clone(),
        stages: plan
            .stages
            .iter()
            .map(|stage| wire::StageSubmission {
                name: stage.name.clone(),
                input: stage.input.clone(),
                job: stand_in_submission(&stage.job),
            })
            .collect(),
        locality: plan.locality,
        copies: plan.copies,
    };
    wire::validate::pipeline_submission(&submission).map_err(from_wire)
}

/// A pipeline spec's top level holds its name and stages only: job fields go in the stages.
/// A table written after a `[[stages]]` header as `[limits]` lands at the top level; its error
/// says to write it `[stages.limits]`.
fn top_level_keys(table: &toml::Table) -> Result<(), SpecError> {
    let Some((key, value)) = table
        .iter()
        .find(|(key, _)| !matches!(key.as_str(), "name" | "stages" | "locality" | "copies"))
    else {
        return Ok(());
    };
    let header = match value {
        toml::Value::Table(_) => format!(" (a table in a stage is written [stages.{key}])"),
        toml::Value::Array(items) if items.iter().all(toml::Value::is_table) => {
            format!(" (tables in a stage are written [[stages.{key}]])")
        }
        _ => String::new(),
    };
    Err(invalid(
        key,
        format!(
            "a pipeline spec takes only `name`, `locality`, `copies` and [[stages]] at the top \
             level; move `{key}` into the [[stages]] tables that need it{header}"
        ),
    ))
}

/// `locality = "coordinator" | "nodes"`, and with `"nodes"` the `copies` of each kept
/// intermediate (1 unless given).
fn locality_of(file: &PipelineFile) -> Result<(wire::Locality, u32), SpecError> {
    match (file.locality.as_deref(), file.copies) {
        (None | Some("coordinator"), None) => Ok((wire::Locality::Coordinator, 0)),
        (Some("nodes"), copies) => Ok((wire::Locality::Nodes, copies.unwrap_or(1))),
        (None | Some("coordinator"), Some(_)) => Err(invalid(
            "copies",
            "copies are of intermediates kept on nodes: add `locality = \"nodes\"` or drop \
             `copies`",
        )),
        (Some(other), _) => Err(invalid(
            "locality",
            format!(
                "unknown locality {other:?}; write \"coordinator\" (the default: later stages \
                 fetch intermediates from the coordinator) or \"nodes\" (from the nodes that \
                 hold them)"
            ),
        )),
    }
}

/// The pipeline's name: the one given, or the first stage's module (or program) file name.
fn pipeline_name(file: &PipelineFile) -> Result<String, SpecError> {
    let first = &file.stages[0];
    let name = match (&file.name, first.module.as_ref().or(first.program.as_ref())) {
        (Some(name), _) => name.clone(),
        (None, Some(program)) => default_name(Path::new(program)),
        (None, None) => "pipeline".to_owned(),
    };
    if name.is_empty() || name.len() > JOB_NAME_BYTES_MAX || name.chars().any(char::is_control) {
        return Err(invalid(
            "name",
            format!(
                "give the pipeline a name of 1 to {JOB_NAME_BYTES_MAX} bytes, without control \
                 characters"
            ),
        ));
    }
    Ok(name)
}

/// Stage `index` of the pipeline `pipeline`, whose stages are named `names` in order.
fn stage_of(
    file: SpecFile,
    index: usize,
    pipeline: &str,
    names: &[Option<String>],
    base_dir: &Path,
) -> Result<StagePlan, SpecError> {
    let field = format!("stages[{index}]");
    let name = stage_name(file.name.as_deref(), index, names)?;
    let input = input_of(&file, &field)?;
    if let Some((key, input)) = &input {
        reads(input, &name, index, names, &format!("{field}.{key}"))?;
    }
    task_keys(&file, input.as_ref().map(|(key, _)| *key), &field)?;
    let job_name = format!("{pipeline}/{name}");
    if job_name.len() > JOB_NAME_BYTES_MAX {
        return Err(invalid(
            "name",
            format!(
                "stage {name}'s job would be named {job_name:?}, more than the \
                 {JOB_NAME_BYTES_MAX} bytes a job name takes; shorten the pipeline's name"
            ),
        ));
    }
    let job = job_of(file, base_dir, Some(job_name), input.is_some())
        .map_err(|error| within(&field, error))?;
    let input = input.map(|(_, input)| input);
    Ok(StagePlan { name, input, job })
}

/// The error of a stage's field, named as a field of that stage.
fn within(stage: &str, error: SpecError) -> SpecError {
    match error {
        SpecError::Invalid { field, problem } => SpecError::Invalid {
            field: format!("{stage}.{field}"),
            problem,
        },
        other => other,
    }
}

/// The stage's name: given, of the allowed characters, and not an earlier stage's.
fn stage_name(
    name: Option<&str>,
    index: usize,
    names: &[Option<String>],
) -> Result<String, SpecError> {
    let field = format!("stages[{index}].name");
    let Some(name) = name else {
        return Err(invalid(&field, "name the stage, e.g. name = \"map\""));
    };
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_';
    if name.is_empty() || name.len() > STAGE_NAME_BYTES_MAX || !name.chars().all(allowed) {
        return Err(invalid(
            &field,
            format!(
                "{name:?} is not a stage name; use 1 to {STAGE_NAME_BYTES_MAX} lowercase \
                 letters, digits, '-' or '_'"
            ),
        ));
    }
    if names[..index]
        .iter()
        .any(|earlier| earlier.as_deref() == Some(name))
    {
        return Err(invalid(
            &field,
            format!("two stages are named {name:?}; give each stage its own name"),
        ));
    }
    Ok(name.to_owned())
}

/// Where the stage's tasks come from when it reads another stage: the key that says so and
/// what it says. At most one of `each`, `all` and `partition` is given.
fn input_of(file: &SpecFile, field: &str) -> Result<Option<(&'static str, StageInput)>, SpecError> {
    let mut inputs = Vec::new();
    if let Some(stage) = &file.each {
        inputs.push(("each", StageInput::Each(stage.clone())));
    }
    if let Some(stage) = &file.all {
        inputs.push(("all", StageInput::All(stage.clone())));
    }
    if let Some(partition) = &file.partition {
        if !(1..=PARTITIONS_MAX).contains(&partition.parts) {
            return Err(invalid(
                &format!("{field}.partition.parts"),
                format!(
                    "{} parts asked for; give 1 to {PARTITIONS_MAX} parts",
                    partition.parts
                ),
            ));
        }
        let input = StageInput::Partition {
            stage: partition.stage.clone(),
            parts: partition.parts,
        };
        inputs.push(("partition", input));
    }
    if inputs.len() > 1 {
        let keys: Vec<&str> = inputs.iter().map(|(key, _)| *key).collect();
        return Err(invalid(
            field,
            format!(
                "the stage gives {}; take its tasks from another stage in one way only: each, \
                 all or partition",
                keys.join(" and ")
            ),
        ));
    }
    Ok(inputs.pop())
}

/// A stage reads only a stage listed before it, so the stages form no cycle.
fn reads(
    input: &StageInput,
    stage: &str,
    index: usize,
    names: &[Option<String>],
    field: &str,
) -> Result<(), SpecError> {
    let read = input.stage();
    let position = names.iter().position(|name| name.as_deref() == Some(read));
    let problem = match position {
        Some(position) if position < index => return Ok(()),
        Some(position) if position == index => {
            format!("stage {stage:?} reads itself; a stage reads only stages listed before it")
        }
        Some(_) => format!(
            "stage {stage:?} reads {read:?}, which is listed after it; a stage reads only \
             stages listed before it, so list {read:?} before {stage:?} (and stages cannot read \
             each other in a cycle)"
        ),
        None => {
            let earlier: Vec<&str> = names[..index]
                .iter()
                .flatten()
                .map(String::as_str)
                .collect();
            let choice = if earlier.is_empty() {
                "the first stage has no stage before it to read: give it its own tasks".to_owned()
            } else {
                format!("name a stage listed before it: {}", earlier.join(", "))
            };
            format!("stage {stage:?} reads {read:?}, which is no stage of this pipeline; {choice}")
        }
    };
    Err(invalid(field, problem))
}

/// A stage that reads another (`reads` is the key saying so) gets its tasks from it and may
/// give the template's `args`; any other stage gives its own tasks, as a job does.
fn task_keys(file: &SpecFile, reads: Option<&str>, field: &str) -> Result<(), SpecError> {
    let own = [
        ("tasks", !file.tasks.is_empty()),
        ("sweep", file.sweep.is_some()),
        ("per_input", file.per_input.is_some()),
    ];
    let given = own.iter().find(|(_, given)| *given).map(|(key, _)| *key);
    match (reads, given) {
        (Some(reads), Some(key)) => Err(invalid(
            &format!("{field}.{key}"),
            format!(
                "the stage takes its tasks from another stage ({reads}); remove {key}, or \
                 remove {reads} to give the stage its own tasks"
            ),
        )),
        (None, _) if file.args.is_some() => Err(invalid(
            &format!("{field}.args"),
            "args are the template task's of a stage that reads another (each, all or \
             partition); give this stage's args in its [[stages.tasks]], sweep or per_input",
        )),
        (None, None) => Err(invalid(
            &format!("{field}.tasks"),
            "give the stage its tasks: [[stages.tasks]] entries, a sweep or a per_input, or \
             take them from an earlier stage with each, all or partition",
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::TaskPlan;

    const WORD_COUNT: &str = r#"
        name = "word count"

        [[stages]]
        name = "map"
        module = "wordfreq.wasm"
        per_input = { dir = "books", args = ["map", "8"] }
        limits = { memory = "64MiB" }

        [[stages]]
        name = "reduce"
        module = "wordfreq.wasm"
        partition = { stage = "map", parts = 8 }
        args = ["reduce"]

        [[stages]]
        name = "top"
        program = "top.py"
        all = "reduce"
    "#;

    /// The error `text` gets, read as a pipeline from `/jobs`.
    fn problem(text: &str) -> String {
        parse_pipeline(text, Path::new("/jobs"))
            .unwrap_err()
            .to_string()
    }

    /// A pipeline of `stages`, each a table's lines.
    fn pipeline(stages: &[&str]) -> String {
        stages
            .iter()
            .map(|stage| format!("[[stages]]\nmodule = \"m.wasm\"\n{stage}\n"))
            .collect()
    }

    #[test]
    fn a_map_partition_reduce_spec_becomes_its_plan() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("books")).unwrap();
        for name in ["b.txt", "a.txt"] {
            std::fs::write(dir.path().join("books").join(name), name).unwrap();
        }
        assert!(is_pipeline(WORD_COUNT));
        let plan = parse_pipeline(WORD_COUNT, dir.path()).unwrap();
        assert_eq!(plan.name, "word count");
        let names: Vec<_> = plan.stages.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["map", "reduce", "top"]);
        let [map, reduce, top] = &plan.stages[..] else {
            panic!("three stages");
        };
        assert_eq!(map.input, None);
        assert_eq!(map.job.name, "word count/map");
        assert_eq!(map.job.module, dir.path().join("wordfreq.wasm"));
        assert_eq!(map.job.limits.memory_bytes_max, 64 << 20);
        assert_eq!(map.job.tasks.len(), 2);
        assert_eq!(map.job.tasks[0].args, ["map", "8"]);
        let book = ("a.txt".to_owned(), dir.path().join("books").join("a.txt"));
        assert_eq!(map.job.tasks[0].inputs, [book]);
        let partition = StageInput::Partition {
            stage: "map".to_owned(),
            parts: 8,
        };
        assert_eq!(reduce.input, Some(partition));
        assert_eq!(reduce.job.name, "word count/reduce");
        let template = TaskPlan {
            args: vec!["reduce".to_owned()],
            stdin: None,
            inputs: Vec::new(),
        };
        assert_eq!(reduce.job.tasks, [template]);
        assert_eq!(top.input, Some(StageInput::All("reduce".to_owned())));
        assert_eq!(top.job.module, dir.path().join("top.py"));
        assert!(top.job.script.is_some());
        assert_eq!(top.job.tasks, [TaskPlan::default()]);
        check_pipeline(&plan).unwrap();
    }

    #[test]
    fn the_name_defaults_to_the_first_modules_and_each_reads_an_earlier_stage() {
        let text = pipeline(&[
            "name = \"a\"\nsweep = { count = 2 }",
            "name = \"b\"\neach = \"a\"",
        ]);
        let plan = parse_pipeline(&text, Path::new("/jobs")).unwrap();
        assert_eq!(plan.name, "m");
        assert_eq!(plan.stages[1].job.name, "m/b");
        assert_eq!(plan.stages[1].input, Some(StageInput::Each("a".to_owned())));
        assert_eq!(plan.stages[0].job.module, PathBuf::from("/jobs/m.wasm"));
    }

    #[test]
    fn locality_is_the_coordinator_unless_nodes_is_asked_for_by_name() {
        let stages = pipeline(&[
            "name = \"a\"\nsweep = { count = 2 }",
            "name = \"b\"\neach = \"a\"",
        ]);
        let parsed = |head: &str| parse_pipeline(&format!("{head}{stages}"), Path::new("/jobs"));
        assert_eq!(parsed("").unwrap().locality, wire::Locality::Coordinator);
        let coordinator = parsed("locality = \"coordinator\"\n").unwrap();
        assert_eq!(coordinator.locality, wire::Locality::Coordinator);
        let nodes = parsed("locality = \"nodes\"\n").unwrap();
        assert_eq!(nodes.locality, wire::Locality::Nodes);
        let unknown = parsed("locality = \"peers\"\n").unwrap_err().to_string();
        assert!(unknown.contains("unknown locality \"peers\""), "{unknown}");
        assert!(unknown.contains("\"nodes\""), "{unknown}");
    }

    #[test]
    fn a_job_spec_is_no_pipeline_and_each_is_refused_by_the_other_reader() {
        let job = "module = \"m.wasm\"\nsweep = { count = 1 }";
        assert!(!is_pipeline(job));
        assert!(!is_pipeline("stages = ["));
        assert!(problem(job).starts_with("module: a pipeline spec takes only"));
        let text = pipeline(&["name = \"a\"\nsweep = { count = 1 }"]);
        let refused = crate::parse(&text, Path::new("/")).unwrap_err().to_string();
        assert!(
            refused.starts_with("stages: this is a pipeline spec"),
            "{refused}"
        );
        let reading = crate::parse("module = \"m.wasm\"\neach = \"a\"", Path::new("/"));
        assert!(
            reading
                .unwrap_err()
                .to_string()
                .starts_with("each: only a pipeline")
        );
        let args = crate::parse(
            "module = \"m.wasm\"\nargs = []\nsweep = { count = 1 }",
            Path::new("/"),
        );
        assert!(
            args.unwrap_err()
                .to_string()
                .starts_with("args: a job gives")
        );
    }

    #[test]
    fn top_level_job_fields_beside_stages_are_refused() {
        let text = format!(
            "module = \"m.wasm\"\n{}",
            pipeline(&["name = \"a\"\nsweep = { count = 1 }"])
        );
        let refused = problem(&text);
        assert!(
            refused.starts_with(
                "module: a pipeline spec takes only `name`, `locality`, `copies` and [[stages]]"
            ),
            "{refused}"
        );
        assert!(
            refused.contains("move `module` into the [[stages]]"),
            "{refused}"
        );
        let tasks = format!(
            "[[tasks]]\nargs = []\n{}",
            pipeline(&["name = \"a\"\nsweep = { count = 1 }"])
        );
        assert!(problem(&tasks).starts_with("tasks: a pipeline spec"));
        let header = "[[stages]]\nname = \"a\"\nmodule = \"m.wasm\"\n[sweep]\ncount = 1";
        let hint = problem(header);
        assert!(
            hint.ends_with("(a table in a stage is written [stages.sweep])"),
            "{hint}"
        );
    }

    #[test]
    fn reading_an_unknown_a_later_or_its_own_stage_is_refused_naming_both() {
        let unknown = problem(&pipeline(&[
            "name = \"map\"\nsweep = { count = 1 }",
            "name = \"reduce\"\neach = \"mapp\"",
        ]));
        assert_eq!(
            unknown,
            "stages[1].each: stage \"reduce\" reads \"mapp\", which is no stage of this pipeline; \
             name a stage listed before it: map"
        );
        let first = problem(&pipeline(&["name = \"a\"\nall = \"z\""]));
        assert!(
            first.contains("the first stage has no stage before it"),
            "{first}"
        );
        let own = problem(&pipeline(&[
            "name = \"a\"\nsweep = { count = 1 }",
            "name = \"b\"\nall = \"b\"",
        ]));
        assert!(
            own.starts_with("stages[1].all: stage \"b\" reads itself"),
            "{own}"
        );
        let cycle = problem(&pipeline(&[
            "name = \"a\"\neach = \"b\"",
            "name = \"b\"\neach = \"a\"",
        ]));
        assert!(
            cycle.starts_with("stages[0].each: stage \"a\" reads \"b\", which is listed after it"),
            "{cycle}"
        );
        assert!(cycle.contains("list \"b\" before \"a\""), "{cycle}");
    }

    #[test]
    fn stage_names_are_required_well_formed_and_unique() {
        let sweep = "sweep = { count = 1 }";
        let missing = problem(&pipeline(&[sweep]));
        assert!(
            missing.starts_with("stages[0].name: name the stage"),
            "{missing}"
        );
        for bad in ["Map", "a b", "", "x/y"] {
            let stage = format!("name = {bad:?}\n{sweep}");
            let refused = problem(&pipeline(&[&stage]));
            assert!(refused.starts_with("stages[0].name: "), "{refused}");
            assert!(refused.contains("lowercase letters, digits"), "{refused}");
        }
        let long = format!("name = \"{}\"\n{sweep}", "a".repeat(65));
        assert!(problem(&pipeline(&[&long])).contains("is not a stage name"));
        let a = format!("name = \"a\"\n{sweep}");
        let twice = problem(&pipeline(&[&a, &a]));
        assert_eq!(
            twice,
            "stages[1].name: two stages are named \"a\"; give each stage its own name"
        );
    }

    #[test]
    fn a_stage_reads_in_one_way_with_parts_in_bounds() {
        let a = "name = \"a\"\nsweep = { count = 1 }";
        let two = problem(&pipeline(&[a, "name = \"b\"\neach = \"a\"\nall = \"a\""]));
        assert!(
            two.starts_with("stages[1]: the stage gives each and all; take its tasks"),
            "{two}"
        );
        for parts in [0, 10_001] {
            let stage = format!("name = \"b\"\npartition = {{ stage = \"a\", parts = {parts} }}");
            let refused = problem(&pipeline(&[a, &stage]));
            assert!(
                refused.starts_with("stages[1].partition.parts: "),
                "{refused}"
            );
            assert!(refused.contains("give 1 to 10000 parts"), "{refused}");
        }
        let most = "name = \"b\"\npartition = { stage = \"a\", parts = 10000 }";
        assert!(parse_pipeline(&pipeline(&[a, most]), Path::new("/")).is_ok());
        let typo = problem(&pipeline(&[
            a,
            "name = \"b\"\npartition = { stage = \"a\", part = 2 }",
        ]));
        assert!(typo.contains("part"), "{typo}");
    }

    #[test]
    fn args_go_with_a_read_and_tasks_without_one() {
        let plain = problem(&pipeline(&[
            "name = \"a\"\nargs = [\"x\"]\nsweep = { count = 1 }",
        ]));
        assert!(
            plain.starts_with("stages[0].args: args are the template task's"),
            "{plain}"
        );
        let a = "name = \"a\"\nsweep = { count = 1 }";
        let tasks = problem(&pipeline(&[
            a,
            "name = \"b\"\neach = \"a\"\n[[stages.tasks]]\nargs = []",
        ]));
        assert!(
            tasks.starts_with(
                "stages[1].tasks: the stage takes its tasks from another stage (each)"
            ),
            "{tasks}"
        );
        let sweep = problem(&pipeline(&[
            a,
            "name = \"b\"\nall = \"a\"\n[stages.sweep]\ncount = 2",
        ]));
        assert!(sweep.starts_with("stages[1].sweep: "), "{sweep}");
        let none = problem(&pipeline(&["name = \"a\""]));
        assert!(
            none.starts_with("stages[0].tasks: give the stage its tasks"),
            "{none}"
        );
        let typo = problem(&pipeline(&[
            "name = \"a\"\nmodul = 1\nsweep = { count = 1 }",
        ]));
        assert!(typo.contains("modul"), "{typo}");
    }

    #[test]
    fn a_pipeline_has_one_to_sixteen_stages_and_job_errors_name_their_stage() {
        let stages: Vec<String> = (0..17)
            .map(|index| format!("name = \"s{index}\"\nsweep = {{ count = 1 }}"))
            .collect();
        let stages: Vec<&str> = stages.iter().map(String::as_str).collect();
        let refused = problem(&pipeline(&stages));
        assert!(
            refused.starts_with("stages: 17 stages given; give 1 to 16"),
            "{refused}"
        );
        assert!(parse_pipeline(&pipeline(&stages[..16]), Path::new("/")).is_ok());
        assert!(problem("stages = []").starts_with("stages: 0 stages given"));
        let memory = problem(&pipeline(&[
            "name = \"a\"\nlimits = { memory = 0 }\nsweep = { count = 1 }",
        ]));
        assert!(
            memory.starts_with("stages[0].limits.memory_bytes_max"),
            "{memory}"
        );
        let long = format!(
            "name = \"{}\"\n{}",
            "p".repeat(199),
            pipeline(&["name = \"a\"\nsweep = { count = 1 }"])
        );
        assert!(problem(&long).contains("shorten the pipeline's name"));
    }
}

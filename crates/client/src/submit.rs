//! From a plan of local files to a job: every file a [`JobPlan`] names is uploaded once (not at
//! all when the coordinator already holds its hash for this caller), and the
//! [`JobSubmission`] names the blobs. This is the one definition of a job that the CLI and
//! every client built on this crate share; the Python package in `python/` follows it.

use std::collections::HashMap;

use futures::{StreamExt as _, TryStreamExt as _};
use std::path::{Path, PathBuf};

use jobspec::{JobPlan, MountPlan, TaskPlan};
use wire::{BlobHash, InputFile, JobSubmission, Mount, MountFile, TaskSpec};

use crate::{Client, ClientError, Result};

/// The hash of each file uploaded, so a file named twice (a module also mounted, one input
/// shared by many tasks) is read and hashed once.
type Uploaded = HashMap<PathBuf, BlobHash>;

impl Client {
    /// Uploads every file of every stage (each once per stage) and returns the submission.
    pub async fn upload_pipeline(
        &self,
        plan: &jobspec::PipelinePlan,
    ) -> Result<wire::PipelineSubmission> {
        let mut stages = Vec::with_capacity(plan.stages.len());
        for stage in &plan.stages {
            stages.push(wire::StageSubmission {
                name: stage.name.clone(),
                input: stage.input.clone(),
                job: self.upload_plan(&stage.job).await?,
            });
        }
        Ok(wire::PipelineSubmission {
            name: plan.name.clone(),
            stages,
            locality: plan.locality,
            copies: plan.copies,
        })
    }

    /// Uploads every file the plan names (each once, a few at a time) and returns the
    /// submission naming them.
    pub async fn upload_plan(&self, plan: &JobPlan) -> Result<JobSubmission> {
        let walked = walk_mounts(plan)?;
        let mut paths: Vec<&Path> = vec![plan.module.as_path()];
        paths.extend(plan.validator.as_ref().map(|v| v.module.as_path()));
        paths.extend(data_files(plan, &walked));
        let uploaded = self.upload_all(paths).await?;
        let blob = |path: &Path| uploaded[path];
        Ok(JobSubmission {
            mounts: walked
                .iter()
                .map(|(mount, files)| mount_of(mount, files, &blob))
                .collect(),
            validator: plan.validator.as_ref().map(|validator| wire::Validator {
                module: blob(&validator.module),
                args: validator.args.clone(),
            }),
            tasks: plan.tasks.iter().map(|task| task_of(task, &blob)).collect(),
            ..plan.bare_submission(blob(&plan.module))
        })
    }

    /// Uploads each distinct file of `paths` once, [`UPLOADS_AT_ONCE`] at a time, so that
    /// hashing one overlaps sending another; gives each file's hash.
    async fn upload_all(&self, paths: Vec<&Path>) -> Result<Uploaded> {
        each_file_once(paths, UPLOADS_AT_ONCE, |path| async move {
            Ok(self.upload_file(&path).await?.0)
        })
        .await
    }
}

/// Each mount of `plan` with its files, walked.
pub(crate) type Walked<'a> = Vec<(&'a MountPlan, Vec<(String, PathBuf)>)>;

pub(crate) fn walk_mounts(plan: &JobPlan) -> Result<Walked<'_>> {
    plan.mounts
        .iter()
        .map(|mount| Ok((mount, walk(&mount.dir)?)))
        .collect()
}

/// The files a plan's tasks read, beside its module: mount files, stdin, inputs.
pub(crate) fn data_files<'a>(plan: &'a JobPlan, walked: &'a Walked<'_>) -> Vec<&'a Path> {
    let mut paths: Vec<&Path> = walked
        .iter()
        .flat_map(|(_, files)| files.iter().map(|(_, path)| path.as_path()))
        .collect();
    for task in &plan.tasks {
        paths.extend(task.stdin.as_deref());
        paths.extend(task.inputs.iter().map(|(_, path)| path.as_path()));
    }
    paths
}

/// `work` done on each distinct file of `paths` once, `at_once` at a time; each result by its
/// path. A failure names the file it was for.
pub(crate) async fn each_file_once<T, F, Fut>(
    paths: Vec<&Path>,
    at_once: usize,
    work: F,
) -> Result<HashMap<PathBuf, T>>
where
    F: Fn(PathBuf) -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut distinct: Vec<PathBuf> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for path in paths {
        if seen.insert(path) {
            distinct.push(path.to_owned());
        }
    }
    let each = distinct.into_iter().map(|path| {
        let done = work(path.clone());
        async move {
            let value = done.await.map_err(|source| ClientError::Upload {
                path: path.display().to_string(),
                source: Box::new(source),
            })?;
            Ok::<_, ClientError>((path, value))
        }
    });
    futures::stream::iter(each)
        .buffer_unordered(at_once)
        .try_collect()
        .await
}

/// Files uploaded at once by one submission.
const UPLOADS_AT_ONCE: usize = 2;

pub(crate) fn mount_of(
    mount: &MountPlan,
    files: &[(String, PathBuf)],
    blob: &impl Fn(&Path) -> BlobHash,
) -> Mount {
    Mount {
        guest_path: mount.guest_path.clone(),
        files: files
            .iter()
            .map(|(relative, path)| MountFile {
                path: relative.clone(),
                blob: blob(path),
            })
            .collect(),
    }
}

pub(crate) fn task_of(task: &TaskPlan, blob: &impl Fn(&Path) -> BlobHash) -> TaskSpec {
    TaskSpec {
        args: task.args.clone(),
        stdin: task.stdin.as_deref().map(blob),
        inputs: task
            .inputs
            .iter()
            .map(|(name, path)| InputFile {
                name: name.clone(),
                blob: blob(path),
            })
            .collect(),
    }
}

/// Regular files below `dir` as (`/`-separated relative path, path), sorted.
pub(crate) fn walk(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut files = Vec::new();
    let mut pending = vec![(dir.to_owned(), String::new())];
    while let Some((current, prefix)) = pending.pop() {
        let unreadable = |source| ClientError::MountDir {
            path: current.display().to_string(),
            source,
        };
        for entry in std::fs::read_dir(&current).map_err(unreadable)? {
            let entry = entry.map_err(unreadable)?;
            let name = entry
                .file_name()
                .into_string()
                .map_err(|name| ClientError::NotUtf8Name(format!("{name:?}")))?;
            let relative = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            let file_type = entry.file_type().map_err(unreadable)?;
            if file_type.is_dir() {
                pending.push((entry.path(), relative));
            } else if file_type.is_file() {
                files.push((relative, entry.path()));
            }
        }
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mount_is_walked_to_its_regular_files_in_path_order() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("b/c")).unwrap();
        std::fs::write(dir.path().join("z.txt"), "z").unwrap();
        std::fs::write(dir.path().join("b/c/deep.bin"), "d").unwrap();
        std::fs::write(dir.path().join("b/a.txt"), "a").unwrap();
        let walked: Vec<String> = walk(dir.path())
            .unwrap()
            .into_iter()
            .map(|(relative, _)| relative)
            .collect();
        assert_eq!(walked, ["b/a.txt", "b/c/deep.bin", "z.txt"]);
    }

    #[test]
    fn a_missing_mount_says_which_directory() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("absent");
        let error = walk(&missing).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("cannot read the mount directory"),
            "{error}"
        );
        assert!(error.to_string().contains("absent"), "{error}");
    }
}

//! From a plan of local files to a job: every file a [`JobPlan`] names is uploaded once (not at
//! all when the coordinator already holds its hash for this caller), and the
//! [`JobSubmission`] names the blobs. This is the one definition of a job that the CLI and
//! every client built on this crate share; the Python package in `python/` follows it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use jobspec::{JobPlan, MountPlan, TaskPlan};
use wire::{BlobHash, InputFile, JobSubmission, Mount, MountFile, TaskSpec};

use crate::{Client, ClientError, Result};

/// Hashes of the files uploaded so far, so a file named twice (a module also mounted, one input
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
        })
    }

    /// Uploads every file the plan names (each once) and returns the submission naming them.
    pub async fn upload_plan(&self, plan: &JobPlan) -> Result<JobSubmission> {
        let mut uploaded = Uploaded::new();
        let module = self.upload_once(&mut uploaded, &plan.module).await?;
        let validator = match &plan.validator {
            Some(validator) => Some(wire::Validator {
                module: self.upload_once(&mut uploaded, &validator.module).await?,
                args: validator.args.clone(),
            }),
            None => None,
        };
        let mut mounts = Vec::with_capacity(plan.mounts.len());
        for mount in &plan.mounts {
            mounts.push(self.upload_mount(&mut uploaded, mount).await?);
        }
        let mut tasks = Vec::with_capacity(plan.tasks.len());
        for task in &plan.tasks {
            tasks.push(self.upload_task(&mut uploaded, task).await?);
        }
        Ok(JobSubmission {
            name: plan.name.clone(),
            module,
            env: plan.env.clone(),
            mounts,
            requirements: plan.requirements.clone(),
            limits: plan.limits,
            max_attempts: plan.max_attempts,
            replicas: plan.replicas,
            deterministic: plan.deterministic,
            verify: plan.verify,
            validator,
            success_exit_codes: plan.success_exit_codes.clone(),
            checkpoint: plan.checkpoint,
            on_failure: plan.on_failure.clone(),
            private: None,
            tasks,
        })
    }

    async fn upload_mount(&self, uploaded: &mut Uploaded, mount: &MountPlan) -> Result<Mount> {
        let mut files = Vec::new();
        for (relative, path) in walk(&mount.dir)? {
            files.push(MountFile {
                path: relative,
                blob: self.upload_once(uploaded, &path).await?,
            });
        }
        Ok(Mount {
            guest_path: mount.guest_path.clone(),
            files,
        })
    }

    async fn upload_task(&self, uploaded: &mut Uploaded, task: &TaskPlan) -> Result<TaskSpec> {
        let stdin = match &task.stdin {
            Some(path) => Some(self.upload_once(uploaded, path).await?),
            None => None,
        };
        let mut inputs = Vec::with_capacity(task.inputs.len());
        for (name, path) in &task.inputs {
            inputs.push(InputFile {
                name: name.clone(),
                blob: self.upload_once(uploaded, path).await?,
            });
        }
        Ok(TaskSpec {
            args: task.args.clone(),
            stdin,
            inputs,
        })
    }

    async fn upload_once(&self, uploaded: &mut Uploaded, path: &Path) -> Result<BlobHash> {
        if let Some(hash) = uploaded.get(path) {
            return Ok(*hash);
        }
        let (hash, _) = self
            .upload_file(path)
            .await
            .map_err(|source| ClientError::Upload {
                path: path.display().to_string(),
                source: Box::new(source),
            })?;
        uploaded.insert(path.to_owned(), hash);
        Ok(hash)
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

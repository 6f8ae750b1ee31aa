//! Versioned migrations, embedded in the binary so a coordinator needs no files beside it.

use std::borrow::Cow;

use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyPool, SqlSafeStr};

use crate::StoreError;

const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "initial", include_str!("../migrations/0001_initial.sql")),
    (
        2,
        "retention",
        include_str!("../migrations/0002_retention.sql"),
    ),
    (
        3,
        "attempt uploads",
        include_str!("../migrations/0003_attempt_uploads.sql"),
    ),
    (
        4,
        "node admission",
        include_str!("../migrations/0004_node_admission.sql"),
    ),
    (
        5,
        "upload quota",
        include_str!("../migrations/0005_upload_quota.sql"),
    ),
    (
        6,
        "node network",
        include_str!("../migrations/0006_node_network.sql"),
    ),
    (
        7,
        "verification",
        include_str!("../migrations/0007_verification.sql"),
    ),
    (8, "ledger", include_str!("../migrations/0008_ledger.sql")),
    (
        9,
        "compile time",
        include_str!("../migrations/0009_compile_time.sql"),
    ),
    (10, "recall", include_str!("../migrations/0010_recall.sql")),
    (
        11,
        "module size",
        include_str!("../migrations/0011_module_size.sql"),
    ),
    (
        12,
        "what modules need",
        include_str!("../migrations/0012_components.sql"),
    ),
    (
        13,
        "checkpoints",
        include_str!("../migrations/0013_checkpoints.sql"),
    ),
    (
        14,
        "checkpoint makers",
        include_str!("../migrations/0014_checkpoint_makers.sql"),
    ),
    (
        15,
        "task witnesses",
        include_str!("../migrations/0015_task_witnesses.sql"),
    ),
    (
        16,
        "pipelines",
        include_str!("../migrations/0016_pipelines.sql"),
    ),
    (
        17,
        "task keys",
        include_str!("../migrations/0017_task_keys.sql"),
    ),
    (
        18,
        "failure policy",
        include_str!("../migrations/0018_failure_policy.sql"),
    ),
    (
        19,
        "job keys",
        include_str!("../migrations/0019_job_keys.sql"),
    ),
    (
        20,
        "deletions",
        include_str!("../migrations/0020_deletions.sql"),
    ),
    (
        21,
        "leadership",
        include_str!("../migrations/0021_leadership.sql"),
    ),
    (
        22,
        "federation",
        include_str!("../migrations/0022_federation.sql"),
    ),
    (
        23,
        "kept intermediates",
        include_str!("../migrations/0023_kept_blobs.sql"),
    ),
];

pub(crate) async fn migrate(pool: &AnyPool) -> Result<(), StoreError> {
    let migrations = MIGRATIONS
        .iter()
        .map(|(version, description, sql)| {
            Migration::new(
                *version,
                Cow::Borrowed(*description),
                MigrationType::Simple,
                sqlx::AssertSqlSafe(*sql).into_sql_str(),
                false,
            )
        })
        .collect();
    Migrator::with_migrations(migrations)
        .run(pool)
        .await
        .map_err(|error| StoreError::Migrate(error.to_string()))
}

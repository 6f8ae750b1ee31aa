//! Two coordinators on one database: the one opened later fences the earlier one out, so a
//! coordinator that was replaced (or started by mistake beside another) never writes again.

use std::time::Duration;

use bytes::Bytes;

use crate::harness::Pool;

#[tokio::test]
async fn a_coordinator_opened_later_on_the_same_database_stops_the_earlier_one() {
    let shared = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}", shared.path().join("state.db").display());
    let mut earlier = Pool::start_on(2_000, Some(database.clone())).await;
    earlier
        .owner
        .upload_bytes(Bytes::from_static(b"before the takeover"))
        .await
        .expect("the only coordinator writes");
    let later = Pool::start_on(2_000, Some(database)).await;

    let refused = earlier
        .owner
        .upload_bytes(Bytes::from_static(b"from the replaced coordinator"))
        .await;
    assert!(
        refused.is_err(),
        "a replaced coordinator acknowledges nothing"
    );
    let exit = earlier.coordinator_exited(Duration::from_secs(30)).await;
    assert!(
        !exit.success(),
        "a coordinator that stopped on a failure says so: {exit}"
    );
    let log = earlier.coordinator_log();
    assert!(
        log.contains("another coordinator took over this database"),
        "the replaced coordinator says why it stopped: {log}"
    );
    later
        .owner
        .upload_bytes(Bytes::from_static(b"after the takeover"))
        .await
        .expect("the newer coordinator goes on");
}

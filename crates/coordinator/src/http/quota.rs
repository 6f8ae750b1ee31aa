//! A requester's uploads and its storage quota: the bytes of the blobs it uploaded that are
//! still stored, plus its uploads in flight, stay within `--upload-quota`.
//!
//! An upload is refused before its bytes are stored: by its Content-Length when it gives one,
//! and otherwise (or if it lies) when the stream passes the room left. Uploads in flight
//! reserve their room first, so parallel uploads cannot each use the same room. Retention
//! deletes uploads no job uses, which gives their room back.

use std::collections::HashMap;

use axum::extract::Request;
use axum::http::StatusCode;
use parking_lot::Mutex;

use blobstore::BlobError;
use store::Write;
use wire::{BlobHash, ErrorCode, RequesterId};

use super::blobs::{blob_failure, content_length};
use super::{ApiResult, AppState, Failure};
use crate::pool::human_bytes;

/// Bytes reserved by uploads in flight, per requester. An entry lives while its requester has
/// an upload in flight, so the map is bounded by the requests being served.
#[derive(Debug, Default)]
pub(crate) struct UploadsInFlight {
    reserved_bytes: Mutex<HashMap<RequesterId, u64>>,
}

/// Room held for one upload until it is stored or refused.
struct Reservation<'a> {
    in_flight: &'a UploadsInFlight,
    requester: RequesterId,
    bytes: u64,
}

impl UploadsInFlight {
    /// Reserves `bytes`; returns the reservation and what the requester's uploads in flight
    /// reserve now, this one included.
    fn reserve(&self, requester: RequesterId, bytes: u64) -> (Reservation<'_>, u64) {
        let mut reserved = self.reserved_bytes.lock();
        let total = reserved.entry(requester).or_default();
        *total += bytes;
        let total = *total;
        let reservation = Reservation {
            in_flight: self,
            requester,
            bytes,
        };
        (reservation, total)
    }
}

impl Reservation<'_> {
    /// Gives back what the upload will not need.
    fn shrink_to(&mut self, bytes: u64) {
        let released = self.bytes.saturating_sub(bytes);
        self.release(released);
    }

    fn release(&mut self, bytes: u64) {
        let mut reserved = self.in_flight.reserved_bytes.lock();
        if let Some(total) = reserved.get_mut(&self.requester) {
            *total -= bytes;
            if *total == 0 {
                reserved.remove(&self.requester);
            }
        }
        self.bytes -= bytes;
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.release(self.bytes);
    }
}

/// Stores a requester's upload if it fits its quota; the caller holds the blob gate.
pub(crate) async fn put_upload(
    shared: &AppState,
    requester: RequesterId,
    hash: BlobHash,
    request: Request,
) -> ApiResult<StatusCode> {
    let length = content_length(request.headers());
    let blob_bytes_max = shared.config.blob_upload_bytes_max;
    if let Some(length) = length
        && length > blob_bytes_max
    {
        return Err(Failure::new(
            ErrorCode::PayloadTooLarge,
            format!("the blob is {length} bytes, more than the {blob_bytes_max} allowed"),
        ));
    }
    let (_reservation, room_bytes) = reserve_room(shared, requester, length).await?;
    let body = request.into_body().into_data_stream();
    let size_bytes = shared
        .blobs
        .put_stream(hash, body, room_bytes.min(blob_bytes_max))
        .await
        .map_err(|error| match error {
            BlobError::TooLarge { .. } if room_bytes < blob_bytes_max => {
                over_quota(shared, room_bytes)
            }
            other => blob_failure(other),
        })?;
    shared.metrics.blob_bytes_in.inc_by(size_bytes);
    let commit = shared.store.enqueue(vec![Write::InsertBlob {
        hash,
        size_bytes,
        at_ms: shared.now_ms(),
        reader: Some(requester),
    }]);
    shared.committed(commit).await?;
    Ok(StatusCode::CREATED)
}

/// Reserves room for an upload of `length` bytes (as much as one blob may take when it gives
/// no length) and returns how much of it the quota leaves for this upload.
async fn reserve_room<'a>(
    shared: &'a AppState,
    requester: RequesterId,
    length: Option<u64>,
) -> ApiResult<(Reservation<'a>, u64)> {
    let wanted = length.unwrap_or(shared.config.blob_upload_bytes_max);
    let (mut reservation, in_flight_bytes) = shared.uploads_in_flight.reserve(requester, wanted);
    // Read after reserving: an upload that finished since is then either still reserved or
    // already stored, never neither.
    let stored_bytes = shared.store.uploaded_bytes(requester).await?;
    let others_bytes = in_flight_bytes - wanted;
    let room_bytes = shared
        .config
        .upload_quota_bytes
        .saturating_sub(stored_bytes + others_bytes);
    if length.is_some_and(|length| length > room_bytes) || room_bytes == 0 {
        return Err(over_quota(shared, room_bytes));
    }
    let upload_bytes_max = room_bytes.min(wanted);
    reservation.shrink_to(upload_bytes_max);
    Ok((reservation, upload_bytes_max))
}

fn over_quota(shared: &AppState, room_bytes: u64) -> Failure {
    Failure::new(
        ErrorCode::PayloadTooLarge,
        format!(
            "this upload would pass your storage quota of {} ({} left); uploads no job uses are deleted after --keep-results, or ask the pool's owner to raise --upload-quota",
            human_bytes(shared.config.upload_quota_bytes),
            human_bytes(room_bytes)
        ),
    )
}

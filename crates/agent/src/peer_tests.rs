//! The peer listener against what other nodes may send it: only a ticket of this node's key,
//! for the blob it names and before it expires, opens a blob; and a fetching node keeps no
//! bytes that are not the blob it asked for.

use std::sync::Arc;

use parking_lot::RwLock;

use client::peer::PeerClient;
use wire::peer::{ticket, ticket_key};
use wire::{BlobHash, PeerBlob, PeerHolder};

use super::{PeerServer, serve};
use crate::cache::BlobCache;
use crate::owner::status::now_ms;

struct Listening {
    address: String,
    key: [u8; 32],
    cache: Arc<BlobCache>,
    dir: tempfile::TempDir,
    stop: tokio::sync::oneshot::Sender<()>,
}

/// A listener on loopback serving a cache that holds `blobs`, keyed by the ticket key of the
/// node token hash `token_hash`.
async fn listening(blobs: &[&[u8]], token_hash: &str) -> Listening {
    let dir = tempfile::tempdir().unwrap();
    let cache = Arc::new(BlobCache::open(dir.path(), 1 << 20).unwrap());
    for (index, bytes) in blobs.iter().enumerate() {
        let file = dir.path().join(format!("output-{index}"));
        std::fs::write(&file, bytes).unwrap();
        cache.adopt(&BlobHash::of(bytes), &file).unwrap();
    }
    let key = ticket_key(token_hash);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let server = PeerServer {
        cache: Arc::clone(&cache),
        key: Arc::new(RwLock::new(Some(key))),
        serving: Arc::new(tokio::sync::Semaphore::new(super::SERVING_AT_ONCE)),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel();
    tokio::spawn(serve(listener, server, async move {
        let _ = stopped.await;
    }));
    Listening {
        address,
        key,
        cache,
        dir,
        stop,
    }
}

fn holder(
    listening: &Listening,
    hash: &BlobHash,
    key: &[u8; 32],
    expires_at_ms: u64,
) -> PeerHolder {
    PeerHolder {
        address: listening.address.clone(),
        expires_at_ms,
        ticket: ticket(key, hash, expires_at_ms),
    }
}

async fn status_of(url: &str) -> u16 {
    reqwest::get(url).await.unwrap().status().as_u16()
}

#[tokio::test]
async fn a_ticket_of_this_node_opens_the_blob_it_names_and_nothing_else() {
    let part = b"w001x\t3\nw002x\t1\n";
    let other = b"another part";
    let listening = listening(&[part, other], "holder").await;
    let hash = BlobHash::of(part);
    let later = now_ms() + 60_000;
    let blob = |holders| PeerBlob {
        hash,
        size_bytes: part.len() as u64,
        holders,
    };
    let peers = PeerClient::new().unwrap();
    let fetched = tempfile::tempdir().unwrap();
    let path = fetched.path().join("part");

    let good = holder(&listening, &hash, &listening.key, later);
    assert_eq!(
        peers.fetch(&blob(vec![good]), &path).await,
        Ok(part.len() as u64)
    );
    assert_eq!(std::fs::read(&path).unwrap(), part);

    let stranger = ticket_key("another node");
    let refused = [
        holder(&listening, &hash, &stranger, later),
        holder(&listening, &hash, &listening.key, now_ms() - 1),
        holder(&listening, &BlobHash::of(other), &listening.key, later),
    ];
    for holder in refused {
        let url = format!(
            "http://{}/v1/peer/blobs/{hash}?expires_at_ms={}&ticket={}",
            holder.address, holder.expires_at_ms, holder.ticket
        );
        assert_eq!(status_of(&url).await, 403, "{url}");
    }
    let address = &listening.address;
    assert_eq!(
        status_of(&format!("http://{address}/v1/peer/blobs/{hash}")).await,
        400
    );
    let malformed = format!("http://{address}/v1/peer/blobs/not-a-hash?expires_at_ms=1&ticket=0");
    assert_eq!(status_of(&malformed).await, 400);
    let listing = format!("http://{address}/v1/peer/blobs");
    assert_eq!(status_of(&listing).await, 404, "nothing lists the cache");

    let absent = BlobHash::of(b"never held here");
    let not_held = holder(&listening, &absent, &listening.key, later);
    let url = format!(
        "http://{address}/v1/peer/blobs/{absent}?expires_at_ms={later}&ticket={}",
        not_held.ticket
    );
    assert_eq!(status_of(&url).await, 404);
    let _ = listening.stop.send(());
}

#[tokio::test]
async fn bytes_that_are_not_the_blob_asked_for_are_not_kept() {
    let real = b"the real part".as_slice();
    let listening = listening(&[], "liar").await;
    // The holder's cache has other bytes under the hash asked for.
    let forged = listening.dir.path().join("forged");
    std::fs::write(&forged, b"a forged part").unwrap();
    let hash = BlobHash::of(real);
    listening.cache.adopt(&hash, &forged).unwrap();
    let later = now_ms() + 60_000;
    let blob = PeerBlob {
        hash,
        size_bytes: real.len() as u64,
        holders: vec![holder(&listening, &hash, &listening.key, later)],
    };
    let fetched = tempfile::tempdir().unwrap();
    let path = fetched.path().join("part");
    let result = PeerClient::new().unwrap().fetch(&blob, &path).await;
    assert!(result.is_err(), "{result:?}");
    assert!(!path.exists());
    assert_eq!(
        std::fs::read_dir(fetched.path()).unwrap().count(),
        0,
        "no partial file left"
    );

    // Longer than the coordinator said: cut off, not kept.
    let short = PeerBlob {
        size_bytes: 3,
        ..blob
    };
    assert!(
        PeerClient::new()
            .unwrap()
            .fetch(&short, &path)
            .await
            .is_err()
    );
    assert!(!path.exists());
    let _ = listening.stop.send(());
}

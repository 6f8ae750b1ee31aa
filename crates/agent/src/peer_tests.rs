//! The peer listener against what other nodes may send it: only a ticket of this node's key,
//! for the blob it names and before it expires, opens a blob; and a fetching node keeps no
//! bytes that are not the blob it asked for.

use std::sync::Arc;

use parking_lot::RwLock;

use client::peer::PeerClient;
use wire::peer::{ticket, ticket_key};
use wire::{BlobHash, PeerBlob, PeerHolder};

use super::{PeerNews, PeerServer, serve};
use crate::cache::BlobCache;
use crate::owner::status::now_ms;

struct Listening {
    address: String,
    key: [u8; 32],
    cache: Arc<BlobCache>,
    news: Arc<PeerNews>,
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
    let news = Arc::new(PeerNews::default());
    let server = PeerServer {
        cache: Arc::clone(&cache),
        key: Arc::new(RwLock::new(Some(key))),
        serving: Arc::new(tokio::sync::Semaphore::new(super::SERVING_AT_ONCE)),
        news: Arc::clone(&news),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel();
    tokio::spawn(serve(listener, server, async move {
        let _ = stopped.await;
    }));
    Listening {
        address,
        key,
        cache,
        news,
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
    // Made first, it installs the TLS provider reqwest needs even for plain HTTP.
    PeerClient::new().unwrap();
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

/// The owner deletes the files of a kept part and of a fetched input under the running agent.
/// The kept one is found gone by the heartbeats' check of pinned files, the other when a peer
/// asks for it with a good ticket; the coordinator is told of each once, and they are served
/// no more.
#[tokio::test]
async fn blobs_gone_from_the_disk_are_told_to_the_coordinator_once() {
    let (kept, fetched) = (b"kept part".as_slice(), b"fetched input".as_slice());
    let listening = listening(&[kept, fetched], "holder").await;
    let (kept, fetched) = (BlobHash::of(kept), BlobHash::of(fetched));
    let (cache, news) = (&listening.cache, &listening.news);
    assert!(cache.pin(&[kept]));
    assert!(news.report(cache).dropped.is_empty());
    for hash in [kept, fetched] {
        let file = listening.dir.path().join("blobs").join(hash.to_hex());
        std::fs::remove_file(file).unwrap();
    }

    assert_eq!(news.report(cache).dropped, [kept]);
    let later = now_ms() + 60_000;
    let ticket = holder(&listening, &fetched, &listening.key, later).ticket;
    let url = format!(
        "http://{}/v1/peer/blobs/{fetched}?expires_at_ms={later}&ticket={ticket}",
        listening.address
    );
    assert_eq!(status_of(&url).await, 404);
    let told = wire::HeartbeatRequest {
        dropped: news.report(cache).dropped,
        ..wire::HeartbeatRequest::default()
    };
    assert_eq!(told.dropped, [kept, fetched]);
    news.heard(&told, false);
    assert!(news.report(cache).dropped.is_empty(), "told once");
    assert!(cache.pinned_after(None, 8).is_empty());
    let _ = listening.stop.send(());
}

/// Asked after the coordinator started again, the node names what it keeps, a heartbeat's
/// worth at a time, and stops once the coordinator no longer asks.
#[tokio::test]
async fn asked_the_node_names_what_it_keeps_until_it_is_asked_no_more() {
    let parts: Vec<Vec<u8>> = (0..3)
        .map(|index| format!("part {index}").into_bytes())
        .collect();
    let borrowed: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
    let listening = listening(&borrowed, "holder").await;
    let (cache, news) = (&listening.cache, &listening.news);
    let mut pinned: Vec<BlobHash> = parts.iter().map(|part| BlobHash::of(part)).collect();
    pinned.sort_unstable();
    assert!(cache.pin(&pinned[..2]));
    assert!(news.report(cache).kept.is_empty(), "not asked");

    let asked = wire::HeartbeatRequest::default();
    news.heard(&asked, true);
    let named = news.report(cache).kept;
    assert_eq!(named, pinned[..2], "what it keeps, not all it caches");
    let told = wire::HeartbeatRequest {
        kept: named,
        ..wire::HeartbeatRequest::default()
    };
    news.heard(&told, false);
    assert!(news.report(cache).kept.is_empty(), "asked no more");
    let _ = listening.stop.send(());
}

//! A relay that tampers with what it carries, and one that replays it, between a device and
//! its pool: the device's QUIC refuses every altered packet, so a tampering relay gets no
//! connection through and no byte to the pool, and every replayed packet is dropped as one
//! already seen, so the bytes arrive once and intact.
//!
//! The hostile relay is a real relay behind a proxy of this test's own that rewrites the
//! datagrams the relay hands its clients (websocket binary messages of the relay protocol's
//! datagram frames): flipping their last bit (inside the QUIC packet's authentication tag), or
//! sending each twice.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::tests::{loopback_relay, pool_behind, round_trip};
use crate::{Relay, RelayLink, Tunnel};

/// What the proxy does to each datagram frame the relay sends a client.
#[derive(Clone, Copy)]
enum Harm {
    Tamper,
    Replay,
}

/// The relay protocol's frame types for datagrams from the relay to a client (one, or a batch).
const RELAY_TO_CLIENT_DATAGRAMS: [u8; 2] = [6, 7];

/// A relay behind a proxy doing `harm`; the URL clients are given, and how many frames it
/// harmed so far.
async fn hostile_relay(harm: Harm) -> (Relay, RelayLink, Arc<AtomicU32>) {
    let relay = loopback_relay().await;
    let upstream = relay.address().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let harmed = Arc::new(AtomicU32::new(0));
    let counter = Arc::clone(&harmed);
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            tokio::spawn(proxy(client, upstream, harm, Arc::clone(&counter)));
        }
    });
    let link = RelayLink {
        url: url.parse().unwrap(),
        fingerprint: None,
    };
    (relay, link, harmed)
}

async fn proxy(client: TcpStream, upstream: SocketAddr, harm: Harm, harmed: Arc<AtomicU32>) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let up = tokio::io::copy(&mut client_read, &mut server_write);
    let down = harm_frames(&mut server_read, &mut client_write, harm, &harmed);
    let _ = tokio::join!(up, down);
}

/// Copies the relay's answer to a client: its HTTP upgrade headers as they are, then each
/// websocket frame, harming the datagram frames.
async fn harm_frames(
    from: &mut (impl AsyncRead + Unpin),
    to: &mut (impl AsyncWrite + Unpin),
    harm: Harm,
    harmed: &AtomicU32,
) -> std::io::Result<()> {
    let mut headers = Vec::new();
    while !headers.ends_with(b"\r\n\r\n") {
        headers.push(from.read_u8().await?);
    }
    to.write_all(&headers).await?;
    loop {
        let frame = read_frame(from).await?;
        let (payload_at, fin_binary) = (frame.payload_at, frame.bytes[0] == 0x82);
        let datagrams = fin_binary
            && frame.bytes.len() > payload_at + 64
            && RELAY_TO_CLIENT_DATAGRAMS.contains(&frame.bytes[payload_at]);
        let mut bytes = frame.bytes;
        if datagrams {
            harmed.fetch_add(1, Ordering::Relaxed);
            match harm {
                Harm::Tamper => *bytes.last_mut().unwrap() ^= 1,
                Harm::Replay => to.write_all(&bytes).await?,
            }
        }
        to.write_all(&bytes).await?;
    }
}

/// One websocket frame as it came (the relay's frames to clients are not masked), and where
/// its payload starts.
struct Frame {
    bytes: Vec<u8>,
    payload_at: usize,
}

async fn read_frame(from: &mut (impl AsyncRead + Unpin)) -> std::io::Result<Frame> {
    let mut bytes = vec![from.read_u8().await?, from.read_u8().await?];
    let length = match bytes[1] & 0x7f {
        126 => {
            let length = from.read_u16().await?;
            bytes.extend(length.to_be_bytes());
            u64::from(length)
        }
        127 => {
            let length = from.read_u64().await?;
            bytes.extend(length.to_be_bytes());
            length
        }
        short => u64::from(short),
    };
    assert_eq!(bytes[1] & 0x80, 0, "a relay masks nothing it sends");
    assert!(length < 1 << 20, "no relay frame is this large");
    let payload_at = bytes.len();
    bytes.resize(payload_at + length as usize, 0);
    from.read_exact(&mut bytes[payload_at..]).await?;
    Ok(Frame { bytes, payload_at })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_relay_that_alters_what_it_carries_gets_no_connection_through() {
    let dir = tempfile::tempdir().unwrap();
    let (_relay, link, tampered) = hostile_relay(Harm::Tamper).await;
    let (_gateway, address) = pool_behind(&link, dir.path()).await;
    let opened = tokio::time::timeout(Duration::from_secs(30), Tunnel::open(address))
        .await
        .expect("it gives up within its connect timeout");
    let error = opened.err().expect("no altered handshake is accepted");
    assert!(
        error.to_string().contains("cannot reach the pool"),
        "{error}"
    );
    assert!(
        tampered.load(Ordering::Relaxed) > 0,
        "the relay did carry the handshake, altered"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_relay_that_replays_what_it_carries_delivers_each_byte_once() {
    let dir = tempfile::tempdir().unwrap();
    let (_relay, link, replayed) = hostile_relay(Harm::Replay).await;
    let (_gateway, address) = pool_behind(&link, dir.path()).await;
    let tunnel = Tunnel::open(address).await.unwrap();
    let message = b"once, however often the relay says it".repeat(100);
    assert_eq!(round_trip(&tunnel, &message).await, message);
    assert!(
        replayed.load(Ordering::Relaxed) > 0,
        "the relay did replay packets of this connection"
    );
}

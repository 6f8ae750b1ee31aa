//! A gateway and a tunnel on loopback, directly and through a relay of this crate's own: what
//! a device writes to its tunnel's port reaches the pool's listener and comes back.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::{Arrival, Gateway, PoolAddress, Relay, RelayLink, Tunnel, key_address};

/// Where the coordinator would be: it echoes what each stream handed to it sends, and says
/// on `origins` whom each stands for.
pub(crate) fn echo() -> mpsc::Sender<Arrival> {
    echo_noting_origins().0
}

pub(crate) fn echo_noting_origins() -> (mpsc::Sender<Arrival>, mpsc::UnboundedReceiver<SocketAddr>)
{
    let (deliver, mut arrivals) = mpsc::channel::<Arrival>(8);
    let (noted, origins) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(arrival) = arrivals.recv().await {
            let _ = noted.send(arrival.origin);
            tokio::spawn(async move {
                let (mut read, mut write) = tokio::io::split(arrival.stream);
                let _ = tokio::io::copy(&mut read, &mut write).await;
                let _ = write.shutdown().await;
            });
        }
    });
    (deliver, origins)
}

/// What comes back through `tunnel` for `message`, to the end of the echo's stream: nothing
/// missing, nothing twice.
pub(crate) async fn round_trip(tunnel: &Tunnel, message: &[u8]) -> Vec<u8> {
    let port: SocketAddr = tunnel.url().trim_start_matches("https://").parse().unwrap();
    let mut tcp = tokio::net::TcpStream::connect(port).await.unwrap();
    tcp.write_all(message).await.unwrap();
    tcp.shutdown().await.unwrap();
    let mut back = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), tcp.read_to_end(&mut back))
        .await
        .expect("the echo ended in time")
        .unwrap();
    back
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tunnel_reaches_the_pool_directly_by_its_key_and_keeps_its_key_across_starts() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("remote.key");
    let (listener, mut origins) = echo_noting_origins();
    let bind: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let gateway = Gateway::start(&key, bind, None, listener.clone())
        .await
        .unwrap();
    let mut address = gateway.address().await;
    address.direct = gateway.bound().into_iter().collect();
    let tunnel = Tunnel::open(address.clone()).await.unwrap();
    for message in [&b"hello"[..], &[7u8; 100_000][..]] {
        assert_eq!(round_trip(&tunnel, message).await, message);
        // Straight from the device: it stands for the address its packets come from.
        let origin = origins.recv().await.unwrap();
        assert!(origin.ip().is_loopback() && origin.port() != 0, "{origin}");
    }
    let path = tunnel.path().await.unwrap();
    assert!(path.direct, "{path}");
    drop((tunnel, gateway));
    let again = Gateway::start(&key, bind, None, listener).await.unwrap();
    assert_eq!(
        again.address().await.id,
        address.id,
        "the pool's key is kept"
    );
    let text = address.to_string();
    assert_eq!(text.parse::<PoolAddress>().unwrap(), address);
}

/// A relay of this crate's own on loopback, plain HTTP, with no address discovery.
pub(crate) async fn loopback_relay() -> Relay {
    let listen = "127.0.0.1:0".parse().unwrap();
    Relay::start(listen, crate::RELAY_CLIENT_BYTES_PER_S_DEFAULT, None)
        .await
        .unwrap()
}

/// A pool's gateway, echoing, whose address names only `relay`: no direct address, so the
/// relay is the only way to it.
pub(crate) async fn pool_behind(
    relay: &RelayLink,
    dir: &std::path::Path,
) -> (Gateway, PoolAddress) {
    let bind: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let gateway = Gateway::start(&dir.join("key"), bind, Some(relay.clone()), echo())
        .await
        .unwrap();
    let address = PoolAddress {
        id: gateway.address().await.id,
        relay: Some(relay.clone()),
        direct: Vec::new(),
    };
    (gateway, address)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tunnel_reaches_the_pool_through_a_relay_alone() {
    let dir = tempfile::tempdir().unwrap();
    let relay = loopback_relay().await;
    let link = RelayLink {
        url: format!("http://{}", relay.address().unwrap())
            .parse()
            .unwrap(),
        fingerprint: None,
    };
    let (_gateway, address) = pool_behind(&link, dir.path()).await;
    let tunnel = Tunnel::open(address).await.unwrap();
    assert_eq!(
        round_trip(&tunnel, b"through the relay").await,
        b"through the relay"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_pool_is_said_at_once() {
    let key = iroh::SecretKey::from_bytes(&[9; 32]).public();
    let nowhere = PoolAddress {
        id: key,
        relay: None,
        direct: vec!["127.0.0.1:9".parse().unwrap()],
    };
    let opened = tokio::time::timeout(Duration::from_secs(30), Tunnel::open(nowhere))
        .await
        .expect("it gives up within its connect timeout");
    let error = opened
        .err()
        .expect("nothing answers for that key")
        .to_string();
    assert!(error.contains("cannot reach the pool"), "{error}");
    assert!(
        error.contains("names no relay"),
        "it says what would help: {error}"
    );
}

#[tokio::test]
async fn a_relay_refuses_a_rate_too_low_to_carry_a_frame() {
    let listen = "127.0.0.1:0".parse().unwrap();
    let refused = Relay::start(listen, crate::RELAY_CLIENT_BYTES_PER_S_MIN - 1, None).await;
    let error = refused.err().expect("refused").to_string();
    assert!(error.contains("at least 65536 bytes a second"), "{error}");
    assert!(
        Relay::start(listen, crate::RELAY_CLIENT_BYTES_PER_S_MIN, None)
            .await
            .is_ok()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lazy_tunnel_opened_while_the_pool_is_away_reaches_it_once_it_is_up() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("remote.key");
    std::fs::write(&key_file, [5u8; 32]).unwrap();
    // A port nothing listens on yet, where the pool will be.
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let pool = PoolAddress {
        id: iroh::SecretKey::from_bytes(&[5; 32]).public(),
        relay: None,
        direct: vec![port],
    };
    let tunnel = Tunnel::open_lazily(pool).await.unwrap();
    let gateway = Gateway::start(&key_file, port, None, echo()).await.unwrap();
    assert_eq!(
        gateway.address().await.id,
        iroh::SecretKey::from_bytes(&[5; 32]).public()
    );
    assert_eq!(round_trip(&tunnel, b"you are up").await, b"you are up");
}

#[test]
fn a_device_through_a_relay_stands_for_an_address_of_its_own_key() {
    let device = |seed: u8| iroh::SecretKey::from_bytes(&[seed; 32]).public();
    let (one, other) = (key_address(device(1)), key_address(device(2)));
    assert_eq!(
        one,
        key_address(device(1)),
        "the same device, the same address"
    );
    for address in [one, other] {
        let std::net::IpAddr::V6(v6) = address.ip() else {
            panic!("{address} is not IPv6");
        };
        assert_eq!(v6.octets()[0], 0xfd, "unique local: {address}");
    }
    let network = |address: SocketAddr| match address.ip() {
        std::net::IpAddr::V6(v6) => v6.segments()[..3].to_vec(),
        std::net::IpAddr::V4(_) => unreachable!(),
    };
    assert_ne!(network(one), network(other), "each its own /48 network");
}

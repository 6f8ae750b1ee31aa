//! Coordinators named by a pool address (`iroh:KEY?relay=…`): the tunnel that reaches each,
//! opened once and kept for the life of the process, and the loopback URL clients use instead.

use std::sync::Mutex;

use anyhow::Context;

static OPEN: Mutex<Vec<remote::Tunnel>> = Mutex::new(Vec::new());

/// Keeps `tunnel` open for the life of the process; the URL that reaches its pool.
pub(crate) fn keep(tunnel: remote::Tunnel) -> String {
    let url = tunnel.url();
    OPEN.lock()
        .expect("no thread panics holding it")
        .push(tunnel);
    url
}

/// `url` as clients give it to reqwest: a URL as it was, or, for a pool address, the loopback
/// URL of a tunnel to that pool (each of a comma-separated list alike), which has reached the
/// pool once: a command says at once that the pool is out of reach.
pub(crate) async fn reachable(url: &str) -> anyhow::Result<String> {
    through_tunnels(url, true).await
}

/// [`reachable`] for an agent, whose tunnel connects when first used: an agent started while
/// its pool is out of reach waits for it, as on the LAN.
pub(crate) async fn reachable_later(url: &str) -> anyhow::Result<String> {
    through_tunnels(url, false).await
}

async fn through_tunnels(url: &str, connect_now: bool) -> anyhow::Result<String> {
    let mut urls = Vec::new();
    for part in url.split(',') {
        if !remote::PoolAddress::is_one(part) {
            urls.push(part.to_owned());
            continue;
        }
        let address: remote::PoolAddress = part.parse()?;
        let tunnel = match connect_now {
            true => remote::Tunnel::open(address).await,
            false => remote::Tunnel::open_lazily(address).await,
        };
        let tunnel = tunnel.with_context(|| format!("reaching {part}"))?;
        urls.push(keep(tunnel));
    }
    Ok(urls.join(","))
}

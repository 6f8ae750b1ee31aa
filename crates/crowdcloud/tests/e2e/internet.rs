//! A small internet of network namespaces: a public switch (10.78.0.0/24) joining a relay and
//! home routers, each router holding a LAN of its own (10.79.K.0/24) behind a NAT of nftables.
//! Machines behind different routers cannot reach each other's private addresses, only what
//! their routers' NATs let through: what `up --remote` meets between a home and a café.
//!
//! The routers need `nft` (Debian's nftables); `scripts/test` installs it where it can.

use crate::lan::{Lan, ip, made_or_skip};

/// How a router maps its LAN's outgoing UDP to its public address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Nat {
    /// One public port per local port, kept where it is free, whatever the destination (an
    /// endpoint-independent mapping, as most home routers make): a hole punched toward a peer
    /// lets that peer's packets in. Unsolicited packets are dropped, as at home.
    Easy,
    /// A random public port for every destination (a symmetric NAT, as carrier-grade NAT and
    /// some office firewalls make): the port a peer learns of is not the one that reaches this
    /// side, so two such routers let no hole through and only a relay carries their traffic.
    Hard,
}

/// One router and the machines behind it.
pub(crate) struct Home<'a> {
    pub(crate) router: &'a str,
    pub(crate) nat: Nat,
    pub(crate) machines: &'a [&'a str],
}

/// The public address of the `index`th public machine (after the routers), or of a router.
pub(crate) fn public_address(index: usize) -> String {
    format!("10.78.0.{}", index + 1)
}

/// An internet of `homes` (router K, from 0, at 10.78.0.K+1; its machines at 10.79.K+1.2 and
/// on) and `public` machines (after the routers on 10.78.0.0/24), or `None` after saying why
/// it cannot be made here.
pub(crate) fn internet_or_skip(homes: &[Home], public: &[&str]) -> Option<Lan> {
    made_or_skip(create(homes, public))
}

fn create(homes: &[Home], public: &[&str]) -> Result<Lan, String> {
    if std::process::Command::new("nft")
        .arg("--version")
        .output()
        .is_err()
    {
        return Err("`nft` is not installed (Debian's nftables)".to_owned());
    }
    let mut lan = Lan::empty()?;
    let switch = lan.add_namespace("net")?;
    bridge(&switch, "br0", None)?;
    for (k, home) in homes.iter().enumerate() {
        let router = lan.add_namespace(home.router)?;
        let wan = format!("{}/24", public_address(k));
        plug(&switch, "br0", &format!("w{k}"), &router, "wan0", &wan)?;
        route(home, k, &router, &mut lan)?;
    }
    for (n, machine) in public.iter().enumerate() {
        let namespace = lan.add_namespace(machine)?;
        let address = format!("{}/24", public_address(homes.len() + n));
        plug(
            &switch,
            "br0",
            &format!("m{n}"),
            &namespace,
            "lan0",
            &address,
        )?;
    }
    Ok(lan)
}

/// The router's LAN, its machines, forwarding and its NAT.
fn route(home: &Home, k: usize, router: &str, lan: &mut Lan) -> Result<(), String> {
    let subnet = k + 1;
    bridge(router, "brlan", Some(&format!("10.79.{subnet}.1/24")))?;
    for (j, machine) in home.machines.iter().enumerate() {
        let namespace = lan.add_namespace(machine)?;
        let address = format!("10.79.{subnet}.{}/24", j + 2);
        plug(
            router,
            "brlan",
            &format!("l{j}"),
            &namespace,
            "lan0",
            &address,
        )?;
        let gateway = format!("10.79.{subnet}.1");
        ip(&["-n", &namespace, "route", "add", "default", "via", &gateway])?;
    }
    run_in(router, &["sysctl", "-qw", "net.ipv4.ip_forward=1"], None)?;
    // Unsolicited packets are dropped on the way in and to the router itself alike, as at
    // home. Dropped before conntrack confirms them, a peer's first punch (which arrives before
    // this side has sent) leaves no entry behind that would make the router move this side's
    // port when it answers: Linux keeps a port only while no entry claims it.
    let mapping = match home.nat {
        Nat::Easy => "masquerade",
        Nat::Hard => "masquerade random",
    };
    let rules = format!(
        "table ip nat {{
            chain postrouting {{
                type nat hook postrouting priority srcnat; policy accept;
                oifname \"wan0\" {mapping}
            }}
        }}
        table ip filter {{
            chain forward {{
                type filter hook forward priority filter; policy accept;
                iifname \"wan0\" ct state new drop
            }}
            chain input {{
                type filter hook input priority filter; policy accept;
                iifname \"wan0\" ct state new drop
            }}
        }}"
    );
    run_in(router, &["nft", "-f", "-"], Some(&rules))
}

fn bridge(namespace: &str, name: &str, address: Option<&str>) -> Result<(), String> {
    ip(&["-n", namespace, "link", "add", name, "type", "bridge"])?;
    ip(&["-n", namespace, "link", "set", name, "up"])?;
    if let Some(address) = address {
        ip(&["-n", namespace, "addr", "add", address, "dev", name])?;
    }
    Ok(())
}

/// A veth pair from `bridge` in `switch` (end `port`) to `namespace` (end `end`, at `address`).
fn plug(
    switch: &str,
    bridge: &str,
    port: &str,
    namespace: &str,
    end: &str,
    address: &str,
) -> Result<(), String> {
    ip(&[
        "-n", switch, "link", "add", port, "type", "veth", "peer", "name", end, "netns", namespace,
    ])?;
    ip(&["-n", switch, "link", "set", port, "master", bridge])?;
    ip(&["-n", switch, "link", "set", port, "up"])?;
    ip(&["-n", namespace, "addr", "add", address, "dev", end])?;
    ip(&["-n", namespace, "link", "set", end, "up"])?;
    ip(&["-n", namespace, "link", "set", "lo", "up"])
}

/// Runs `command` inside `namespace`, with `stdin` as its input.
fn run_in(namespace: &str, command: &[&str], stdin: Option<&str>) -> Result<(), String> {
    use std::io::Write;
    let mut child = std::process::Command::new("ip")
        .args(["netns", "exec", namespace])
        .args(command)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|error| format!("cannot run {command:?}: {error}"))?;
    let mut input = child.stdin.take().expect("piped");
    input
        .write_all(stdin.unwrap_or_default().as_bytes())
        .map_err(|error| error.to_string())?;
    drop(input);
    let output = child.wait_with_output().map_err(|e| e.to_string())?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{command:?} in {namespace} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

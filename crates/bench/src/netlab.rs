//! Machines of their own on one host, for the benchmarks and tests of the network: network
//! namespaces joined by veth pairs, as a flat LAN (a bridge) or as a small internet, a public
//! switch (10.78.0.0/24) joining public machines and home routers, each router holding a LAN
//! of its own (10.79.K.0/24) behind a NAT of nftables. Machines behind different routers reach
//! each other only as their routers' NATs let them.
//!
//! Made with `ip` and `nft` (root or CAP_SYS_ADMIN); every namespace, with every process in
//! it, is removed on drop.

use std::ffi::OsStr;

use tokio::process::Command;

use crate::BenchError;

/// The namespaces of one lab.
pub struct Netlab {
    prefix: String,
    namespaces: Vec<String>,
}

/// How a router maps its LAN's outgoing UDP to its public address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nat {
    /// One public port per local port, kept where it is free, whatever the destination (an
    /// endpoint-independent mapping, as most home routers make): a hole punched toward a peer
    /// lets that peer's packets in. Unsolicited packets are dropped, as at home.
    Easy,
    /// A random public port for every destination (a symmetric NAT, as carrier-grade NAT and
    /// some office firewalls make): the port a peer learns of is not the one that reaches this
    /// side, so between two such routers no hole opens and only a relay carries traffic.
    Hard,
}

/// One router and the machines behind it.
pub struct Home<'a> {
    pub router: &'a str,
    pub nat: Nat,
    pub machines: &'a [&'a str],
}

/// The public address of the `index`th machine on the public switch: routers first, in the
/// order given, then the public machines.
pub fn public_address(index: usize) -> String {
    format!("10.78.0.{}", index + 1)
}

/// The address of the `index`th machine behind the `router`th router.
pub fn home_address(router: usize, index: usize) -> String {
    format!("10.79.{}.{}", router + 1, index + 2)
}

fn setup(message: String) -> BenchError {
    BenchError::Setup(message)
}

/// Runs `ip ARGS`.
pub fn ip(args: &[&str]) -> Result<(), BenchError> {
    run(std::process::Command::new("ip").args(args), None)
}

fn run(command: &mut std::process::Command, stdin: Option<&str>) -> Result<(), BenchError> {
    use std::io::Write;
    let shown = format!("{command:?}");
    let mut child = command
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|error| setup(format!("cannot run {shown}: {error}")))?;
    let mut input = child.stdin.take().expect("stdin is piped");
    input
        .write_all(stdin.unwrap_or_default().as_bytes())
        .map_err(|error| setup(format!("{shown}: {error}")))?;
    drop(input);
    let output = child
        .wait_with_output()
        .map_err(|error| setup(format!("{shown}: {error}")))?;
    if output.status.success() {
        return Ok(());
    }
    Err(setup(format!(
        "{shown} failed: {}",
        String::from_utf8_lossy(&output.stderr).trim()
    )))
}

impl Netlab {
    /// No namespaces yet, under a prefix no other lab on this host uses at once.
    pub fn new() -> Netlab {
        let suffix: u32 = rand::random::<u32>() % 100_000;
        Netlab {
            prefix: format!("cc{}x{suffix}", std::process::id()),
            namespaces: Vec::new(),
        }
    }

    /// The namespace `machine` runs in.
    pub fn namespace(&self, machine: &str) -> String {
        format!("{}-{machine}", self.prefix)
    }

    /// Makes the namespace of `machine` (a machine, a switch or a router); its name.
    pub fn add_namespace(&mut self, machine: &str) -> Result<String, BenchError> {
        let namespace = self.namespace(machine);
        ip(&["netns", "add", &namespace])?;
        self.namespaces.push(namespace.clone());
        Ok(namespace)
    }

    /// `program` to be run on `machine`.
    pub fn command(&self, machine: &str, program: impl AsRef<OsStr>) -> Command {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.namespace(machine)])
            .arg(program);
        command
    }

    /// Moves the calling thread onto `machine`'s network: the sockets it opens from now on are
    /// that machine's. For a thread of its own, which runs a runtime of its own there.
    pub fn enter(&self, machine: &str) -> Result<(), BenchError> {
        let path = format!("/var/run/netns/{}", self.namespace(machine));
        let file = std::fs::File::open(&path).map_err(BenchError::io(path))?;
        rustix::thread::move_into_link_name_space(
            std::os::fd::AsFd::as_fd(&file),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .map_err(|error| setup(format!("cannot enter {machine}'s network: {error}")))
    }

    /// SIGKILL every process on `machine`: it vanishes from the network at once.
    pub fn kill_machine(&self, machine: &str) {
        kill_all_in(&self.namespace(machine));
    }

    /// A LAN of `(machine, address)` pairs (such as `10.77.0.1/24`) on one bridge. All of
    /// 10.77.0.0/16 is on it: a machine reaches those of other /24s directly, with no router.
    pub fn lan(machines: &[(&str, &str)]) -> Result<Netlab, BenchError> {
        let mut lab = Netlab::new();
        let switch = lab.add_namespace("sw")?;
        bridge(&switch, "br0", None)?;
        for (index, (machine, address)) in machines.iter().enumerate() {
            let namespace = lab.add_namespace(machine)?;
            // The machine's end is called lan0: a veth* name would be skipped by discovery.
            plug(&switch, "br0", &format!("p{index}"), &namespace, address)?;
            ip(&[
                "-n",
                &namespace,
                "route",
                "add",
                "10.77.0.0/16",
                "dev",
                "lan0",
            ])?;
        }
        Ok(lab)
    }

    /// An internet of `homes` (router K at [`public_address`] K, its machines at
    /// [`home_address`]) and `public` machines on the public switch after the routers.
    pub fn internet(homes: &[Home], public: &[&str]) -> Result<Netlab, BenchError> {
        let mut lab = Netlab::new();
        let switch = lab.add_namespace("net")?;
        bridge(&switch, "br0", None)?;
        for (k, home) in homes.iter().enumerate() {
            let router = lab.add_namespace(home.router)?;
            let wan = format!("{}/24", public_address(k));
            plug_as(&switch, "br0", &format!("w{k}"), &router, "wan0", &wan)?;
            lab.route(home, k, &router)?;
        }
        for (n, machine) in public.iter().enumerate() {
            let namespace = lab.add_namespace(machine)?;
            let address = format!("{}/24", public_address(homes.len() + n));
            plug(&switch, "br0", &format!("m{n}"), &namespace, &address)?;
        }
        Ok(lab)
    }

    /// The router's LAN, its machines, forwarding and its NAT.
    fn route(&mut self, home: &Home, k: usize, router: &str) -> Result<(), BenchError> {
        let gateway = format!("10.79.{}.1", k + 1);
        bridge(router, "brlan", Some(&format!("{gateway}/24")))?;
        for (j, machine) in home.machines.iter().enumerate() {
            let namespace = self.add_namespace(machine)?;
            let address = format!("{}/24", home_address(k, j));
            plug(router, "brlan", &format!("l{j}"), &namespace, &address)?;
            ip(&["-n", &namespace, "route", "add", "default", "via", &gateway])?;
        }
        let in_router = |program: &str| {
            let mut command = std::process::Command::new("ip");
            command.args(["netns", "exec", router, program]);
            command
        };
        run(
            in_router("sysctl").args(["-qw", "net.ipv4.ip_forward=1"]),
            None,
        )?;
        run(
            in_router("nft").args(["-f", "-"]),
            Some(&nat_rules(home.nat)),
        )
    }
}

/// A router's rules. Unsolicited packets are dropped on the way in and to the router itself
/// alike, as at home. Dropped before conntrack confirms them, a peer's first punch (which
/// arrives before this side has sent) leaves no entry behind that would make the router move
/// this side's port when it answers: Linux keeps a port only while no entry claims it.
fn nat_rules(nat: Nat) -> String {
    let mapping = match nat {
        Nat::Easy => "masquerade",
        Nat::Hard => "masquerade random",
    };
    format!(
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
    )
}

fn bridge(namespace: &str, name: &str, address: Option<&str>) -> Result<(), BenchError> {
    ip(&["-n", namespace, "link", "add", name, "type", "bridge"])?;
    ip(&["-n", namespace, "link", "set", name, "up"])?;
    if let Some(address) = address {
        ip(&["-n", namespace, "addr", "add", address, "dev", name])?;
    }
    Ok(())
}

/// A veth pair from `bridge` in `switch` (end `port`) to `namespace` (end `lan0`, at `address`).
fn plug(
    switch: &str,
    bridge: &str,
    port: &str,
    namespace: &str,
    address: &str,
) -> Result<(), BenchError> {
    plug_as(switch, bridge, port, namespace, "lan0", address)
}

fn plug_as(
    switch: &str,
    bridge: &str,
    port: &str,
    namespace: &str,
    end: &str,
    address: &str,
) -> Result<(), BenchError> {
    ip(&[
        "-n", switch, "link", "add", port, "type", "veth", "peer", "name", end, "netns", namespace,
    ])?;
    ip(&["-n", switch, "link", "set", port, "master", bridge])?;
    ip(&["-n", switch, "link", "set", port, "up"])?;
    ip(&["-n", namespace, "addr", "add", address, "dev", end])?;
    ip(&["-n", namespace, "link", "set", end, "up"])?;
    ip(&["-n", namespace, "link", "set", "lo", "up"])
}

impl Default for Netlab {
    fn default() -> Self {
        Netlab::new()
    }
}

impl Drop for Netlab {
    fn drop(&mut self) {
        for namespace in &self.namespaces {
            // Anything still running inside goes with its namespace.
            kill_all_in(namespace);
            let _ = ip(&["netns", "del", namespace]);
        }
    }
}

/// SIGKILL every process in `namespace`.
fn kill_all_in(namespace: &str) {
    if let Ok(output) = std::process::Command::new("ip")
        .args(["netns", "pids", namespace])
        .output()
    {
        for pid in String::from_utf8_lossy(&output.stdout).split_whitespace() {
            if let Some(pid) = pid.parse().ok().and_then(rustix::process::Pid::from_raw) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
    }
}

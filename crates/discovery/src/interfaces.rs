//! Which network interfaces carry discovery, and why.
//!
//! The failure this guards against: a machine that advertises on a docker bridge or a VPN
//! tunnel, or only has a self-assigned address, and so is never seen by the family's other
//! devices while nothing says why. Every interface gets a verdict and a reason people can act
//! on, and `--interface NAME` overrides the verdict.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::DiscoveryError;

/// One interface and whether discovery uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceChoice {
    pub name: String,
    pub addresses: Vec<IpAddr>,
    pub used: bool,
    /// Why it is used or skipped, and what to do about it.
    pub reason: String,
}

/// Name prefixes of interfaces that are virtual bridges, container links or tunnels: the
/// family's other devices are not behind them, and multicast on them reaches nothing useful.
const VIRTUAL_PREFIXES: &[&str] = &[
    "docker",
    "veth",
    "br-",
    "virbr",
    "vmnet",
    "vboxnet",
    "cni",
    "flannel",
    "cali",
    "podman",
    "lxc",
    "lxd",
    "tun",
    "tap",
    "wg",
    "zt",
    "tailscale",
    "utun",
];

/// The machine's interfaces with a verdict each. With `asked` non-empty, exactly the named
/// interfaces are used, whatever they are.
pub fn interfaces(asked: &[String]) -> Result<Vec<InterfaceChoice>, DiscoveryError> {
    let mut by_name: BTreeMap<String, (Vec<IpAddr>, bool)> = BTreeMap::new();
    for interface in if_addrs::get_if_addrs().map_err(DiscoveryError::Interfaces)? {
        let entry = by_name
            .entry(interface.name.clone())
            .or_insert_with(|| (Vec::new(), true));
        entry.0.push(interface.ip());
        entry.1 &=
            interface.is_oper_up() || interface.oper_status == if_addrs::IfOperStatus::Unknown;
    }
    Ok(by_name
        .into_iter()
        .map(|(name, (addresses, up))| judge(name, addresses, up, asked))
        .collect())
}

fn is_link_local(address: &IpAddr) -> bool {
    match address {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => v6.segments()[0] & 0xffc0 == 0xfe80,
    }
}

fn judge(name: String, addresses: Vec<IpAddr>, up: bool, asked: &[String]) -> InterfaceChoice {
    let verdict = |used: bool, reason: String| InterfaceChoice {
        name: name.clone(),
        addresses: addresses.clone(),
        used,
        reason,
    };
    if !asked.is_empty() {
        return if asked.contains(&name) {
            verdict(true, "named with --interface".to_owned())
        } else {
            verdict(false, "not named with --interface".to_owned())
        };
    }
    if addresses.iter().all(IpAddr::is_loopback) {
        return verdict(false, "loopback: reaches only this machine".to_owned());
    }
    if !up {
        return verdict(
            false,
            "down: connect the cable or Wi-Fi, or bring the interface up".to_owned(),
        );
    }
    if let Some(prefix) = VIRTUAL_PREFIXES.iter().find(|p| name.starts_with(**p)) {
        return verdict(
            false,
            format!(
                "virtual ({prefix}…: a container bridge, VM network or tunnel), not the LAN; name it with --interface {name} to use it anyway"
            ),
        );
    }
    let routable: Vec<&IpAddr> = addresses
        .iter()
        .filter(|a| !a.is_loopback() && !is_link_local(a))
        .collect();
    if routable.is_empty() {
        return verdict(
            false,
            "only link-local addresses (169.254.x.x or fe80::): no address from the router yet; check the network or its DHCP".to_owned(),
        );
    }
    let shown: Vec<String> = routable.iter().map(|a| a.to_string()).collect();
    verdict(true, format!("LAN address {}", shown.join(", ")))
}

/// An mDNS daemon that speaks only on the interfaces [`interfaces`] chooses (or exactly
/// `asked`), with every verdict and the names of the interfaces used.
pub(crate) struct ChosenDaemon {
    pub(crate) daemon: mdns_sd::ServiceDaemon,
    pub(crate) interfaces: Vec<InterfaceChoice>,
    pub(crate) used: Vec<String>,
}

pub(crate) fn daemon_on(asked: &[String]) -> Result<ChosenDaemon, DiscoveryError> {
    let interfaces = interfaces(asked)?;
    let used: Vec<String> = interfaces
        .iter()
        .filter(|i| i.used)
        .map(|i| i.name.clone())
        .collect();
    if used.is_empty() {
        return Err(DiscoveryError::NoInterface);
    }
    let daemon = mdns_sd::ServiceDaemon::new()?;
    daemon.disable_interface(mdns_sd::IfKind::All)?;
    daemon.enable_interface(
        used.iter()
            .map(|name| mdns_sd::IfKind::Name(name.clone()))
            .collect::<Vec<_>>(),
    )?;
    Ok(ChosenDaemon {
        daemon,
        interfaces,
        used,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn loopback_virtual_down_and_link_local_only_interfaces_are_skipped_with_a_reason() {
        let lan = judge(
            "eth0".into(),
            vec![ip("192.168.1.20"), ip("fe80::1")],
            true,
            &[],
        );
        assert!(lan.used, "{}", lan.reason);
        assert!(lan.reason.contains("192.168.1.20"));
        for (name, address, up, word) in [
            ("lo", "127.0.0.1", true, "loopback"),
            ("docker0", "172.17.0.1", true, "virtual"),
            ("veth12ab", "10.0.0.3", true, "virtual"),
            ("br-5f2e", "172.18.0.1", true, "virtual"),
            ("wlan0", "169.254.10.2", true, "link-local"),
            ("eth1", "192.168.2.2", false, "down"),
        ] {
            let choice = judge(name.into(), vec![ip(address)], up, &[]);
            assert!(!choice.used, "{name}");
            assert!(choice.reason.contains(word), "{name}: {}", choice.reason);
        }
    }

    #[test]
    fn naming_interfaces_overrides_every_rule() {
        let asked = vec!["docker0".to_owned()];
        assert!(judge("docker0".into(), vec![ip("172.17.0.1")], true, &asked).used);
        assert!(!judge("eth0".into(), vec![ip("192.168.1.2")], true, &asked).used);
    }

    #[test]
    fn this_machine_lists_its_interfaces() {
        let all = interfaces(&[]).unwrap();
        assert!(
            all.iter()
                .any(|i| i.addresses.iter().any(IpAddr::is_loopback))
        );
        assert!(all.iter().all(|i| !i.reason.is_empty()));
    }
}

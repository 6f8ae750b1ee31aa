//! The serving side of trust on the wire: when the coordinator serves TLS and with which
//! certificate, its advert on the LAN, and the join code `up` shows.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;

use coordinator::TlsIdentity;

use crate::cli::ServiceArgs;
use crate::commands::service::Served;

/// Where `--lan` listens: every address, the usual port.
pub(crate) const LAN_LISTEN: &str = "0.0.0.0:7878";

/// The owner's TLS choices. TLS is always on for a listener that is not loopback.
#[derive(Debug, Clone, Default)]
pub(crate) struct TlsOptions {
    /// TLS on loopback too.
    force: bool,
    /// A certificate chain and key to serve instead of the self-signed certificate.
    pem_files: Option<(PathBuf, PathBuf)>,
}

impl TlsOptions {
    pub(crate) fn from_args(args: &ServiceArgs) -> Self {
        Self {
            force: args.tls,
            pem_files: args.tls_cert.clone().zip(args.tls_key.clone()),
        }
    }

    /// The certificate to serve on `address`, or `None` for plain HTTP on loopback.
    pub(crate) fn identity_for(
        &self,
        address: &SocketAddr,
        data_dir: &Path,
    ) -> anyhow::Result<Option<TlsIdentity>> {
        if address.ip().is_loopback() && !self.force && self.pem_files.is_none() {
            return Ok(None);
        }
        let identity = match &self.pem_files {
            Some((cert, key)) => TlsIdentity::from_pem_files(cert, key),
            None => TlsIdentity::self_signed_in(&data_dir.join("tls")),
        }
        .context("cannot set up TLS; fix the files, or remove the data dir's tls/ to make a new certificate")?;
        Ok(Some(identity))
    }
}

/// The URL clients on this machine use: loopback when the listener takes every address.
pub(crate) fn local_url(address: &SocketAddr, tls: bool) -> String {
    let scheme = if tls { "https" } else { "http" };
    format!("{scheme}://{}", local_address(address))
}

/// Where clients on this machine reach a listener on `address`: loopback when it takes every
/// address.
pub(crate) fn local_address(address: &SocketAddr) -> SocketAddr {
    let ip = match address.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    SocketAddr::new(ip, address.port())
}

/// Shows a join code and advertises the pool on the LAN, when it serves TLS. Failures are
/// reported and the pool serves on: a pool without an advert still works by URL.
pub(crate) async fn advertise_and_show_code(
    served: &Served,
    args: &ServiceArgs,
    pool_name: &str,
) -> Option<discovery::Advertiser> {
    let fingerprint = served.fingerprint?;
    match served.owner_client() {
        Ok(owner) => match owner.new_join_code(false).await {
            Ok(issued) => println!(
                "  join code:   {} (for one device, {} minutes; `crowdcloud join-code` makes another)",
                issued.code,
                issued.expires_in_ms / 60_000
            ),
            Err(error) => eprintln!("warning: cannot make a join code: {error}"),
        },
        Err(error) => eprintln!("warning: cannot make a join code: {error}"),
    }
    if args.no_advertise || served.address.ip().is_loopback() {
        return None;
    }
    let advert = discovery::Advert {
        pool_name: pool_name.to_owned(),
        port: served.address.port(),
        fingerprint: Some(fingerprint),
        version: env!("CARGO_PKG_VERSION").to_owned(),
    };
    let interfaces = args.interfaces.clone();
    let started =
        tokio::task::spawn_blocking(move || discovery::Advertiser::start(&advert, &interfaces))
            .await;
    match started {
        Ok(Ok(advertiser)) => {
            let used: Vec<String> = advertiser
                .interfaces()
                .iter()
                .filter(|i| i.used)
                .map(|i| format!("{} ({})", i.name, i.reason))
                .collect();
            println!("  discovery:   advertised on {}", used.join("; "));
            Some(advertiser)
        }
        Ok(Err(error)) => {
            eprintln!(
                "warning: the pool is not advertised on the LAN: {error}; devices can still join with `crowdcloud join --coordinator {}`",
                served.url
            );
            None
        }
        Err(error) => {
            eprintln!("warning: the pool is not advertised on the LAN: {error}");
            None
        }
    }
}

#[cfg(test)]
mod local_address_tests {
    use super::*;

    #[test]
    fn a_listener_on_every_address_is_reached_at_loopback_and_any_other_as_it_is() {
        let cases = [
            ("0.0.0.0:7878", "127.0.0.1:7878", "https://127.0.0.1:7878"),
            ("[::]:7878", "[::1]:7878", "https://[::1]:7878"),
            ("10.77.0.1:7878", "10.77.0.1:7878", "https://10.77.0.1:7878"),
            ("[fd00::1]:7878", "[fd00::1]:7878", "https://[fd00::1]:7878"),
        ];
        for (listen, reached, url) in cases {
            let listen: SocketAddr = listen.parse().unwrap();
            assert_eq!(
                local_address(&listen),
                reached.parse::<SocketAddr>().unwrap()
            );
            assert_eq!(local_url(&listen, true), url);
        }
        let plain: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert_eq!(local_url(&plain, false), "http://127.0.0.1:1");
    }
}

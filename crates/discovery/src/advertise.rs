//! The coordinator's advert: one mDNS service instance, answered on the chosen interfaces with
//! each interface's own addresses.

use std::time::Duration;

use mdns_sd::{IfKind, ServiceDaemon, ServiceInfo};

use wire::Fingerprint;

use crate::interfaces::{ChosenDaemon, InterfaceChoice, daemon_on};
use crate::{DiscoveryError, SERVICE_TYPE, txt};

/// What a coordinator tells the LAN about itself.
#[derive(Debug, Clone)]
pub struct Advert {
    pub pool_name: String,
    pub port: u16,
    /// The certificate clients should pin; `None` advertises plain HTTP.
    pub fingerprint: Option<Fingerprint>,
    pub version: String,
}

/// A running advert; withdrawn (a goodbye packet) when stopped or dropped.
pub struct Advertiser {
    daemon: ServiceDaemon,
    fullname: String,
    interfaces: Vec<InterfaceChoice>,
}

impl std::fmt::Debug for Advertiser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Advertiser")
            .field("fullname", &self.fullname)
            .finish_non_exhaustive()
    }
}

/// How long stopping waits for the goodbye to go out.
const GOODBYE_WAIT: Duration = Duration::from_millis(500);

impl Advertiser {
    /// Advertises `advert` on the interfaces [`interfaces`](fn@crate::interfaces) chooses (or
    /// exactly `asked`).
    pub fn start(advert: &Advert, asked: &[String]) -> Result<Self, DiscoveryError> {
        let ChosenDaemon {
            daemon,
            interfaces,
            used,
        } = daemon_on(asked)?;
        // The instance name must be unique on the LAN: two pools may both be called "family".
        let tag = match &advert.fingerprint {
            Some(fingerprint) => hex_prefix(fingerprint),
            None => format!("{:08x}", std::process::id()),
        };
        let instance = format!("{}-{tag}", advert.pool_name);
        let host = format!("crowdcloud-{tag}.local.");
        let mut properties = vec![
            (txt::POOL, advert.pool_name.clone()),
            (
                txt::SCHEME,
                if advert.fingerprint.is_some() {
                    "https"
                } else {
                    "http"
                }
                .to_owned(),
            ),
            (txt::PORT, advert.port.to_string()),
            (txt::VERSION, advert.version.clone()),
        ];
        if let Some(fingerprint) = &advert.fingerprint {
            properties.push((txt::FINGERPRINT, fingerprint.to_string()));
        }
        let mut info = ServiceInfo::new(
            SERVICE_TYPE,
            &instance,
            &host,
            (),
            advert.port,
            &properties[..],
        )?
        .enable_addr_auto();
        info.set_interfaces(used.iter().map(|name| IfKind::Name(name.clone())).collect());
        let fullname = info.get_fullname().to_owned();
        daemon.register(info)?;
        Ok(Self {
            daemon,
            fullname,
            interfaces,
        })
    }

    /// Every interface and whether the advert uses it.
    pub fn interfaces(&self) -> &[InterfaceChoice] {
        &self.interfaces
    }

    /// Withdraws the advert and stops the mDNS thread.
    pub fn stop(self) {
        drop(self)
    }
}

impl Drop for Advertiser {
    fn drop(&mut self) {
        if let Ok(done) = self.daemon.unregister(&self.fullname) {
            let _ = done.recv_timeout(GOODBYE_WAIT);
        }
        if let Ok(done) = self.daemon.shutdown() {
            let _ = done.recv_timeout(GOODBYE_WAIT);
        }
    }
}

fn hex_prefix(fingerprint: &Fingerprint) -> String {
    fingerprint.0[..4]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

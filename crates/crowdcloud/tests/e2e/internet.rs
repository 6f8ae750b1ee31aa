//! A small internet for the remote tests (`bench::netlab`): a relay on the public switch and
//! home routers with NATs of nftables, each with machines behind it. The routers need `nft`
//! (Debian's nftables), which `scripts/test` installs where it can.

use bench::netlab::{Home, Netlab};

use crate::lan::{Lan, made_or_skip};

/// An internet of `homes` and `public` machines, or `None` after saying why it cannot be made
/// here.
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
    Lan::on(Netlab::internet(homes, public).map_err(|error| error.to_string())?)
}

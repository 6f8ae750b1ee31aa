//! The web app's sign-in link for a phone or tablet: an API token and a join token made for
//! the device on the spot (one to submit and follow jobs, one to lend the device from the
//! "Lend" page), their secrets in the URL's fragment (which browsers never send to a server),
//! shown as a link and as a QR code drawn in the terminal for the device's camera.
//!
//! And `crowdcloud web`: the link for this device's own browser, signed in with the tokens it
//! joined with, through a tunnel it keeps open when the pool is known by its remote address.

use std::process::ExitCode;

use anyhow::{Context, bail};
use qrcode::QrCode;
use qrcode::render::unicode::Dense1x2;
use wire::Fingerprint;
use wire::tokens::{ManagedTokenKind, TokenCreateRequest};

use crate::cli::WebArgs;

/// Makes an API token named `device` and a join token named `device lending`, and returns
/// the link that opens the web app at `url` signed in with both.
pub(crate) async fn sign_in_link(
    owner: &client::Client,
    url: &str,
    device: &str,
) -> anyhow::Result<String> {
    let mut secrets = Vec::new();
    for (name, kind) in [
        (device.to_owned(), ManagedTokenKind::Requester),
        (lending_name(device), ManagedTokenKind::Join),
    ] {
        let created = owner
            .create_token(&TokenCreateRequest { name, kind })
            .await?;
        secrets.push(created.token);
    }
    Ok(format!(
        "{}/#token={}&join={}",
        url.trim_end_matches('/'),
        secrets[0],
        secrets[1]
    ))
}

pub(crate) async fn run(args: WebArgs) -> anyhow::Result<ExitCode> {
    let base = crate::remembered::base_dir(&args.data_dir);
    let Some(pool) = crate::remembered::load(&base)? else {
        bail!(
            "this device has joined no pool: join first with `crowdcloud join`, with a code the \
             owner made by `crowdcloud join-code --requests`"
        );
    };
    let Some(token) = &pool.api_token else {
        bail!(
            "this device joined to lend only, so the web app has nothing to sign in with: ask \
             the owner for `crowdcloud join-code --requests` and join again"
        );
    };
    let tunnel = match remote::PoolAddress::is_one(&pool.url) {
        true => {
            let address = pool.url.parse()?;
            let opened = remote::Tunnel::open_at(address, args.port).await;
            Some(opened.with_context(|| {
                format!(
                    "opening the web app's port {}; give another with --port",
                    args.port
                )
            })?)
        }
        false => None,
    };
    let url = tunnel
        .as_ref()
        .map_or(pool.url.clone(), remote::Tunnel::url);
    let link = format!("{url}/#token={token}&join={}", pool.join_token);
    if args.json {
        crate::output::print_json(&serde_json::json!({ "link": link }))?;
    } else {
        println!("web app: open {link}");
        print_certificate_warning(pool.fingerprint);
    }
    if tunnel.is_some() {
        if !args.json {
            println!("  keep this running while the browser uses the pool; Ctrl-C ends it");
        }
        super::shutdown_signal().await;
    }
    Ok(ExitCode::SUCCESS)
}

/// The name of the join token a device lends itself with.
fn lending_name(device: &str) -> String {
    format!("{device} lending")
}

/// A name for a device's token that no other token is likely to have, so it can be revoked by
/// name.
pub(crate) fn device_token_name() -> String {
    format!("web app {:04x}", rand::random::<u16>())
}

/// Prints the link, its QR code, and what the device's browser will say of the certificate.
pub(crate) fn print_sign_in(link: &str, token_name: &str, fingerprint: Option<Fingerprint>) {
    match QrCode::new(link.as_bytes()) {
        Ok(code) => {
            let drawn = code
                .render::<Dense1x2>()
                .dark_color(Dense1x2::Light)
                .light_color(Dense1x2::Dark)
                .quiet_zone(true)
                .build();
            println!("{drawn}");
        }
        Err(error) => eprintln!("warning: the link does not fit a QR code ({error})"),
    }
    println!("  phone:       scan the code above, or open {link}");
    println!(
        "               it signs in as the token {token_name:?} and lends the device as {:?}; `crowdcloud tokens revoke` ends each",
        lending_name(token_name)
    );
    if let Some(fingerprint) = fingerprint {
        print_certificate_warning(fingerprint);
    }
}

fn print_certificate_warning(fingerprint: Fingerprint) {
    println!(
        "               the browser will warn that the certificate is not trusted: the pool made it itself, as"
    );
    println!(
        "               no authority certifies a LAN address. Go on if its SHA-256 fingerprint starts {}",
        browser_fingerprint(fingerprint)
    );
}

/// The first bytes of a fingerprint as browsers show it: colon-separated uppercase pairs.
fn browser_fingerprint(fingerprint: Fingerprint) -> String {
    let text = fingerprint.to_string();
    let digits = text.trim_start_matches("sha256:").to_uppercase();
    digits
        .as_bytes()
        .chunks(2)
        .take(8)
        .map(|pair| String::from_utf8_lossy(pair).into_owned())
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_read_as_browsers_show_them() {
        let fingerprint: Fingerprint = format!("sha256:{}", "ab01".repeat(16)).parse().unwrap();
        assert_eq!(browser_fingerprint(fingerprint), "AB:01:AB:01:AB:01:AB:01");
    }
}

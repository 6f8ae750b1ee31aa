//! `relay`: runs a relay for pools' remote paths until stopped.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context;

use crate::cli::RelayArgs;

pub(crate) async fn run(args: RelayArgs) -> anyhow::Result<ExitCode> {
    let listen: SocketAddr = args
        .listen
        .parse()
        .with_context(|| format!("--listen {:?}: give HOST:PORT", args.listen))?;
    let tls = match (&args.cert, &args.key) {
        (Some(cert), Some(key)) => coordinator::TlsIdentity::from_pem_files(cert, key)?,
        _ => coordinator::TlsIdentity::self_signed_in(
            &crate::local::data_dir_or_default(&args.data_dir).join("relay"),
        )?,
    };
    let discovery = remote::AddressDiscovery {
        bind: SocketAddr::new(listen.ip(), remote::ADDRESS_DISCOVERY_PORT),
        tls: tls.rustls_config(),
    };
    let relay = remote::Relay::start(listen, args.client_bytes_per_second, Some(discovery)).await?;
    let address = relay
        .address()
        .map_or(args.listen.clone(), |a| a.to_string());
    println!("crowdcloud relay listening on http://{address}");
    if let Some(discovery) = relay.discovery_address() {
        println!("  address discovery on udp {discovery}");
    }
    println!("  certificate: {}", tls.fingerprint());
    let pin = match args.cert {
        Some(_) => String::new(),
        None => format!(" --relay-fingerprint {}", tls.fingerprint()),
    };
    println!("  pools use it with: crowdcloud up --remote --relay http://{address}{pin}");
    tokio::signal::ctrl_c().await?;
    Ok(ExitCode::SUCCESS)
}

//! `forward`: a public port whose connections ride the remote path to a pool, so a phone's
//! browser away from home, which cannot speak the remote path itself, opens the pool's web app
//! there. The bytes are the pool's own TLS: this machine carries them and reads none.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context;

use crate::cli::ForwardArgs;

pub(crate) async fn run(args: ForwardArgs) -> anyhow::Result<ExitCode> {
    let listen: SocketAddr = args
        .listen
        .parse()
        .with_context(|| format!("{:?}: give where phones connect as HOST:PORT", args.listen))?;
    let pool: remote::PoolAddress = args.pool.parse()?;
    let tunnel = remote::Tunnel::forward(pool, listen)
        .await
        .with_context(|| format!("cannot listen on {listen}; choose another HOST:PORT"))?;
    println!("crowdcloud forward listening on {}", tunnel.url());
    println!(
        "  on the owner's machine: crowdcloud join-code --web --url https://THIS-HOST:{} makes a phone's link",
        listen.port()
    );
    println!(
        "  the browser sees the pool's own certificate: this machine carries its TLS and reads none of it"
    );
    super::shutdown_signal().await;
    Ok(ExitCode::SUCCESS)
}

//! The remote path between machines of their own (network namespaces): a pool on `home` with
//! `up --remote`, a relay of our own on a public address, and a device in a `cafe` that cannot
//! reach home's private address. Home and café sit behind routers whose NATs let a hole be
//! punched (the path goes direct) or do not (it goes through the relay); the device lends
//! itself to the pool by the pool's address and runs its tasks either way. The relay carries
//! only QUIC, with the pool's TLS inside it.

use std::time::Duration;

use serde_json::Value;

use crate::harness::eventually;
use bench::netlab::{Home, Nat, public_address};

use crate::internet::internet_or_skip;
use crate::lan::{Lan, banner_line, lan_or_skip};

/// What a device away from home is given: the pool's address, certificate and a join code.
struct Pool {
    address: String,
    fingerprint: String,
    code: String,
}

/// The relay at `relay_ip`, then the pool at home reachable through it.
async fn relay_and_home(lan: &mut Lan, relay_ip: &str) -> Pool {
    let (relay, relay_fingerprint) = start_relay(lan, relay_ip).await;
    home_through(lan, &relay, &relay_fingerprint).await
}

/// The relay at `relay_ip`: its URL and the fingerprint it prints.
async fn start_relay(lan: &mut Lan, relay_ip: &str) -> (String, String) {
    let listen = format!("{relay_ip}:3340");
    let relay_out = lan.spawn("relay", &["relay", "--listen", &listen], "relay");
    banner_line(&relay_out, "crowdcloud relay listening on").await;
    let relay_fingerprint = banner_line(&relay_out, "certificate:").await;
    (format!("http://{listen}"), relay_fingerprint)
}

/// The pool at home, reachable through `relay`, whose certificate it pins as `relay_fingerprint`.
async fn home_through(lan: &mut Lan, relay: &str, relay_fingerprint: &str) -> Pool {
    let up = bench::remote::up_through(relay, relay_fingerprint);
    let up: Vec<&str> = up.iter().map(String::as_str).collect();
    let home_out = lan.spawn("home", &up, "up");
    let fingerprint = banner_line(&home_out, "certificate:").await;
    let address = banner_line(&home_out, "remote:").await;
    assert!(
        address.starts_with("iroh:")
            && address.contains("relay=")
            && address.contains(&format!("relay_fingerprint={relay_fingerprint}")),
        "{address}"
    );
    let code = banner_line(&home_out, "join code:").await;
    Pool {
        address,
        fingerprint,
        code: code.split_whitespace().next().unwrap().to_owned(),
    }
}

/// Home (with a laptop beside it) and a café, each behind a router with `nat`, and the relay
/// on a public address.
fn home_and_cafe(nat: Nat) -> Option<Lan> {
    let homes = [
        Home {
            router: "homegw",
            nat,
            machines: &["home", "laptop"],
        },
        Home {
            router: "cafegw",
            nat,
            machines: &["cafe"],
        },
    ];
    internet_or_skip(&homes, &["relay"])
}

/// The relay's address in [`home_and_cafe`]: after the two routers.
fn relay_ip() -> String {
    public_address(2)
}

#[tokio::test(flavor = "multi_thread")]
async fn devices_behind_routers_that_let_no_hole_through_lend_themselves_through_the_relay() {
    let Some(mut lan) = home_and_cafe(Nat::Hard) else {
        return;
    };
    let pool = relay_and_home(&mut lan, &relay_ip()).await;
    // Without the relay, the café has only home's private address, which it cannot reach.
    let without_relay =
        pool.address.split('?').next().unwrap().to_owned() + "?direct=10.79.1.2:7879";
    let nodes = [
        "nodes",
        "--coordinator",
        &without_relay,
        "--fingerprint",
        &pool.fingerprint,
    ];
    let tried = lan.command("cafe", &nodes).output().await.unwrap();
    let said = String::from_utf8_lossy(&tried.stderr);
    assert!(!tried.status.success());
    assert!(
        said.contains("names no relay"),
        "the café is told why: {said}"
    );
    cafe_lends_itself(&mut lan, &pool).await;
    let lan = &lan;
    // Through the relay the pool knows the café by its key alone, and counts it as a source of
    // its own (an address in fd00::/8 from the key), not as loopback with every other device.
    let log = std::fs::read_to_string(lan.data_dir("home").join("up.err")).unwrap();
    let joined = log
        .lines()
        .find(|line| line.contains("join exchange started"))
        .unwrap();
    assert!(joined.contains("peer=[fd"), "{joined}");
    runs_far_away(lan, "cafe").await;
    let (ok, how, detail) = remote_path(lan, "cafe").await;
    assert_eq!((ok, how.as_str()), (true, "through the relay"), "{detail}");
    assert!(
        detail.contains("its router changing the port"),
        "the café is told why no hole was punched: {detail}"
    );
    a_laptop_at_home_finds_the_direct_path(lan, &pool).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn devices_behind_home_routers_punch_a_hole_and_lend_themselves_over_it() {
    let Some(mut lan) = home_and_cafe(Nat::Easy) else {
        return;
    };
    let (ok, how, detail) = cafe_runs_a_job_from_home(&mut lan).await;
    // Home's router's public address: the hole, not the relay and not home's private address.
    assert_eq!((ok, how.as_str()), (true, "direct to"), "{detail}");
    assert!(
        detail.starts_with(&format!("direct to {}:", public_address(0))),
        "{detail}"
    );
    assert!(detail.contains("its router keeping the port"), "{detail}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_phone_away_opens_the_web_app_at_a_public_forward_under_the_pools_own_certificate() {
    let home = Home {
        router: "homegw",
        nat: Nat::Hard,
        machines: &["home"],
    };
    let Some(mut lan) = internet_or_skip(&[home], &["relay", "phone"]) else {
        return;
    };
    let pool = relay_and_home(&mut lan, &public_address(1)).await;
    let listen = format!("{}:8443", public_address(1));
    let forward = ["forward", &listen, &pool.address];
    let out = lan.spawn("relay", &forward, "forward");
    banner_line(&out, "crowdcloud forward listening on").await;
    let url = format!("https://{listen}");
    let made = ["join-code", "--web", "--url", &url, "--json"];
    let made: Value = serde_json::from_str(&lan.run("home", &made).await).unwrap();
    let link = made["link"].as_str().unwrap();
    let token = link
        .strip_prefix(&format!("{url}/#token="))
        .and_then(|rest| rest.split('&').next())
        .unwrap_or_else(|| panic!("the link opens the forward: {link}"));
    // The phone pins the pool's certificate through the forward and is answered: the TLS is
    // the pool's, end to end, which the forwarding machine could not present.
    let status = [
        "status",
        "--coordinator",
        &url,
        "--fingerprint",
        &pool.fingerprint,
        "--token",
        token,
        "--json",
    ];
    let listed = lan.run("phone", &status).await;
    assert!(listed.contains("\"jobs\""), "{listed}");
    let wrong = format!("sha256:{}", "00".repeat(32));
    let impostor = ["status", "--coordinator", &url, "--fingerprint", &wrong];
    let refused = lan.command("phone", &impostor).output().await.unwrap();
    assert!(!refused.status.success(), "another pin is refused");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_device_whose_router_maps_each_destination_apart_reaches_a_home_router_through_the_relay()
{
    // One side's router keeps its port, the other's does not: the port the home learns of is
    // not the one that reaches the café, so no hole opens, and the relay carries the work.
    let homes = [
        Home {
            router: "homegw",
            nat: Nat::Easy,
            machines: &["home"],
        },
        Home {
            router: "cafegw",
            nat: Nat::Hard,
            machines: &["cafe"],
        },
    ];
    let Some(mut lan) = internet_or_skip(&homes, &["relay"]) else {
        return;
    };
    let (ok, how, detail) = cafe_runs_a_job_from_home(&mut lan).await;
    assert_eq!((ok, how.as_str()), (true, "through the relay"), "{detail}");
    assert!(detail.contains("its router changing the port"), "{detail}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_relay_whose_certificate_is_not_the_pinned_one_tells_no_device_its_address() {
    let Some(mut lan) = home_and_cafe(Nat::Easy) else {
        return;
    };
    let (relay, _) = start_relay(&mut lan, &relay_ip()).await;
    // Pinned to another certificate, the relay still carries what it is given, but neither
    // side believes what it says of their addresses: no hole is punched.
    let wrong = format!("sha256:{}", "ab".repeat(32));
    let pool = home_through(&mut lan, &relay, &wrong).await;
    cafe_lends_itself(&mut lan, &pool).await;
    let (ok, how, detail) = remote_path(&lan, "cafe").await;
    assert_eq!((ok, how.as_str()), (true, "through the relay"), "{detail}");
    assert!(
        detail.contains("no relay told this device its public address"),
        "{detail}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_laptop_that_joined_at_home_reaches_the_pool_away_by_its_remote_address() {
    let home = Home {
        router: "homegw",
        nat: Nat::Hard,
        machines: &["home", "laptop"],
    };
    let Some(mut lan) = internet_or_skip(&[home], &["relay"]) else {
        return;
    };
    relay_and_home(&mut lan, &public_address(1)).await;
    // At home, the laptop joins on the LAN by the pool's own address, as discovery finds it,
    // with a code that lets it submit.
    let code = ["join-code", "--requests", "--json"];
    let code: Value = serde_json::from_str(&lan.run("home", &code).await).unwrap();
    let join = [
        "join",
        "--code",
        code["code"].as_str().unwrap(),
        "--coordinator",
        "https://10.79.1.2:7878",
    ];
    lan.run("laptop", &join).await;
    assert!(
        lan.run("laptop", &["status", "--json"])
            .await
            .contains("\"jobs\"")
    );
    // Away: home's LAN address is out of reach, the relay is not. The laptop was told the
    // pool's remote address at its join, and goes there by itself.
    lan.cut("laptop", "10.79.1.2/32").unwrap();
    let listed = lan.run("laptop", &["status", "--json"]).await;
    assert!(listed.contains("\"jobs\""), "{listed}");
    let (ok, how, detail) = remote_path(&lan, "laptop").await;
    assert_eq!((ok, how.as_str()), (true, "through the relay"), "{detail}");
    let agent = ["agent", "--slots", "1", "--name", "laptop", "--dedicated"];
    lan.spawn("laptop", &agent, "agent");
    online(&lan, "laptop").await;
    runs_far_away(&lan, "laptop").await;
}

/// The café joins with the owner's code and the pool's address, and remembers the pool by its
/// key: the agent needs no flags.
async fn cafe_lends_itself(lan: &mut Lan, pool: &Pool) {
    let join = [
        "join",
        "--code",
        &pool.code,
        "--coordinator",
        &pool.address,
        "--json",
    ];
    let joined: Value = serde_json::from_str(&lan.run("cafe", &join).await).unwrap();
    assert_eq!(joined["fingerprint"].as_str().unwrap(), pool.fingerprint);
    assert_eq!(
        joined["url"].as_str().unwrap(),
        pool.address,
        "remembered by its address"
    );
    let agent = ["agent", "--slots", "1", "--name", "cafe", "--dedicated"];
    lan.spawn("cafe", &agent, "agent");
    online(lan, "cafe").await;
}

/// Home's pool behind the relay, the café lending itself to it and running a job from home;
/// what the café's doctor then says of its remote path (see [`remote_path`]).
async fn cafe_runs_a_job_from_home(lan: &mut Lan) -> (bool, String, String) {
    let pool = relay_and_home(lan, &relay_ip()).await;
    cafe_lends_itself(lan, &pool).await;
    runs_far_away(lan, "cafe").await;
    remote_path(lan, "cafe").await
}

/// A laptop that can reach home joins by the same address and finds the direct path.
async fn a_laptop_at_home_finds_the_direct_path(lan: &Lan, pool: &Pool) {
    let code: Value =
        serde_json::from_str(&lan.run("home", &["join-code", "--json"]).await).unwrap();
    let code = code["code"].as_str().unwrap();
    let join = [
        "join",
        "--code",
        code,
        "--coordinator",
        &pool.address,
        "--json",
    ];
    lan.run("laptop", &join).await;
    let (ok, how, detail) = remote_path(lan, "laptop").await;
    assert_eq!((ok, how.as_str()), (true, "direct to"), "{detail}");
    assert!(detail.starts_with("direct to 10.79.1.2:"), "{detail}");
}

/// What `doctor` on `machine` says of its remote path to the pool it joined: whether it
/// connects, how (the first words of its detail), and all it says.
async fn remote_path(lan: &Lan, machine: &str) -> (bool, String, String) {
    // Doctor exits with failure when anything is amiss (the café finds no pool on its LAN).
    let report = ["doctor", "--json", "--discovery-ms", "200"];
    let output = lan.command(machine, &report).output().await.unwrap();
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let checks = report["joined"]["checks"].as_array().unwrap();
    let path = checks.iter().find(|c| c["what"] == "remote path").unwrap();
    let detail = path["detail"].as_str().unwrap();
    let how = ["direct to", "through the relay"]
        .into_iter()
        .find(|how| detail.starts_with(how))
        .unwrap_or(detail);
    (
        path["ok"].as_bool().unwrap(),
        how.to_owned(),
        detail.to_owned(),
    )
}

/// A job submitted at home runs on the node `name`, and what it printed comes back whole.
async fn runs_far_away(lan: &Lan, name: &str) {
    let module = lan.data_dir("home").join("probe.wasm");
    std::fs::write(&module, guests::PROBE).unwrap();
    let submit = [
        "submit",
        module.to_str().unwrap(),
        "--tasks",
        "4",
        "--wait",
        "--json",
        "--",
        "echo",
        "far-{i}",
    ];
    let status: Value = serde_json::from_str(&lan.run("home", &submit).await).unwrap();
    assert_eq!(status["state"], "completed", "{status}");
    assert_eq!(status["nodes"][0]["node_name"], name, "{status}");
    let job = status["job_id"].as_str().unwrap();
    let out = lan.data_dir("home").join("results");
    lan.run("home", &["results", job, "--out", out.to_str().unwrap()])
        .await;
    for index in 0..4 {
        let stdout = std::fs::read_to_string(out.join(index.to_string()).join("stdout")).unwrap();
        assert_eq!(stdout.trim(), format!("far-{index}"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_remote_path_without_tls_is_refused_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let up = ["up", "--listen", "127.0.0.1:0", "--slots", "0", "--remote"];
    let said = refused(&up, dir.path()).await;
    assert!(said.contains("--remote needs TLS"), "{said}");
    assert!(!dir.path().join("remote.key").exists(), "no key was made");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_waits_while_the_relay_is_down_and_runs_when_it_is_back() {
    let Some(mut lan) = lan_or_skip(&["home", "cafe", "relay"]) else {
        return;
    };
    let pool = relay_and_home(&mut lan, "10.77.0.3").await;
    lan.cut("cafe", "10.77.0.1/32").unwrap();
    let join = ["join", "--code", &pool.code, "--coordinator", &pool.address];
    lan.run("cafe", &join).await;
    lan.spawn(
        "cafe",
        &["agent", "--slots", "1", "--name", "cafe", "--dedicated"],
        "agent",
    );
    online(&lan, "cafe").await;

    let started = std::time::Instant::now();
    lan.kill_machine("relay");
    let job = submit_one(&lan).await;
    // The café says it cannot reach the pool, rather than waiting in silence.
    let log = lan.data_dir("cafe").join("agent.err");
    let told = || async {
        let text = std::fs::read_to_string(&log).ok()?;
        text.contains("cannot reach the pool").then_some(())
    };
    eventually(
        "the café to say the pool is out of reach",
        Duration::from_secs(60),
        told,
    )
    .await;
    eprintln!(
        "relay down: the café said so {} ms after",
        started.elapsed().as_millis()
    );

    let again = lan.spawn(
        "relay",
        &["relay", "--listen", "10.77.0.3:3340"],
        "relay-again",
    );
    banner_line(&again, "crowdcloud relay listening on").await;
    let lan = &lan;
    let job = job.as_str();
    let ended = || async move {
        let status: Value =
            serde_json::from_str(&lan.run("home", &["status", job, "--json"]).await).ok()?;
        (status["job"]["state"] != "running").then_some(status)
    };
    let status = eventually(
        "the job to end once the relay is back",
        Duration::from_secs(120),
        ended,
    )
    .await;
    eprintln!(
        "relay back: the job ended {} ms after the relay went down",
        started.elapsed().as_millis()
    );
    assert_eq!(status["job"]["state"], "completed", "{status}");
    assert_eq!(status["job"]["nodes"][0]["node_name"], "cafe", "{status}");
}

/// Submits one task at home; its job's id.
async fn submit_one(lan: &Lan) -> String {
    let module = lan.data_dir("home").join("probe.wasm");
    std::fs::write(&module, guests::PROBE).unwrap();
    let submit = [
        "submit",
        module.to_str().unwrap(),
        "--json",
        "--",
        "echo",
        "back",
    ];
    let submitted: Value = serde_json::from_str(&lan.run("home", &submit).await).unwrap();
    submitted["job_id"].as_str().unwrap().to_owned()
}

/// Waits for the node `name` to be online at home.
async fn online(lan: &Lan, name: &str) {
    let online = || async move {
        let nodes = lan.nodes("home").await;
        let node = nodes.iter().find(|n| n["name"] == name)?;
        (node["state"] == "online").then_some(())
    };
    eventually(
        &format!("{name}'s node online at home"),
        Duration::from_secs(90),
        online,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_web_app_of_a_device_that_joined_no_pool_says_how_to_join() {
    let dir = tempfile::tempdir().unwrap();
    let said = refused(&["web", "--port", "0"], dir.path()).await;
    assert!(said.contains("has joined no pool"), "{said}");
    assert!(said.contains("join-code --requests"), "{said}");
}

/// Runs `crowdcloud ARGS` with `data_dir`, which must fail; what it said.
async fn refused(args: &[&str], data_dir: &std::path::Path) -> String {
    let output = tokio::process::Command::new(crate::harness::BINARY)
        .args(args)
        .env("CROWDCLOUD_DATA_DIR", data_dir)
        .output()
        .await
        .unwrap();
    assert!(!output.status.success(), "crowdcloud {args:?} succeeded");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

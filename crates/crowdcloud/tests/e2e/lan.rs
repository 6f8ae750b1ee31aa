//! A family LAN made of network namespaces: a switch namespace holding a bridge, and one
//! namespace per machine joined to it by a veth pair, with 10.77.0.x addresses that exist only
//! inside these namespaces. The coordinator runs `up --lan` in one; the other machines find it
//! by mDNS with no address given, join with the code, lend themselves, and run a job.
//!
//! The namespaces are made by the test (`ip netns`, which needs root or CAP_SYS_ADMIN) and
//! removed when it ends. Where they cannot be made, the test says why and passes.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use bench::netlab::Netlab;

use crate::harness::{BINARY, eventually};

/// Machines of one test: their network, data dirs and processes; all removed on drop.
pub(crate) struct Lan {
    net: Netlab,
    dir: tempfile::TempDir,
    children: Vec<Child>,
}

impl Lan {
    /// A LAN of `machines`, each with its address (such as `10.77.0.1/24`), or why one cannot be
    /// made here.
    fn create(machines: &[(&str, &str)]) -> Result<Lan, String> {
        Lan::on(Netlab::lan(machines).map_err(|error| error.to_string())?)
    }

    /// The machines of `net`.
    pub(crate) fn on(net: Netlab) -> Result<Lan, String> {
        Ok(Lan {
            net,
            dir: tempfile::tempdir().map_err(|e| e.to_string())?,
            children: Vec::new(),
        })
    }

    fn namespace(&self, machine: &str) -> String {
        self.net.namespace(machine)
    }

    pub(crate) fn data_dir(&self, machine: &str) -> PathBuf {
        let dir = self.dir.path().join(machine);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// `crowdcloud ARGS` on `machine`, with its data dir.
    pub(crate) fn command(&self, machine: &str, args: &[&str]) -> Command {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.namespace(machine), BINARY])
            .args(args)
            .env("CROWDCLOUD_DATA_DIR", self.data_dir(machine))
            // CROWDCLOUD_TEST_LOG raises it to see inside, e.g. `info,iroh=debug`.
            .env(
                "CROWDCLOUD_LOG",
                std::env::var("CROWDCLOUD_TEST_LOG").unwrap_or_else(|_| "info".to_owned()),
            )
            .env_remove("CROWDCLOUD_COORDINATOR")
            .env_remove("CROWDCLOUD_TOKEN")
            .env_remove("CROWDCLOUD_AGENT_DIR")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        command
    }

    /// Runs a command to its end; panics with its output if it fails.
    pub(crate) async fn run(&self, machine: &str, args: &[&str]) -> String {
        let output = self.command(machine, args).output().await.unwrap();
        assert!(
            output.status.success(),
            "{machine}: crowdcloud {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    /// Starts a long-running command; its stdout and stderr go to files in its data dir.
    pub(crate) fn spawn(&mut self, machine: &str, args: &[&str], log: &str) -> PathBuf {
        let dir = self.data_dir(machine);
        let stdout = dir.join(format!("{log}.out"));
        let mut command = self.command(machine, args);
        command
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(dir.join(format!("{log}.err"))).unwrap());
        self.children.push(command.spawn().unwrap());
        stdout
    }

    /// Makes `to` unreachable from `machine` (a blackhole route): no packet of one reaches the
    /// other, in either direction, as between two devices behind strict NATs.
    pub(crate) fn cut(&self, machine: &str, to: &str) -> Result<(), String> {
        let namespace = self.namespace(machine);
        bench::netlab::ip(&["-n", &namespace, "route", "add", "blackhole", to])
            .map_err(|error| error.to_string())
    }

    /// The nodes `machine` lists (`crowdcloud nodes --json`), none if it could list none.
    pub(crate) async fn nodes(&self, machine: &str) -> Vec<serde_json::Value> {
        let output = self
            .command(machine, &["nodes", "--json"])
            .output()
            .await
            .unwrap();
        let nodes: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_default();
        nodes["nodes"].as_array().cloned().unwrap_or_default()
    }

    /// SIGKILL every process on `machine`: it vanishes from the network at once.
    pub(crate) fn kill_machine(&self, machine: &str) {
        self.net.kill_machine(machine);
    }

    fn logs(&self) -> String {
        let mut text = String::new();
        for entry in walk(self.dir.path()) {
            if entry.extension().is_some_and(|e| e == "err" || e == "out") {
                text.push_str(&format!(
                    "--- {} ---\n{}\n",
                    entry.display(),
                    std::fs::read_to_string(&entry).unwrap_or_default()
                ));
            }
        }
        text
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(walk(&path));
        } else {
            found.push(path);
        }
    }
    found
}

impl Drop for Lan {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
        for child in &mut self.children {
            let _ = child.start_kill();
        }
        // The network goes after, with anything still running in it.
    }
}

/// A LAN of `machines` on 10.77.0.0/24 (each gets 10.77.0.N, N from 1), or `None` after saying
/// why it cannot be made on this machine.
pub(crate) fn lan_or_skip(machines: &[&str]) -> Option<Lan> {
    let addresses: Vec<String> = (1..=machines.len())
        .map(|n| format!("10.77.0.{n}/24"))
        .collect();
    let machines: Vec<(&str, &str)> = machines
        .iter()
        .copied()
        .zip(addresses.iter().map(String::as_str))
        .collect();
    addressed_lan_or_skip(&machines)
}

/// A LAN of `(machine, address)` pairs, or `None` after saying why it cannot be made here.
pub(crate) fn addressed_lan_or_skip(machines: &[(&str, &str)]) -> Option<Lan> {
    made_or_skip(Lan::create(machines))
}

/// The network `made`, or `None` after saying why it cannot be made here; a failure where
/// `scripts/test` found that namespaces can be made.
pub(crate) fn made_or_skip(made: Result<Lan, String>) -> Option<Lan> {
    match made {
        Ok(lan) => Some(lan),
        Err(reason) => {
            // scripts/test sets this once it has made a namespace itself: from then on a LAN
            // that cannot be made is a failure, not a quiet skip.
            assert!(
                std::env::var_os("CROWDCLOUD_REQUIRE_NETNS").is_none(),
                "network namespaces can be made on this machine, but the test LAN could not: {reason}"
            );
            eprintln!(
                "SKIPPED: network namespaces cannot be made here ({reason}); this test needs root or CAP_SYS_ADMIN and the `ip` tool"
            );
            None
        }
    }
}

/// Waits for `up`'s banner line that starts with `label` and returns the rest of it.
pub(crate) async fn banner_line(stdout: &Path, label: &str) -> String {
    bench::remote::banner_line(stdout, label)
        .await
        .unwrap_or_else(|error| panic!("{error}"))
}

/// The phone's sign-in link `up` prints under its QR code names the pool's LAN address and
/// carries an API token of its own, which works from another machine, and a join token.
async fn phone_link_signs_in(lan: &Lan, up_out: &Path, fingerprint: &str) {
    let phone = banner_line(up_out, "phone:").await;
    let link = phone
        .split_whitespace()
        .find(|word| word.starts_with("https://"))
        .expect("the phone's line gives a link");
    let token = link
        .strip_prefix("https://10.77.0.1:7878/#token=")
        .and_then(|rest| rest.split_once("&join=ccj_"))
        .map(|(token, _)| token.to_owned())
        .expect("the link signs in with an API token and lends with a join token");
    let listed = lan
        .run(
            "laptop",
            &[
                "status",
                "--json",
                "--coordinator",
                "https://10.77.0.1:7878",
                "--token",
                &token,
                "--fingerprint",
                fingerprint,
            ],
        )
        .await;
    assert!(listed.contains("\"jobs\""), "{listed}");
}

#[tokio::test(flavor = "multi_thread")]
async fn devices_on_a_lan_find_the_pool_join_with_a_code_and_run_a_job_across_it() {
    let Some(mut lan) = lan_or_skip(&["home", "laptop", "desktop"]) else {
        return;
    };
    // No --lan: serving the family on the LAN is what `up` does by default.
    let up_out = lan.spawn("home", &["up", "--slots", "0", "--lease-ms", "3000"], "up");
    let code = banner_line(&up_out, "join code:").await;
    let code = code.split_whitespace().next().unwrap().to_owned();
    let fingerprint = banner_line(&up_out, "certificate:").await;
    phone_link_signs_in(&lan, &up_out, &fingerprint).await;
    // The laptop joins as a node, with no address given: discovery finds the pool.
    let started = Instant::now();
    let joined = lan
        .run(
            "laptop",
            &["join", "--code", &code, "--json", "--name", "laptop"],
        )
        .await;
    let joined: serde_json::Value = serde_json::from_str(&joined).unwrap();
    let laptop_join_ms = started.elapsed().as_millis();
    assert_eq!(joined["fingerprint"].as_str().unwrap(), fingerprint);
    assert_eq!(joined["url"], "https://10.77.0.1:7878");
    let laptop_discovery_ms = joined["discovery_ms"].as_u64().unwrap();
    assert!(
        laptop_discovery_ms < 5_000,
        "discovery took {laptop_discovery_ms} ms"
    );

    // The owner makes a second code that also grants requests; the desktop joins with it.
    let issued = lan
        .run("home", &["join-code", "--requests", "--json"])
        .await;
    let issued: serde_json::Value = serde_json::from_str(&issued).unwrap();
    let joined = lan
        .run(
            "desktop",
            &[
                "join",
                "--code",
                issued["code"].as_str().unwrap(),
                "--json",
                "--name",
                "desktop",
            ],
        )
        .await;
    let joined: serde_json::Value = serde_json::from_str(&joined).unwrap();
    let desktop_discovery_ms = joined["discovery_ms"].as_u64().unwrap();
    assert!(desktop_discovery_ms < 5_000);
    assert_eq!(joined["requests"], true);
    eprintln!(
        "discovery across namespaces: laptop {laptop_discovery_ms} ms, desktop {desktop_discovery_ms} ms (whole join {laptop_join_ms} ms)"
    );

    // Both lend themselves with no flags but the owner's policy.
    for machine in ["laptop", "desktop"] {
        lan.spawn(
            machine,
            &["agent", "--dedicated", "--slots", "1", "--name", machine],
            "agent",
        );
    }
    // The desktop submits a job with no address or token given: the pool it joined.
    let module = lan.data_dir("desktop").join("probe.wasm");
    std::fs::write(&module, guests::PROBE).unwrap();
    let lan = &lan;
    eventually(
        "both nodes online",
        Duration::from_secs(60),
        || async move {
            let nodes = lan.nodes("desktop").await;
            let online = nodes.iter().filter(|n| n["state"] == "online").count();
            (online == 2).then_some(())
        },
    )
    .await;
    let submitted = lan
        .run(
            "desktop",
            &[
                "submit",
                module.to_str().unwrap(),
                "--tasks",
                "8",
                "--wait",
                "--json",
                "--",
                "sleep",
                "300",
            ],
        )
        .await;
    let status: serde_json::Value = serde_json::from_str(&submitted).unwrap();
    assert_eq!(status["state"], "completed", "{status}");
    let ran_on: Vec<&str> = status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["node_name"].as_str().unwrap())
        .collect();
    assert!(
        ran_on.contains(&"laptop") && ran_on.contains(&"desktop"),
        "the job ran across the LAN: {ran_on:?}"
    );

    // The doctor on the laptop sees the pool, the same certificate, and no clash.
    let doctor = lan
        .run("laptop", &["doctor", "--json", "--discovery-ms", "1500"])
        .await;
    let doctor: serde_json::Value = serde_json::from_str(&doctor).unwrap();
    assert_eq!(doctor["problems"], 0, "{doctor}");
    assert_eq!(
        doctor["pools"][0]["fingerprint"].as_str().unwrap(),
        fingerprint
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_impostor_pool_on_the_lan_learns_nothing_and_a_wrong_pin_is_refused() {
    let Some(mut lan) = lan_or_skip(&["home", "impostor", "guest"]) else {
        return;
    };
    let home = lan.spawn("home", &["up", "--lan", "--slots", "0"], "up");
    // The impostor is a real coordinator with its own certificate, advertising the same name.
    let impostor = lan.spawn(
        "impostor",
        &["up", "--lan", "--slots", "0", "--pool-name", "family"],
        "up",
    );
    let code = banner_line(&home, "join code:").await;
    let code = code.split_whitespace().next().unwrap().to_owned();
    let home_fingerprint = banner_line(&home, "certificate:").await;
    let impostor_fingerprint = banner_line(&impostor, "certificate:").await;
    banner_line(&impostor, "discovery:").await;

    // Two pools called "family" answer; the guest is told to choose by certificate.
    let output = lan
        .command("guest", &["join", "--code", &code, "--pool", "family"])
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    assert!(!output.status.success());
    assert!(
        stderr.contains("2 pools answered")
            && stderr.contains(&home_fingerprint)
            && stderr.contains(&impostor_fingerprint),
        "{stderr}"
    );

    // Choosing the impostor: it cannot confirm the owner's code, so the guest stops before
    // sending anything that depends on it, and remembers nothing.
    let output = lan
        .command(
            "guest",
            &[
                "join",
                "--code",
                &code,
                "--fingerprint",
                &impostor_fingerprint,
            ],
        )
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    assert!(!output.status.success());
    assert!(stderr.contains("does not match the code"), "{stderr}");
    assert!(!lan.data_dir("guest").join("pool.json").exists());

    // The real pool, by its certificate: the same code still works.
    let joined = lan
        .run(
            "guest",
            &[
                "join",
                "--code",
                &code,
                "--fingerprint",
                &home_fingerprint,
                "--json",
            ],
        )
        .await;
    let joined: serde_json::Value = serde_json::from_str(&joined).unwrap();
    assert_eq!(joined["url"], "https://10.77.0.1:7878");

    // An agent pinned to the home pool's certificate refuses the impostor's address.
    let output = lan
        .command(
            "guest",
            &[
                "agent",
                "--coordinator",
                "https://10.77.0.2:7878",
                "--fingerprint",
                &home_fingerprint,
            ],
        )
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("not the pinned") && stderr.contains("impersonating"),
        "{stderr}"
    );
}

//! What the machine says about its owner: idle time, power, the owner's CPU use and the local
//! time, each read behind a trait so tests can stand in for the human.
//!
//! On Linux:
//! - idle: keyboard and mouse activity from `/dev/input/event*` when this user may read them
//!   (the `input` group), else from the interrupt counts of input controllers in
//!   `/proc/interrupts` (`i8042` and lines naming a keyboard, mouse, touchpad or HID device).
//!   Activity is only ever detected, never recorded: the bytes read are dropped. Before any
//!   activity is seen, the owner counts as idle since the agent started watching, so a fresh
//!   start waits out the full idle time. When neither source is readable, idle is unknown.
//! - power: `/sys/class/power_supply/*/{type,online,capacity,status,scope}`. A machine with no
//!   system battery runs on mains power; peripheral batteries (`scope = Device`) are ignored.
//! - CPU: the whole machine's busy time from `/proc/stat` minus this process's own CPU time
//!   from `/proc/self/stat`, between two readings.
//!
//! Invariants: a read never blocks and never fails: whatever cannot be read comes back as
//! unknown with the reason, and the governor decides what unknown means.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use parking_lot::Mutex;

use super::governor::{CpuReading, IdleReading, PowerReading, PowerSource, Readings};

pub trait IdleSignal: Send + Sync {
    fn idle(&self) -> IdleReading;
}

pub trait PowerSignal: Send + Sync {
    fn power(&self) -> PowerReading;
}

pub trait CpuSignal: Send + Sync {
    fn owner_cpu(&self) -> CpuReading;
}

/// Everything the governor reads, at one moment.
pub trait Signals: Send + Sync + std::fmt::Debug {
    fn read(&self) -> Readings;

    /// Minutes since local midnight, for the allowed hours.
    fn minute_of_day(&self) -> u16 {
        local_minute_of_day()
    }
}

/// The local time of day, from the system's time zone.
// The owner's allowed hours are hours of the machine's own clock.
#[allow(clippy::disallowed_methods)]
pub fn local_minute_of_day() -> u16 {
    use chrono::Timelike;
    let now = chrono::Local::now();
    (now.hour() * 60 + now.minute()) as u16
}

/// One sensor per signal, read together.
pub struct Sensors {
    pub idle: Box<dyn IdleSignal>,
    pub power: Box<dyn PowerSignal>,
    pub cpu: Box<dyn CpuSignal>,
    pub machine_cores: u32,
}

impl std::fmt::Debug for Sensors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sensors")
            .field("machine_cores", &self.machine_cores)
            .finish_non_exhaustive()
    }
}

impl Sensors {
    /// The real sources of this machine.
    pub fn system() -> Self {
        Self {
            idle: Box::new(InputActivity::open(
                Path::new("/dev/input"),
                Path::new("/proc"),
            )),
            power: Box::new(PowerSupplies::new(Path::new("/sys/class/power_supply"))),
            cpu: Box::new(ProcCpu::new(Path::new("/proc"))),
            machine_cores: std::thread::available_parallelism()
                .map(|n| n.get() as u32)
                .unwrap_or(1),
        }
    }
}

impl Signals for Sensors {
    fn read(&self) -> Readings {
        Readings {
            idle: self.idle.idle(),
            power: self.power.power(),
            owner_cpu: self.cpu.owner_cpu(),
            machine_cores: self.machine_cores,
        }
    }
}

/// Idle time from input-device activity.
pub struct InputActivity {
    input_dir: PathBuf,
    proc_dir: PathBuf,
    state: Mutex<InputState>,
}

struct InputState {
    devices: Vec<File>,
    /// Summed counts of input-controller interrupts at the last read, when any line matched.
    interrupts: Option<u64>,
    last_activity: Instant,
    devices_scanned: Instant,
}

/// Event devices plugged in later are found at most this much later.
const RESCAN_EVERY_MS: u128 = 30_000;
/// Bounds the event devices held open.
const INPUT_DEVICES_MAX: usize = 64;

impl InputActivity {
    pub fn open(input_dir: &Path, proc_dir: &Path) -> Self {
        let now = Instant::now();
        let activity = Self {
            input_dir: input_dir.to_owned(),
            proc_dir: proc_dir.to_owned(),
            state: Mutex::new(InputState {
                devices: Vec::new(),
                interrupts: None,
                last_activity: now,
                devices_scanned: now,
            }),
        };
        {
            let mut state = activity.state.lock();
            state.devices = open_event_devices(input_dir);
            state.interrupts = input_interrupts(proc_dir);
        }
        activity
    }
}

impl IdleSignal for InputActivity {
    fn idle(&self) -> IdleReading {
        let mut state = self.state.lock();
        let now = Instant::now();
        if now.duration_since(state.devices_scanned).as_millis() >= RESCAN_EVERY_MS {
            state.devices_scanned = now;
            state.devices = open_event_devices(&self.input_dir);
        }
        let mut active = false;
        // A device that errors (unplugged) is dropped; the next rescan finds it again.
        state.devices.retain_mut(|device| match drain(device) {
            Ok(read_any) => {
                active |= read_any;
                true
            }
            Err(_) => false,
        });
        let interrupts = input_interrupts(&self.proc_dir);
        if let (Some(before), Some(after)) = (state.interrupts, interrupts)
            && before != after
        {
            active = true;
        }
        state.interrupts = interrupts;
        if active {
            state.last_activity = now;
        }
        if state.devices.is_empty() && state.interrupts.is_none() {
            return IdleReading::Unknown(format!(
                "no readable input device in {} (join the input group) and no keyboard or mouse interrupts in {}",
                self.input_dir.display(),
                self.proc_dir.join("interrupts").display()
            ));
        }
        IdleReading::IdleFor {
            idle_ms: now.duration_since(state.last_activity).as_millis() as u64,
        }
    }
}

fn open_event_devices(input_dir: &Path) -> Vec<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let Ok(entries) = std::fs::read_dir(input_dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|entry| entry.file_name().to_string_lossy().starts_with("event"))
        .filter_map(|entry| {
            std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
                .open(entry.path())
                .ok()
        })
        .take(INPUT_DEVICES_MAX)
        .collect()
}

/// Reads and drops whatever events are queued; true when there were any.
fn drain(device: &mut File) -> std::io::Result<bool> {
    let mut buffer = [0u8; 1024];
    let mut read_any = false;
    loop {
        match device.read(&mut buffer) {
            Ok(0) => return Ok(read_any),
            Ok(_) => read_any = true,
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => return Ok(read_any),
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
}

/// The summed interrupt counts of input controllers, or `None` when no line names one.
fn input_interrupts(proc_dir: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(proc_dir.join("interrupts")).ok()?;
    parse_input_interrupts(&text)
}

fn parse_input_interrupts(text: &str) -> Option<u64> {
    let mut lines = text.lines();
    let cpus = lines.next()?.split_whitespace().count();
    let mut total = None;
    for line in lines {
        let Some((_, rest)) = line.split_once(':') else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let counts: u64 = fields
            .by_ref()
            .take(cpus)
            .map_while(|count| count.parse::<u64>().ok())
            .sum();
        let names = fields.collect::<Vec<_>>().join(" ").to_ascii_lowercase();
        let is_input = ["i8042", "keyboard", "kbd", "mouse", "touchpad", "hid"]
            .iter()
            .any(|name| names.contains(name));
        if is_input {
            *total.get_or_insert(0) += counts;
        }
    }
    total
}

/// AC and battery from the kernel's power supply class.
pub struct PowerSupplies {
    dir: PathBuf,
}

impl PowerSupplies {
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_owned(),
        }
    }
}

impl PowerSignal for PowerSupplies {
    fn power(&self) -> PowerReading {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                // No power supply class at all: a desktop, server or VM on mains.
                return PowerReading {
                    source: PowerSource::Mains,
                    battery_percent: None,
                };
            }
            Err(error) => {
                return PowerReading {
                    source: PowerSource::Unknown(format!("{}: {error}", self.dir.display())),
                    battery_percent: None,
                };
            }
        };
        let read = |dir: &Path, name: &str| {
            std::fs::read_to_string(dir.join(name))
                .map(|text| text.trim().to_owned())
                .ok()
        };
        let mut external_online = false;
        let mut external_seen = false;
        let mut discharging = false;
        let mut capacities = Vec::new();
        for entry in entries.flatten() {
            let dir = entry.path();
            if read(&dir, "scope").as_deref() == Some("Device") {
                continue;
            }
            match read(&dir, "type").as_deref() {
                Some("Battery") => {
                    if read(&dir, "present").as_deref() == Some("0") {
                        continue;
                    }
                    if let Some(capacity) =
                        read(&dir, "capacity").and_then(|c| c.parse::<u8>().ok())
                    {
                        capacities.push(capacity.min(100));
                    }
                    discharging |= read(&dir, "status").as_deref() == Some("Discharging");
                }
                Some("Mains" | "USB" | "USB_C" | "USB_PD" | "USB_PD_DRP" | "Wireless") => {
                    external_seen = true;
                    external_online |= read(&dir, "online").as_deref() == Some("1");
                }
                _ => {}
            }
        }
        let battery_percent = (!capacities.is_empty()).then(|| {
            (capacities.iter().map(|&c| u32::from(c)).sum::<u32>() / capacities.len() as u32) as u8
        });
        let on_battery = if external_online {
            false
        } else if discharging {
            true
        } else {
            // A battery and a charger that is present but offline: on battery even if the
            // battery does not (yet) say it is discharging.
            external_seen && battery_percent.is_some()
        };
        PowerReading {
            source: if on_battery {
                PowerSource::Battery
            } else {
                PowerSource::Mains
            },
            battery_percent,
        }
    }
}

/// The owner's CPU use: the machine's busy time less this process's, between two reads.
pub struct ProcCpu {
    proc_dir: PathBuf,
    last: Mutex<Option<CpuTimes>>,
}

#[derive(Debug, Clone, Copy)]
struct CpuTimes {
    total_ticks: u64,
    busy_ticks: u64,
    own_ticks: u64,
    /// The share last computed, reused when no tick passed between two reads.
    owner_percent: u8,
}

impl ProcCpu {
    pub fn new(proc_dir: &Path) -> Self {
        let cpu = Self {
            proc_dir: proc_dir.to_owned(),
            last: Mutex::new(None),
        };
        // A first sample, so the first real read already has a baseline.
        let _ = cpu.owner_cpu();
        cpu
    }

    fn times(&self) -> Result<(u64, u64, u64), String> {
        let stat_path = self.proc_dir.join("stat");
        let stat = std::fs::read_to_string(&stat_path)
            .map_err(|error| format!("cannot read {}: {error}", stat_path.display()))?;
        let (total, busy) = parse_machine_ticks(&stat)
            .ok_or_else(|| format!("{} has no cpu line", stat_path.display()))?;
        let own_path = self.proc_dir.join("self").join("stat");
        let own = std::fs::read_to_string(&own_path)
            .ok()
            .and_then(|text| parse_process_ticks(&text))
            .ok_or_else(|| format!("cannot read {}", own_path.display()))?;
        Ok((total, busy, own))
    }
}

impl CpuSignal for ProcCpu {
    fn owner_cpu(&self) -> CpuReading {
        let (total_ticks, busy_ticks, own_ticks) = match self.times() {
            Ok(times) => times,
            Err(why) => return CpuReading::Unknown(why),
        };
        let mut last = self.last.lock();
        let owner_percent = match *last {
            Some(before) if total_ticks > before.total_ticks => {
                let total = total_ticks - before.total_ticks;
                let busy = busy_ticks.saturating_sub(before.busy_ticks);
                let own = own_ticks.saturating_sub(before.own_ticks);
                (busy.saturating_sub(own).min(total) * 100 / total) as u8
            }
            Some(before) => before.owner_percent,
            None => 0,
        };
        *last = Some(CpuTimes {
            total_ticks,
            busy_ticks,
            own_ticks,
            owner_percent,
        });
        CpuReading::OwnerPercent(owner_percent)
    }
}

/// Total and busy ticks of the whole machine from `/proc/stat`'s `cpu` line.
fn parse_machine_ticks(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().find(|line| line.starts_with("cpu "))?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map_while(|field| field.parse().ok())
        .collect();
    if ticks.len() < 4 {
        return None;
    }
    // user nice system idle iowait irq softirq steal; guest time is already inside user.
    let total: u64 = ticks.iter().take(8).sum();
    let idle = ticks[3] + ticks.get(4).copied().unwrap_or(0);
    Some((total, total - idle))
}

/// User plus system ticks of a process from its `/proc/PID/stat`.
fn parse_process_ticks(stat: &str) -> Option<u64> {
    // The command name may hold spaces and parentheses; the fields follow the last `)`.
    let (_, fields) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = fields.split_whitespace().collect();
    // Fields 14 and 15 of proc(5) (utime, stime); `state` (field 3) is the first here.
    let user: u64 = fields.get(11)?.parse().ok()?;
    let system: u64 = fields.get(12)?.parse().ok()?;
    Some(user + system)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn a_laptop_on_its_charger_and_then_unplugged() {
        let dir = tempfile::tempdir().unwrap();
        let supplies = dir.path().join("power_supply");
        write(&supplies.join("AC/type"), "Mains\n");
        write(&supplies.join("AC/online"), "1\n");
        write(&supplies.join("BAT0/type"), "Battery\n");
        write(&supplies.join("BAT0/capacity"), "87\n");
        write(&supplies.join("BAT0/status"), "Charging\n");
        // A wireless mouse's battery is not the machine's.
        write(&supplies.join("hidpp_battery_0/type"), "Battery\n");
        write(&supplies.join("hidpp_battery_0/scope"), "Device\n");
        write(&supplies.join("hidpp_battery_0/capacity"), "5\n");
        let power = PowerSupplies::new(&supplies);
        assert_eq!(
            power.power(),
            PowerReading {
                source: PowerSource::Mains,
                battery_percent: Some(87)
            }
        );
        write(&supplies.join("AC/online"), "0\n");
        write(&supplies.join("BAT0/capacity"), "41\n");
        write(&supplies.join("BAT0/status"), "Discharging\n");
        assert_eq!(
            power.power(),
            PowerReading {
                source: PowerSource::Battery,
                battery_percent: Some(41)
            }
        );
        // Unplugged a moment ago: the battery still says "Not charging".
        write(&supplies.join("BAT0/status"), "Not charging\n");
        assert_eq!(power.power().source, PowerSource::Battery);
    }

    #[test]
    fn no_battery_means_mains_power() {
        let dir = tempfile::tempdir().unwrap();
        let absent = PowerSupplies::new(&dir.path().join("missing"));
        assert_eq!(absent.power().source, PowerSource::Mains);
        let empty = dir.path().join("empty");
        std::fs::create_dir_all(&empty).unwrap();
        assert_eq!(
            PowerSupplies::new(&empty).power(),
            PowerReading {
                source: PowerSource::Mains,
                battery_percent: None
            }
        );
        // A battery with no charger entry, charging (some tablets): mains.
        let tablet = dir.path().join("tablet");
        write(&tablet.join("BAT1/type"), "Battery\n");
        write(&tablet.join("BAT1/capacity"), "50\n");
        write(&tablet.join("BAT1/status"), "Charging\n");
        assert_eq!(
            PowerSupplies::new(&tablet).power().source,
            PowerSource::Mains
        );
    }

    #[test]
    fn owner_cpu_is_the_machine_less_this_process() {
        let dir = tempfile::tempdir().unwrap();
        let proc_dir = dir.path();
        let stat =
            |user: u64, idle: u64| format!("cpu  {user} 0 0 {idle} 0 0 0 0 0 0\ncpu0 0 0 0 0\n");
        let own = |ticks: u64| {
            format!(
                "1234 (crowd (cloud)) S 1 1 1 0 -1 4194304 100 0 0 0 {ticks} 0 0 0 20 0 8 0 100 0 0"
            )
        };
        write(&proc_dir.join("stat"), &stat(1000, 1000));
        write(&proc_dir.join("self/stat"), &own(200));
        let cpu = ProcCpu::new(proc_dir);
        // 100 ticks pass: 60 busy, of which this agent used 20: the owner used 40 %.
        write(&proc_dir.join("stat"), &stat(1060, 1040));
        write(&proc_dir.join("self/stat"), &own(220));
        assert_eq!(cpu.owner_cpu(), CpuReading::OwnerPercent(40));
        // No tick passed: the last share stands.
        assert_eq!(cpu.owner_cpu(), CpuReading::OwnerPercent(40));
        // All the busy time was the agent's: the owner is calm.
        write(&proc_dir.join("stat"), &stat(1160, 1040));
        write(&proc_dir.join("self/stat"), &own(320));
        assert_eq!(cpu.owner_cpu(), CpuReading::OwnerPercent(0));
        std::fs::remove_file(proc_dir.join("stat")).unwrap();
        assert!(matches!(cpu.owner_cpu(), CpuReading::Unknown(why) if why.contains("stat")));
    }

    #[test]
    fn the_real_proc_reads_on_linux() {
        let cpu = ProcCpu::new(Path::new("/proc"));
        assert!(matches!(cpu.owner_cpu(), CpuReading::OwnerPercent(p) if p <= 100));
    }

    #[test]
    fn input_interrupts_count_only_input_controllers() {
        let text = "           CPU0       CPU1\n\
              1:         10          2   IO-APIC    1-edge      i8042\n\
             12:        100         50   IO-APIC   12-edge      i8042\n\
             16:       9999       9999   IO-APIC   16-fasteoi   ehci_hcd:usb1\n\
            NMI:          0          0   Non-maskable interrupts\n";
        assert_eq!(parse_input_interrupts(text), Some(162));
        let server = "  CPU0\n 26: 12 IO-APIC 4-edge ttyS0\n";
        assert_eq!(parse_input_interrupts(server), None);
    }

    #[test]
    fn idle_comes_from_interrupt_deltas_and_is_unknown_without_sources() {
        let dir = tempfile::tempdir().unwrap();
        let proc_dir = dir.path().join("proc");
        let counts = |n: u64| format!("  CPU0\n  1: {n} IO-APIC 1-edge i8042\n");
        write(&proc_dir.join("interrupts"), &counts(5));
        let activity = InputActivity::open(&dir.path().join("no-input"), &proc_dir);
        std::thread::sleep(std::time::Duration::from_millis(30));
        let IdleReading::IdleFor { idle_ms: before } = activity.idle() else {
            panic!("interrupts are readable");
        };
        assert!(before >= 30, "idle since watching began: {before}");
        write(&proc_dir.join("interrupts"), &counts(6));
        let IdleReading::IdleFor { idle_ms: after } = activity.idle() else {
            panic!("interrupts are readable");
        };
        assert_eq!(after, 0, "a key press resets idle (was {before})");

        let nothing = InputActivity::open(&dir.path().join("no-input"), &dir.path().join("none"));
        assert!(matches!(nothing.idle(), IdleReading::Unknown(why) if why.contains("input group")));
    }

    #[test]
    fn event_devices_that_deliver_bytes_count_as_activity() {
        // A regular file stands in for an event device: it reads its bytes, then end of file.
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("input");
        write(&input.join("event0"), "sixteen bytes...");
        let activity = InputActivity::open(&input, &dir.path().join("none"));
        std::thread::sleep(std::time::Duration::from_millis(30));
        let IdleReading::IdleFor { idle_ms } = activity.idle() else {
            panic!("the device is readable");
        };
        assert_eq!(idle_ms, 0, "the queued event counted");
    }
}

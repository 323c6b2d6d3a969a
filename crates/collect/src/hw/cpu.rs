//! The `cpu` item: model, sockets, cores, logical CPUs (threads) and nominal clock, from
//! `proc/cpuinfo` and, for the clock, `sys/devices/system/cpu/cpu0/cpufreq/base_frequency` or
//! `cpuinfo_max_freq`.
//!
//! The clock is the *nominal* one so that an idle machine reports no change: the current
//! frequency (`cpu MHz`, `scaling_cur_freq`) moves with load and power saving. In order of
//! preference: the base frequency of `intel_pstate`, the maximum frequency of any cpufreq
//! driver, the `@ 2.40GHz` that Intel writes into the model name, and last the `cpu MHz` of
//! the first processor rounded to a whole number (stable in virtual machines, where it is the
//! TSC rate and there is no cpufreq). Non-x86 cpuinfo has no `model name`: ARM gets a name from
//! its implementer and part numbers, else `Hardware`, POWER its `cpu` line.

use invsync_proto::{Attrs, Items};

use crate::read::{Reader, value};

const FREQ_DIR: &str = "sys/devices/system/cpu/cpu0/cpufreq";

pub(crate) fn collect(r: &mut Reader<'_>, items: &mut Items) {
    let Some(text) = r.read("proc/cpuinfo") else {
        return;
    };
    let info = parse_cpuinfo(&text);
    let mut attrs = Attrs::new();
    if let Some(model) = &info.model {
        attrs.insert("model".into(), model.clone());
    }
    if info.threads > 0 {
        attrs.insert("threads".into(), info.threads.to_string());
        attrs.insert("sockets".into(), info.sockets.to_string());
        attrs.insert("cores".into(), info.cores.to_string());
    }
    // The frequency files are read only as far as needed, and quietly: virtual machines and
    // many ARM boards have no cpufreq at all.
    let mhz = r
        .read_quiet(&format!("{FREQ_DIR}/base_frequency"))
        .and_then(|t| khz_to_mhz(&t))
        .or_else(|| {
            r.read_quiet(&format!("{FREQ_DIR}/cpuinfo_max_freq"))
                .and_then(|t| khz_to_mhz(&t))
        })
        .or_else(|| info.model.as_deref().and_then(mhz_from_model))
        .or(info.mhz);
    if let Some(mhz) = mhz {
        attrs.insert("mhz".into(), mhz.to_string());
    }
    if attrs.is_empty() {
        r.warn("proc/cpuinfo names no processor: cpu is not reported");
        return;
    }
    items.insert("cpu".into(), attrs);
}

/// What `proc/cpuinfo` says, summed over its processors.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct CpuInfo {
    pub model: Option<String>,
    /// Distinct `physical id`s, at least 1 when there is a processor.
    pub sockets: u64,
    /// Sum of `cpu cores` over the sockets, else the number of processors.
    pub cores: u64,
    /// Number of `processor` entries (logical CPUs).
    pub threads: u64,
    /// `cpu MHz` of the first processor, rounded.
    pub mhz: Option<u64>,
}

/// Parses `proc/cpuinfo` of any architecture. Lines without a colon and values that do not
/// parse are ignored, so a truncated or garbled file gives what it can.
pub fn parse_cpuinfo(text: &str) -> CpuInfo {
    let mut threads: u64 = 0;
    // One entry per distinct physical id: (id, `cpu cores` of the first processor seen in it).
    let mut sockets: Vec<(&str, Option<u64>)> = Vec::new();
    let mut current_socket: Option<usize> = None;
    let mut model_name = None;
    let mut legacy_processor = None;
    let mut hardware = None;
    let mut implementer = None;
    let mut part = None;
    let mut power_cpu = None;
    let mut board_model = None;
    let mut cpu_mhz = None;

    for line in text.lines() {
        let Some((key, val)) = line.split_once(':') else {
            continue;
        };
        let key = key.trim();
        let val = val.trim();
        match key {
            "processor" => {
                // A `processor` line opens the next logical CPU.
                threads += 1;
                current_socket = None;
            }
            "physical id" if threads > 0 => {
                let i = match sockets.iter().position(|(id, _)| *id == val) {
                    Some(i) => i,
                    None => {
                        sockets.push((val, None));
                        sockets.len() - 1
                    }
                };
                current_socket = Some(i);
            }
            "cpu cores" => {
                if let (Some(i), Ok(n)) = (current_socket, val.parse::<u64>())
                    && sockets[i].1.is_none()
                {
                    sockets[i].1 = Some(n);
                }
            }
            "model name" if model_name.is_none() => model_name = value(val),
            // 32-bit ARM and old arm64 kernels put the model into a capitalised `Processor`.
            "Processor" if legacy_processor.is_none() => legacy_processor = value(val),
            "Hardware" if hardware.is_none() => hardware = value(val),
            "CPU implementer" if implementer.is_none() => implementer = value(val),
            "CPU part" if part.is_none() => part = value(val),
            "cpu" if power_cpu.is_none() => power_cpu = value(val),
            "model" | "Model" if board_model.is_none() && val.parse::<u64>().is_err() => {
                board_model = value(val)
            }
            "cpu MHz" if cpu_mhz.is_none() => cpu_mhz = parse_mhz(val),
            _ => {}
        }
    }
    let model = model_name
        .map(str::to_string)
        .or_else(|| arm_model(implementer, part))
        .or_else(|| legacy_processor.map(str::to_string))
        .or_else(|| hardware.map(str::to_string))
        .or_else(|| power_cpu.map(str::to_string))
        .or_else(|| board_model.map(str::to_string));

    // Without `physical id` lines (ARM, many virtual machines) there is one socket whose
    // cores are the processors; a socket without `cpu cores` makes the sum unknowable, and
    // the processor count is the honest fallback then too.
    let (sockets_n, cores) = if sockets.is_empty() {
        (u64::from(threads > 0), threads)
    } else {
        let cores = sockets
            .iter()
            .try_fold(0u64, |sum, (_, c)| c.and_then(|c| sum.checked_add(c)));
        (sockets.len() as u64, cores.unwrap_or(threads))
    };
    CpuInfo {
        model,
        sockets: sockets_n,
        cores,
        threads,
        mhz: cpu_mhz,
    }
}

/// A name for an ARM core from its implementer and part numbers (`0x41`, `0xd0c`), which is
/// all that arm64 cpuinfo says. Unknown pairs give the raw numbers, which still identify the
/// core exactly.
fn arm_model(implementer: Option<&str>, part: Option<&str>) -> Option<String> {
    let part = part?;
    let implementer = implementer.unwrap_or("");
    let p = u64::from_str_radix(part.trim_start_matches("0x"), 16).ok();
    let i = u64::from_str_radix(implementer.trim_start_matches("0x"), 16).ok();
    let name = match (i, p) {
        (Some(0x41), Some(p)) => match p {
            0xd03 => Some("ARM Cortex-A53"),
            0xd04 => Some("ARM Cortex-A35"),
            0xd05 => Some("ARM Cortex-A55"),
            0xd07 => Some("ARM Cortex-A57"),
            0xd08 => Some("ARM Cortex-A72"),
            0xd09 => Some("ARM Cortex-A73"),
            0xd0a => Some("ARM Cortex-A75"),
            0xd0b => Some("ARM Cortex-A76"),
            0xd0c => Some("ARM Neoverse-N1"),
            0xd0d => Some("ARM Cortex-A77"),
            0xd40 => Some("ARM Neoverse-V1"),
            0xd41 => Some("ARM Cortex-A78"),
            0xd46 => Some("ARM Cortex-A510"),
            0xd47 => Some("ARM Cortex-A710"),
            0xd49 => Some("ARM Neoverse-N2"),
            0xd4f => Some("ARM Neoverse-V2"),
            _ => None,
        },
        (Some(0x61), Some(0x022)) => Some("Apple M1 Icestorm"),
        (Some(0x61), Some(0x023)) => Some("Apple M1 Firestorm"),
        (Some(0x46), Some(0x001)) => Some("Fujitsu A64FX"),
        (Some(0xc0), Some(0xac3)) => Some("Ampere-1"),
        _ => None,
    };
    Some(match name {
        Some(n) => n.to_string(),
        None if implementer.is_empty() => format!("ARM part {part}"),
        None => format!("ARM implementer {implementer} part {part}"),
    })
}

/// A cpufreq value in kHz as whole MHz.
pub fn khz_to_mhz(text: &str) -> Option<u64> {
    let khz: u64 = text.trim().parse().ok()?;
    let mhz = khz.checked_add(500)? / 1000;
    (mhz > 0).then_some(mhz)
}

/// The nominal clock written into an Intel model name: `… CPU @ 2.40GHz` → 2400.
pub fn mhz_from_model(model: &str) -> Option<u64> {
    let (_, after) = model.rsplit_once('@')?;
    let after = after.trim();
    let (number, factor) = if let Some(n) = after.strip_suffix("GHz") {
        (n, 1000.0)
    } else if let Some(n) = after.strip_suffix("MHz") {
        (n, 1.0)
    } else {
        return None;
    };
    let v: f64 = number.trim().parse().ok()?;
    to_mhz(v * factor)
}

/// `cpu MHz` of cpuinfo, rounded to a whole number.
pub fn parse_mhz(text: &str) -> Option<u64> {
    to_mhz(text.trim().parse().ok()?)
}

fn to_mhz(v: f64) -> Option<u64> {
    // Anything outside 1 MHz .. 1 THz is garbage, not a clock.
    (v.is_finite() && (1.0..1e6).contains(&v)).then(|| v.round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn x86(sockets: u64, cores: u64, threads_per_core: u64) -> String {
        let mut s = String::new();
        let mut n = 0;
        for socket in 0..sockets {
            for core in 0..cores {
                for _ in 0..threads_per_core {
                    s.push_str(&format!(
                        "processor\t: {n}\nvendor_id\t: GenuineIntel\nmodel\t\t: 85\n\
                         model name\t: Intel(R) Xeon(R) Silver 4214 CPU @ 2.20GHz\ncpu MHz\t\t: 1000.{n}\n\
                         physical id\t: {socket}\nsiblings\t: {}\ncore id\t\t: {core}\ncpu cores\t: {cores}\n\n",
                        cores * threads_per_core
                    ));
                    n += 1;
                }
            }
        }
        s
    }

    #[test]
    fn x86_two_sockets() {
        let info = parse_cpuinfo(&x86(2, 4, 2));
        assert_eq!(
            info.model.as_deref(),
            Some("Intel(R) Xeon(R) Silver 4214 CPU @ 2.20GHz")
        );
        assert_eq!((info.sockets, info.cores, info.threads), (2, 8, 16));
        assert_eq!(info.mhz, Some(1000));
    }

    #[test]
    fn without_topology_cores_are_processors() {
        let text = "processor : 0\nmodel name : Foo\ncpu MHz : 2596.624\n\nprocessor : 1\nmodel name : Foo\n";
        let info = parse_cpuinfo(text);
        assert_eq!((info.sockets, info.cores, info.threads), (1, 2, 2));
        assert_eq!(info.mhz, Some(2597));
    }

    #[test]
    fn missing_cpu_cores_in_a_socket_falls_back_to_processors() {
        let text =
            "processor : 0\nphysical id : 0\ncpu cores : 2\nprocessor : 1\nphysical id : 1\n";
        let info = parse_cpuinfo(text);
        assert_eq!((info.sockets, info.cores, info.threads), (2, 2, 2));
    }

    #[test]
    fn aarch64() {
        let text = "processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd evtstrm\nCPU implementer\t: 0x41\n\
                    CPU architecture: 8\nCPU variant\t: 0x3\nCPU part\t: 0xd0c\nCPU revision\t: 1\n\n\
                    processor\t: 1\nCPU implementer\t: 0x41\nCPU part\t: 0xd0c\n";
        let info = parse_cpuinfo(text);
        assert_eq!(info.model.as_deref(), Some("ARM Neoverse-N1"));
        assert_eq!(
            (info.sockets, info.cores, info.threads, info.mhz),
            (1, 2, 2, None)
        );
        let unknown = parse_cpuinfo("processor : 0\nCPU implementer : 0x51\nCPU part : 0x801\n");
        assert_eq!(
            unknown.model.as_deref(),
            Some("ARM implementer 0x51 part 0x801")
        );
    }

    #[test]
    fn other_architectures() {
        let pi = "processor : 0\nmodel name : ARMv7 Processor rev 4 (v7l)\n\nHardware : BCM2835\nModel : Raspberry Pi 3\n";
        assert_eq!(
            parse_cpuinfo(pi).model.as_deref(),
            Some("ARMv7 Processor rev 4 (v7l)")
        );
        let hw_only = "processor : 0\nHardware : Allwinner sun50i\n";
        assert_eq!(
            parse_cpuinfo(hw_only).model.as_deref(),
            Some("Allwinner sun50i")
        );
        let power = "processor : 0\ncpu : POWER9 (raw), altivec supported\nclock : 2300.000000MHz\nmodel : 8335-GTH\n";
        assert_eq!(
            parse_cpuinfo(power).model.as_deref(),
            Some("POWER9 (raw), altivec supported")
        );
        // x86 `model` is a number and never a name.
        assert_eq!(parse_cpuinfo("processor : 0\nmodel : 85\n").model, None);
    }

    #[test]
    fn bad_input() {
        assert_eq!(parse_cpuinfo(""), CpuInfo::default());
        assert_eq!(
            parse_cpuinfo("\u{fffd}\u{fffd}garbage\n:::\n"),
            CpuInfo::default()
        );
        // Truncated in the middle of a line.
        let info = parse_cpuinfo("processor : 0\nmodel name : Intel(R) Core(TM) i7 CPU @ 2.");
        assert_eq!(info.threads, 1);
        assert_eq!(info.model.as_deref().and_then(mhz_from_model), None);
        // Huge values do not overflow; they are ignored or saturate at the fallback.
        let huge = "processor : 0\nphysical id : 0\ncpu cores : 18446744073709551615\nprocessor : 1\n\
                    physical id : 1\ncpu cores : 18446744073709551615\ncpu MHz : 1e308\n";
        let info = parse_cpuinfo(huge);
        assert_eq!(
            (info.sockets, info.cores, info.threads, info.mhz),
            (2, 2, 2, None)
        );
        let overflow = "processor : 0\ncpu cores : 99999999999999999999999\nphysical id : 0\n";
        assert_eq!(parse_cpuinfo(overflow).cores, 1);
    }

    #[test]
    fn clock_sources() {
        assert_eq!(khz_to_mhz("2400000\n"), Some(2400));
        assert_eq!(khz_to_mhz("2399999"), Some(2400));
        assert_eq!(khz_to_mhz("0"), None);
        assert_eq!(khz_to_mhz("-1"), None);
        assert_eq!(khz_to_mhz("99999999999999999999999"), None);
        // Found by fuzz/fuzz_targets/cpuinfo.rs: rounding overflowed near u64::MAX.
        assert_eq!(khz_to_mhz("18446744073709551155"), None);
        assert_eq!(khz_to_mhz(&u64::MAX.to_string()), None);
        assert_eq!(
            mhz_from_model("Intel(R) Core(TM) i7-8650U CPU @ 1.90GHz"),
            Some(1900)
        );
        assert_eq!(
            mhz_from_model("Intel(R) Xeon(R) CPU E5-2680 v4 @ 2.40GHz"),
            Some(2400)
        );
        assert_eq!(mhz_from_model("Pentium @ 933MHz"), Some(933));
        assert_eq!(mhz_from_model("AMD EPYC 7B13"), None);
        assert_eq!(mhz_from_model("x @ GHz"), None);
        assert_eq!(parse_mhz("2596.124"), Some(2596));
        assert_eq!(parse_mhz("NaN"), None);
        assert_eq!(parse_mhz(""), None);
    }
}

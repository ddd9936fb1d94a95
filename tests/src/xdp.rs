//! Running an XDP program on one frame with BPF_PROG_TEST_RUN, and packet tables of such runs.

use aya::{
    Ebpf, EbpfLoader,
    programs::{ProgramError, TestRun as _, TestRunOptions, Xdp},
};
use lb_common::{maps::GLOBAL_STATS, programs::LB_XDP, stats::GlobalStats};

/// An XDP verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[doc(alias = "xdp_action")]
pub enum XdpAction {
    /// XDP_ABORTED (0): a program error; the frame is dropped with a trace event.
    Aborted,
    /// XDP_DROP (1).
    Drop,
    /// XDP_PASS (2): on to the kernel stack.
    Pass,
    /// XDP_TX (3): back out of the receiving interface.
    Tx,
    /// XDP_REDIRECT (4).
    Redirect,
    /// Anything else (a program bug).
    Other(u32),
}

impl From<u32> for XdpAction {
    fn from(value: u32) -> Self {
        match value {
            0 => Self::Aborted,
            1 => Self::Drop,
            2 => Self::Pass,
            3 => Self::Tx,
            4 => Self::Redirect,
            other => Self::Other(other),
        }
    }
}

/// What one run returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunOutput {
    /// The verdict.
    pub action: XdpAction,
    /// The frame as the program left it.
    pub output: Vec<u8>,
    /// Kernel-measured run time.
    pub duration: std::time::Duration,
}

/// An XDP program loaded for test runs only (maps private to it, nothing pinned or attached).
#[derive(Debug)]
pub struct XdpTestRun {
    ebpf: Ebpf,
    program: String,
}

impl XdpTestRun {
    /// lbd's own program from the object the daemon embeds.
    pub fn lbd() -> Self {
        Self::load(lb_daemon::dataplane::xdp::OBJECT, LB_XDP)
    }

    /// Program `program` of `object`.
    pub fn load(object: &[u8], program: &str) -> Self {
        crate::require_root();
        let mut ebpf = EbpfLoader::new().load(object).unwrap_or_else(|e| panic!("loading the object: {e:?}"));
        if program == LB_XDP && ebpf.program(lb_common::programs::LB_XDP_FULL).is_some() {
            // The entry point with the full path it tail-calls, as the daemon loads them (an
            // object of an older build, which a benchmark may compare, has one program).
            lb_daemon::dataplane::xdp::load_programs(&mut ebpf).unwrap_or_else(|e| {
                panic!("loading {program}: {}", lb_daemon::dataplane::xdp::error_chain(&e))
            });
            return Self { ebpf, program: program.to_owned() };
        }
        Self::load_alone_into(ebpf, program)
    }

    /// lbd's entry point and full path as an earlier build whose program array had `entries`
    /// entries left them: the array pinned at `pin`, the full path at index 0, and no other
    /// user-space reference to the array than the pin (that build's daemon has exited).
    pub fn earlier_build(entries: u32, pin: &std::path::Path) -> Self {
        use lb_common::{maps::PROGS, programs::LB_XDP_FULL};
        crate::require_root();
        let mut ebpf = EbpfLoader::new()
            .map_max_entries(PROGS, entries)
            .map_pin_path(PROGS, pin)
            .load(lb_daemon::dataplane::xdp::OBJECT)
            .unwrap_or_else(|e| panic!("loading the object: {e:?}"));
        for name in [LB_XDP, LB_XDP_FULL] {
            let xdp: &mut Xdp = ebpf.program_mut(name).expect("in the object").try_into().expect("XDP");
            xdp.load()
                .unwrap_or_else(|e| panic!("loading {name}: {}", lb_daemon::dataplane::xdp::error_chain(&e)));
        }
        let full: &Xdp = ebpf.program(LB_XDP_FULL).expect("loaded").try_into().expect("XDP");
        let fd = full.fd().expect("loaded").try_clone().expect("dup");
        let mut progs = aya::maps::ProgramArray::try_from(ebpf.take_map(PROGS).expect("program array"))
            .expect("a program array");
        progs.set(lb_common::programs::FULL_PATH, &fd, 0).expect("setting the full path");
        Self { ebpf, program: LB_XDP.to_owned() }
    }

    /// lbd's entry point alone, its program array left empty: every packet its flow cache does
    /// not send meets a failed tail call.
    pub fn lbd_entry_alone() -> Self {
        crate::require_root();
        let ebpf = EbpfLoader::new()
            .load(lb_daemon::dataplane::xdp::OBJECT)
            .unwrap_or_else(|e| panic!("loading the object: {e:?}"));
        Self::load_alone_into(ebpf, LB_XDP)
    }

    fn load_alone_into(mut ebpf: Ebpf, program: &str) -> Self {
        let xdp: &mut Xdp = ebpf
            .program_mut(program)
            .unwrap_or_else(|| panic!("no program {program} in the object"))
            .try_into()
            .unwrap_or_else(|e: ProgramError| panic!("{program} is not XDP: {e}"));
        xdp.load()
            .unwrap_or_else(|e| panic!("loading {program}: {}", lb_daemon::dataplane::xdp::error_chain(&e)));
        Self { ebpf, program: program.to_owned() }
    }

    /// Runs the program once on `input` (repeat=1: programs that rewrite the frame must see the
    /// original every time).
    pub fn run(&self, input: &[u8]) -> RunOutput {
        self.run_with_ctx(input, None, 1)
    }

    /// Runs the program once on `input` as if received on interface `ifindex` (of the network
    /// namespace the calling thread is in: FIB lookups of the program use that namespace).
    pub fn run_on(&self, ifindex: u32, input: &[u8]) -> RunOutput {
        self.run_repeated_on(ifindex, input, 1)
    }

    /// As [`Self::run_on`], the program run `repeat` times in one call on the same buffer: each
    /// run after the first sees the previous run's output, so this measures only programs
    /// whose rewrite is idempotent. The duration is the mean per run.
    pub fn run_repeated_on(&self, ifindex: u32, input: &[u8], repeat: u32) -> RunOutput {
        // struct xdp_md { data, data_end, data_meta, ingress_ifindex, rx_queue_index,
        // egress_ifindex }: data is the metadata length (none), data_end the frame length.
        let mut ctx = [0u8; 24];
        let len = u32::try_from(input.len()).expect("frames are small");
        ctx[4..8].copy_from_slice(&len.to_ne_bytes());
        ctx[12..16].copy_from_slice(&ifindex.to_ne_bytes());
        self.run_with_ctx(input, Some(&ctx), repeat)
    }

    fn run_with_ctx(&self, input: &[u8], ctx: Option<&[u8]>, repeat: u32) -> RunOutput {
        let xdp: &Xdp =
            self.ebpf.program(&self.program).expect("loaded in new").try_into().expect("checked in new");
        // Room for encapsulation headers the program may push.
        let mut output = vec![0u8; input.len() + 512];
        let opts = TestRunOptions {
            data_in: Some(input),
            data_out: Some(&mut output),
            ctx_in: ctx,
            repeat,
            ..Default::default()
        };
        let result = xdp
            .test_run(opts)
            .unwrap_or_else(|e| panic!("BPF_PROG_TEST_RUN: {}", lb_daemon::dataplane::xdp::error_chain(&e)));
        output.truncate(result.data_size_out as usize);
        RunOutput { action: result.return_value.into(), output, duration: result.duration }
    }

    /// The loaded object, to fill or read its maps.
    pub fn ebpf_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }

    /// The program's outcome counters, summed over CPUs.
    pub fn stats(&self) -> GlobalStats {
        let map = self.ebpf.map(GLOBAL_STATS).unwrap_or_else(|| panic!("no map {GLOBAL_STATS}"));
        lb_daemon::dataplane::xdp::read_stats(map).unwrap_or_else(|e| panic!("reading {GLOBAL_STATS}: {e}"))
    }
}

/// Attaches lbd's decapsulation program (`lb_decap`) to `interface` of the namespace the
/// calling thread is in (see [`crate::lab::Netns::enter`]), as a TUN real server runs it. The
/// program stays attached while the returned object lives.
/// The non-zero outcome counters of the `LBD_STATS` pinned under `pin_dir`, as `name=value`
/// words (for failure messages).
pub fn pinned_stats(pin_dir: &std::path::Path) -> String {
    let path = pin_dir.join(GLOBAL_STATS);
    let data = aya::maps::MapData::from_pin(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let stats = lb_daemon::dataplane::xdp::read_stats(&aya::maps::Map::PerCpuArray(data))
        .unwrap_or_else(|e| panic!("reading {}: {e:?}", path.display()));
    stats
        .fields()
        .iter()
        .filter(|(_, v)| *v != 0)
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Makes `ns` a DR / TUN real server: `lo_vips` on lo, never answered for by ARP on eth0,
/// decapsulated packets (from the client's address) accepted on eth0 through lbd's decap
/// program, which the returned handle keeps attached.
pub fn dr_tun_real(ns: &crate::lab::Netns, lo_vips: &[&str]) -> Ebpf {
    for vip in lo_vips {
        ns.ip(&["addr", "add", vip, "dev", "lo"]);
    }
    ns.sysctl("net.ipv4.conf.all.arp_ignore", "1");
    ns.sysctl("net.ipv4.conf.all.arp_announce", "2");
    ns.sysctl("net.ipv4.conf.all.rp_filter", "0");
    ns.sysctl("net.ipv4.conf.eth0.rp_filter", "0");
    ns.enter(|| attach_decap("eth0"))
}

pub fn attach_decap(interface: &str) -> Ebpf {
    attach(lb_common::programs::DECAP_XDP, interface)
}

/// Attaches `lb_pass` (passes every frame) to `interface`, the far end of a veth whose near
/// end runs an XDP program that answers with XDP_TX: the veth driver then delivers those
/// frames at once rather than when the next kernel-sent frame wakes the far end (see
/// `lb_pass`). Keep the returned handle: dropping it detaches the program.
pub fn attach_pass(interface: &str) -> Ebpf {
    attach(lb_common::programs::PASS_XDP, interface)
}

/// Loads program `name` of lbd's object and attaches it to `interface` (native mode).
fn attach(name: &str, interface: &str) -> Ebpf {
    crate::require_root();
    let mut ebpf = EbpfLoader::new()
        .load(lb_daemon::dataplane::xdp::OBJECT)
        .unwrap_or_else(|e| panic!("loading the object: {e:?}"));
    let program: &mut Xdp = ebpf
        .program_mut(name)
        .unwrap_or_else(|| panic!("the object has no {name}"))
        .try_into()
        .unwrap_or_else(|e: ProgramError| panic!("{name} is not XDP: {e}"));
    program
        .load()
        .unwrap_or_else(|e| panic!("loading {name}: {}", lb_daemon::dataplane::xdp::error_chain(&e)));
    program.attach(interface, aya::programs::XdpMode::Driver).unwrap_or_else(|e| {
        panic!("attaching {name} to {interface}: {}", lb_daemon::dataplane::xdp::error_chain(&e))
    });
    ebpf
}

/// What a fixture expects the frame to look like afterwards.
#[derive(Clone, Debug)]
pub enum Expected {
    /// Exactly the input.
    Unchanged,
    /// Exactly these bytes.
    Bytes(Vec<u8>),
    /// Not checked (for dropped frames).
    Any,
    /// Checked by a function (for fields the program picks at random, like FNAT ports).
    Check(fn(&[u8]) -> Result<(), String>),
}

/// One row of a packet table: `{description, input, expected action, expected output}`.
#[derive(Clone, Debug)]
pub struct Fixture {
    /// What the row shows.
    pub description: &'static str,
    /// The frame.
    pub input: Vec<u8>,
    /// The verdict.
    pub action: XdpAction,
    /// The frame afterwards.
    pub output: Expected,
}

/// Runs every fixture and panics listing all the rows that failed.
pub fn run_table(program: &XdpTestRun, table: &[Fixture]) {
    run_table_on(program, None, table);
}

/// As [`run_table`], each frame received on `ifindex` when given (see [`XdpTestRun::run_on`]).
pub fn run_table_on(program: &XdpTestRun, ifindex: Option<u32>, table: &[Fixture]) {
    let mut failures = Vec::new();
    for fixture in table {
        let got = match ifindex {
            Some(ifindex) => program.run_on(ifindex, &fixture.input),
            None => program.run(&fixture.input),
        };
        if got.action != fixture.action {
            failures.push(format!(
                "{}: action {:?}, expected {:?}",
                fixture.description, got.action, fixture.action
            ));
            continue;
        }
        let expected = match &fixture.output {
            Expected::Unchanged => Some(&fixture.input),
            Expected::Bytes(bytes) => Some(bytes),
            Expected::Any => None,
            Expected::Check(check) => {
                if let Err(why) = check(&got.output) {
                    failures.push(format!("{}: {why}\n   got {}", fixture.description, hex(&got.output)));
                }
                None
            }
        };
        if let Some(expected) = expected
            && &got.output != expected
        {
            failures.push(format!(
                "{}: output differs\n   got      {}\n   expected {}",
                fixture.description,
                hex(&got.output),
                hex(expected)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} fixtures failed:\n{}",
        failures.len(),
        table.len(),
        failures.join("\n")
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

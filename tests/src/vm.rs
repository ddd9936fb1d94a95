//! Running a command in a throwaway VM whose kernel has IPVS (this machine's has none).
//!
//! The VM boots Debian's kernel (`linux-image-<version>-amd64`, fetched with `apt-get download`
//! and unpacked with `dpkg-deb -x`, never installed) under `qemu-system-x86_64` in software
//! emulation, with a busybox initramfs that loads the IPVS modules, mounts this host's root
//! read-only over 9p and runs the command chrooted into it: binaries built here run there
//! unchanged. See `shared/notes/ipvs-vm.md`.
//!
//! The image (uncompressed `vmlinux`, initramfs) is built once and cached under
//! `target/vm/<kernel version>/`, with the list of modules it has (an image without every module
//! of [`MODULES`] is built anew); each run gets a directory under `target/vm/runs/` shared
//! read-write with the guest, holding the command, its output and its exit status.

use std::{
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

/// Modules loaded in the guest, with their dependencies before them (resolved at build).
const MODULES: &[&str] = &[
    "crc32c_generic",
    "ip_vs",
    "ip_vs_rr",
    "ip_vs_wrr",
    "ip_vs_lc",
    "ip_vs_wlc",
    "ip_vs_sh",
    "ip_vs_dh",
    "ip_vs_lblc",
    "ip_vs_lblcr",
    "ip_vs_sed",
    "ip_vs_nq",
    "ip_vs_mh",
    "veth",
    "dummy",
    "bridge",
    // VRRP's use_ipvlan and vrf (this machine's kernel has neither).
    "ipvlan",
    "vrf",
    "virtio_pci",
    "9pnet_virtio",
    "9p",
];

/// The file beside a cached image naming the modules of [`MODULES`] it was built with.
const MODULES_LIST: &str = "modules.list";

/// The guest's /init: modules, the host's root over 9p, the command chrooted into it, power off.
const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
mkdir -p /proc /sys /dev /host
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $(cat /modules); do
    if [ "$m" = dummy ]; then insmod /mods/$m.ko numdummies=0; else insmod /mods/$m.ko; fi
done
keep=""
for w in $(cat /proc/cmdline); do
    case "$w" in
        lbdvm.run=*) run="${w#lbdvm.run=}" ;;
        lbdvm.keep=*) keep="$keep ${w#lbdvm.keep=}" ;;
    esac
done
# The host's root is mounted once (9p takes a tag once) and bound to /host, so that /hostro
# still shows what the fresh /tmp and /run below cover.
mkdir -p /hostro
mount -t 9p -o trans=virtio,version=9p2000.L,ro hostroot /hostro
mount -o bind /hostro /host
mount -t proc proc /host/proc
mount -t sysfs sys /host/sys
mount -t devtmpfs dev /host/dev
mount -t tmpfs tmp /host/tmp
mount -t tmpfs run /host/run
# A workspace under /tmp or /run stays visible through the fresh ones (a clone in /tmp).
for k in $keep; do
    case "$k" in /tmp/*|/run/*) mkdir -p "/host$k" && mount -o bind "/hostro$k" "/host$k" ;; esac
done
mount -t 9p -o trans=virtio,version=9p2000.L hostrun "/host$run"
ip link set lo up
chroot /host /bin/sh "$run/cmd.sh" > "/host$run/out" 2>&1
echo $? > "/host$run/status"
sync
umount "/host$run"
echo "lbdvm: done"
echo o > /proc/sysrq-trigger
sleep 10
"#;

static NEXT_RUN: AtomicU32 = AtomicU32::new(0);

/// A bootable kernel and initramfs.
#[derive(Debug, Clone)]
pub struct Image {
    /// The uncompressed kernel (PVH boot).
    pub vmlinux: PathBuf,
    /// The initramfs (newc cpio).
    pub initramfs: PathBuf,
}

/// What a command run in the VM did.
#[derive(Debug)]
pub struct VmRun {
    /// Its exit status; `None` when the VM ended without reporting one (timeout, panic).
    pub status: Option<i32>,
    /// Its standard output and error.
    pub output: String,
    /// The guest kernel's console.
    pub console: String,
    /// From qemu's start to its end.
    pub elapsed: Duration,
}

/// `target/` (the test executable is `target/<profile>/deps/<name>`).
/// The workspace root (sources the tests read), kept visible in the guest.
fn workspace() -> PathBuf {
    let tests = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = tests.parent().unwrap_or(tests);
    root.canonicalize().unwrap_or_else(|_| root.to_path_buf())
}

fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary has a path");
    exe.ancestors().nth(3).expect("target/<profile>/deps").to_path_buf()
}

fn run(command: &mut Command) -> String {
    let out = command.output().unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(out.status.success(), "{command:?}: {}", String::from_utf8_lossy(&out.stderr).trim());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The version of Debian's current kernel package (`6.1.0-57-amd64`).
fn kernel_version() -> String {
    let depends = run(Command::new("apt-cache").args(["depends", "linux-image-amd64"]));
    depends
        .lines()
        .find_map(|l| l.trim().strip_prefix("Depends: linux-image-"))
        .map(str::to_owned)
        .expect("apt-cache knows linux-image-amd64 (Debian's kernel)")
}

impl Image {
    /// The cached image, built first if there is none with every module of [`MODULES`].
    pub fn get() -> Self {
        let base = target_dir().join("vm");
        // Any cached image with the modules will do: the apt lookup is only needed to build one.
        if let Ok(entries) = fs::read_dir(&base) {
            for entry in entries.flatten() {
                let image = Self::at(&entry.path());
                let listed = fs::read_to_string(entry.path().join(MODULES_LIST)).unwrap_or_default();
                if image.vmlinux.is_file() && image.initramfs.is_file() && listed == MODULES.join("\n") {
                    return image;
                }
            }
        }
        let version = kernel_version();
        Self::build(&base.join(&version), &version)
    }

    fn at(dir: &Path) -> Self {
        Self { vmlinux: dir.join("vmlinux"), initramfs: dir.join("initramfs.cpio") }
    }

    fn build(dir: &Path, version: &str) -> Self {
        let work = dir.join("work");
        let _ = fs::remove_dir_all(&work);
        fs::create_dir_all(&work).expect("creating the image directory");
        let package = format!("linux-image-{version}");
        run(Command::new("apt-get").args(["download", &package]).current_dir(&work));
        let deb = fs::read_dir(&work)
            .expect("listing the download")
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|e| e == "deb"))
            .expect("apt-get download left a .deb");
        let root = work.join("root");
        run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root));
        let image = Self::at(dir);
        extract_vmlinux(&root.join(format!("boot/vmlinuz-{version}")), &image.vmlinux);
        let modules = root.join(format!("lib/modules/{version}"));
        fs::write(&image.initramfs, initramfs(&modules)).expect("writing the initramfs");
        fs::write(dir.join(MODULES_LIST), MODULES.join("\n")).expect("writing the module list");
        let _ = fs::remove_dir_all(&work);
        image
    }

    /// Runs `script` (sh) as root in a VM, chrooted into this host's root (read-only, with
    /// fresh /tmp and /run, through which the workspace stays visible if it lies under them),
    /// for at most `timeout`.
    pub fn run(&self, script: &str, timeout: Duration) -> VmRun {
        let dir = target_dir().join("vm/runs").join(format!(
            "{}-{}",
            std::process::id(),
            NEXT_RUN.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("creating the run directory");
        let dir = dir.canonicalize().expect("the run directory has a path");
        fs::write(dir.join("cmd.sh"), script).expect("writing the command");
        // This build's /init, appended as a second archive (the kernel unpacks them in order, a
        // later file replacing an earlier one): a cached image built by an older kit keeps
        // working.
        let mut initrd = fs::read(&self.initramfs).expect("reading the cached initramfs");
        let mut init = Cpio::default();
        init.file("init", INIT.as_bytes(), 0o755);
        initrd.extend(init.finish());
        let initrd_path = dir.join("initrd.cpio");
        fs::write(&initrd_path, initrd).expect("writing the run's initramfs");
        let console = dir.join("console.log");
        let start = Instant::now();
        let status = Command::new("timeout")
            .arg(timeout.as_secs().to_string())
            .args([
                "qemu-system-x86_64",
                "-machine",
                "pc,accel=tcg",
                "-cpu",
                "max",
                "-m",
                "1024",
                "-smp",
                "2",
            ])
            .args(["-nodefaults", "-no-reboot", "-display", "none"])
            .arg("-kernel")
            .arg(&self.vmlinux)
            .arg("-initrd")
            .arg(&initrd_path)
            .arg("-append")
            .arg(format!(
                "console=ttyS0 panic=-1 quiet lbdvm.run={} lbdvm.keep={} lbdvm.keep={}",
                dir.display(),
                workspace().display(),
                target_dir().canonicalize().unwrap_or_else(|_| target_dir()).display()
            ))
            .arg("-serial")
            .arg(format!("file:{}", console.display()))
            .args([
                "-virtfs",
                "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap",
            ])
            .arg("-virtfs")
            .arg(format!("local,path={},mount_tag=hostrun,security_model=none", dir.display()))
            .status()
            .expect("running qemu-system-x86_64 (cargo xtask setup installs qemu-system-x86)");
        let elapsed = start.elapsed();
        let read = |name: &str| fs::read_to_string(dir.join(name)).unwrap_or_default();
        let run = VmRun {
            status: read("status").trim().parse().ok(),
            output: read("out"),
            console: read("console.log"),
            elapsed,
        };
        if run.status.is_none() {
            eprintln!("qemu: {status}; console:\n{}", run.console);
        }
        let _ = fs::remove_dir_all(&dir);
        run
    }
}

/// Runs the test `name` of the running test binary in a VM, where `LBD_IN_VM` is set (the test
/// then does its part there), for at most `timeout`, and fails unless it passed there: a VM that
/// cannot boot (no qemu, no kernel package) fails too, with what it said.
pub fn run_test_in_vm(name: &str, timeout: Duration) {
    crate::require_root();
    let image = Image::get();
    let exe = std::env::current_exe().expect("the test binary has a path");
    let script = format!(
        "export LBD_IN_VM=1 PATH=/usr/sbin:/usr/bin:/sbin:/bin\nexec {} --exact {name} --nocapture --test-threads=1\n",
        exe.display()
    );
    let run = image.run(&script, timeout);
    println!("VM run: {:.1} s; in the VM:\n{}", run.elapsed.as_secs_f64(), run.output);
    assert_eq!(run.status, Some(0), "in the VM:\n{}\nconsole:\n{}", run.output, run.console);
    assert!(run.output.contains("test result: ok. 1 passed"), "{}", run.output);
}

/// The uncompressed kernel inside a bzImage: its XZ payload (what the kernel's
/// `scripts/extract-vmlinux` finds), decompressed.
fn extract_vmlinux(bzimage: &Path, out: &Path) {
    let image = fs::read(bzimage).expect("reading the kernel");
    let magic = [0xfd, b'7', b'z', b'X', b'Z', 0];
    let start = image.windows(magic.len()).position(|w| w == magic).expect("an XZ-compressed kernel");
    let payload = bzimage.with_extension("xz");
    fs::write(&payload, &image[start..]).expect("writing the payload");
    let file = fs::File::create(out).expect("creating vmlinux");
    let status = Command::new("xz")
        .args(["-dc", "--single-stream"])
        .arg(&payload)
        .stdout(file)
        .status()
        .expect("running xz");
    assert!(status.success(), "xz could not decompress the kernel");
    let elf = fs::read(out).map(|b| b.starts_with(b"\x7fELF")).unwrap_or(false);
    assert!(elf, "{} is not an ELF kernel", out.display());
}

/// Every `.ko` under `modules` by module name (`-` and `_` alike).
fn module_index(modules: &Path) -> std::collections::BTreeMap<String, PathBuf> {
    let mut index = std::collections::BTreeMap::new();
    let mut dirs = vec![modules.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).expect("listing modules").flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if let Some(name) =
                path.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(".ko"))
            {
                index.insert(name.replace('-', "_"), path);
            }
        }
    }
    index
}

/// A module's `depends=` (from its `.modinfo` section).
fn depends(ko: &Path) -> Vec<String> {
    let bytes = fs::read(ko).expect("reading a module");
    let key = b"\0depends=";
    let Some(at) = bytes.windows(key.len()).position(|w| w == key) else { return Vec::new() };
    let rest = &bytes[at + key.len()..];
    let value = &rest[..rest.iter().position(|b| *b == 0).unwrap_or(rest.len())];
    String::from_utf8_lossy(value).split(',').filter(|d| !d.is_empty()).map(|d| d.replace('-', "_")).collect()
}

/// The initramfs: busybox as /init's shell, the modules of [`MODULES`] and their dependencies in
/// load order.
fn initramfs(modules: &Path) -> Vec<u8> {
    let index = module_index(modules);
    let mut order: Vec<String> = Vec::new();
    fn visit(name: &str, index: &std::collections::BTreeMap<String, PathBuf>, order: &mut Vec<String>) {
        if order.iter().any(|o| o == name) {
            return;
        }
        let ko = index.get(name).unwrap_or_else(|| panic!("module {name} is not in the kernel package"));
        for dep in depends(ko) {
            visit(&dep, index, order);
        }
        order.push(name.to_owned());
    }
    for name in MODULES {
        visit(name, &index, &mut order);
    }
    let mut cpio = Cpio::default();
    for dir in ["bin", "mods", "proc", "sys", "dev", "host"] {
        cpio.dir(dir);
    }
    cpio.file("init", INIT.as_bytes(), 0o755);
    cpio.file("bin/busybox", &fs::read("/bin/busybox").expect("busybox-static at /bin/busybox"), 0o755);
    cpio.file("modules", order.join("\n").as_bytes(), 0o644);
    for name in &order {
        cpio.file(&format!("mods/{name}.ko"), &fs::read(&index[name]).expect("reading a module"), 0o644);
    }
    cpio.finish()
}

/// A newc cpio archive.
#[derive(Default)]
struct Cpio {
    out: Vec<u8>,
    ino: u32,
}

impl Cpio {
    fn entry(&mut self, name: &str, mode: u32, data: &[u8]) {
        self.ino += 1;
        let mut header = String::from("070701");
        let size = u32::try_from(data.len()).expect("a file under 4 GiB");
        let namesize = u32::try_from(name.len() + 1).expect("a short name");
        for field in [self.ino, mode, 0, 0, 1, 0, size, 0, 0, 0, 0, namesize, 0] {
            let _ = write!(header, "{field:08x}");
        }
        self.out.extend_from_slice(header.as_bytes());
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        self.pad();
        self.out.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.out.len().is_multiple_of(4) {
            self.out.push(0);
        }
    }

    fn dir(&mut self, name: &str) {
        self.entry(name, 0o040_755, &[]);
    }

    fn file(&mut self, name: &str, data: &[u8], perm: u32) {
        self.entry(name, 0o100_000 | perm, data);
    }

    fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, &[]);
        self.out
    }
}

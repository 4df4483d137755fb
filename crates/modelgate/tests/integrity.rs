//! A node's integrity checks against attacks on the model's bytes that its
//! identity checks cannot see, with real processes (a dev authority, the
//! mock upstream, `node serve`) and a real file system: an ext4 image
//! loop-mounted (as root, as CI runs), whose blocks are written beneath the
//! file system.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::os::unix::fs::FileExt as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::world::{agent, free_port, Killed};
use serde_json::Value;

/// A small ext4 image loop-mounted at `mnt`, unmounted when dropped.
struct Mounted {
    image: PathBuf,
    mnt: PathBuf,
}

impl Mounted {
    fn new(dir: &Path, mkfs_features: &[&str]) -> Self {
        let image = dir.join("fs.img");
        let mnt = dir.join("mnt");
        std::fs::create_dir_all(&mnt).unwrap();
        std::fs::File::create(&image).unwrap().set_len(64 << 20).unwrap();
        let mut mkfs = Command::new("mkfs.ext4");
        // 4 KiB blocks (a small image would get 1 KiB ones), as `first_block` counts.
        mkfs.args(["-q", "-b", "4096"]);
        for f in mkfs_features {
            mkfs.args(["-O", f]);
        }
        let o = mkfs.arg(&image).output().unwrap();
        assert!(o.status.success(), "mkfs.ext4: {}", String::from_utf8_lossy(&o.stderr));
        let o = Command::new("mount")
            .args(["-o", "loop"])
            .arg(&image)
            .arg(&mnt)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "mount -o loop: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        Mounted { image, mnt }
    }

    /// The byte offset in the image of `file`'s first block (`filefrag`).
    fn first_block(&self, file: &Path) -> u64 {
        let o = Command::new("filefrag")
            .args(["-v", "-b4096"])
            .arg(file)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with("0:"))
            .unwrap_or_else(|| panic!("no extent in {text}"));
        let physical: u64 = line
            .split(':')
            .nth(2)
            .unwrap()
            .split("..")
            .next()
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        physical * 4096
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.mnt).status();
    }
}

fn root() -> bool {
    rustix::process::geteuid().is_root()
}

fn drop_caches() {
    let _ = Command::new("sync").status();
    std::fs::write("/proc/sys/vm/drop_caches", "3\n").unwrap();
}

/// The node's `/status`.
fn status(url: &str) -> Value {
    let mut r = agent().get(&format!("{url}/status")).call().unwrap();
    serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap()
}

/// The status of one call and its body (0 while nothing listens).
fn call(url: &str, token: &str) -> (u16, String) {
    let sent = agent()
        .post(&format!("{url}/v1/chat/completions"))
        .header("Authorization", &format!("Bearer {token}"))
        .header("Content-Type", "application/json")
        .send(r#"{"model": "m", "messages": [{"role": "user", "content": "hello"}]}"#);
    match sent {
        Ok(mut r) => (r.status().as_u16(), r.body_mut().read_to_string().unwrap_or_default()),
        Err(e) => (0, e.to_string()),
    }
}

fn wait(what: &str, secs: u64, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !ok() {
        assert!(Instant::now() < deadline, "no {what} within {secs} s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `node serve` with `env`, its events drained.
fn serve(config: &Path, env: &[(&str, &str)]) -> Killed {
    common::world::node_serve(config, &["--interval-ms", "50"], env).0
}

/// Bytes written to the block device beneath the file system change a
/// model file without changing its identity (no inotify event, no ctime):
/// the check before serving trusts its verified-digest cache at a restart,
/// as it must to start in a second, and the background full
/// re-verification reads every byte, finds the change, and contains.
#[test]
fn a_block_written_beneath_the_file_system_is_caught_by_the_full_re_verification() {
    if !root() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs this test as root (it loop-mounts ext4)"
        );
        eprintln!("not root: this test loop-mounts an ext4 image and needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let fs = Mounted::new(dir.path(), &[]);
    let model = fs.mnt.join("model");
    std::fs::create_dir_all(&model).unwrap();
    let weights = model.join("weights.bin");
    let bytes: Vec<u8> = (0..(1u32 << 20))
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    std::fs::write(&weights, &bytes).unwrap();
    std::fs::write(model.join("config.json"), b"{\"layers\": 2}\n").unwrap();
    let dev = dir.path().join("dev");
    let _authority = common::dev_serve(&dev);
    let (_mock, upstream) = common::world::start_mock(1, 0);
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let (config, token) = common::dev_govern(&dev, &model, &upstream, "m", &format!("127.0.0.1:{port}"));
    // Re-verified every second, paced to 1 MiB/s: the 1 MiB file takes
    // about a second to read, so the restart's first call comes before.
    let every = [
        ("MODELGATE_NODE_REHASH_INTERVAL_SECONDS", "1"),
        ("MODELGATE_NODE_REHASH_MAX_MIB_PER_SECOND", "1"),
    ];

    // First start: everything read, verified, recorded in the cache.
    let node = serve(&config, &[("MODELGATE_NODE_REHASH_INTERVAL_SECONDS", "0")]);
    wait("first 200", 60, || call(&url, &token).0 == 200);
    drop(node);

    // While the node is stopped, one byte of the first block is changed
    // in the image, beneath ext4; the page cache is dropped so that the
    // next read of the file comes from the changed block.
    let before = std::fs::metadata(&weights).unwrap();
    // Written through to the image first (the file's blocks allocated),
    // and the image's own cached pages dropped: the loop device may write
    // beside them (direct I/O).
    drop_caches();
    let at = fs.first_block(&weights);
    let image = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&fs.image)
        .unwrap();
    let mut b = [0u8; 1];
    image.read_exact_at(&mut b, at + 100).unwrap();
    assert_eq!(b[0], bytes[100], "filefrag named another block");
    image.write_all_at(&[b[0] ^ 0xff], at + 100).unwrap();
    image.sync_all().unwrap();
    drop_caches();
    let after = std::fs::metadata(&weights).unwrap();
    assert_eq!(
        (
            before.ino(),
            before.size(),
            before.mtime_nsec(),
            before.ctime(),
            before.ctime_nsec()
        ),
        (
            after.ino(),
            after.size(),
            after.mtime_nsec(),
            after.ctime(),
            after.ctime_nsec()
        ),
        "the write beneath the file system changed the file's identity"
    );
    assert_ne!(
        std::fs::read(&weights).unwrap()[100],
        bytes[100],
        "the change did not land"
    );

    // Restarted: the cache vouches for the file's unchanged identity, so it
    // serves at once; within the re-verification's interval it is contained.
    let _node = serve(&config, &every);
    wait("a 200 on the cache's word", 60, || call(&url, &token).0 == 200);
    let mut last = (0, String::new());
    let paced = Instant::now();
    wait("containment by the full re-verification", 30, || {
        last = call(&url, &token);
        last.0 != 200 && last.0 != 0
    });
    assert!(last.1.contains("UnauthorizedModification"), "{last:?}");
    assert!(paced.elapsed() > Duration::from_millis(500), "the pace was not kept");
    wait("the full re-verification on /status", 10, || {
        status(&url)["integrity"]["full_verification"]["m"]["ok"] == false
    });
    // The loop takes it through the lifecycle again, which reads every byte.
    wait("Contained on /status", 10, || {
        status(&url)["models"]["m"]["state"] == "Contained"
    });
    let st = status(&url);
    let full = &st["integrity"]["full_verification"]["m"];
    assert!(full["detail"].as_str().unwrap().contains("weights.bin"), "{st}");
    assert!(
        full["seconds"].as_f64().unwrap() > 0.8,
        "1 MiB read faster than 1 MiB/s: {st}"
    );
    assert_eq!(st["models"]["m"]["state"], "Contained", "{st}");
    assert_eq!(st["models"]["m"]["reason"], "UnauthorizedModification", "{st}");
    // And it stays contained: the lifecycle now reads every byte.
    std::thread::sleep(Duration::from_millis(1500));
    assert_ne!(call(&url, &token).0, 200);
}

/// Where this test's VM parts are: the kernel directory `scripts/vm-kernel.sh`
/// makes (`vmlinuz`, `loop.ko`), and the host tools copied into the guest.
fn vm_parts() -> Option<PathBuf> {
    let dir = std::env::var_os("MODELGATE_VM_KERNEL_DIR").map(PathBuf::from);
    let tools = [
        "qemu-system-x86_64",
        "busybox",
        "cpio",
        "fsverity",
        "mke2fs",
        "filefrag",
    ];
    let missing: Vec<&str> = tools
        .into_iter()
        .filter(|t| {
            !Command::new("sh")
                .args(["-c", &format!("command -v {t}")])
                .output()
                .unwrap()
                .status
                .success()
        })
        .collect();
    match dir {
        Some(d) if d.join("vmlinuz").exists() && missing.is_empty() => Some(d),
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI runs the fs-verity VM test: scripts/test.sh sets MODELGATE_VM_KERNEL_DIR and installs {tools:?} \
                 (missing: {missing:?})"
            );
            None
        }
    }
}

/// The guest's root, as an initramfs: a static BusyBox, this build's
/// `modelgate`, the e2fsprogs and fsverity tools with their libraries, the
/// loop module, and `tests/data/fs-verity-guest.sh` as `/init`.
fn initramfs(kernel: &Path, dir: &Path) -> PathBuf {
    let root = dir.join("root");
    for d in [
        "bin",
        "lib64",
        "lib/x86_64-linux-gnu",
        "modules",
        "proc",
        "sys",
        "dev",
        "tmp",
        "root",
        "etc",
        "mnt",
    ] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    let which = |t: &str| -> PathBuf {
        let o = Command::new("sh")
            .args(["-c", &format!("command -v {t}")])
            .output()
            .unwrap();
        PathBuf::from(String::from_utf8(o.stdout).unwrap().trim())
    };
    let busybox = which("busybox");
    std::fs::copy(&busybox, root.join("bin/busybox")).unwrap();
    let list = Command::new(&busybox).arg("--list").output().unwrap();
    let tools = ["fsverity", "mke2fs", "filefrag"];
    for applet in String::from_utf8(list.stdout).unwrap().lines() {
        if applet != "busybox" && !tools.contains(&applet) && applet != "mkfs.ext4" {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
        }
    }
    // The node binary without its debug sections (a debug build is ~400 MB).
    let mg = root.join("bin/modelgate");
    let stripped = Command::new("strip")
        .arg("-o")
        .arg(&mg)
        .arg(env!("CARGO_BIN_EXE_modelgate"))
        .status()
        .is_ok_and(|s| s.success());
    if !stripped {
        std::fs::copy(env!("CARGO_BIN_EXE_modelgate"), &mg).unwrap();
    }
    let mut bins = vec![PathBuf::from(env!("CARGO_BIN_EXE_modelgate"))];
    for t in tools {
        let p = which(t);
        std::fs::copy(&p, root.join("bin").join(t)).unwrap();
        bins.push(p);
    }
    std::os::unix::fs::symlink("mke2fs", root.join("bin/mkfs.ext4")).unwrap();
    let ldd = Command::new("ldd").args(&bins).output().unwrap();
    for lib in String::from_utf8_lossy(&ldd.stdout)
        .lines()
        .filter_map(|l| l.split("=> ").nth(1))
        .filter_map(|l| l.split_whitespace().next())
    {
        let name = Path::new(lib).file_name().unwrap();
        std::fs::copy(lib, root.join("lib/x86_64-linux-gnu").join(name)).unwrap();
    }
    std::fs::copy("/lib64/ld-linux-x86-64.so.2", root.join("lib64/ld-linux-x86-64.so.2")).unwrap();
    std::fs::copy(kernel.join("loop.ko"), root.join("modules/loop.ko")).unwrap();
    let guest = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/fs-verity-guest.sh");
    std::fs::copy(guest, root.join("init")).unwrap();
    std::fs::write(root.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
    let image = dir.join("initramfs.cpio");
    let o = Command::new("sh")
        .current_dir(&root)
        .arg("-c")
        .arg(format!("find . | cpio -o -H newc --quiet > {}", image.display()))
        .output()
        .unwrap();
    assert!(o.status.success(), "cpio: {}", String::from_utf8_lossy(&o.stderr));
    image
}

/// fs-verity end to end, in a throwaway VM whose kernel has it (Debian's
/// cloud kernel under QEMU; the host's may not): an ext4 made with
/// `mkfs.ext4 -O verity` and loop-mounted, the model on it governed and
/// served with `fs_verity = true`. The first start seals every file, so it
/// can no longer be written; a restart measures instead of reading; one
/// byte changed in the image beneath ext4 makes any read of that block fail
/// with EIO (in any process, as in an inference server), and the node's
/// full re-verification meets it and contains.
#[test]
fn fs_verity_seals_the_model_and_a_changed_block_fails_the_read_and_contains() {
    let Some(kernel) = vm_parts() else {
        eprintln!("no VM kernel or tools: run through scripts/test.sh");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let initrd = initramfs(&kernel, dir.path());
    // Software emulation: nested KVM is not dependable on the machines this
    // runs on, and the guest only needs seconds of CPU.
    let o = Command::new("timeout")
        .arg("900")
        .arg("qemu-system-x86_64")
        .args(["-accel", "tcg,thread=multi", "-cpu", "max", "-m", "2048", "-smp", "2"])
        .args(["-nographic", "-no-reboot", "-kernel"])
        .arg(kernel.join("vmlinuz"))
        .arg("-initrd")
        .arg(&initrd)
        .args(["-append", "console=ttyS0 quiet loglevel=1 panic=-1 rdinit=/init"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let said = |key: &str| -> String {
        // A line may start with the console's escape codes.
        out.lines()
            .find_map(|l| l.split_once(&format!("== {key}")).map(|(_, v)| v))
            .map(|v| v.trim().to_owned())
            .unwrap_or_else(|| panic!("the guest never said {key}:\n{out}"))
    };
    assert_eq!(said("END"), "ok", "{out}");
    let timing = |key: &str| -> (u64, u64) {
        let v = said(key);
        let mut w = v
            .split_whitespace()
            .map(|x| x.parse::<u64>().unwrap_or_else(|_| panic!("{key}: {v}")));
        (w.next().unwrap(), w.next().unwrap())
    };
    let first: Value = serde_json::from_str(&said("STATUS_FIRST")).unwrap();
    assert_eq!(first["models"]["m"]["state"], "Serving", "{first}");
    assert_eq!(first["integrity"]["fs_verity"]["m"]["available"], true, "{first}");
    assert!(said("MEASURED").starts_with("sha256:"), "{out}");
    said("READ_ONLY");
    // The first start hashes the 8 MiB file (the kernel's read to seal it
    // is not the process's); a restart measures it and reads nothing.
    let (first_ms, first_read) = timing("FIRST_SERVING");
    let (restart_ms, restart_read) = timing("RESTART_SERVING");
    assert!(first_read >= 8 << 20, "the first start read {first_read} bytes");
    assert!(
        restart_read < 4 << 20,
        "the restart read {restart_read} bytes: it re-hashed"
    );
    eprintln!(
        "in the VM (software emulation): first start {first_ms} ms ({first_read} bytes read), \
         restart {restart_ms} ms ({restart_read} bytes read)"
    );
    assert!(said("READ_FAILED").contains("Input/output error"), "{out}");
    timing("ATTACKED_CONTAINED");
    let attacked: Value = serde_json::from_str(&said("STATUS_ATTACKED")).unwrap();
    let m = &attacked["models"]["m"];
    assert_eq!(m["state"], "Contained", "{attacked}");
    assert_eq!(m["reason"], "UnauthorizedModification", "{attacked}");
    let full = &attacked["integrity"]["full_verification"]["m"];
    assert_eq!(full["ok"], false, "{attacked}");
    assert!(
        full["detail"].as_str().unwrap().contains("Input/output error"),
        "{attacked}"
    );
}

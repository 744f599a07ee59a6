//! A memory cgroup per engine, so a larger-than-memory row caps what each
//! engine may keep in RAM *including the OS page cache*.
//!
//! Rime reads and writes its pages with `O_DIRECT`, so its pool budget is
//! all the memory it caches in. LMDB, RocksDB, redb, fjall and sled read
//! through the page cache as well; without a cap their "pool" is a fraction
//! of what they really cache, and a larger-than-memory row measures the
//! machine's RAM, not the engines. The kernel charges page-cache pages to
//! the cgroup of the process that faults them in and reclaims them when the
//! cgroup reaches its limit, so one cgroup per engine process makes the
//! budget hold for all of them.
//!
//! Both hierarchies are handled: cgroup v1's `memory` controller
//! (`memory.limit_in_bytes`) and cgroup v2 (`memory.max`). The cgroup is a
//! child of this process's own, and is removed on drop.
//!
//! Life cycle of a [`MemoryCgroup`]:
//! 1. [`MemoryCgroup::create`]: mkdir, write the limit;
//! 2. [`MemoryCgroup::add`]: move the child process in (before it allocates);
//! 3. the child runs and exits; [`peak_bytes`](MemoryCgroup::peak_bytes) and
//!    [`oom_kills`](MemoryCgroup::oom_kills) tell what happened;
//! 4. drop: reclaim what is still charged (page cache of deleted files),
//!    rmdir.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    /// cgroup v1, `memory` controller mounted on its own.
    V1,
    /// cgroup v2 (unified), `memory` enabled for our subtree.
    V2,
}

/// Why no memory cgroup can be made here.
#[derive(Debug)]
pub struct Unavailable(pub String);

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "no memory cgroup: {}", self.0)
    }
}

impl std::error::Error for Unavailable {}

/// One memory-limited cgroup; removed on drop.
#[derive(Debug)]
pub struct MemoryCgroup {
    dir: PathBuf,
    version: Version,
    limit_bytes: u64,
}

impl MemoryCgroup {
    /// Creates `<our cgroup>/<name>` with a hard memory limit.
    pub fn create(name: &str, limit_bytes: u64) -> Result<MemoryCgroup, Unavailable> {
        let (parent, version) = own_memory_cgroup()?;
        let dir = parent.join(name);
        match fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Unavailable(format!("mkdir {}: {e}", dir.display()))),
        }
        let cg = MemoryCgroup {
            dir,
            version,
            limit_bytes,
        };
        let file = match version {
            Version::V1 => "memory.limit_in_bytes",
            Version::V2 => "memory.max",
        };
        cg.write(file, &limit_bytes.to_string())
            .map_err(|e| Unavailable(format!("{}/{file}: {e}", cg.dir.display())))?;
        if version == Version::V2 {
            // No swap either, or the limit only moves pages to swap.
            let _ = cg.write("memory.swap.max", "0");
        }
        Ok(cg)
    }

    /// Moves process `pid` into the cgroup (its later children follow).
    pub fn add(&self, pid: u32) -> io::Result<()> {
        self.write("cgroup.procs", &pid.to_string())
    }

    pub fn limit_bytes(&self) -> u64 {
        self.limit_bytes
    }

    /// The most memory (anonymous + page cache) charged at any time.
    pub fn peak_bytes(&self) -> Option<u64> {
        let file = match self.version {
            Version::V1 => "memory.max_usage_in_bytes",
            Version::V2 => "memory.peak",
        };
        self.read(file)?.trim().parse().ok()
    }

    /// Processes the kernel's OOM killer killed in this cgroup.
    pub fn oom_kills(&self) -> Option<u64> {
        let file = match self.version {
            Version::V1 => "memory.oom_control",
            Version::V2 => "memory.events",
        };
        self.read(file)?
            .lines()
            .find_map(|l| l.strip_prefix("oom_kill "))
            .and_then(|n| n.trim().parse().ok())
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    fn write(&self, file: &str, value: &str) -> io::Result<()> {
        fs::write(self.dir.join(file), value)
    }

    fn read(&self, file: &str) -> Option<String> {
        fs::read_to_string(self.dir.join(file)).ok()
    }
}

/// Attempts at rmdir: the last process may still be leaving.
const RMDIR_ATTEMPTS: u32 = 50;

impl Drop for MemoryCgroup {
    fn drop(&mut self) {
        if self.version == Version::V1 {
            // Uncharge leftover page cache so the next engine's cgroup does
            // not inherit pressure from this one's files.
            let _ = self.write("memory.force_empty", "1");
        }
        for _ in 0..RMDIR_ATTEMPTS {
            if fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        eprintln!("rime-bench: could not remove cgroup {}", self.dir.display());
    }
}

/// Whether a memory cgroup can be made here (creates and removes one).
pub fn probe() -> Result<(), Unavailable> {
    let name = format!("rime-bench-probe-{}", std::process::id());
    MemoryCgroup::create(&name, 1 << 30).map(drop)
}

/// This process's memory cgroup directory and the hierarchy's version.
fn own_memory_cgroup() -> Result<(PathBuf, Version), Unavailable> {
    let cgroups = fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| Unavailable(format!("/proc/self/cgroup: {e}")))?;
    let mountinfo = fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| Unavailable(format!("/proc/self/mountinfo: {e}")))?;
    // v1 first: where a v1 memory controller is mounted, v2 cannot have it.
    if let Some(path) = cgroups.lines().find_map(|l| v1_memory_path(l)) {
        let (root, mnt) = find_mount(&mountinfo, |fs, opts| {
            fs == "cgroup" && opts.split(',').any(|o| o == "memory")
        })
        .ok_or_else(|| Unavailable("v1 memory controller is not mounted".into()))?;
        return Ok((join_cgroup(&mnt, &root, path), Version::V1));
    }
    let path = cgroups
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .ok_or_else(|| Unavailable("no cgroup v2 entry in /proc/self/cgroup".into()))?;
    let (root, mnt) = find_mount(&mountinfo, |fs, _| fs == "cgroup2")
        .ok_or_else(|| Unavailable("cgroup2 is not mounted".into()))?;
    let dir = join_cgroup(&mnt, &root, path);
    let controllers = fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
    if !controllers.split_whitespace().any(|c| c == "memory") {
        return Err(Unavailable(format!(
            "the memory controller is not enabled in {}",
            dir.display()
        )));
    }
    // Children get `memory.max` only if our subtree has the controller.
    let _ = fs::write(dir.join("cgroup.subtree_control"), "+memory");
    Ok((dir, Version::V2))
}

/// `4:memory:/a/b` → `/a/b` (also `…:cpu,memory:…`).
fn v1_memory_path(line: &str) -> Option<&str> {
    let mut parts = line.splitn(3, ':');
    let (_id, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
    controllers
        .split(',')
        .any(|c| c == "memory")
        .then_some(path)
}

/// The (root within the hierarchy, mount point) of the first mount whose
/// file system type and super options satisfy `want`.
fn find_mount(mountinfo: &str, want: impl Fn(&str, &str) -> bool) -> Option<(String, PathBuf)> {
    mountinfo.lines().find_map(|line| {
        // id parent major:minor root mountpoint options [optional…] - fstype source superopts
        let (left, right) = line.split_once(" - ")?;
        let left: Vec<&str> = left.split(' ').collect();
        let right: Vec<&str> = right.split(' ').collect();
        let (fstype, superopts) = (*right.first()?, *right.get(2).unwrap_or(&""));
        let (root, mount) = (left.get(3)?, left.get(4)?);
        want(fstype, superopts).then(|| (root.to_string(), PathBuf::from(mount)))
    })
}

/// The directory of cgroup `path` under a mount of the hierarchy's `root`.
fn join_cgroup(mount: &Path, root: &str, path: &str) -> PathBuf {
    let rel = path.strip_prefix(root).unwrap_or(path);
    mount.join(rel.trim_start_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_v1_and_v2_entries() {
        assert_eq!(v1_memory_path("4:memory:/a/b"), Some("/a/b"));
        assert_eq!(v1_memory_path("3:cpu,memory:/x"), Some("/x"));
        assert_eq!(v1_memory_path("1:cpu:/"), None);
        assert_eq!(v1_memory_path("0::/user.slice"), None);
        let mi = "30 25 0:26 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n\
                  31 25 0:27 /sub /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n";
        let (root, mnt) = find_mount(mi, |fs, o| fs == "cgroup" && o.contains("memory")).unwrap();
        assert_eq!(
            (root.as_str(), mnt.as_path()),
            ("/", Path::new("/sys/fs/cgroup/memory"))
        );
        let (root, mnt) = find_mount(mi, |fs, _| fs == "cgroup2").unwrap();
        assert_eq!(
            join_cgroup(&mnt, &root, "/sub/svc"),
            Path::new("/sys/fs/cgroup/unified/svc")
        );
    }

    /// Where cgroups can be made (root in a VM with a memory controller),
    /// the limit is written and reported; elsewhere, a clear reason.
    #[test]
    fn a_cgroup_has_the_limit_it_was_made_with_or_says_why_not() {
        let name = format!("rime-bench-test-{}", std::process::id());
        match MemoryCgroup::create(&name, 64 << 20) {
            Ok(cg) => {
                assert!(cg.path().is_dir());
                let file = match cg.version {
                    Version::V1 => "memory.limit_in_bytes",
                    Version::V2 => "memory.max",
                };
                assert_eq!(cg.read(file).unwrap().trim(), (64u64 << 20).to_string());
                assert_eq!(cg.oom_kills(), Some(0));
                let dir = cg.path().to_path_buf();
                drop(cg);
                assert!(!dir.exists(), "removed on drop");
            }
            Err(e) => {
                eprintln!("skipped: {e}");
                assert!(!e.0.is_empty());
            }
        }
    }
}

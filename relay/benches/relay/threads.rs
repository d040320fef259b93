//! Whose thread is this, how much CPU it used, and what the relay's threads
//! allocate. The relay starts its own threads; every thread the benchmark
//! does not mark is the relay's.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering::Relaxed};
use std::sync::Mutex;

thread_local! {
    static BENCH_THREAD: Cell<bool> = const { Cell::new(false) };
}

pub static BENCH_TIDS: Mutex<Vec<u32>> = Mutex::new(Vec::new());

pub fn is_bench_thread() -> bool {
    BENCH_THREAD.try_with(Cell::get).unwrap_or(true)
}

pub fn tid() -> u32 {
    std::fs::read_link("/proc/thread-self")
        .ok()
        .and_then(|p| p.file_name()?.to_str()?.parse().ok())
        .expect("/proc/thread-self names this thread")
}

pub fn mark_bench_thread() {
    BENCH_THREAD.with(|b| b.set(true));
    BENCH_TIDS.lock().unwrap().push(tid());
}

/// Pins one thread; threads it starts later inherit the CPU.
pub fn pin(tid: u32, cpu: usize) -> bool {
    std::process::Command::new("taskset")
        .args(["-p", "-c", &cpu.to_string(), &tid.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// CPU time (ns) of the relay's threads, or of the benchmark's.
pub fn cpu_ns(relay: bool) -> u64 {
    let ours = BENCH_TIDS.lock().unwrap().clone();
    let mut total = 0;
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let Some(t) = task.file_name().to_str().and_then(|t| t.parse::<u32>().ok()) else {
            continue;
        };
        if ours.contains(&t) == relay {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
        total += stat.split(' ').next().and_then(|n| n.parse::<u64>().ok()).unwrap_or(0);
    }
    total
}

// The relay's heap, counted on its threads only. It exchanges only bytes on
// sockets with the rest of the process, so what its threads allocate they
// also free; the benchmark's own threads are not counted (no atomics in
// their way). Counting is off while the throughput is timed.

pub static COUNTING: AtomicBool = AtomicBool::new(true);
pub static RELAY_LIVE: AtomicIsize = AtomicIsize::new(0);
pub static RELAY_PEAK: AtomicIsize = AtomicIsize::new(0);

pub fn counted() -> bool {
    COUNTING.load(Relaxed) && !is_bench_thread()
}

pub fn grew(bytes: usize) {
    if counted() {
        let now = RELAY_LIVE.fetch_add(bytes as isize, Relaxed) + bytes as isize;
        RELAY_PEAK.fetch_max(now, Relaxed);
    }
}

pub fn shrank(bytes: usize) {
    if counted() {
        RELAY_LIVE.fetch_sub(bytes as isize, Relaxed);
    }
}

pub struct Counting;

// SAFETY: every call goes to `System` unchanged; only counters are added
// (a const thread-local and atomics: no allocation, no reentry).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(layout);
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        shrank(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() {
            if new_size >= layout.size() {
                grew(new_size - layout.size());
            } else {
                shrank(layout.size() - new_size);
            }
        }
        p
    }
}

#[global_allocator]
pub static ALLOCATOR: Counting = Counting;

/// The relay's live heap, and its high-water mark from now on.
pub fn relay_heap_mark() -> isize {
    let live = RELAY_LIVE.load(Relaxed);
    RELAY_PEAK.store(live, Relaxed);
    live
}

pub fn relay_heap_peak_since(mark: isize) -> usize {
    (RELAY_PEAK.load(Relaxed) - mark).max(0) as usize
}

pub fn status_kib(key: &str) -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

//! Driving the datapath program with BPF_PROG_TEST_RUN on crafted packets.

#![allow(dead_code)]

use std::os::fd::{AsFd, AsRawFd};

use aya::programs::SchedClassifier;

/// lo: BPF_PROG_TEST_RUN needs a device that exists in the caller's namespace.
pub const ENDPOINT_IFINDEX: u32 = 1;

#[repr(C)]
#[derive(Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    pad: u32,
}

/// Runs the program `repeat` times on `packet` (BPF_PROG_TEST_RUN, with the
/// endpoint's ifindex in the context); returns (verdict, ns per run).
pub fn test_run(prog: &SchedClassifier, packet: &[u8], repeat: u32) -> (u32, u32) {
    let mut ctx = [0u8; 192]; // struct __sk_buff
    ctx[40..44].copy_from_slice(&ENDPOINT_IFINDEX.to_ne_bytes());
    let fd = prog.fd().unwrap();
    let mut attr = TestRunAttr {
        prog_fd: fd.as_fd().as_raw_fd() as u32,
        data_size_in: packet.len() as u32,
        data_in: packet.as_ptr() as u64,
        repeat,
        ctx_size_in: ctx.len() as u32,
        ctx_in: ctx.as_ptr() as u64,
        ..Default::default()
    };
    const BPF_PROG_TEST_RUN: libc::c_long = 10;
    // SAFETY: attr points at buffers that outlive the call; the kernel reads
    // data_in/ctx_in and writes retval and duration into attr.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_TEST_RUN,
            &mut attr as *mut TestRunAttr,
            std::mem::size_of::<TestRunAttr>(),
        )
    };
    assert_eq!(rc, 0, "BPF_PROG_TEST_RUN: {}", std::io::Error::last_os_error());
    (attr.retval, attr.duration)
}

fn checksum(b: &[u8]) -> u16 {
    let mut sum: u32 = b
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Ethernet + IPv4 + TCP from 10.0.0.1:40000 to 10.0.0.2:`dport`.
pub fn tcp_packet(dport: u16, flags: u8) -> Vec<u8> {
    let mut p = vec![2, 2, 2, 2, 2, 2, 4, 4, 4, 4, 4, 4, 0x08, 0x00];
    let mut ip = vec![0x45, 0, 0, 40, 0, 1, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2];
    let c = checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    p.extend_from_slice(&ip);
    p.extend_from_slice(&40_000u16.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    p
}

//! TCP flags in Hubble's words, defined once: each flag's name and its bit
//! in the TCP header (as Lumen's probes and Cilium's datapath carry them),
//! and the orders Hubble lists them in.

use lumen_proto::flow::TcpFlags;

/// One TCP flag: a bit of the header's flags field (FIN = 0x001 … NS = 0x100).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpFlag(u16);

/// Names by bit number, FIN (bit 0) to NS (bit 8).
const NAMES: [&str; 9] = ["FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR", "NS"];

impl TcpFlag {
    pub const FIN: TcpFlag = TcpFlag(1 << 0);
    pub const SYN: TcpFlag = TcpFlag(1 << 1);
    pub const RST: TcpFlag = TcpFlag(1 << 2);
    pub const PSH: TcpFlag = TcpFlag(1 << 3);
    pub const ACK: TcpFlag = TcpFlag(1 << 4);
    pub const URG: TcpFlag = TcpFlag(1 << 5);
    pub const ECE: TcpFlag = TcpFlag(1 << 6);
    pub const CWR: TcpFlag = TcpFlag(1 << 7);
    pub const NS: TcpFlag = TcpFlag(1 << 8);

    /// Every flag in header order (FIN first).
    pub const ALL: [TcpFlag; 9] = [
        TcpFlag::FIN,
        TcpFlag::SYN,
        TcpFlag::RST,
        TcpFlag::PSH,
        TcpFlag::ACK,
        TcpFlag::URG,
        TcpFlag::ECE,
        TcpFlag::CWR,
        TcpFlag::NS,
    ];

    /// The order of Hubble's parser (`Flow.Summary`: `TCP Flags: SYN, ACK`).
    pub const HUBBLE_ORDER: [TcpFlag; 9] = [
        TcpFlag::SYN,
        TcpFlag::ACK,
        TcpFlag::RST,
        TcpFlag::FIN,
        TcpFlag::PSH,
        TcpFlag::URG,
        TcpFlag::ECE,
        TcpFlag::CWR,
        TcpFlag::NS,
    ];

    /// The order `hubble observe --tcp-flags` names them in.
    pub const CLI_ORDER: [TcpFlag; 9] = [
        TcpFlag::SYN,
        TcpFlag::ACK,
        TcpFlag::FIN,
        TcpFlag::RST,
        TcpFlag::PSH,
        TcpFlag::URG,
        TcpFlag::ECE,
        TcpFlag::CWR,
        TcpFlag::NS,
    ];

    /// `SYN`, `ACK`, … as Hubble prints and takes them.
    pub fn name(self) -> &'static str {
        NAMES[self.0.trailing_zeros() as usize]
    }

    /// The header bit.
    pub fn bit(self) -> u16 {
        self.0
    }

    /// The flag of a name, in any case.
    pub fn from_name(name: &str) -> Option<TcpFlag> {
        TcpFlag::ALL.into_iter().find(|f| f.name().eq_ignore_ascii_case(name))
    }

    /// Whether this flag is set in `mask` (header bits).
    pub fn is_set(self, mask: u16) -> bool {
        mask & self.0 != 0
    }

    /// This flag's field of the proto message.
    pub fn field(self, flags: &mut TcpFlags) -> &mut bool {
        match self {
            TcpFlag::FIN => &mut flags.fin,
            TcpFlag::SYN => &mut flags.syn,
            TcpFlag::RST => &mut flags.rst,
            TcpFlag::PSH => &mut flags.psh,
            TcpFlag::ACK => &mut flags.ack,
            TcpFlag::URG => &mut flags.urg,
            TcpFlag::ECE => &mut flags.ece,
            TcpFlag::CWR => &mut flags.cwr,
            // NS, the only one left: the field is private to this module.
            _ => &mut flags.ns,
        }
    }
}

/// The flags set in the proto message as header bits.
pub fn mask(flags: &TcpFlags) -> u16 {
    [
        flags.fin, flags.syn, flags.rst, flags.psh, flags.ack, flags.urg, flags.ece, flags.cwr, flags.ns,
    ]
    .iter()
    .zip(TcpFlag::ALL)
    .fold(0, |m, (set, flag)| if *set { m | flag.bit() } else { m })
}

/// The names of the flags set in `mask`, in the given order.
pub fn names(mask: u16, order: &[TcpFlag]) -> Vec<&'static str> {
    order.iter().filter(|f| f.is_set(mask)).map(|f| f.name()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_bits_and_fields_agree() {
        for (i, flag) in TcpFlag::ALL.into_iter().enumerate() {
            assert_eq!(flag.bit(), 1 << i);
            assert_eq!(TcpFlag::from_name(&flag.name().to_ascii_lowercase()), Some(flag));
            let mut flags = TcpFlags::default();
            *flag.field(&mut flags) = true;
            assert_eq!(mask(&flags), flag.bit(), "{}", flag.name());
        }
        assert_eq!(TcpFlag::from_name("FOO"), None);
        assert_eq!(names(0x12, &TcpFlag::ALL), ["SYN", "ACK"]);
        assert_eq!(names(0x11, &TcpFlag::HUBBLE_ORDER), ["ACK", "FIN"]);
        assert_eq!(names(0x11, &TcpFlag::ALL), ["FIN", "ACK"]);
    }
}

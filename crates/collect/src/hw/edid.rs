//! A parser of the EDID base block (VESA E-EDID 1.3 and 1.4): the 128 bytes a monitor sends to
//! describe itself, which the kernel exposes as `sys/class/drm/<connector>/edid`.
//!
//! Only what identifies the monitor is decoded: the manufacturer's three-letter PNP id, the
//! product code, the serial number (the serial descriptor, else the numeric one), the week and
//! year of manufacture, the name descriptor and the screen size. The block must start with the
//! fixed header and its bytes must add up to zero modulo 256; anything else is refused, because
//! a corrupt block (a bad cable, a KVM switch) would otherwise report a different monitor each
//! time it is read. Extension blocks (CTA-861, DisplayID) follow the base block and are ignored.

/// The fixed first eight bytes of every EDID.
pub const EDID_HEADER: [u8; 8] = [0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00];

/// The length of the base block.
pub const EDID_BLOCK: usize = 128;

/// Why a blob is not an EDID; the sentences complete "the EDID of ... is refused:".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EdidError {
    #[error("it is {0} bytes long, shorter than the 128 bytes of a base block")]
    Short(usize),
    #[error("it does not start with the EDID header 00 ff ff ff ff ff ff 00")]
    Header,
    #[error("its base block's checksum is wrong (its bytes add up to {0:#04x} modulo 256, not 0)")]
    Checksum(u8),
}

/// What identifies a monitor, from its EDID base block.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Edid {
    /// The three-letter PNP id (`DEL`, `AUO`), `None` if the letters are out of range.
    pub manufacturer: Option<String>,
    pub product_code: u16,
    /// The numeric serial number, `None` when zero (not given).
    pub serial_number: Option<u32>,
    /// The week of manufacture (1 to 54), `None` when not given or when the year is a model
    /// year (week `0xff`).
    pub week: Option<u8>,
    /// The year of manufacture (or the model year).
    pub year: u16,
    /// The image size in millimetres: the first detailed timing's when it gives one, else the
    /// base block's size in centimetres.
    pub width_mm: Option<u32>,
    pub height_mm: Option<u32>,
    /// The monitor name descriptor (tag `0xfc`).
    pub name: Option<String>,
    /// The serial number descriptor (tag `0xff`).
    pub serial: Option<String>,
}

impl Edid {
    /// The serial number to report: the descriptor's text, else the numeric serial.
    pub fn serial_text(&self) -> Option<String> {
        self.serial
            .clone()
            .or_else(|| self.serial_number.map(|n| n.to_string()))
    }
}

/// Parses the base block of an EDID (extension blocks may follow and are ignored).
pub fn parse_edid(bytes: &[u8]) -> Result<Edid, EdidError> {
    let b: &[u8; EDID_BLOCK] = bytes
        .get(..EDID_BLOCK)
        .and_then(|b| b.try_into().ok())
        .ok_or(EdidError::Short(bytes.len()))?;
    if b[..8] != EDID_HEADER {
        return Err(EdidError::Header);
    }
    let sum = b.iter().fold(0u8, |s, x| s.wrapping_add(*x));
    if sum != 0 {
        return Err(EdidError::Checksum(sum));
    }
    let mut edid = Edid {
        manufacturer: pnp_id(u16::from_be_bytes([b[8], b[9]])),
        product_code: u16::from_le_bytes([b[10], b[11]]),
        serial_number: Some(u32::from_le_bytes([b[12], b[13], b[14], b[15]])).filter(|n| *n != 0),
        week: Some(b[16]).filter(|w| (1..=54).contains(w)),
        year: 1990 + u16::from(b[17]),
        ..Edid::default()
    };
    let mut timing_size = None;
    for d in b[54..126].chunks_exact(18) {
        if d[0] != 0 || d[1] != 0 {
            // A detailed timing: its image size is bytes 12 and 13, with the high four bits of
            // each in byte 14.
            let w = u32::from(d[12]) | (u32::from(d[14] & 0xf0) << 4);
            let h = u32::from(d[13]) | (u32::from(d[14] & 0x0f) << 8);
            if timing_size.is_none() && w > 0 && h > 0 {
                timing_size = Some((w, h));
            }
            continue;
        }
        match d[3] {
            0xfc if edid.name.is_none() => edid.name = descriptor_text(&d[5..]),
            0xff if edid.serial.is_none() => edid.serial = descriptor_text(&d[5..]),
            _ => {}
        }
    }
    let (w_cm, h_cm) = (u32::from(b[21]), u32::from(b[22]));
    let size = timing_size.or((w_cm > 0 && h_cm > 0).then_some((w_cm * 10, h_cm * 10)));
    if let Some((w, h)) = size {
        edid.width_mm = Some(w);
        edid.height_mm = Some(h);
    }
    Ok(edid)
}

/// The three letters packed in five bits each (`1` is `A`) of the manufacturer id.
fn pnp_id(v: u16) -> Option<String> {
    [10, 5, 0]
        .iter()
        .map(|shift| {
            let c = ((v >> shift) & 0x1f) as u8;
            (1..=26).contains(&c).then(|| char::from(b'A' + c - 1))
        })
        .collect()
}

/// A descriptor's 13 bytes of text: ends at a line feed, padded with spaces; bytes that are
/// not printable ASCII are left out.
fn descriptor_text(bytes: &[u8]) -> Option<String> {
    let text: String = bytes
        .iter()
        .take_while(|b| **b != b'\n')
        .filter(|b| (0x20..0x7f).contains(*b))
        .map(|b| char::from(*b))
        .collect();
    let t = text.trim();
    (!t.is_empty()).then(|| t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Dell D1918H on HDMI (linuxhw/EDID `Digital/Dell/DEL2005/0771A94A1DAD`), base block
    /// and its CTA-861 extension.
    const DELL: &str = "
        00 ff ff ff ff ff ff 00 10 ac 05 20 01 01 01 01 06 1c 01 03 80 29 17 78 2a eb c5 a2 57 54 a0 27
        0c 50 54 a5 4b 00 01 01 01 01 01 01 01 01 01 01 01 01 01 01 01 01 66 21 56 aa 51 00 1e 30 46 8f
        33 00 9a e6 10 00 00 1e 00 00 00 ff 00 32 43 38 46 4a 38 32 35 35 4b 35 45 0a 00 00 00 fc 00 44
        31 39 31 38 48 0a 20 20 20 20 20 20 00 00 00 fd 00 38 4b 1e 53 09 00 0a 20 20 20 20 20 20 01 80
        02 03 1f f0 4c 10 04 13 03 02 12 11 07 06 16 15 01 23 09 07 01 83 01 00 00 65 03 0c 00 10 00 02
        3a 80 18 71 38 2d 40 58 2c 45 00 9a e6 10 00 00 1f 01 1d 00 72 51 d0 1e 20 6e 28 55 00 9a e6 10
        00 00 1f 01 1d 00 bc 52 d0 1e 20 b8 28 55 40 9a e6 10 00 00 1e 8c 0a d0 8a 20 e0 2d 10 10 3e 96
        00 9a e6 10 00 00 18 8c 0a d0 90 20 40 31 20 0c 40 55 00 9a e6 10 00 00 18 00 00 00 00 00 00 eb";

    /// An AU Optronics B133HAB laptop panel on eDP (linuxhw/EDID
    /// `Digital/AU Optronics/AUO102D/556F12D116D4`): no name, no serial, a model year.
    const AUO: &str = "
        00 ff ff ff ff ff ff 00 06 af 2d 10 00 00 00 00 00 1a 01 04 95 1d 11 78 02 c3 14 93 58 59 92 29
        22 51 57 00 00 00 01 01 01 01 01 01 01 01 01 01 01 01 01 01 01 01 14 37 80 b8 70 38 24 40 10 10
        3e 00 25 a5 10 00 00 1a 24 2c 80 b8 70 38 24 40 10 10 3e 00 25 a5 10 00 00 1a 00 00 00 fe 00 46
        43 54 47 38 80 42 31 33 33 48 41 42 00 00 00 00 00 00 41 22 96 00 11 00 00 0a 01 0a 20 20 00 64";

    pub(crate) fn hex(s: &str) -> Vec<u8> {
        s.split_ascii_whitespace()
            .map(|h| u8::from_str_radix(h, 16).unwrap())
            .collect()
    }

    #[test]
    fn dell_monitor() {
        let bytes = hex(DELL);
        assert_eq!(bytes.len(), 256);
        let e = parse_edid(&bytes).unwrap();
        assert_eq!(e.manufacturer.as_deref(), Some("DEL"));
        assert_eq!(e.product_code, 0x2005);
        assert_eq!(e.serial_number, Some(0x0101_0101));
        assert_eq!(e.week, Some(6));
        assert_eq!(e.year, 2018);
        // The detailed timing says 410 x 230 mm; the base block 41 x 23 cm.
        assert_eq!((e.width_mm, e.height_mm), (Some(410), Some(230)));
        assert_eq!(e.name.as_deref(), Some("D1918H"));
        assert_eq!(e.serial.as_deref(), Some("2C8FJ8255K5E"));
        assert_eq!(e.serial_text().as_deref(), Some("2C8FJ8255K5E"));
    }

    #[test]
    fn laptop_panel() {
        let e = parse_edid(&hex(AUO)).unwrap();
        assert_eq!(e.manufacturer.as_deref(), Some("AUO"));
        assert_eq!(e.product_code, 0x102d);
        assert_eq!(e.serial_number, None);
        assert_eq!(e.serial_text(), None);
        assert_eq!((e.week, e.year), (None, 2016));
        // 293 x 165 mm from the timing, where the base block rounds to 29 x 17 cm.
        assert_eq!((e.width_mm, e.height_mm), (Some(293), Some(165)));
        // Only an alphanumeric string (0xfe), which is not the name.
        assert_eq!(e.name, None);
        assert_eq!(e.serial, None);
    }

    #[test]
    fn size_from_centimetres_without_a_timing_size_and_numeric_serial() {
        let mut b = hex(AUO);
        // Blank both timings' sizes, then fix the checksum.
        for d in [54, 72] {
            b[d + 12] = 0;
            b[d + 13] = 0;
            b[d + 14] = 0;
        }
        b[12] = 0x39;
        b[13] = 0x30;
        b[127] = 0;
        let sum = b[..128].iter().fold(0u8, |s, x| s.wrapping_add(*x));
        b[127] = 0u8.wrapping_sub(sum);
        let e = parse_edid(&b).unwrap();
        assert_eq!((e.width_mm, e.height_mm), (Some(290), Some(170)));
        assert_eq!(e.serial_text().as_deref(), Some("12345"));
    }

    #[test]
    fn refusals() {
        let good = hex(DELL);
        assert_eq!(parse_edid(&good[..100]), Err(EdidError::Short(100)));
        assert_eq!(parse_edid(&[]), Err(EdidError::Short(0)));
        let mut bad = good.clone();
        bad[0] = 1;
        assert_eq!(parse_edid(&bad), Err(EdidError::Header));
        let mut bad = good.clone();
        bad[20] ^= 0x10;
        assert_eq!(parse_edid(&bad), Err(EdidError::Checksum(0x10)));
        assert_eq!(
            EdidError::Checksum(0x10).to_string(),
            "its base block's checksum is wrong (its bytes add up to 0x10 modulo 256, not 0)"
        );
        // A broken extension block does not matter.
        let mut ext = good;
        ext[200] ^= 0xff;
        assert!(parse_edid(&ext).is_ok());
    }

    #[test]
    fn pnp_letters() {
        assert_eq!(pnp_id(0x10ac).as_deref(), Some("DEL"));
        assert_eq!(pnp_id(0x06af).as_deref(), Some("AUO"));
        assert_eq!(pnp_id(0x0000), None);
        assert_eq!(pnp_id(0x7fff), None);
    }

    #[test]
    fn descriptor_texts() {
        assert_eq!(
            descriptor_text(b"D1918H\n      ").as_deref(),
            Some("D1918H")
        );
        assert_eq!(
            descriptor_text(b"ABCDEFGHIJKLM").as_deref(),
            Some("ABCDEFGHIJKLM")
        );
        assert_eq!(descriptor_text(b"\n            "), None);
        assert_eq!(
            descriptor_text(b"FCTG8\x80B133HAB").as_deref(),
            Some("FCTG8B133HAB")
        );
    }
}

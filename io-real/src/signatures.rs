//! Signatures of data that is not ours, checked before formatting a block device (as `mkfs`
//! and `wipefs` do): a filesystem, a partition table, swap, an encrypted or LVM volume. Found,
//! the format is refused unless forced: `--reformat` alone must not erase someone's disk.

/// Bytes from the device's start that the checks read.
pub const SIGNATURE_BYTES: usize = 128 * 1024;

/// What `head` (the device's first bytes, at most [`SIGNATURE_BYTES`]) holds, if it is known.
pub fn foreign_signature(head: &[u8]) -> Option<&'static str> {
    let at = |offset: usize, magic: &[u8]| head.get(offset..offset + magic.len()) == Some(magic);
    const CHECKS: [(usize, &[u8], &str); 11] = [
        (1080, &[0x53, 0xef], "an ext2/ext3/ext4 filesystem"),
        (0, b"XFSB", "an XFS filesystem"),
        (65_600, b"_BHRfS_M", "a btrfs filesystem"),
        (512, b"EFI PART", "a GPT partition table"),
        (4086, b"SWAPSPACE2", "Linux swap"),
        (4086, b"SWAP-SPACE", "Linux swap"),
        (0, b"LUKS\xba\xbe", "a LUKS encrypted volume"),
        (512, b"LABELONE", "an LVM physical volume"),
        (3, b"NTFS    ", "an NTFS filesystem"),
        (0, b"hsqs", "a squashfs filesystem"),
        (32_769, b"CD001", "an ISO 9660 filesystem"),
    ];
    if let Some((_, _, what)) = CHECKS.iter().find(|(offset, magic, _)| at(*offset, magic)) {
        return Some(what);
    }
    // A DOS boot sector (an MBR partition table, or FAT): 0x55AA at 510 and a partition entry
    // or a FAT label.
    let partition_typed = (0..4).any(|entry| head.get(446 + 16 * entry + 4).is_some_and(|kind| *kind != 0));
    let fat = at(54, b"FAT") || at(82, b"FAT32");
    (at(510, &[0x55, 0xaa]) && (partition_typed || fat)).then_some("a DOS partition table or FAT filesystem")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(offset: usize, magic: &[u8]) -> Vec<u8> {
        let mut head = vec![0u8; SIGNATURE_BYTES];
        head[offset..offset + magic.len()].copy_from_slice(magic);
        head
    }

    #[test]
    fn known_signatures_are_named_and_zeros_are_not() {
        assert_eq!(foreign_signature(&vec![0u8; SIGNATURE_BYTES]), None);
        assert_eq!(foreign_signature(&with(1080, &[0x53, 0xef])), Some("an ext2/ext3/ext4 filesystem"));
        assert_eq!(foreign_signature(&with(65_600, b"_BHRfS_M")), Some("a btrfs filesystem"));
        assert_eq!(foreign_signature(&with(512, b"EFI PART")), Some("a GPT partition table"));
        let mut mbr = with(510, &[0x55, 0xaa]);
        mbr[446 + 4] = 0x83;
        assert_eq!(foreign_signature(&mbr), Some("a DOS partition table or FAT filesystem"));
        assert_eq!(foreign_signature(&with(510, &[0x55, 0xaa])), None, "a boot signature alone is not a table");
        assert_eq!(foreign_signature(&[0u8; 16]), None, "a short head is read as far as it goes");
    }
}

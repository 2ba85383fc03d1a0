//! Opening the storage under the engine: a data file (created and preallocated on request) or a
//! raw block device, with O_DIRECT where the filesystem allows it.
//!
//! A path is used only if it already holds a QuillKV superblock, or is new (missing, or an empty
//! file), or the caller explicitly asked to reformat something that holds no foreign data. A
//! user's file is never overwritten silently.
//!
//! A data file is locked before it is read or sized, and stays locked while the volume (or a
//! driver sharing its file) lives: one writer, or readers only (`lock.rs`).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::aligned::AlignedBuffer;
use crate::errors::VolumeError;
use crate::lock::{lock, VolumeAccess};
use quill_core::BLOCK_BYTES;

/// The smallest volume accepted: superblocks plus a useful log.
pub const VOLUME_BYTES_MIN: u64 = 1 << 20;

const SUPERBLOCK_MAGIC: &[u8; 8] = b"QUILLKV1";
/// The first block of a data file QuillKV began creating and has not formatted yet: a start
/// killed while laying the file out (or before its first superblock) leaves it, and the next
/// start lays the file out again instead of refusing a file it cannot tell from someone
/// else's. The format's first superblock overwrites it.
const CREATING_MAGIC: &[u8; 8] = b"QUILLNEW";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VolumeKind {
    File,
    BlockDevice,
}

/// Whether the engine must format the volume or recover it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VolumeState {
    /// Holds a QuillKV superblock: `Engine::open`.
    Formatted,
    /// New or explicitly to be reformatted: `Engine::format`.
    Blank,
}

#[derive(Clone, Debug)]
pub struct VolumeOptions {
    /// Size of the data file to create when the path does not exist or is an empty file.
    pub create_size_bytes: Option<u64>,
    /// Format even a QuillKV volume (destroying its data), a block device without a superblock,
    /// or a file whose first two blocks are zero. A file with other content is still refused.
    pub reformat: bool,
    /// Try O_DIRECT (falls back, with a notice, where the filesystem refuses it).
    pub direct: bool,
    /// Exclusive (read-write) or shared (read-only) use; see [`VolumeAccess`].
    pub access: VolumeAccess,
    /// How a new data file's blocks are laid out (see [`Preallocate`]).
    pub preallocate: Preallocate,
    /// With `reformat`: format a block device even over a filesystem, partition table or other
    /// signature (`signatures.rs`). Without it such a device is refused.
    pub force: bool,
}

impl Default for VolumeOptions {
    fn default() -> VolumeOptions {
        VolumeOptions {
            create_size_bytes: None,
            reformat: false,
            direct: true,
            access: VolumeAccess::Exclusive,
            preallocate: Preallocate::default(),
            force: false,
        }
    }
}

/// How a new data file gets its blocks.
///
/// `fallocate` reserves them as *unwritten* extents: the first durable write into each one also
/// commits an extent conversion to the filesystem's journal. Measured here (ext4 on a virtio
/// disk, `quill bench --op set`, docs/benchmarks.md): durable SETs ran 1.2x faster on a file
/// whose blocks had been written once, at 1 and at 64 clients. So new files are written with
/// zeros once at creation (`Write`, about 0.85 s per GiB here); `Fallocate` skips that.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Preallocate {
    /// fallocate, then write every block once with zeros: a create costs a sequential write of
    /// the whole file, and durable writes later need no extent conversions.
    #[default]
    Write,
    /// fallocate only: an instant create, and an extent conversion on each first write.
    Fallocate,
}

/// An open volume. The file is shared with the driver, which needs it as long as I/O runs.
pub struct Volume {
    pub file: Arc<File>,
    pub path: PathBuf,
    pub size_bytes: u64,
    pub kind: VolumeKind,
    /// Whether the file was opened with O_DIRECT.
    pub direct: bool,
    pub state: VolumeState,
    /// This open created the data file (a failed start should remove it: see
    /// [`Volume::remove_if_created`]).
    pub created: bool,
}

/// Opens (or creates) the volume at `path`, and locks a data file for `options.access` (see
/// `lock.rs`) before reading or sizing it.
pub fn open_volume(path: &Path, options: &VolumeOptions) -> Result<Volume, VolumeError> {
    let options = &options.effective();
    let created = create_if_missing(path, options)?;
    let kind = volume_kind(path)?;
    let (file, direct) = open_handle(path, kind, options).map_err(|source| match source.raw_os_error() {
        Some(libc::EBUSY) => VolumeError::Busy { path: path.into() },
        _ => io_error(path, "open")(source),
    })?;
    if kind == VolumeKind::File {
        lock(&file, path, options.access)?;
    }
    let size_bytes = match kind {
        VolumeKind::File => file.metadata().map_err(io_error(path, "stat"))?.len(),
        VolumeKind::BlockDevice => block_device_bytes(&file).map_err(io_error(path, "read the device size of"))?,
    };
    let mut volume = Volume {
        file: Arc::new(file),
        path: path.into(),
        size_bytes,
        kind,
        direct,
        state: VolumeState::Blank,
        created,
    };
    let unfinished = kind == VolumeKind::File && size_bytes > 0 && unfinished_creation(path);
    if kind == VolumeKind::File && (size_bytes == 0 || unfinished) {
        if options.access == VolumeAccess::Shared {
            return Err(VolumeError::NotAVolume { path: path.into(), access: options.access });
        }
        // An unfinished creation keeps its size unless a new one is asked for.
        let kept = Some(size_bytes).filter(|size| unfinished && *size >= VOLUME_BYTES_MIN);
        let size_new = options.create_size_bytes.or(kept);
        if unfinished {
            // Laid out again from empty: preallocation only grows a file, and a smaller size
            // asked for now must be the file's length too.
            volume.file.set_len(0).map_err(io_error(path, "truncate"))?;
        }
        volume.size_bytes = size_new_file(&volume, size_new, created, options.preallocate)?;
        return Ok(volume);
    }
    if size_bytes < VOLUME_BYTES_MIN && kind == VolumeKind::File && !small_file_has_magic(path) {
        return Err(VolumeError::NotAVolume { path: path.into(), access: options.access });
    }
    check_size(path, size_bytes)?;
    volume.state = classify(&mut volume, options)?;
    Ok(volume)
}

impl VolumeOptions {
    /// A shared (read-only) open never creates, sizes or reformats.
    fn effective(&self) -> VolumeOptions {
        match self.access {
            VolumeAccess::Exclusive => self.clone(),
            VolumeAccess::Shared => VolumeOptions { create_size_bytes: None, reformat: false, ..self.clone() },
        }
    }
}

fn volume_kind(path: &Path) -> Result<VolumeKind, VolumeError> {
    let metadata = std::fs::metadata(path).map_err(io_error(path, "stat"))?;
    if metadata.file_type().is_block_device() {
        Ok(VolumeKind::BlockDevice)
    } else if metadata.is_file() {
        Ok(VolumeKind::File)
    } else {
        Err(VolumeError::UnsupportedKind { path: path.into() })
    }
}

fn io_error<'a>(path: &'a Path, action: &'static str) -> impl FnOnce(io::Error) -> VolumeError + 'a {
    move |source| VolumeError::Io { path: path.to_path_buf(), action, source }
}

/// Whether a file too small to be a volume still starts like one (then it is a damaged or
/// truncated volume, "too small"; otherwise it is someone else's file). Read without O_DIRECT:
/// the file's length need not be a block multiple.
fn small_file_has_magic(path: &Path) -> bool {
    use std::os::unix::fs::FileExt;
    let Ok(file) = File::open(path) else { return false };
    let mut head = vec![0u8; 2 * BLOCK_BYTES];
    let length = file.read_at(&mut head, 0).unwrap_or(0);
    let at = |offset: usize| length >= offset + 8 && head[offset..offset + 8] == *SUPERBLOCK_MAGIC;
    at(0) || at(BLOCK_BYTES)
}

/// Whether the file is one QuillKV began creating and never formatted: its creation marker at
/// byte 0 and no superblock in the second slot either (a format may write either slot first).
/// Read without O_DIRECT, like the above.
fn unfinished_creation(path: &Path) -> bool {
    use std::os::unix::fs::FileExt;
    let Ok(file) = File::open(path) else { return false };
    let mut head = vec![0u8; 2 * BLOCK_BYTES];
    let length = file.read_at(&mut head, 0).unwrap_or(0);
    let second_slot = length >= BLOCK_BYTES + 8 && head[BLOCK_BYTES..BLOCK_BYTES + 8] == *SUPERBLOCK_MAGIC;
    length >= 8 && head[..8] == *CREATING_MAGIC && !second_slot
}

impl Volume {
    /// After a failed start: removes the data file if this open created it, so the next start
    /// begins afresh instead of meeting a file it must refuse. Returns whether it removed it.
    pub fn remove_if_created(&self) -> bool {
        self.created && self.kind == VolumeKind::File && std::fs::remove_file(&self.path).is_ok()
    }

    /// Reads `length_bytes` at `offset_bytes` (both block multiples) outside any engine: for
    /// tools like `quill check`.
    pub fn read_at(&self, offset_bytes: u64, length_bytes: usize) -> io::Result<Vec<u8>> {
        let mut buffer = AlignedBuffer::new(length_bytes);
        let slice = &mut buffer.as_mut_slice()[..length_bytes];
        crate::sync_driver::read_exact_at(self.file.as_raw_fd(), slice, offset_bytes)?;
        Ok(slice.to_vec())
    }
}

fn check_size(path: &Path, size_bytes: u64) -> Result<(), VolumeError> {
    if size_bytes < VOLUME_BYTES_MIN {
        return Err(VolumeError::TooSmall { path: path.into(), size_bytes, minimum_bytes: VOLUME_BYTES_MIN });
    }
    Ok(())
}

/// Reads the first two blocks and decides between recovery, format and refusal.
fn classify(volume: &mut Volume, options: &VolumeOptions) -> Result<VolumeState, VolumeError> {
    let head = match read_head(&volume.file) {
        Err(error) if volume.direct && error.raw_os_error() == Some(libc::EINVAL) => {
            // Some filesystems accept O_DIRECT at open time and refuse it per I/O.
            direct_refused_notice(&volume.path);
            // Off on the same open file description: a second open() would meet our own lock.
            clear_direct(&volume.file).map_err(io_error(&volume.path, "turn off O_DIRECT on"))?;
            volume.direct = false;
            read_head(&volume.file)
        }
        other => other,
    }
    .map_err(|source| VolumeError::Io { path: volume.path.clone(), action: "read the superblocks of", source })?;
    let has_magic = head[..8] == *SUPERBLOCK_MAGIC || head[BLOCK_BYTES..BLOCK_BYTES + 8] == *SUPERBLOCK_MAGIC;
    let all_zero = head.iter().all(|&byte| byte == 0);
    match (has_magic, options.reformat, volume.kind) {
        (true, false, _) => Ok(VolumeState::Formatted),
        (true, true, _) => Ok(VolumeState::Blank),
        (false, true, VolumeKind::BlockDevice) => refuse_foreign_data(volume, options).map(|()| VolumeState::Blank),
        (false, true, VolumeKind::File) if all_zero => Ok(VolumeState::Blank),
        (false, false, VolumeKind::BlockDevice) => Err(VolumeError::BlankDevice { path: volume.path.clone() }),
        (false, _, VolumeKind::File) => {
            Err(VolumeError::NotAVolume { path: volume.path.clone(), access: options.access })
        }
    }
}

/// Before formatting a device that holds no QuillKV superblock: refuses one that holds a known
/// signature (a filesystem, a partition table) unless forced.
fn refuse_foreign_data(volume: &Volume, options: &VolumeOptions) -> Result<(), VolumeError> {
    if options.force {
        return Ok(());
    }
    let length =
        (crate::signatures::SIGNATURE_BYTES as u64).min(volume.size_bytes / BLOCK_BYTES as u64 * BLOCK_BYTES as u64);
    let head = volume.read_at(0, length as usize).map_err(|source| VolumeError::Io {
        path: volume.path.clone(),
        action: "read the signatures of",
        source,
    })?;
    match crate::signatures::foreign_signature(&head) {
        Some(what) => Err(VolumeError::ForeignSignature { path: volume.path.clone(), what }),
        None => Ok(()),
    }
}

fn read_head(file: &File) -> io::Result<Vec<u8>> {
    let mut buffer = AlignedBuffer::new(2 * BLOCK_BYTES);
    crate::sync_driver::read_exact_at(file.as_raw_fd(), buffer.as_mut_slice(), 0)?;
    Ok(buffer.as_slice().to_vec())
}

/// Opens read-write (read-only for a shared open); O_DIRECT if asked and accepted; block devices
/// exclusively (O_EXCL), so a mounted filesystem or another QuillKV process cannot share the device.
fn open_handle(path: &Path, kind: VolumeKind, options: &VolumeOptions) -> io::Result<(File, bool)> {
    let mut flags = libc::O_CLOEXEC;
    if kind == VolumeKind::BlockDevice {
        flags |= libc::O_EXCL;
    }
    let mut open_options = OpenOptions::new();
    open_options.read(true).write(options.access == VolumeAccess::Exclusive);
    if options.direct {
        match open_options.clone().custom_flags(flags | libc::O_DIRECT).open(path) {
            Ok(file) => return Ok((file, true)),
            Err(error) if error.raw_os_error() == Some(libc::EINVAL) => direct_refused_notice(path),
            Err(error) => return Err(error),
        }
    }
    let file = open_options.custom_flags(flags).open(path)?;
    Ok((file, false))
}

/// Clears O_DIRECT on an open descriptor (Linux allows it through F_SETFL).
fn clear_direct(file: &File) -> io::Result<()> {
    let descriptor = file.as_raw_fd();
    // SAFETY: F_GETFL and F_SETFL on a descriptor we own.
    let flags = unsafe { libc::fcntl(descriptor, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(descriptor, libc::F_SETFL, flags & !libc::O_DIRECT) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn direct_refused_notice(path: &Path) {
    static SAID: AtomicBool = AtomicBool::new(false);
    if !SAID.swap(true, Ordering::Relaxed) {
        eprintln!(
            "quill: the filesystem under {} refuses O_DIRECT (EINVAL); using buffered I/O (syncs still make writes durable)",
            path.display()
        );
    }
}

/// Creates an empty data file if `path` does not exist and a size was given; returns whether
/// this call created it. The file is sized later, under the lock (`size_new_file`).
fn create_if_missing(path: &Path, options: &VolumeOptions) -> Result<bool, VolumeError> {
    match std::fs::metadata(path) {
        Ok(_) => return Ok(false),
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => return Err(io_error(path, "stat")(error)),
    }
    let size_bytes =
        options.create_size_bytes.ok_or_else(|| VolumeError::Missing { path: path.into(), access: options.access })?;
    check_size(path, size_bytes)?;
    match OpenOptions::new().write(true).create_new(true).open(path) {
        Ok(_) => Ok(true),
        // Another opener created it meanwhile: the lock decides which of us goes on.
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(error) => Err(io_error(path, "create")(error)),
    }
}

/// Gives a new (empty) data file its size, under the exclusive lock, and makes the length and
/// the directory entry durable: neither is until the file and its directory are synced. Returns
/// the size. On failure the file returns to what it was (removed if this open created it, else
/// empty again), so a later open starts afresh instead of finding a zero-filled file it must
/// refuse.
fn size_new_file(
    volume: &Volume,
    size_bytes: Option<u64>,
    created: bool,
    layout: Preallocate,
) -> Result<u64, VolumeError> {
    let path = volume.path.as_path();
    let size_bytes = size_bytes.ok_or(VolumeError::TooSmall {
        path: path.into(),
        size_bytes: 0,
        minimum_bytes: VOLUME_BYTES_MIN,
    })?;
    check_size(path, size_bytes)?;
    let file = volume.file.as_ref();
    let sized = write_creating_marker(file)
        .and_then(|()| preallocate(file, size_bytes))
        .and_then(|()| match layout {
            Preallocate::Write => write_zeros(file, size_bytes),
            Preallocate::Fallocate => Ok(()),
        })
        .and_then(|()| file.sync_all())
        .and_then(|()| sync_parent_directory(path));
    let Err(source) = sized else { return Ok(size_bytes) };
    let undone = if created { std::fs::remove_file(path) } else { file.set_len(0) };
    if let Err(undo_error) = undone {
        eprintln!("quill: {}: could not undo a failed preallocation: {undo_error}", path.display());
    }
    Err(VolumeError::Io { path: path.into(), action: "preallocate", source })
}

fn preallocate(file: &File, size_bytes: u64) -> io::Result<()> {
    let length = libc::off_t::try_from(size_bytes).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: a plain syscall on a descriptor we own.
    let result = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, length) };
    if result == 0 {
        return Ok(());
    }
    let error = io::Error::last_os_error();
    match error.raw_os_error() {
        // Filesystems without fallocate still get the right length (sparse).
        Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS) => file.set_len(size_bytes),
        _ => Err(error),
    }
}

/// Bytes written per call when laying a new file out.
const ZERO_CHUNK_BYTES: usize = 4 << 20;

/// Marks the file as one being created (see [`CREATING_MAGIC`]), first, before it has a size.
fn write_creating_marker(file: &File) -> io::Result<()> {
    let mut block = AlignedBuffer::new(BLOCK_BYTES);
    let note = b"QUILLNEW: a QuillKV data file being created; its first start formats it\n";
    block.as_mut_slice()[..note.len()].copy_from_slice(note);
    crate::sync_driver::write_all_at(file.as_raw_fd(), block.as_slice(), 0)
}

/// Writes zeros over the whole file once but its marker block (aligned, so O_DIRECT takes
/// them), turning its unwritten extents into written ones.
fn write_zeros(file: &File, size_bytes: u64) -> io::Result<()> {
    let zeros = AlignedBuffer::new(ZERO_CHUNK_BYTES);
    // Whole blocks only (an O_DIRECT write must be aligned); the engine never uses a partial one.
    let end = size_bytes / BLOCK_BYTES as u64 * BLOCK_BYTES as u64;
    let mut offset = BLOCK_BYTES as u64;
    while offset < end {
        let length = (end - offset).min(ZERO_CHUNK_BYTES as u64) as usize;
        crate::sync_driver::write_all_at(file.as_raw_fd(), &zeros.as_slice()[..length], offset)?;
        offset += length as u64;
    }
    Ok(())
}

fn sync_parent_directory(path: &Path) -> io::Result<()> {
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    File::open(parent)?.sync_all()
}

fn block_device_bytes(file: &File) -> io::Result<u64> {
    // BLKGETSIZE64 = _IOR(0x12, 114, size_t)
    const BLKGETSIZE64: libc::c_ulong = 0x8008_1272;
    let mut bytes: u64 = 0;
    // SAFETY: the ioctl writes one u64 into `bytes`.
    let result = unsafe { libc::ioctl(file.as_raw_fd(), BLKGETSIZE64 as _, &mut bytes as *mut u64) };
    if result != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(bytes)
}

/// A volume id for `Engine::format`, from the OS's random source: it must differ between formats
/// so records of an earlier format can never verify.
pub fn random_volume_id() -> io::Result<u64> {
    let mut bytes = [0u8; 8];
    for _ in 0..16 {
        // SAFETY: getrandom writes at most 8 bytes into the array.
        let filled = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
        if filled == 8 {
            return Ok(u64::from_le_bytes(bytes));
        }
        if filled < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            break;
        }
    }
    use std::io::Read;
    File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(u64::from_le_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_layouts_create_a_blank_volume_of_the_size_asked() {
        for preallocate in [Preallocate::Write, Preallocate::Fallocate] {
            let directory = tempfile::tempdir().expect("temp dir");
            let path = directory.path().join("new.qkv");
            let size_bytes = (5 << 20) + 1000; // not a block multiple: the tail is left alone
            let options =
                VolumeOptions { create_size_bytes: Some(size_bytes), preallocate, ..VolumeOptions::default() };
            let volume = open_volume(&path, &options).expect("create");
            assert_eq!((volume.size_bytes, volume.state, volume.created), (size_bytes, VolumeState::Blank, true));
            let content = std::fs::read(&path).expect("read back");
            assert_eq!(content.len() as u64, size_bytes, "{preallocate:?}");
            assert_eq!(&content[..8], CREATING_MAGIC, "{preallocate:?}: marked as being created");
            let rest = &content[BLOCK_BYTES..];
            assert!(
                rest.iter().all(|byte| *byte == 0),
                "{preallocate:?}: past its marker, a new volume reads as zeros"
            );
        }
    }

    /// A start killed while laying out a new file (the marker written, the zeros not all):
    /// the next start lays it out again, at its size or the one asked for, and formats it.
    #[test]
    fn a_creation_cut_short_is_laid_out_again() {
        let directory = tempfile::tempdir().expect("temp dir");
        let path = directory.path().join("cut.qkv");
        let size_bytes = 5 << 20;
        let mut cut = vec![0xAB; 3 * BLOCK_BYTES];
        cut[..8].copy_from_slice(CREATING_MAGIC);
        std::fs::write(&path, &cut).expect("a file cut short");
        let options = VolumeOptions { create_size_bytes: Some(size_bytes), ..VolumeOptions::default() };
        let volume = open_volume(&path, &options).expect("laid out again");
        assert_eq!((volume.size_bytes, volume.state, volume.created), (size_bytes, VolumeState::Blank, false));
        drop(volume);
        let content = std::fs::read(&path).expect("read back");
        assert!(content[BLOCK_BYTES..].iter().all(|byte| *byte == 0), "the old bytes are gone");
        // At full size, with no size asked for, it keeps its size.
        let volume = open_volume(&path, &VolumeOptions::default()).expect("reopened");
        assert_eq!((volume.size_bytes, volume.state), (size_bytes, VolumeState::Blank));
        // A smaller size asked for: the file ends there.
        drop(volume);
        let smaller = 4 << 20;
        let resized = VolumeOptions { create_size_bytes: Some(smaller), ..VolumeOptions::default() };
        let volume = open_volume(&path, &resized).expect("laid out at the smaller size");
        assert_eq!(volume.size_bytes, smaller);
        assert_eq!(std::fs::metadata(&path).expect("stat").len(), smaller, "the file's length is the volume's");
        // A superblock in the second slot means a format began: never laid out again.
        drop(volume);
        let mut formatted = std::fs::read(&path).expect("read");
        formatted[BLOCK_BYTES..BLOCK_BYTES + 8].copy_from_slice(SUPERBLOCK_MAGIC);
        std::fs::write(&path, &formatted).expect("a half-formatted file");
        assert_eq!(open_volume(&path, &VolumeOptions::default()).expect("opened").state, VolumeState::Formatted);
        std::fs::write(&path, &content).expect("the unfinished file again");
        // A shared open never lays a file out.
        let shared = VolumeOptions { access: VolumeAccess::Shared, ..VolumeOptions::default() };
        assert!(matches!(open_volume(&path, &shared), Err(VolumeError::NotAVolume { .. })));
    }

    #[test]
    fn clear_direct_keeps_the_descriptor_and_its_lock() {
        let directory = tempfile::tempdir().expect("temp dir");
        let path = directory.path().join("direct.qkv");
        std::fs::write(&path, vec![0u8; 4096]).expect("write");
        let options = VolumeOptions::default();
        let (file, direct) = open_handle(&path, VolumeKind::File, &options).expect("open");
        lock(&file, &path, VolumeAccess::Exclusive).expect("lock");
        clear_direct(&file).expect("clear O_DIRECT");
        // SAFETY: F_GETFL on a descriptor we own.
        let flags = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETFL) };
        assert!(flags >= 0 && flags & libc::O_DIRECT == 0, "O_DIRECT was on: {direct}, flags {flags:#x}");
        let second = open_handle(&path, VolumeKind::File, &options).expect("open again");
        assert!(lock(&second.0, &path, VolumeAccess::Exclusive).is_err(), "the lock stayed with the descriptor");
    }
}

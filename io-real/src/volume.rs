//! Opening the storage under the engine: a data file (created and preallocated on request) or a
//! raw block device, with O_DIRECT where the filesystem allows it.
//!
//! A path is used only if it already holds a QuillKV superblock, or is new (missing, or an empty
//! file), or the caller explicitly asked to reformat something that holds no foreign data. A
//! user's file is never overwritten silently.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::aligned::AlignedBuffer;
use crate::errors::VolumeError;
use quill_core::BLOCK_BYTES;

/// The smallest volume accepted: superblocks plus a useful log.
pub const VOLUME_BYTES_MIN: u64 = 1 << 20;

const SUPERBLOCK_MAGIC: &[u8; 8] = b"QUILLKV1";

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
}

impl Default for VolumeOptions {
    fn default() -> VolumeOptions {
        VolumeOptions { create_size_bytes: None, reformat: false, direct: true }
    }
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
}

/// Opens (or creates) the volume at `path`.
pub fn open_volume(path: &Path, options: &VolumeOptions) -> Result<Volume, VolumeError> {
    let io_error = |action: &'static str| move |source| VolumeError::Io { path: path.to_path_buf(), action, source };
    let mut created = false;
    let metadata = match std::fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            let size_bytes = options.create_size_bytes.ok_or_else(|| VolumeError::Missing { path: path.into() })?;
            check_size(path, size_bytes)?;
            create_data_file(path, size_bytes).map_err(io_error("create"))?;
            created = true;
            std::fs::metadata(path).map_err(io_error("stat"))?
        }
        Err(error) => return Err(io_error("stat")(error)),
    };
    let kind = if metadata.file_type().is_block_device() {
        VolumeKind::BlockDevice
    } else if metadata.is_file() {
        VolumeKind::File
    } else {
        return Err(VolumeError::UnsupportedKind { path: path.into() });
    };
    if kind == VolumeKind::File && metadata.len() == 0 {
        let size_bytes = options.create_size_bytes.ok_or(VolumeError::TooSmall {
            path: path.into(),
            size_bytes: 0,
            minimum_bytes: VOLUME_BYTES_MIN,
        })?;
        check_size(path, size_bytes)?;
        preallocate_existing(path, size_bytes).map_err(io_error("preallocate"))?;
        created = true;
    }
    let (file, direct) = open_handle(path, kind, options.direct).map_err(io_error("open"))?;
    let size_bytes = match kind {
        VolumeKind::File => file.metadata().map_err(io_error("stat"))?.len(),
        VolumeKind::BlockDevice => block_device_bytes(&file).map_err(io_error("read the device size of"))?,
    };
    check_size(path, size_bytes)?;
    let mut volume =
        Volume { file: Arc::new(file), path: path.into(), size_bytes, kind, direct, state: VolumeState::Blank };
    if !created {
        volume.state = classify(&mut volume, options)?;
    }
    Ok(volume)
}

impl Volume {
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
            let (file, _) = open_handle(&volume.path, volume.kind, false).map_err(|source| VolumeError::Io {
                path: volume.path.clone(),
                action: "open",
                source,
            })?;
            volume.file = Arc::new(file);
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
        (true, true, _) | (false, true, VolumeKind::BlockDevice) => Ok(VolumeState::Blank),
        (false, true, VolumeKind::File) if all_zero => Ok(VolumeState::Blank),
        (false, false, VolumeKind::BlockDevice) => Err(VolumeError::BlankDevice { path: volume.path.clone() }),
        (false, _, VolumeKind::File) => Err(VolumeError::NotAVolume { path: volume.path.clone() }),
    }
}

fn read_head(file: &File) -> io::Result<Vec<u8>> {
    let mut buffer = AlignedBuffer::new(2 * BLOCK_BYTES);
    crate::sync_driver::read_exact_at(file.as_raw_fd(), buffer.as_mut_slice(), 0)?;
    Ok(buffer.as_slice().to_vec())
}

/// Opens read-write; O_DIRECT if asked and accepted; block devices exclusively (O_EXCL), so a
/// mounted filesystem or another QuillKV process cannot share the device.
fn open_handle(path: &Path, kind: VolumeKind, direct: bool) -> io::Result<(File, bool)> {
    let mut flags = libc::O_CLOEXEC;
    if kind == VolumeKind::BlockDevice {
        flags |= libc::O_EXCL;
    }
    if direct {
        match OpenOptions::new().read(true).write(true).custom_flags(flags | libc::O_DIRECT).open(path) {
            Ok(file) => return Ok((file, true)),
            Err(error) if error.raw_os_error() == Some(libc::EINVAL) => direct_refused_notice(path),
            Err(error) => return Err(error),
        }
    }
    let file = OpenOptions::new().read(true).write(true).custom_flags(flags).open(path)?;
    Ok((file, false))
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

/// Creates a new file (never replacing one), preallocates it, and makes its length and its
/// directory entry durable: neither is durable until the file and its directory are synced.
fn create_data_file(path: &Path, size_bytes: u64) -> io::Result<()> {
    let file = OpenOptions::new().read(true).write(true).create_new(true).open(path)?;
    preallocate(&file, size_bytes)?;
    file.sync_all()?;
    sync_parent_directory(path)
}

fn preallocate_existing(path: &Path, size_bytes: u64) -> io::Result<()> {
    let file = OpenOptions::new().read(true).write(true).open(path)?;
    preallocate(&file, size_bytes)?;
    file.sync_all()
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

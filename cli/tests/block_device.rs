//! `quill serve` on a raw block device, the stand-in for NVMe: a loop device (`losetup`) over
//! an image file. A device that holds a filesystem signature is refused even with --reformat,
//! until --force; a second opener meets EBUSY. Where loop devices cannot be made (no root, no
//! loop driver, a container), the test says SKIPPED with the reason.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;

/// A loop device over `image`, detached on drop.
struct LoopDevice(String);

impl LoopDevice {
    fn attach(image: &Path) -> Result<LoopDevice, String> {
        let output = Command::new("losetup")
            .args(["--find", "--show"])
            .arg(image)
            .output()
            .map_err(|error| format!("losetup: {error}"))?;
        if !output.status.success() {
            return Err(format!("losetup: {}", String::from_utf8_lossy(&output.stderr).trim()));
        }
        Ok(LoopDevice(String::from_utf8_lossy(&output.stdout).trim().to_string()))
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["--detach", &self.0]).status();
    }
}

fn quill(arguments: &[&str]) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_quill")).args(arguments).output().expect("run quill");
    (output.status.code().unwrap_or(-1), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[test]
fn a_loop_device_with_a_filesystem_needs_force_then_serves() {
    let directory = tempfile::tempdir().expect("temp dir");
    let image = directory.path().join("device.img");
    let mut bytes = vec![0u8; 32 << 20];
    bytes[1080..1082].copy_from_slice(&[0x53, 0xef]); // an ext4 superblock's magic
    std::fs::write(&image, &bytes).expect("write the image");
    let device = match LoopDevice::attach(&image) {
        Ok(device) => device,
        Err(reason) => {
            assert!(std::env::var_os("QUILL_REQUIRE_LOOP_DEVICE").is_none(), "{reason}");
            eprintln!("SKIPPED: no loop device here ({reason})");
            return;
        }
    };
    let path = device.0.as_str();
    let (code, text) = quill(&["serve", "--io", "sync", "--port", "0", "--reformat", "--path", path]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("holds an ext2/ext3/ext4 filesystem") && text.contains("--force"), "{text}");

    let server = support::start_sized(Path::new(path), 0, &["--reformat", "--force"]);
    let mut stream = TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
    stream.write_all(b"SET k on-a-device\r\nGET k\r\n").expect("write");
    let mut reply = [0u8; 23];
    stream.read_exact(&mut reply).expect("replies");
    assert_eq!(&reply, b"+OK\r\n$11\r\non-a-device\r\n");
    let (code, text) = quill(&["serve", "--io", "sync", "--port", "0", "--path", path]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("held by another process"), "{text}");
}

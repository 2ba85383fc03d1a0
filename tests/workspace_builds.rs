//! Cross-crate integration tests live in this folder; this one checks the crates link together.

#[test]
fn engine_formats_a_volume_through_the_public_api() {
    let config = quill_core::Config::for_volume_bytes(1 << 24);
    let mut engine = quill_core::Engine::format(config, 7);
    // Superblock copy 1 (sequence 1) first; copy 0 only once that is durable.
    let request = engine.poll_io().expect("format writes the superblocks");
    assert!(matches!(request.kind, quill_core::IoKind::Write { offset_bytes: 4096, .. }));
    assert!(engine.poll_io().is_none(), "one copy at a time");
}

//! Cross-crate integration tests live in this folder; this one checks the crates link together.

#[test]
fn engine_formats_a_volume_through_the_public_api() {
    let config = quill_core::Config::for_volume_bytes(1 << 24);
    let mut engine = quill_core::Engine::format(config, 7);
    let request = engine.poll_io().expect("format writes the superblocks");
    assert!(matches!(request.kind, quill_core::IoKind::Write { offset_bytes: 0, .. }));
}

//! Cross-crate integration tests live in this folder; this one checks the crates link together.

#[test]
fn engine_formats_a_volume_through_the_public_api() {
    let config = quill_core::Config::for_volume_bytes(1 << 24);
    let mut engine = quill_core::Engine::format(config, 7);
    // First the superblocks an older volume may have left (the format numbers its own above).
    let probe = engine.poll_io().expect("format reads the old superblocks");
    assert!(matches!(probe.kind, quill_core::IoKind::Read { offset_bytes: 0, length_bytes: 8192 }));
    assert!(engine.poll_io().is_none(), "nothing written before the probe completes");
    engine.complete(quill_core::IoCompletion { token: probe.token, result: Ok(vec![0; 8192]) });
    // A clean device: superblock copy 1 (sequence 1) first; copy 0 only once that is durable.
    let request = engine.poll_io().expect("format writes the superblocks");
    assert!(matches!(request.kind, quill_core::IoKind::Write { offset_bytes: 4096, .. }));
    assert!(engine.poll_io().is_none(), "one copy at a time");
}

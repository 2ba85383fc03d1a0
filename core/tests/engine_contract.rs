//! The engine's contract, driven through the in-memory driver in `support`.

mod support;

use quill_core::command::{parse_request, Request};
use quill_core::{Engine, IoCompletion, IoKind, OpenError, Reply};
use support::{bulk, get, set, FailNext, Harness};

fn command(words: &[&[u8]]) -> Request {
    let arguments: Vec<Vec<u8>> = words.iter().map(|word| word.to_vec()).collect();
    parse_request(&arguments).expect("a valid command")
}

#[test]
fn set_then_get_survives_a_crash() {
    let mut harness = Harness::format(support::small_config(), 1);
    assert_eq!(harness.call(1, set("a", b"1")), Reply::ok());
    assert_eq!(harness.call(1, get("a")), bulk(b"1"));
    harness.crash_and_reopen();
    assert!(harness.engine.is_ready());
    assert_eq!(harness.call(1, get("a")), bulk(b"1"));
    assert_eq!(harness.engine.epoch(), 2);
}

#[test]
fn redis_semantics_of_every_command() {
    let mut h = Harness::format(support::small_config(), 2);
    assert_eq!(h.call(1, command(&[b"PING"])), Reply::Simple("PONG".into()));
    assert_eq!(h.call(1, command(&[b"MSET", b"a", b"1", b"b", b"2"])), Reply::ok());
    assert_eq!(
        h.call(1, command(&[b"MGET", b"a", b"zz", b"b"])),
        Reply::Array(Some(vec![bulk(b"1"), Reply::Bulk(None), bulk(b"2")]))
    );
    assert_eq!(h.call(1, command(&[b"EXISTS", b"a", b"a", b"zz"])), Reply::Integer(2));
    assert_eq!(h.call(1, command(&[b"INCR", b"a"])), Reply::Integer(2));
    assert_eq!(h.call(1, command(&[b"DECRBY", b"a", b"5"])), Reply::Integer(-3));
    assert_eq!(h.call(1, command(&[b"GET", b"a"])), bulk(b"-3"));
    assert_eq!(h.call(1, command(&[b"SET", b"s", b" 1"])), Reply::ok());
    assert_eq!(h.call(1, command(&[b"INCR", b"s"])), Reply::error("ERR value is not an integer or out of range"));
    assert_eq!(h.call(1, command(&[b"SET", b"m", b"9223372036854775807"])), Reply::ok());
    assert_eq!(h.call(1, command(&[b"INCR", b"m"])), Reply::error("ERR increment or decrement would overflow"));
    assert_eq!(h.call(1, command(&[b"APPEND", b"s", b"x"])), Reply::Integer(3));
    assert_eq!(h.call(1, command(&[b"STRLEN", b"s"])), Reply::Integer(3));
    assert_eq!(h.call(1, command(&[b"SET", b"s", b"new", b"NX"])), Reply::Bulk(None));
    assert_eq!(h.call(1, command(&[b"SET", b"q", b"new", b"XX"])), Reply::Bulk(None));
    assert_eq!(h.call(1, command(&[b"DBSIZE"])), Reply::Integer(4));
    assert_eq!(h.call(1, command(&[b"DEL", b"a", b"a", b"nope", b"b"])), Reply::Integer(2));
    assert_eq!(h.call(1, command(&[b"DBSIZE"])), Reply::Integer(2));
    assert_eq!(h.call(1, command(&[b"FLUSHALL"])), Reply::ok());
    assert_eq!(h.call(1, command(&[b"DBSIZE"])), Reply::Integer(0));
    assert_eq!(h.call(1, command(&[b"GET", b"s"])), Reply::Bulk(None));
    h.crash_and_reopen();
    assert_eq!(h.call(1, command(&[b"DBSIZE"])), Reply::Integer(0));
    assert_eq!(h.call(1, command(&[b"GET", b"m"])), Reply::Bulk(None));
}

#[test]
fn the_string_family_replies_as_redis_and_survives_a_crash() {
    let mut h = Harness::format(support::small_config(), 2);
    let mut call = |words: &[&[u8]]| h.call(1, command(words));
    assert_eq!(call(&[b"GETSET", b"g", b"1"]), Reply::Bulk(None));
    assert_eq!(call(&[b"GETSET", b"g", b"2"]), bulk(b"1"));
    assert_eq!(call(&[b"SET", b"g", b"3", b"NX", b"GET"]), bulk(b"2"), "NX fails: the old value, unchanged");
    assert_eq!(call(&[b"SET", b"g", b"4", b"GET", b"XX"]), bulk(b"2"));
    assert_eq!(call(&[b"SET", b"h", b"5", b"XX", b"GET"]), Reply::Bulk(None), "XX on an absent key writes nothing");
    assert_eq!(call(&[b"GETDEL", b"g"]), bulk(b"4"));
    assert_eq!(call(&[b"GETDEL", b"g"]), Reply::Bulk(None));
    assert_eq!(call(&[b"SETRANGE", b"r", b"3", b"ab"]), Reply::Integer(5));
    assert_eq!(call(&[b"GET", b"r"]), bulk(b"\0\0\0ab"));
    assert_eq!(call(&[b"SETRANGE", b"r", b"1", b"XYZW"]), Reply::Integer(5));
    assert_eq!(call(&[b"SETRANGE", b"r", b"9", b""]), Reply::Integer(5), "an empty value changes nothing");
    assert_eq!(call(&[b"SETRANGE", b"e", b"9", b""]), Reply::Integer(0), "and creates no key");
    let negative = [b"SETRANGE".to_vec(), b"r".to_vec(), b"-1".to_vec(), b"x".to_vec()];
    assert_eq!(parse_request(&negative), Err(Reply::error("ERR offset is out of range")));
    let too_far = Reply::error("ERR string exceeds maximum allowed size (proto-max-bulk-len)");
    assert_eq!(call(&[b"SETRANGE", b"r", b"536870911", b"xy"]), too_far);
    assert_eq!(call(&[b"MSETNX", b"m1", b"a", b"m2", b"b"]), Reply::Integer(1));
    assert_eq!(call(&[b"MSETNX", b"m2", b"c", b"m3", b"d"]), Reply::Integer(0), "m2 exists: nothing is set");
    assert_eq!(call(&[b"EXISTS", b"m3", b"e"]), Reply::Integer(0));
    h.crash_and_reopen();
    let mut call = |words: &[&[u8]]| h.call(1, command(words));
    assert_eq!(
        call(&[b"MGET", b"g", b"r", b"m1", b"m2", b"m3"]),
        Reply::Array(Some(vec![Reply::Bulk(None), bulk(b"\0XYZW"), bulk(b"a"), bulk(b"b"), Reply::Bulk(None),]))
    );
}

/// A full SCAN, step by step: every key it returned, in order.
fn scan_all(h: &mut Harness, options: &[&[u8]]) -> Vec<Vec<u8>> {
    let (mut cursor, mut keys) = (b"0".to_vec(), Vec::new());
    for _ in 0..10_000 {
        let mut words: Vec<&[u8]> = vec![b"SCAN", &cursor];
        words.extend_from_slice(options);
        let Reply::Array(Some(parts)) = h.call(1, command(&words)) else { panic!("SCAN replies an array") };
        let [Reply::Bulk(Some(next)), Reply::Array(Some(found))] = &parts[..] else { panic!("[cursor, keys]") };
        keys.extend(found.iter().map(|key| match key {
            Reply::Bulk(Some(key)) => key.clone(),
            other => panic!("a key, not {other:?}"),
        }));
        if next == b"0" {
            return keys;
        }
        cursor = next.clone();
    }
    panic!("a scan ends");
}

#[test]
fn scan_keys_and_randomkey_see_the_key_set_durable_and_pending() {
    let mut h = Harness::format(support::small_config(), 2);
    for number in 0..300 {
        assert_eq!(h.call(1, set(&format!("user:{number}"), b"v")), Reply::ok());
    }
    assert_eq!(h.call(1, set("other", b"v")), Reply::ok());
    let mut all = scan_all(&mut h, &[b"COUNT", b"7"]);
    all.sort();
    assert_eq!(all.len(), 301, "every key exactly once");
    all.dedup();
    assert_eq!(all.len(), 301);
    let users = scan_all(&mut h, &[b"MATCH", b"user:1?", b"COUNT", b"50"]);
    assert_eq!(users.len(), 10, "user:10 to user:19");
    assert!(scan_all(&mut h, &[b"TYPE", b"list"]).is_empty(), "every value is a string");
    assert_eq!(scan_all(&mut h, &[b"type", b"STRING"]).len(), 301);
    let Reply::Array(Some(matched)) = h.call(1, command(&[b"KEYS", b"user:2[0-4]"])) else { panic!("KEYS") };
    assert_eq!(matched.len(), 5);
    assert_eq!(h.call(1, command(&[b"KEYS", b"nothing*"])), Reply::Array(Some(Vec::new())));
    for _ in 0..20 {
        let Reply::Bulk(Some(key)) = h.call(1, command(&[b"RANDOMKEY"])) else { panic!("a key") };
        assert!(key.starts_with(b"user:") || key == b"other", "{key:?}");
    }
    assert_eq!(h.call(1, command(&[b"FLUSHALL"])), Reply::ok());
    assert_eq!(h.call(1, command(&[b"RANDOMKEY"])), Reply::Bulk(None));
    assert!(scan_all(&mut h, &[]).is_empty());
    let words = |list: &[&[u8]]| list.iter().map(|word| word.to_vec()).collect::<Vec<_>>();
    assert_eq!(parse_request(&words(&[b"SCAN", b"x"])), Err(Reply::error("ERR invalid cursor")));
    assert_eq!(parse_request(&words(&[b"SCAN", b"0", b"COUNT", b"0"])), Err(Reply::error("ERR syntax error")));
    assert_eq!(parse_request(&words(&[b"SCAN", b"0", b"MATCH"])), Err(Reply::error("ERR syntax error")));
    let past_the_end = h.call(1, command(&[b"SCAN", b"-1"]));
    assert_eq!(past_the_end, Reply::Array(Some(vec![bulk(b"0"), Reply::Array(Some(Vec::new()))])));
}

#[test]
fn exec_runs_its_commands_together_over_values_read_from_disk_and_keeps_all_or_none() {
    let mut config = support::small_config();
    config.cache_bytes_max = 0; // every durable value is read from disk
    let mut h = Harness::format(config, 3);
    assert_eq!(h.call(1, command(&[b"MSET", b"a", b"10", b"b", b"x"])), Reply::ok());
    let exec =
        |commands: &[&[&[u8]]]| Request::Exec { commands: commands.iter().map(|words| command(words)).collect() };
    let reply = h.call(
        1,
        exec(&[
            &[b"INCRBY", b"a", b"-3"],
            &[b"INCR", b"b"],
            &[b"APPEND", b"b", b"y"],
            &[b"GET", b"a"],
            &[b"DEL", b"a"],
        ]),
    );
    let expected = vec![
        Reply::Integer(7),
        Reply::error("ERR value is not an integer or out of range"),
        Reply::Integer(2),
        bulk(b"7"),
        Reply::Integer(1),
    ];
    assert_eq!(reply, Reply::Array(Some(expected)), "an error is its command's reply; the rest still run");
    assert_eq!(h.call(1, exec(&[])), Reply::Array(Some(Vec::new())));
    h.crash_and_reopen();
    assert_eq!(h.call(1, command(&[b"MGET", b"a", b"b"])), Reply::Array(Some(vec![Reply::Bulk(None), bulk(b"xy")])));
    // A transaction whose writes cannot share one batch is refused whole.
    let large = vec![b'v'; h.engine.value_bytes_max()];
    let too_large = Request::Exec {
        commands: (0..64).map(|index| command(&[b"SET", format!("big{index}").as_bytes(), &large])).collect(),
    };
    let refused = h.call(1, too_large);
    assert!(matches!(&refused, Reply::Error(text) if text.starts_with("ERR command too large")), "{refused:?}");
    assert_eq!(h.call(1, command(&[b"EXISTS", b"big0", b"big63"])), Reply::Integer(0));
}

#[test]
fn rename_and_copy_move_values_in_one_batch() {
    let mut config = support::small_config();
    config.cache_bytes_max = 0; // values come from disk
    let mut h = Harness::format(config, 4);
    let mut call = |words: &[&[u8]]| h.call(1, command(words));
    assert_eq!(call(&[b"RENAME", b"a", b"b"]), Reply::error("ERR no such key"));
    assert_eq!(call(&[b"MSET", b"a", b"1", b"c", b"3"]), Reply::ok());
    assert_eq!(call(&[b"RENAME", b"a", b"b"]), Reply::ok());
    assert_eq!(call(&[b"RENAME", b"b", b"b"]), Reply::ok(), "onto itself: nothing changes");
    assert_eq!(call(&[b"RENAMENX", b"b", b"c"]), Reply::Integer(0), "c exists");
    assert_eq!(call(&[b"RENAMENX", b"b", b"d"]), Reply::Integer(1));
    assert_eq!(call(&[b"COPY", b"d", b"c"]), Reply::Integer(0), "c exists, no REPLACE");
    assert_eq!(call(&[b"COPY", b"d", b"c", b"REPLACE"]), Reply::Integer(1));
    assert_eq!(call(&[b"COPY", b"d", b"e", b"DB", b"0"]), Reply::Integer(1));
    assert_eq!(call(&[b"COPY", b"missing", b"f"]), Reply::Integer(0));
    assert_eq!(call(&[b"COPY", b"d", b"d"]), Reply::error("ERR source and destination objects are the same"));
    h.crash_and_reopen();
    let all = command(&[b"MGET", b"a", b"b", b"c", b"d", b"e"]);
    let expected = vec![Reply::Bulk(None), Reply::Bulk(None), bulk(b"1"), bulk(b"1"), bulk(b"1")];
    assert_eq!(h.call(1, all), Reply::Array(Some(expected)));
    let words = |list: &[&[u8]]| list.iter().map(|word| word.to_vec()).collect::<Vec<_>>();
    assert_eq!(
        parse_request(&words(&[b"COPY", b"a", b"b", b"DB", b"1"])),
        Err(Reply::error("ERR DB index is out of range"))
    );
}

#[test]
fn randomkey_skips_keys_whose_deletion_is_not_durable_yet() {
    let mut h = Harness::format(support::small_config(), 5);
    let keys: Vec<Vec<u8>> = (0..200).map(|number| format!("key{number}").into_bytes()).collect();
    for key in &keys {
        assert_eq!(
            h.call(
                1,
                Request::Set {
                    key: key.clone(),
                    value: b"v".to_vec(),
                    condition: quill_core::command::SetCondition::Always
                }
            ),
            Reply::ok()
        );
    }
    // Every key but the last is deleted in a batch not durable yet: the index still holds them.
    h.submit(1, Request::Del { keys: keys[..199].to_vec() });
    for _ in 0..50 {
        h.submit(2, Request::RandomKey);
    }
    h.run_until_idle();
    let answers: Vec<&Reply> = h.replies.iter().filter(|(client, _)| *client == 2).map(|(_, reply)| reply).collect();
    assert_eq!(answers.len(), 50);
    for answer in answers {
        assert_eq!(*answer, bulk(b"key199"), "the only key left");
    }
}

#[test]
fn parse_errors_match_redis() {
    let words = |list: &[&[u8]]| list.iter().map(|word| word.to_vec()).collect::<Vec<_>>();
    assert_eq!(parse_request(&words(&[b"GET"])), Err(Reply::error("ERR wrong number of arguments for 'get' command")));
    assert_eq!(
        parse_request(&words(&[b"INCRBY", b"k", b"x"])),
        Err(Reply::error("ERR value is not an integer or out of range"))
    );
    assert_eq!(
        parse_request(&words(&[b"FOO", b"bar"])),
        Err(Reply::error("ERR unknown command 'FOO', with args beginning with: 'bar' "))
    );
    assert_eq!(parse_request(&words(&[b"SET", b"k", b"v", b"NX", b"XX"])), Err(Reply::error("ERR syntax error")));
}

#[test]
fn empty_and_one_mebibyte_values_round_trip_and_larger_is_refused() {
    let mut config = support::small_config();
    config.volume_blocks = 8192;
    config.batch_blocks_max = 512;
    config.value_bytes_max = 1 << 20;
    config.cache_bytes_max = 0;
    let mut h = Harness::format(config, 3);
    let big: Vec<u8> = (0..1 << 20).map(|index: u32| (index * 7 % 251) as u8).collect();
    assert_eq!(h.call(1, set("empty", b"")), Reply::ok());
    assert_eq!(h.call(1, set("big", &big)), Reply::ok());
    let too_big = vec![0u8; (1 << 20) + 1];
    assert_eq!(h.call(1, set("huge", &too_big)), Reply::error("ERR value too large (the limit is 1048576 bytes)"));
    h.crash_and_reopen();
    assert_eq!(h.call(1, get("empty")), bulk(b""));
    assert_eq!(h.call(1, get("big")), bulk(&big));
    assert_eq!(h.call(1, get("huge")), Reply::Bulk(None));
}

#[test]
fn thirty_two_clients_have_thirty_two_reads_in_flight() {
    let mut config = support::small_config();
    config.cache_bytes_max = 0;
    let mut h = Harness::format(config, 4);
    for key in 0..32 {
        assert_eq!(h.call(1, set(&format!("k{key}"), b"value")), Reply::ok());
    }
    for client in 0..32 {
        h.submit(100 + client, get(&format!("k{client}")));
    }
    assert!(h.engine.reads_in_flight() >= 32, "reads in flight: {}", h.engine.reads_in_flight());
    assert_eq!(h.in_flight.len(), 32);
    h.run_until_idle();
    for client in 0..32 {
        assert_eq!(h.take_replies(100 + client), vec![bulk(b"value")]);
    }
}

#[test]
fn a_client_waiting_on_disk_does_not_delay_a_cached_get() {
    let mut config = support::small_config();
    config.cache_bytes_max = 1 << 20;
    let mut h = Harness::format(config, 5);
    assert_eq!(h.call(1, set("cold", b"from disk")), Reply::ok());
    h.crash_and_reopen(); // empties the cache
    assert_eq!(h.call(1, set("hot", b"cached")), Reply::ok()); // written through to the cache
    h.submit(1, get("cold"));
    assert_eq!(h.in_flight.len(), 1, "the cold GET waits on a disk read");
    h.submit(2, get("hot"));
    assert_eq!(h.take_replies(2), vec![bulk(b"cached")], "answered with the read still in flight");
    assert!(h.take_replies(1).is_empty());
    h.run_until_idle();
    assert_eq!(h.take_replies(1), vec![bulk(b"from disk")]);
}

#[test]
fn a_failed_sync_acknowledges_nothing_and_makes_the_engine_read_only() {
    let mut h = Harness::format(support::small_config(), 6);
    assert_eq!(h.call(1, set("kept", b"old")), Reply::ok());
    h.fail_next = FailNext::Sync;
    for client in 1..=4 {
        h.submit(client, set("kept", format!("new{client}").as_bytes()));
    }
    h.run_until_idle();
    for client in 1..=4 {
        let replies = h.take_replies(client);
        assert_eq!(replies.len(), 1);
        assert!(matches!(&replies[0], Reply::Error(text) if text.contains("not durable")), "{replies:?}");
    }
    assert!(h.engine.read_only_reason().is_some());
    let refused = h.call(9, set("other", b"x"));
    assert!(matches!(&refused, Reply::Error(text) if text.starts_with("READONLY")), "{refused:?}");
    assert_eq!(h.call(9, get("kept")), bulk(b"old"), "reads see only durable state");
}

#[test]
fn a_failed_write_makes_the_engine_read_only() {
    let mut h = Harness::format(support::small_config(), 7);
    h.fail_next = FailNext::Write;
    assert!(h.call(1, set("a", b"1")).is_error());
    assert!(h.call(1, set("b", b"1")).is_error());
    h.crash_and_reopen();
    assert!(h.engine.read_only_reason().is_none(), "a restart runs recovery and allows writes");
    assert_eq!(h.call(1, set("b", b"2")), Reply::ok());
}

/// Writes `batches` batches of one key each and returns their first blocks.
fn write_batches(h: &mut Harness, batches: usize) {
    for index in 0..batches {
        assert_eq!(h.call(1, set(&format!("key{index}"), &[b'v'; 5000])), Reply::ok());
    }
}

#[test]
fn a_damaged_newest_batch_is_repaired_from_its_mirror_copy() {
    let mut h = Harness::format(support::small_config(), 8);
    write_batches(&mut h, 4); // each batch: 2 blocks, from block 2
    h.crash_and_reopen();
    // Bit rot in the last acknowledged batch (blocks 8..10): without the mirror this would look
    // like a torn tail and lose key3.
    h.disk.durable[8 * 4096 + 100] ^= 0xff;
    h.crash_and_reopen();
    assert!(h.engine.is_ready(), "{:?}", h.engine.open_error());
    assert_eq!((h.engine.stats().batches_repaired, h.engine.stats().truncated_at_block), (1, Some(10)));
    assert_eq!(h.call(1, get("key3")), bulk(&[b'v'; 5000]));
    // The repair was written back: the next open needs none.
    h.crash_and_reopen();
    assert_eq!(h.engine.stats().batches_repaired, 0);
    assert_eq!(h.call(1, get("key3")), bulk(&[b'v'; 5000]));
}

#[test]
fn a_torn_tail_is_truncated_but_middle_corruption_refuses_to_open() {
    let mut config = support::small_config();
    config.mirror_batches = false; // format 2: the log alone
    let mut h = Harness::format(config, 8);
    write_batches(&mut h, 4); // each batch: 2 blocks, from block 2
    let block = 4096;
    // Tear the last batch (blocks 8..10): it was synced, but pretend the crash tore it.
    h.disk.durable[8 * block + 100] ^= 0xff;
    h.crash_and_reopen();
    assert!(h.engine.is_ready());
    assert_eq!(h.engine.stats().truncated_at_block, Some(8));
    assert_eq!(h.call(1, get("key3")), Reply::Bulk(None));
    assert_eq!(h.call(1, get("key2")), bulk(&[b'v'; 5000]));
    // Now corrupt a batch in the middle: valid batches follow, so this is not a torn tail.
    h.disk.durable[4 * block + 200] ^= 0x01;
    h.crash_and_reopen();
    let error = h.engine.open_error().cloned().expect("refuses to open");
    assert!(matches!(error, OpenError::CorruptLog { block: 4, next_block: 6, .. }), "{error}");
    let reply = h.call(1, get("key0"));
    assert!(matches!(&reply, Reply::Error(text) if text.contains("log corrupt at block 4")), "{reply:?}");
}

#[test]
fn a_corrupt_record_is_an_error_reply_never_a_wrong_value() {
    let mut config = support::small_config();
    config.cache_bytes_max = 0;
    let mut h = Harness::format(config, 9);
    assert_eq!(h.call(1, set("a", b"precious")), Reply::ok());
    assert_eq!(h.call(1, set("b", b"other")), Reply::ok());
    let offset = 2 * 4096 + 64 + 24 + 1; // the first record's value
    h.disk.volatile[offset] ^= 0x20;
    let reply = h.call(1, get("a"));
    assert!(matches!(&reply, Reply::Error(text) if text.contains("data corrupt")), "{reply:?}");
    assert_eq!(h.engine.stats().checksum_failures, 1);
    assert_eq!(h.call(1, get("b")), bulk(b"other"));
}

#[test]
fn losing_one_superblock_copy_loses_nothing() {
    let mut h = Harness::format(support::small_config(), 10);
    assert_eq!(h.call(1, set("a", b"1")), Reply::ok());
    for copy in 0..2 {
        h.crash_and_reopen();
        let saved = h.disk.durable[copy * 4096..(copy + 1) * 4096].to_vec();
        h.disk.durable[copy * 4096 + 20] ^= 0xff;
        h.crash_and_reopen();
        assert!(h.engine.is_ready(), "copy {copy} lost: {:?}", h.engine.open_error());
        assert_eq!(h.call(1, get("a")), bulk(b"1"));
        h.disk.durable[copy * 4096..(copy + 1) * 4096].copy_from_slice(&saved);
    }
    h.disk.durable[20] ^= 0xff;
    h.disk.durable[4096 + 20] ^= 0xff;
    h.crash_and_reopen();
    assert!(matches!(h.engine.open_error(), Some(OpenError::NoValidSuperblock { .. })));
}

#[test]
fn a_full_disk_refuses_puts_keeps_reads_and_data_and_recovers_after_deletes() {
    let mut config = quill_core::Config::for_volume_bytes(160 * 4096);
    config.batch_blocks_max = 8;
    config.checkpoint_slot_blocks = 0;
    let mut h = Harness::format(config, 11);
    let mut written = 0;
    loop {
        let reply = h.call(1, set(&format!("k{written}"), &[b'x'; 3000]));
        if reply.is_error() {
            assert!(matches!(&reply, Reply::Error(text) if text.starts_with("OOM")), "{reply:?}");
            break;
        }
        written += 1;
        assert!(written < 200);
    }
    assert!(written > 80, "only {written} writes fit");
    assert_eq!(h.call(1, get("k0")), bulk(&[b'x'; 3000]));
    h.crash_and_reopen();
    assert_eq!(h.call(1, command(&[b"DBSIZE"])), Reply::Integer(written));
    // Compaction may repack the one-record batches (their padding is garbage) and make room
    // for a few more, but the disk fills again.
    let mut more = 0;
    while h.call(1, set(&format!("more{more}"), &[b'm'; 3000])) == Reply::ok() {
        more += 1;
        assert!(more < written, "still nearly full after a restart");
    }
    for index in 0..more {
        assert_eq!(h.call(1, command(&[b"DEL", format!("more{index}").as_bytes()])), Reply::Integer(1));
    }
    // Deletes still fit; once they are durable, compaction frees their blocks.
    for index in (0..written).step_by(2) {
        assert_eq!(h.call(1, command(&[b"DEL", format!("k{index}").as_bytes()])), Reply::Integer(1));
    }
    h.run_until_idle();
    for index in 0..10 {
        assert_eq!(h.call(1, set(&format!("new{index}"), &[b'z'; 3000])), Reply::ok(), "write {index} after deletes");
    }
    assert!(h.engine.stats().tail_advances > 0 && h.engine.stats().records_moved > 0);
    h.crash_and_reopen();
    for index in 0..written {
        let expected = if index % 2 == 0 { Reply::Bulk(None) } else { bulk(&[b'x'; 3000]) };
        assert_eq!(h.call(1, get(&format!("k{index}"))), expected, "k{index} after compaction and a restart");
    }
    assert_eq!(h.call(1, get("new9")), bulk(&[b'z'; 3000]));
}

#[test]
fn pipelined_commands_of_one_client_are_answered_in_order() {
    let mut config = support::small_config();
    config.cache_bytes_max = 0;
    let mut h = Harness::format(config, 12);
    assert_eq!(h.call(1, set("cold", b"c")), Reply::ok());
    h.submit(1, get("cold"));
    h.submit(1, set("cold", b"d"));
    h.submit(1, command(&[b"INCR", b"n"]));
    h.submit(1, get("cold"));
    h.run_until_idle();
    assert_eq!(h.take_replies(1), vec![bulk(b"c"), Reply::ok(), Reply::Integer(1), bulk(b"d")]);
}

#[test]
fn a_read_only_open_recovers_serves_reads_and_writes_nothing() {
    let mut h = Harness::format(support::small_config(), 15);
    assert_eq!(h.call(1, set("a", b"1")), Reply::ok());
    h.disk.crash();
    let image = h.disk.durable.clone();
    let mut config = h.config.clone();
    config.open_read_only = true;
    h.engine = quill_core::Engine::open(config);
    h.run_until_idle();
    assert!(h.engine.is_ready());
    assert_eq!(h.call(1, get("a")), bulk(b"1"));
    let refused = h.call(1, set("b", b"2"));
    assert!(matches!(&refused, Reply::Error(text) if text.starts_with("READONLY")), "{refused:?}");
    assert!(h.disk.durable == image && h.disk.volatile == image, "nothing was written");
    assert_eq!(h.engine.epoch(), 2, "the epoch is read, not bumped on disk");
}

#[test]
fn commands_beyond_the_pipeline_limit_are_refused_in_order() {
    let mut config = support::small_config();
    config.client_pipeline_max = 2;
    config.cache_bytes_max = 0;
    let mut h = Harness::format(config, 13);
    assert_eq!(h.call(1, set("a", b"1")), Reply::ok());
    h.crash_and_reopen();
    for _ in 0..4 {
        h.submit(1, get("a"));
    }
    h.run_until_idle();
    let refused = Reply::error("ERR too many commands in flight for this client");
    assert_eq!(h.take_replies(1), vec![bulk(b"1"), bulk(b"1"), refused.clone(), refused]);
}

#[test]
fn recovery_reads_the_log_about_once() {
    let mut config = quill_core::Config::for_volume_bytes(64 << 20);
    config.batch_blocks_max = 1024; // the default: a 4 MiB window
    let mut h = Harness::format(config, 14);
    for index in 0..2_000 {
        assert_eq!(h.call(1, set(&format!("key{index}"), &[b'x'; 100])), Reply::ok());
    }
    h.run_until_idle();
    let log_bytes = h.engine.space().log_used_bytes + 2 * 4096; // the log from its tail, the superblocks
    h.crash_and_reopen();
    assert_eq!(h.engine.key_count(), 2_000);
    let read = h.engine.stats().recovery_bytes_read;
    // The log once, plus the look-ahead past its end (a chunk: two windows), two probes of a
    // window (for a wrapped batch at the region's start, and back at the end), and the newest
    // batches' mirror slots (a few blocks here). A window is three largest batches and a block
    // with two batches in flight (format 6).
    let window_blocks = 3 * 1024 + 1;
    let extra_bytes = (2 * window_blocks + 2 * window_blocks + 2 * 16) * 4096;
    assert!(read <= log_bytes + extra_bytes, "recovery read {read} bytes for a {log_bytes}-byte log");
}

fn expect_checkpoint_test_state(h: &mut Harness) {
    for index in 0..200 {
        let expected = match index {
            0..50 => Reply::Bulk(None),
            50..100 => bulk(format!("w{index}").as_bytes()),
            _ => bulk(format!("v{index}").as_bytes()),
        };
        assert_eq!(h.call(1, get(&format!("k{index}"))), expected, "k{index}");
    }
    assert_eq!(h.engine.key_count(), 150);
}

#[test]
fn a_restart_reads_the_checkpoint_and_a_corrupt_one_falls_back_to_the_whole_log() {
    let mut config = support::small_config();
    config.checkpoint_interval_blocks = 0; // only when asked
    let mut h = Harness::format(config.clone(), 21);
    for index in 0..200 {
        assert_eq!(h.call(1, set(&format!("k{index}"), format!("v{index}").as_bytes())), Reply::ok());
    }
    h.engine.checkpoint_now();
    h.drain();
    h.run_until_idle();
    assert_eq!(h.engine.stats().checkpoints_written, 1);
    // After the checkpoint: deletes and overwrites that only the log holds.
    for index in 0..50 {
        assert_eq!(h.call(1, command(&[b"DEL", format!("k{index}").as_bytes()])), Reply::Integer(1));
    }
    for index in 50..100 {
        assert_eq!(h.call(1, set(&format!("k{index}"), format!("w{index}").as_bytes())), Reply::ok());
    }
    h.crash_and_reopen();
    assert!(h.engine.stats().checkpoint_loaded, "{:?}", h.engine.stats().checkpoint_rejected);
    expect_checkpoint_test_state(&mut h);
    // The first checkpoint went to slot 1, right after the log region.
    let slot_start = (config.volume_blocks - 2 * u64::from(config.checkpoint_slot_blocks)) as usize * 4096;
    h.disk.durable[slot_start + 20] ^= 0x40;
    h.crash_and_reopen();
    let stats = h.engine.stats().clone();
    assert!(!stats.checkpoint_loaded);
    assert!(stats.checkpoint_rejected.as_deref().is_some_and(|why| why.contains("checksum")), "{stats:?}");
    expect_checkpoint_test_state(&mut h);
}

/// The index's room (`Config::index_bytes_max`) at its exact boundary: keys up to the limit are
/// taken, one more is refused and changes nothing, overwrites of existing keys go on, and a
/// delete makes room again.
#[test]
fn the_index_takes_keys_up_to_its_limit_exactly() {
    let mut config = support::small_config();
    config.index_bytes_max = 3 * quill_core::engine::index_entry_bytes(2);
    let mut h = Harness::format(config, 31);
    for key in ["k1", "k2", "k3"] {
        assert_eq!(h.call(1, set(key, b"v")), Reply::ok(), "{key} fits");
    }
    let refused = h.call(1, set("k4", b"v"));
    assert!(matches!(&refused, Reply::Error(text) if text.starts_with("OOM index full")), "{refused:?}");
    assert_eq!(h.call(1, get("k4")), Reply::Bulk(None), "a refused write changes nothing");
    assert_eq!(h.call(1, set("k1", b"again")), Reply::ok(), "an overwrite adds no key");
    let delete = parse_request(&[b"DEL".to_vec(), b"k2".to_vec()]).expect("DEL parses");
    assert_eq!(h.call(1, delete), Reply::Integer(1));
    assert_eq!(h.call(1, set("k4", b"v")), Reply::ok(), "the delete made room");
}

/// A pending write whose time has already passed is absent to every command: KEYS, SCAN and
/// RANDOMKEY too, before its batch is durable (found reviewing the expiry change).
#[test]
fn an_expired_pending_write_is_not_listed() {
    use quill_core::command::{ExpiryTime, SetCondition, SetExpiry};
    let mut h = Harness::format(support::small_config(), 6);
    h.engine.set_unix_time_ms(1_800_000_000_000);
    let expired = Request::SetExpiring {
        key: b"gone".to_vec(),
        value: b"v".to_vec(),
        condition: SetCondition::Always,
        expiry: SetExpiry::At(ExpiryTime::At(1)),
        get: false,
        name: "set",
    };
    h.submit(1, expired);
    // Before any I/O completes, the write is pending in the overlay.
    h.submit(2, Request::Keys { pattern: b"*".to_vec() });
    h.submit(2, Request::RandomKey);
    h.submit(2, Request::Exists { keys: vec![b"gone".to_vec()] });
    h.run_until_idle();
    let answers: Vec<&Reply> = h.replies.iter().filter(|(client, _)| *client == 2).map(|(_, reply)| reply).collect();
    assert_eq!(answers, [&Reply::Array(Some(vec![])), &Reply::Bulk(None), &Reply::Integer(0)]);
}

/// SET with an expiry option obeys the value limit as plain SET does (found reviewing).
#[test]
fn set_with_a_time_obeys_the_value_limit() {
    use quill_core::command::{ExpiryTime, SetCondition, SetExpiry};
    let config = support::small_config();
    let limit = config.value_bytes_max;
    let mut h = Harness::format(config, 7);
    let request = Request::SetExpiring {
        key: b"big".to_vec(),
        value: vec![b'x'; limit + 1],
        condition: SetCondition::Always,
        expiry: SetExpiry::At(ExpiryTime::In(60_000)),
        get: false,
        name: "setex",
    };
    assert_eq!(h.call(1, request), Reply::error(format!("ERR value too large (the limit is {limit} bytes)")));
}

/// A format over an older volume numbers its superblock copies above the old ones: one format
/// write gone astray (here: lost) must not leave an old copy that wins the next open (seed
/// 101286 heavy found the old volume opened).
#[test]
fn a_format_over_an_old_volume_outnumbers_its_superblocks() {
    let mut h = Harness::format(support::small_config(), 15);
    let old_volume = h.engine.volume_id();
    for _ in 0..3 {
        h.crash_and_reopen(); // each open writes two more superblock copies
    }
    let mut new_engine = Engine::format(h.config.clone(), 0xbeef);
    let mut first_write_dropped = false;
    for _ in 0..10_000 {
        let Some(request) = new_engine.poll_io() else { break };
        let result = match &request.kind {
            IoKind::Write { offset_bytes, data } if *offset_bytes < 8192 && !first_write_dropped => {
                first_write_dropped = true; // the copy never lands
                Ok(vec![0; data.len()])
            }
            kind => h.disk.perform_public(kind),
        };
        new_engine.complete(IoCompletion { token: request.token, result });
    }
    assert!(first_write_dropped && new_engine.is_ready(), "the format completed: {}", new_engine.debug_state());
    assert_ne!(new_engine.volume_id(), old_volume);
    h.engine = Engine::open(h.config.clone());
    h.run_until_idle();
    assert_eq!(h.engine.volume_id(), 0xbeef, "the open finds the new volume, not the old one");
}

/// Two batches in flight (pipelined commit): the second becoming durable first releases
/// nothing; once the first is durable both release, in order.
#[test]
fn a_batch_durable_before_the_one_ahead_of_it_waits_for_it() {
    let mut h = Harness::format(support::small_config(), 16);
    let durable_before = h.engine.durable_sequence();
    h.submit(1, set("a", b"1")); // nothing in flight: sealed at once
    let first: Vec<_> = std::mem::take(&mut h.in_flight);
    assert_eq!(first.len(), 2, "the batch and its mirror copy");
    h.submit(2, set("b", b"2")); // one in flight, room for another: sealed at the turn's tick
    assert!(h.in_flight.is_empty(), "not sealed before the tick");
    let now = h.engine.poll_timeout().expect("a tick is wanted");
    h.engine.tick(now);
    h.drain();
    assert_eq!(h.in_flight.len(), 2, "the second batch is in flight beside the first");
    assert_eq!(h.engine.stats().batches_pipelined, 1);
    // The second batch: its writes, then its sync.
    for _ in 0..8 {
        let Some(request) = h.in_flight.pop() else { break };
        let result = h.disk.perform_public(&request.kind);
        h.engine.complete(IoCompletion { token: request.token, result });
        h.drain();
    }
    assert!(h.in_flight.is_empty(), "the second batch is durable: {}", h.engine.debug_state());
    assert!(h.take_replies(2).is_empty() && h.take_replies(1).is_empty(), "nothing is released");
    assert_eq!(h.engine.durable_sequence(), durable_before);
    h.in_flight = first;
    h.run_until_idle();
    assert_eq!(h.take_replies(1), vec![Reply::ok()]);
    assert_eq!(h.take_replies(2), vec![Reply::ok()]);
    assert_eq!(h.engine.durable_sequence(), durable_before + 2);
}

/// Rewrites both superblock copies on the durable image with `change` applied.
fn rewrite_superblocks(h: &mut Harness, change: impl Fn(&mut quill_core::format::Superblock)) {
    for copy in 0..2usize {
        let block = &mut h.disk.durable[copy * 4096..(copy + 1) * 4096];
        let mut superblock = quill_core::format::Superblock::decode(block, copy as u64).expect("a valid copy");
        change(&mut superblock);
        block.copy_from_slice(&superblock.encode());
    }
}

/// Twenty values of 1,000 bytes in one batch (an MSET): four records never fit a block, so some
/// would cross one.
fn mset_thousand_byte_values(h: &mut Harness) {
    let keys: Vec<Vec<u8>> = (0..20).map(|key| format!("k{key}").into_bytes()).collect();
    let values: Vec<Vec<u8>> = (0..20u8).map(|key| vec![b'a' + key; 1000]).collect();
    let mut words: Vec<&[u8]> = vec![b"MSET"];
    for (key, value) in keys.iter().zip(&values) {
        words.extend([key.as_slice(), value.as_slice()]);
    }
    assert_eq!(h.call(1, command(&words)), Reply::ok());
}

/// Reads the twenty values back after a crash; returns the blocks the GETs read.
fn read_back_thousand_byte_values(h: &mut Harness) -> u64 {
    h.crash_and_reopen();
    let before = h.engine.stats().bytes_read;
    for key in 0..20u8 {
        assert_eq!(h.call(1, get(&format!("k{key}"))), bulk(&[b'a' + key; 1000]));
    }
    (h.engine.stats().bytes_read - before) / 4096
}

/// Format 7 pads a record that would cross a block, so each GET reads one block; a format 6
/// volume (whose older readers know no padding) opens, is written back to back, and stays
/// format 6.
#[test]
fn records_are_padded_on_format_7_only_and_format_6_stays_unpadded() {
    let mut h = Harness::format(support::small_config(), 17);
    mset_thousand_byte_values(&mut h);
    assert!(h.engine.stats().record_padding_bytes > 0, "some records would have crossed a block");
    assert_eq!(read_back_thousand_byte_values(&mut h), 20, "one block per GET");
    assert_eq!(h.disk.durable[8], 7, "new volumes are format 7");

    let mut h = Harness::format(support::small_config(), 18);
    rewrite_superblocks(&mut h, |superblock| superblock.records_padded = false);
    h.crash_and_reopen();
    assert!(h.engine.is_ready());
    mset_thousand_byte_values(&mut h);
    assert_eq!(h.engine.stats().record_padding_bytes, 0, "format 6 is written back to back");
    assert!(h.engine.stats().payload_bytes_sealed > 20_000);
    assert!(read_back_thousand_byte_values(&mut h) > 20, "some records cross a block");
    assert_eq!(h.disk.durable[8], 6, "a format 6 volume stays format 6");
}

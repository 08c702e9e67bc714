//! Snapshots as a gateway receives them from the control plane: the compact binary encoding
//! (whole and read in chunks of every size, which must agree) and the JSON form.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate_filter::catalog::Catalog;
use tollgate_protocol::Snapshot;

#[global_allocator]
static ALLOC: tollgate_fuzz::Capped = tollgate_fuzz::Capped;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        if let Ok(snapshot) = serde_json::from_slice::<Snapshot>(rest) {
            let _ = Catalog::compile(&snapshot, "snapshot");
        }
        return;
    }
    // The gateway reads the body in pieces; any piece size must give the same catalog.
    let piece = usize::from(mode >> 1) + 1;
    let whole = Catalog::compile_binary(rest);
    let len = rest.len();
    let chunked = Catalog::compile_chunked(len, |off, max| {
        rest[off.min(len)..off.saturating_add(max.min(piece)).min(len)].to_vec()
    });
    match (&whole, &chunked) {
        (Ok(a), Ok(b)) => assert_eq!(
            a.apps.iter().map(|x| &x.id).collect::<Vec<_>>(),
            b.apps.iter().map(|x| &x.id).collect::<Vec<_>>()
        ),
        (Err(_), Err(_)) => {}
        _ => panic!(
            "whole and chunked decoding disagree: {:?} vs {:?}",
            whole.err(),
            chunked.err()
        ),
    }
});

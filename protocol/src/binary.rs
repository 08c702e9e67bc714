//! The compact snapshot encoding, for catalogs too large for JSON to be cheap in every gateway
//! worker: 100,000 applications are ~6 MB instead of ~16 MB, and a gateway decodes them straight
//! into its catalog without an intermediate tree.
//!
//! Layout (integers little-endian):
//! ```text
//! "TGS1" or "TGS2"
//! u32 head_len, head_len bytes: the snapshot as JSON with "applications": []
//! u32 app_count, then app_count times:
//!   u8 id_len, id            (ids strictly increasing: sorted, no duplicates)
//!   u32 plan                 (index into the head's plans)
//!   u8 state                 (0 live, 1 suspended, 2 suspended by an admin, 3 suspended for non-payment)
//!   u8 key_count, key_count x 32 bytes (SHA-256 of each key)
//!   u8 app_id_len, app_id    (0: none)
//!   TGS2 only: u8 app_key_count, app_key_count x 32 bytes (SHA-256 of each app_key)
//! ```
//!
//! Versioning: the head is JSON and takes additive fields like the JSON snapshot; a record's
//! layout is fixed per version, so a new record field is a new version with its own magic and
//! media type ([`Format`]). A gateway names the versions it reads in `Accept`, newest first, and a
//! producer answers the newest it has: an older filter keeps asking for (and getting) TGS1, which
//! does not carry `app_key_sha256` (3scale-style `app_id` + `app_key` pairs then open nothing
//! there, as before TGS2).

use crate::{Application, ApplicationState, Snapshot, SuspensionReason};

/// Media type of [`Format::V1`] (`TGS1`).
pub const MEDIA_TYPE: &str = "application/vnd.tollgate.snapshot.v1";
/// Media type of [`Format::V2`] (`TGS2`: records also carry `app_key_sha256`).
pub const MEDIA_TYPE_V2: &str = "application/vnd.tollgate.snapshot.v2";
const MAGIC: &[u8; 4] = b"TGS1";
const MAGIC_V2: &[u8; 4] = b"TGS2";

/// A version of the compact encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `TGS1`: records without app keys.
    V1,
    /// `TGS2`: each record ends with the SHA-256 of the application's `app_key`s.
    V2,
}

impl Format {
    pub fn media_type(self) -> &'static str {
        match self {
            Format::V1 => MEDIA_TYPE,
            Format::V2 => MEDIA_TYPE_V2,
        }
    }

    fn magic(self) -> &'static [u8; 4] {
        match self {
            Format::V1 => MAGIC,
            Format::V2 => MAGIC_V2,
        }
    }

    fn of_magic(m: &[u8]) -> Option<Format> {
        if m == MAGIC {
            Some(Format::V1)
        } else if m == MAGIC_V2 {
            Some(Format::V2)
        } else {
            None
        }
    }

    /// The newest version an `Accept` header names, `None` when it names none (JSON then).
    pub fn accepted(accept: &str) -> Option<Format> {
        if accept.contains(MEDIA_TYPE_V2) {
            Some(Format::V2)
        } else if accept.contains(MEDIA_TYPE) {
            Some(Format::V1)
        } else {
            None
        }
    }
}

/// One application as decoded, borrowing from the buffer.
#[derive(Debug, PartialEq, Eq)]
pub struct AppRecord<'a> {
    pub id: &'a str,
    pub plan: u32,
    pub state: ApplicationState,
    pub state_reason: Option<SuspensionReason>,
    /// Concatenated 32-byte digests.
    pub keys: &'a [u8],
    pub app_id: Option<&'a str>,
    /// Concatenated 32-byte digests of the `app_key`s (always empty in TGS1).
    pub app_keys: &'a [u8],
}

impl AppRecord<'_> {
    pub fn digests(&self) -> impl Iterator<Item = [u8; 32]> + '_ {
        self.keys.chunks_exact(32).map(|c| {
            let mut d = [0u8; 32];
            d.copy_from_slice(c);
            d
        })
    }
}

fn hex32(s: &str) -> Option<[u8; 32]> {
    let b = s.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let nib = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = (nib(b[2 * i])? << 4) | nib(b[2 * i + 1])?;
    }
    Some(out)
}

fn short(field: &str, s: &str) -> Result<u8, String> {
    u8::try_from(s.len()).map_err(|_| format!("{field} {s:?} is longer than 255 bytes"))
}

/// Encodes a snapshot (applications are sorted by id here). An application the format cannot
/// carry (more than 255 keys, an id or app id over 255 bytes, a key that is not a SHA-256 hex
/// digest, an unknown plan) is left out rather than failing the whole snapshot: a gateway then
/// treats its keys as unknown, and every other application still reaches every gateway. Use
/// [`encode_reporting`] to learn which were left out.
pub fn encode(snapshot: &Snapshot) -> Result<Vec<u8>, String> {
    encode_reporting(snapshot).map(|(bytes, _)| bytes)
}

/// [`encode`] in TGS1, also returning why each left-out application was left out (for the
/// producer's log). Fails only when the head itself cannot be written.
pub fn encode_reporting(snapshot: &Snapshot) -> Result<(Vec<u8>, Vec<String>), String> {
    encode_as(snapshot, Format::V1)
}

/// [`encode_reporting`] in the given version. TGS1 leaves `app_key_sha256` out (it has no place
/// for it); TGS2 carries it.
pub fn encode_as(snapshot: &Snapshot, format: Format) -> Result<(Vec<u8>, Vec<String>), String> {
    let head = Snapshot {
        applications: Vec::new(),
        ..snapshot.clone()
    };
    let head = serde_json::to_vec(&head).map_err(|e| e.to_string())?;
    let head_len = u32::try_from(head.len()).map_err(|_| "snapshot head over 4 GiB".to_string())?;
    let plan_index: std::collections::HashMap<&str, u32> = snapshot
        .plans
        .iter()
        .enumerate()
        .map(|(i, p)| (p.id.as_str(), i as u32))
        .collect();
    let mut apps: Vec<&Application> = snapshot.applications.iter().collect();
    apps.sort_by(|a, b| a.id.cmp(&b.id));
    let mut out = Vec::with_capacity(12 + head.len() + apps.len() * 80);
    out.extend_from_slice(format.magic());
    out.extend_from_slice(&head_len.to_le_bytes());
    out.extend_from_slice(&head);
    let count_at = out.len();
    out.extend_from_slice(&0u32.to_le_bytes());
    let mut count = 0u32;
    let mut skipped = Vec::new();
    let mut last_id: Option<&str> = None;
    for a in apps {
        if last_id == Some(a.id.as_str()) {
            // Ids must be strictly increasing: a second application with one id is left out.
            skipped.push(format!("application {} appears twice", a.id));
            continue;
        }
        last_id = Some(a.id.as_str());
        let start = out.len();
        match encode_app(a, &plan_index, format, &mut out) {
            Ok(()) => count += 1,
            Err(why) => {
                out.truncate(start);
                skipped.push(why);
            }
        }
    }
    out[count_at..count_at + 4].copy_from_slice(&count.to_le_bytes());
    Ok((out, skipped))
}

fn encode_app(
    a: &Application,
    plan_index: &std::collections::HashMap<&str, u32>,
    format: Format,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    out.push(short("application id", &a.id)?);
    out.extend_from_slice(a.id.as_bytes());
    let plan = plan_index
        .get(a.plan.as_str())
        .ok_or_else(|| format!("application {} has unknown plan {}", a.id, a.plan))?;
    out.extend_from_slice(&plan.to_le_bytes());
    out.push(match (a.state, a.state_reason) {
        (ApplicationState::Live, _) => 0,
        (ApplicationState::Suspended, None) => 1,
        (ApplicationState::Suspended, Some(SuspensionReason::Admin)) => 2,
        (ApplicationState::Suspended, Some(SuspensionReason::NonPayment)) => 3,
    });
    out.push(u8::try_from(a.key_sha256.len()).map_err(|_| {
        format!(
            "application {} has {} keys, more than the encoding's 255",
            a.id,
            a.key_sha256.len()
        )
    })?);
    for k in &a.key_sha256 {
        out.extend_from_slice(
            &hex32(k).ok_or_else(|| {
                format!("application {}: {k:?} is not a SHA-256 hex digest", a.id)
            })?,
        );
    }
    let app_id = a.app_id.as_deref().unwrap_or("");
    out.push(short("app_id", app_id)?);
    out.extend_from_slice(app_id.as_bytes());
    if format == Format::V2 {
        out.push(u8::try_from(a.app_key_sha256.len()).map_err(|_| {
            format!(
                "application {} has {} app keys, more than the encoding's 255",
                a.id,
                a.app_key_sha256.len()
            )
        })?);
        for k in &a.app_key_sha256 {
            out.extend_from_slice(&hex32(k).ok_or_else(|| {
                format!(
                    "application {}: app key {k:?} is not a SHA-256 hex digest",
                    a.id
                )
            })?);
        }
    }
    Ok(())
}

/// Decodes the head (the snapshot without applications) and an iterator over the applications.
pub fn decode(bytes: &[u8]) -> Result<(Snapshot, Apps<'_>), String> {
    let mut r = Reader { b: bytes, at: 0 };
    let format = Format::of_magic(r.take(4)?).ok_or("not a TGS1 or TGS2 snapshot")?;
    let head_len = r.u32()? as usize;
    let head: Snapshot =
        serde_json::from_slice(r.take(head_len)?).map_err(|e| format!("snapshot head: {e}"))?;
    let count = r.u32()? as usize;
    check_count(count, bytes.len() - r.at)?;
    Ok((
        head,
        Apps {
            r,
            left: count,
            last_id: None,
            format,
        },
    ))
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.b.len())
            .ok_or("truncated snapshot")?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, String> {
        let s = self.take(4)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn str(&mut self) -> Result<&'a str, String> {
        let n = self.u8()? as usize;
        std::str::from_utf8(self.take(n)?)
            .map_err(|_| "a string in the snapshot is not UTF-8".to_string())
    }
}

/// The applications of a TGS1 snapshot, checked as they are read.
pub struct Apps<'a> {
    r: Reader<'a>,
    left: usize,
    last_id: Option<&'a str>,
    format: Format,
}

impl Apps<'_> {
    pub fn len(&self) -> usize {
        self.left
    }

    pub fn is_empty(&self) -> bool {
        self.left == 0
    }
}

impl<'a> Iterator for Apps<'a> {
    type Item = Result<AppRecord<'a>, String>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let rec = (|| {
            let id = self.r.str()?;
            if self.last_id.is_some_and(|last| last >= id) {
                return Err(format!(
                    "application ids are not strictly increasing at {id:?}"
                ));
            }
            self.last_id = Some(id);
            let plan = self.r.u32()?;
            let (state, state_reason) = match self.r.u8()? {
                0 => (ApplicationState::Live, None),
                1 => (ApplicationState::Suspended, None),
                2 => (ApplicationState::Suspended, Some(SuspensionReason::Admin)),
                3 => (
                    ApplicationState::Suspended,
                    Some(SuspensionReason::NonPayment),
                ),
                other => return Err(format!("unknown application state {other}")),
            };
            let keys = self.r.u8()? as usize;
            let keys = self.r.take(keys * 32)?;
            let app_id = self.r.str()?;
            let app_keys = match self.format {
                Format::V1 => &[][..],
                Format::V2 => {
                    let n = self.r.u8()? as usize;
                    self.r.take(n * 32)?
                }
            };
            Ok(AppRecord {
                id,
                plan,
                state,
                state_reason,
                keys,
                app_id: (!app_id.is_empty()).then_some(app_id),
                app_keys,
            })
        })();
        if rec.is_err() {
            self.left = 0;
        }
        Some(rec)
    }
}

/// Shortest encoded application record (lengths of id and app id, plan, state, key count): bounds
/// the application count a body of a given size can hold before anything is reserved for it.
const MIN_RECORD_BYTES: usize = 1 + 4 + 1 + 1 + 1;

/// Refuses a count the remaining bytes cannot hold (a corrupt or hostile body would otherwise
/// make the gateway reserve memory for billions of applications).
fn check_count(count: usize, remaining: usize) -> Result<(), String> {
    if count > remaining / MIN_RECORD_BYTES {
        return Err(format!(
            "the snapshot claims {count} applications but has {remaining} bytes left"
        ));
    }
    Ok(())
}

/// Reads exactly `len` bytes at `offset` through a reader that may return less than asked.
fn read_exact(
    read: &mut impl FnMut(usize, usize) -> Vec<u8>,
    offset: usize,
    len: usize,
) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(len.min(CHUNK_BYTES));
    while out.len() < len {
        let piece = read(offset + out.len(), (len - out.len()).min(CHUNK_BYTES));
        if piece.is_empty() {
            return Err("truncated snapshot".into());
        }
        out.extend_from_slice(&piece);
    }
    out.truncate(len);
    Ok(out)
}

/// Longest encoded application record (id, plan, state, 255 keys, app id, and in TGS2 255 app
/// keys): a chunked reader keeps at least this much buffered.
const MAX_RECORD_BYTES: usize = 1 + 255 + 4 + 1 + 1 + 255 * 32 + 1 + 255 + 1 + 255 * 32;
/// How much a chunked reader asks for at a time.
pub const CHUNK_BYTES: usize = 64 * 1024;

/// Decodes a TGS1 snapshot read piece by piece (`read(offset, max_len)`), so the whole body never
/// has to sit in memory: a gateway reads 64 KiB of the HTTP answer at a time.
pub struct ChunkedDecoder<R> {
    read: R,
    total: usize,
    /// Bytes from absolute offset `buf_offset`; `pos` is the next unread byte in `buf`.
    buf: Vec<u8>,
    buf_offset: usize,
    pos: usize,
    left: usize,
    last_id: String,
    failed: bool,
    format: Format,
}

impl<R: FnMut(usize, usize) -> Vec<u8>> ChunkedDecoder<R> {
    /// Reads the head; `total` is the body length.
    pub fn new(total: usize, mut read: R) -> Result<(Snapshot, Self), String> {
        let fixed = read_exact(&mut read, 0, 8.min(total))
            .ok()
            .filter(|f| f.len() == 8)
            .ok_or("not a TGS1 or TGS2 snapshot")?;
        let format = Format::of_magic(&fixed[..4]).ok_or("not a TGS1 or TGS2 snapshot")?;
        let head_len = u32::from_le_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]) as usize;
        if head_len.saturating_add(8 + 4) > total {
            return Err("truncated snapshot".into());
        }
        let head = read_exact(&mut read, 8, head_len)?;
        let snapshot: Snapshot =
            serde_json::from_slice(&head).map_err(|e| format!("snapshot head: {e}"))?;
        drop(head);
        let count = read_exact(&mut read, 8 + head_len, 4)?;
        let left = u32::from_le_bytes([count[0], count[1], count[2], count[3]]) as usize;
        let start = 8 + head_len + 4;
        check_count(left, total - start)?;
        Ok((
            snapshot,
            ChunkedDecoder {
                read,
                total,
                buf: Vec::new(),
                buf_offset: start,
                pos: 0,
                left,
                last_id: String::new(),
                failed: false,
                format,
            },
        ))
    }

    pub fn len(&self) -> usize {
        self.left
    }

    pub fn is_empty(&self) -> bool {
        self.left == 0
    }

    /// The next application, borrowing from the decoder's buffer.
    pub fn next_app(&mut self) -> Option<Result<AppRecord<'_>, String>> {
        if self.left == 0 || self.failed {
            return None;
        }
        self.left -= 1;
        // Keep a whole record's worth buffered (or the rest of the body).
        let unread = self.buf.len() - self.pos;
        let end = self.buf_offset + self.buf.len();
        if unread < MAX_RECORD_BYTES && end < self.total {
            self.buf.drain(..self.pos);
            self.buf_offset += self.pos;
            self.pos = 0;
            while self.buf.len() < MAX_RECORD_BYTES + CHUNK_BYTES
                && self.buf_offset + self.buf.len() < self.total
            {
                let want = (self.total - self.buf_offset - self.buf.len()).min(CHUNK_BYTES);
                let piece = (self.read)(self.buf_offset + self.buf.len(), want);
                if piece.is_empty() {
                    break;
                }
                self.buf.extend_from_slice(&piece);
            }
        }
        let mut r = Reader {
            b: &self.buf,
            at: self.pos,
        };
        let rec = (|| {
            let id = r.str()?;
            if !self.last_id.is_empty() && self.last_id.as_str() >= id {
                return Err(format!(
                    "application ids are not strictly increasing at {id:?}"
                ));
            }
            let plan = r.u32()?;
            let (state, state_reason) = match r.u8()? {
                0 => (ApplicationState::Live, None),
                1 => (ApplicationState::Suspended, None),
                2 => (ApplicationState::Suspended, Some(SuspensionReason::Admin)),
                3 => (
                    ApplicationState::Suspended,
                    Some(SuspensionReason::NonPayment),
                ),
                other => return Err(format!("unknown application state {other}")),
            };
            let keys = r.u8()? as usize;
            let keys_at = r.at;
            r.take(keys * 32)?;
            let app_id = r.str()?;
            let app_keys = match self.format {
                Format::V1 => 0,
                Format::V2 => {
                    let n = r.u8()? as usize;
                    r.take(n * 32)?;
                    n
                }
            };
            Ok(RecordAt {
                id_len: id.len(),
                plan,
                state,
                state_reason,
                keys_at,
                keys,
                app_id_len: app_id.len(),
                app_keys,
            })
        })();
        match rec {
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
            Ok(RecordAt {
                id_len,
                plan,
                state,
                state_reason,
                keys_at,
                keys,
                app_id_len,
                app_keys,
            }) => {
                let id_at = self.pos + 1;
                let app_id_at = keys_at + keys * 32 + 1;
                // TGS2: the app key count byte, then the digests.
                let app_keys_at = app_id_at + app_id_len + usize::from(self.format == Format::V2);
                self.pos = app_keys_at + app_keys * 32;
                self.last_id.clear();
                let buf = &self.buf;
                let id = std::str::from_utf8(&buf[id_at..id_at + id_len]).unwrap_or_default();
                self.last_id.push_str(id);
                let app_id = std::str::from_utf8(&buf[app_id_at..app_id_at + app_id_len])
                    .unwrap_or_default();
                Some(Ok(AppRecord {
                    id,
                    plan,
                    state,
                    state_reason,
                    keys: &buf[keys_at..keys_at + keys * 32],
                    app_id: (!app_id.is_empty()).then_some(app_id),
                    app_keys: &buf[app_keys_at..app_keys_at + app_keys * 32],
                }))
            }
        }
    }
}

/// Where a record's parts sit in the chunked decoder's buffer.
struct RecordAt {
    id_len: usize,
    plan: u32,
    state: ApplicationState,
    state_reason: Option<SuspensionReason>,
    keys_at: usize,
    keys: usize,
    app_id_len: usize,
    app_keys: usize,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Limit, Metric, Period, Plan};

    fn sample() -> Snapshot {
        Snapshot {
            version: Some("7.0".into()),
            plans: vec![
                Plan {
                    id: "p1".into(),
                    name: None,
                    limits: vec![Limit {
                        metric: "hits".into(),
                        period: Period::Day,
                        value: 5,
                    }],
                    credit_prices: vec![],
                },
                Plan {
                    id: "p2".into(),
                    name: None,
                    limits: vec![],
                    credit_prices: vec![],
                },
            ],
            applications: vec![
                Application {
                    id: "b".into(),
                    plan: "p2".into(),
                    state: ApplicationState::Suspended,
                    state_reason: Some(SuspensionReason::NonPayment),
                    key_sha256: vec!["ab".repeat(32), "CD".repeat(32)],
                    app_id: Some("public-b".into()),
                    app_key_sha256: vec!["ef".repeat(32)],
                },
                Application {
                    id: "a".into(),
                    plan: "p1".into(),
                    state: ApplicationState::Live,
                    state_reason: None,
                    key_sha256: vec![],
                    app_id: None,
                    app_key_sha256: vec![],
                },
            ],
            metrics: vec![Metric {
                name: "hits".into(),
                parent: None,
            }],
            mapping_rules: vec![],
            wallets: vec![crate::Wallet {
                id: "w".into(),
                limit_nano: 10 * crate::NANO_PER_UNIT,
                applications: vec!["a".into()],
            }],
            top_up_url: None,
        }
    }

    #[test]
    fn round_trips_sorted() {
        let bytes = encode(&sample()).unwrap();
        let (head, apps) = decode(&bytes).unwrap();
        assert_eq!(head.version.as_deref(), Some("7.0"));
        assert!(head.applications.is_empty());
        assert_eq!(head.plans.len(), 2);
        assert_eq!(head.wallets, sample().wallets, "wallets ride in the head");
        let apps: Vec<AppRecord> = apps.map(Result::unwrap).collect();
        assert_eq!(apps[0].id, "a");
        assert_eq!(
            (apps[1].id, apps[1].plan, apps[1].state_reason),
            ("b", 1, Some(SuspensionReason::NonPayment))
        );
        let digests: Vec<[u8; 32]> = apps[1].digests().collect();
        assert_eq!(digests, vec![[0xab; 32], [0xcd; 32]]);
        assert_eq!(apps[1].app_id, Some("public-b"));
        // TGS1 has no place for app keys: they are left out, the rest is the same.
        assert!(apps[1].app_keys.is_empty());
    }

    /// TGS2 carries the app keys; a TGS1 reader's callers see the same records otherwise, and
    /// the producer picks the newest version the gateway accepts.
    #[test]
    fn v2_carries_app_keys_and_is_negotiated() {
        let (v2, skipped) = encode_as(&sample(), Format::V2).unwrap();
        assert!(skipped.is_empty());
        assert_eq!(&v2[..4], b"TGS2");
        let (_, apps) = decode(&v2).unwrap();
        let apps: Vec<AppRecord> = apps.map(Result::unwrap).collect();
        assert_eq!(apps[1].app_keys, &[0xef; 32][..]);
        assert_eq!(apps[1].digests().count(), 2);
        assert!(apps[0].app_keys.is_empty());
        let len = v2.len();
        let (_, mut dec) =
            ChunkedDecoder::new(len, |o: usize, m: usize| v2[o..(o + m).min(len)].to_vec())
                .unwrap();
        assert!(dec.next_app().unwrap().unwrap().app_keys.is_empty());
        assert_eq!(dec.next_app().unwrap().unwrap().app_keys, &[0xef; 32][..]);
        assert!(dec.next_app().is_none());
        assert_eq!(
            Format::accepted(&format!("{MEDIA_TYPE_V2}, {MEDIA_TYPE}, application/json")),
            Some(Format::V2)
        );
        assert_eq!(
            Format::accepted(&format!("{MEDIA_TYPE}, application/json")),
            Some(Format::V1)
        );
        assert_eq!(Format::accepted("application/json"), None);
        // A bad app key digest leaves that application out, like a bad key.
        let mut s = sample();
        s.applications[0].app_key_sha256 = vec!["nope".into()];
        let (bytes, skipped) = encode_as(&s, Format::V2).unwrap();
        assert_eq!(skipped.len(), 1, "{skipped:?}");
        assert_eq!(decode(&bytes).unwrap().1.count(), 1);
    }

    #[test]
    fn chunked_decoding_matches_whole_buffer_decoding() {
        let mut big = sample();
        big.applications = (0..3_000)
            .map(|i| Application {
                id: format!("app-{i:05}"),
                plan: "p1".into(),
                state: ApplicationState::Live,
                state_reason: None,
                key_sha256: vec![format!("{:064x}", i)],
                app_id: (i % 7 == 0).then(|| format!("pub-{i}")),
                app_key_sha256: (0..i % 3).map(|k| format!("{:064x}", i * 10 + k)).collect(),
            })
            .collect();
        for format in [Format::V1, Format::V2] {
            chunked_matches_whole(&encode_as(&big, format).unwrap().0);
        }
    }

    fn chunked_matches_whole(bytes: &[u8]) {
        let (head, whole) = decode(bytes).unwrap();
        let whole: Vec<String> = whole.map(|r| format!("{:?}", r.unwrap())).collect();
        // Odd read sizes: the host may return less than asked.
        let read =
            |off: usize, len: usize| bytes[off..(off + len.min(777)).min(bytes.len())].to_vec();
        let (chunked_head, mut dec) = ChunkedDecoder::new(bytes.len(), read).unwrap();
        assert_eq!(chunked_head, head);
        let mut chunked = Vec::new();
        while let Some(r) = dec.next_app() {
            chunked.push(format!("{:?}", r.unwrap()));
        }
        assert_eq!(chunked, whole);
        // Truncation is an error, not a panic.
        let cut = &bytes[..bytes.len() - 40];
        let (_, mut dec) = ChunkedDecoder::new(cut.len(), |o: usize, l: usize| {
            cut[o..(o + l).min(cut.len())].to_vec()
        })
        .unwrap();
        let mut last = None;
        while let Some(r) = dec.next_app() {
            last = Some(r.is_ok());
        }
        assert_eq!(last, Some(false));
    }

    #[test]
    fn hostile_bytes_are_errors_not_panics() {
        let bytes = encode(&sample()).unwrap();
        let v2 = encode_as(&sample(), Format::V2).unwrap().0;
        for bytes in [&bytes, &v2] {
            for cut in 0..bytes.len() {
                if let Ok((_, apps)) = decode(&bytes[..cut]) {
                    let _ = apps.collect::<Vec<_>>();
                }
                let piece = &bytes[..cut];
                if let Ok((_, mut dec)) = ChunkedDecoder::new(cut, |o: usize, m: usize| {
                    piece[o..(o + m).min(cut)].to_vec()
                }) {
                    while dec.next_app().is_some() {}
                }
            }
        }
        assert!(decode(b"JSON{}").is_err());
        let mut unsorted = encode(&sample()).unwrap();
        // Swap the first id byte ('a' -> 'c'): now "c" comes before "b".
        let first_id = unsorted.iter().rposition(|&b| b == b'a').unwrap();
        unsorted[first_id] = b'c';
        let (_, apps) = decode(&unsorted).unwrap();
        assert!(apps.collect::<Vec<_>>().iter().any(Result::is_err));
    }

    /// Issue 15 item 2: above 255 keys (or with a bad digest) one application is left out and
    /// reported; the others are encoded and decode as before.
    #[test]
    fn an_application_the_format_cannot_carry_is_left_out_not_the_snapshot() {
        let mut s = sample();
        s.applications[0].key_sha256 = (0..300).map(|i| format!("{i:064x}")).collect();
        s.applications.push(Application {
            id: "c".into(),
            plan: "p1".into(),
            state: ApplicationState::Live,
            state_reason: None,
            key_sha256: vec!["zz".into()],
            app_id: None,
            app_key_sha256: vec![],
        });
        s.applications.push(Application {
            id: "d".into(),
            plan: "p1".into(),
            state: ApplicationState::Live,
            state_reason: None,
            key_sha256: vec!["ef".repeat(32)],
            app_id: None,
            app_key_sha256: vec![],
        });
        let (bytes, skipped) = encode_reporting(&s).unwrap();
        assert_eq!(skipped.len(), 2, "{skipped:?}");
        assert!(
            skipped[0].contains("application b has 300 keys"),
            "{skipped:?}"
        );
        let (_, apps) = decode(&bytes).unwrap();
        let ids: Vec<&str> = apps.map(|a| a.unwrap().id).collect();
        assert_eq!(ids, ["a", "d"]);
        // 255 keys is what the format carries: encoded (a gateway applies its own bound).
        s.applications[0].key_sha256.truncate(255);
        let (bytes, skipped) = encode_reporting(&s).unwrap();
        assert_eq!(skipped.len(), 1);
        let (_, apps) = decode(&bytes).unwrap();
        let keys: Vec<usize> = apps.map(|a| a.unwrap().keys.len() / 32).collect();
        assert_eq!(keys, [0, 255, 1]);
    }

    /// Found by the `snapshot` fuzz target: a count field of 0xFFFFFFFF made the gateway
    /// reserve room for four billion applications, and a reader returning short pieces was
    /// taken for a foreign body.
    #[test]
    fn counts_are_bounded_by_the_body_and_short_reads_are_read_on() {
        let bytes = encode(&sample()).unwrap();
        let head_len = u32::from_le_bytes(bytes[4..8].try_into().unwrap()) as usize;
        let mut huge = bytes.clone();
        huge[8 + head_len..12 + head_len].copy_from_slice(&u32::MAX.to_le_bytes());
        let err = decode(&huge).err().unwrap();
        assert!(err.contains("claims 4294967295 applications"), "{err}");
        let len = huge.len();
        let chunked = ChunkedDecoder::new(len, |off, max| huge[off..(off + max).min(len)].to_vec());
        assert!(chunked.is_err());
        let (_, whole) = decode(&bytes).unwrap();
        let whole: Vec<String> = whole.map(|a| a.unwrap().id.to_string()).collect();
        let len = bytes.len();
        for piece in [1, 3, 7] {
            let (_, mut apps) = ChunkedDecoder::new(len, |off, max| {
                bytes[off..(off + max.min(piece)).min(len)].to_vec()
            })
            .unwrap();
            let mut ids = Vec::new();
            while let Some(a) = apps.next_app() {
                ids.push(a.unwrap().id.to_string());
            }
            assert_eq!(ids, whole, "pieces of {piece} bytes");
        }
    }
}

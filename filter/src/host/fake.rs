//! A fake [`Host`] for native tests: the worker VMs of one gateway process ([`FakeHost`]s) share
//! a [`World`] — its shared data, with Envoy's compare-and-swap semantics, and its clock — and
//! each has its own outgoing HTTP calls, answer being delivered, tick period, counters and log.
//!
//! Races are scripted, not left to threads: [`World::after_get`] runs another worker's code
//! between this worker's read of a key and its compare-and-swap; [`FakeHost::die_after_set`]
//! kills a VM right after a given write (mid-protocol), after which nothing it does reaches the
//! world, as if its code had stopped; [`FakeHost::max_read_bytes`] makes the host hand out an
//! answer's body in pieces of at most that size.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use super::{Host, HostStatus, Level};
use crate::counters::tests::FakeStore;
use crate::counters::{SharedStore, StoreError};

/// The proxy-wasm status a dead VM's calls get (`InternalFailure`).
const INTERNAL_FAILURE: u32 = 10;

type Hook = Box<dyn FnOnce()>;

/// One gateway process: what its workers share.
pub struct World {
    store: RefCell<FakeStore>,
    now_ms: Cell<u64>,
    /// Successful writes per key.
    writes: RefCell<HashMap<String, usize>>,
    after_get: RefCell<Vec<(String, Hook)>>,
    /// Writes of keys starting with this fail with a host error (shared data full).
    refused_prefix: RefCell<Option<String>>,
}

impl World {
    pub fn new(now_ms: u64) -> Rc<World> {
        Rc::new(World {
            store: RefCell::new(FakeStore::default()),
            now_ms: Cell::new(now_ms),
            writes: RefCell::new(HashMap::new()),
            after_get: RefCell::new(Vec::new()),
            refused_prefix: RefCell::new(None),
        })
    }

    pub fn now_ms(&self) -> u64 {
        self.now_ms.get()
    }

    pub fn advance_ms(&self, ms: u64) {
        self.now_ms.set(self.now_ms.get() + ms);
    }

    /// The value of a shared-data key, as any worker would read it.
    pub fn value(&self, key: &str) -> Option<Vec<u8>> {
        self.store.borrow().data.get(key).map(|(v, _)| v.clone())
    }

    /// Successful writes of `key` so far.
    pub fn writes(&self, key: &str) -> usize {
        self.writes.borrow().get(key).copied().unwrap_or(0)
    }

    /// Runs `hook` once, right after the next read of `key` returned and before the reader can
    /// write again: another worker acting in the gap a compare-and-swap guards.
    pub fn after_get(&self, key: &str, hook: impl FnOnce() + 'static) {
        self.after_get
            .borrow_mut()
            .push((key.to_string(), Box::new(hook)));
    }

    /// From now on writes of keys starting with `prefix` fail with a host error (as when shared
    /// data is full); `None` lets them through again.
    pub fn refuse_writes(&self, prefix: Option<&str>) {
        *self.refused_prefix.borrow_mut() = prefix.map(str::to_string);
    }

    fn take_hook(&self, key: &str) -> Option<Hook> {
        let mut hooks = self.after_get.borrow_mut();
        let at = hooks.iter().position(|(k, _)| k == key)?;
        Some(hooks.remove(at).1)
    }
}

/// An HTTP call a worker dispatched and nobody answered yet.
#[derive(Clone, Debug)]
pub struct Call {
    pub token: u32,
    pub upstream: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub timeout_ms: u32,
}

impl Call {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn path(&self) -> &str {
        self.header(":path").unwrap_or_default()
    }
}

/// The answer to an HTTP call, as the host presents it to `on_http_call_response`.
#[derive(Clone, Debug, Default)]
pub struct Answer {
    /// `None`: the call failed (timeout, reset), so there is no `:status`.
    pub status: Option<u16>,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
    /// The body size the host announces; more than `body.len()` models a body cut short.
    pub announced_size: Option<usize>,
}

impl Answer {
    pub fn status(status: u16) -> Answer {
        Answer {
            status: Some(status),
            ..Answer::default()
        }
    }

    /// What the host delivers when the call timed out or was reset.
    pub fn failed() -> Answer {
        Answer::default()
    }

    pub fn body_size(&self) -> usize {
        self.announced_size.unwrap_or(self.body.len())
    }
}

/// One worker VM.
pub struct FakeHost {
    pub world: Rc<World>,
    /// Calls dispatched and not yet answered, oldest first.
    pub calls: Vec<Call>,
    next_token: u32,
    /// The answer being delivered (set around `on_http_call_response`).
    pub answer: Option<Answer>,
    /// Most bytes one body read returns.
    pub max_read_bytes: usize,
    /// Body reads of the answers delivered so far.
    pub body_reads: Cell<usize>,
    pub tick_ms: Option<u32>,
    counters: Vec<(String, u64)>,
    pub logs: RefCell<Vec<(Level, String)>>,
    /// The VM dies right after its next successful write of this key.
    pub die_after_set: Option<String>,
    dead: bool,
}

impl FakeHost {
    pub fn new(world: &Rc<World>) -> FakeHost {
        FakeHost {
            world: Rc::clone(world),
            calls: Vec::new(),
            next_token: 1,
            answer: None,
            max_read_bytes: usize::MAX,
            body_reads: Cell::new(0),
            tick_ms: None,
            counters: Vec::new(),
            logs: RefCell::new(Vec::new()),
            die_after_set: None,
            dead: false,
        }
    }

    /// The VM is gone: from now on none of its calls reach the world.
    pub fn die(&mut self) {
        self.dead = true;
        self.calls.clear();
    }

    pub fn is_dead(&self) -> bool {
        self.dead
    }

    /// The host's value of a counter `define_counter` made.
    pub fn counter(&self, name: &str) -> u64 {
        self.counters
            .iter()
            .find(|(n, _)| n == name)
            .map_or(0, |(_, v)| *v)
    }

    /// Whether a log line contains `text`.
    pub fn logged(&self, text: &str) -> bool {
        self.logs.borrow().iter().any(|(_, l)| l.contains(text))
    }
}

impl SharedStore for FakeHost {
    fn get(&mut self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreError> {
        if self.dead {
            return Err(StoreError::Host(INTERNAL_FAILURE));
        }
        let read = self.world.store.borrow_mut().get(key);
        if let Some(hook) = self.world.take_hook(key) {
            hook();
        }
        read
    }

    fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<bool, StoreError> {
        if self.dead {
            return Err(StoreError::Host(INTERNAL_FAILURE));
        }
        let refused = self
            .world
            .refused_prefix
            .borrow()
            .as_deref()
            .is_some_and(|p| key.starts_with(p));
        if refused {
            return Err(StoreError::Host(INTERNAL_FAILURE));
        }
        let written = self.world.store.borrow_mut().set(key, value, cas)?;
        if written {
            *self
                .world
                .writes
                .borrow_mut()
                .entry(key.to_string())
                .or_insert(0) += 1;
            if self.die_after_set.as_deref() == Some(key) {
                self.die();
            }
        }
        Ok(written)
    }
}

impl Host for FakeHost {
    fn now_nanos(&self) -> Result<u64, HostStatus> {
        if self.dead {
            return Err(HostStatus(INTERNAL_FAILURE));
        }
        Ok(self.world.now_ms() * 1_000_000)
    }

    fn log(&self, level: Level, message: &str) {
        self.logs.borrow_mut().push((level, message.to_string()));
    }

    fn set_tick_period_ms(&mut self, period_ms: u32) -> Result<(), HostStatus> {
        self.tick_ms = Some(period_ms);
        Ok(())
    }

    fn http_call(
        &mut self,
        upstream: &str,
        headers: &[(&str, String)],
        body: &[u8],
        timeout_ms: u32,
    ) -> Result<u32, HostStatus> {
        if self.dead {
            return Err(HostStatus(INTERNAL_FAILURE));
        }
        let token = self.next_token;
        self.next_token += 1;
        self.calls.push(Call {
            token,
            upstream: upstream.to_string(),
            headers: headers
                .iter()
                .map(|(k, v)| ((*k).to_string(), v.clone()))
                .collect(),
            body: body.to_vec(),
            timeout_ms,
        });
        Ok(token)
    }

    fn call_response_status(&self) -> Option<u16> {
        self.answer.as_ref()?.status
    }

    fn call_response_header(&self, name: &str) -> Option<Vec<u8>> {
        let answer = self.answer.as_ref()?;
        answer
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    }

    fn call_response_body_range(&self, start: usize, max_len: usize) -> Vec<u8> {
        self.body_reads.set(self.body_reads.get() + 1);
        let Some(answer) = &self.answer else {
            return Vec::new();
        };
        let len = max_len.min(self.max_read_bytes);
        let end = start.saturating_add(len).min(answer.body.len());
        answer.body.get(start..end).unwrap_or_default().to_vec()
    }

    fn define_counter(&mut self, name: &str) -> Option<u32> {
        self.counters.push((name.to_string(), 0));
        Some(self.counters.len() as u32 - 1)
    }

    fn increment(&mut self, counter: Option<u32>, delta: u64) {
        if let Some((_, v)) = counter.and_then(|id| self.counters.get_mut(id as usize)) {
            *v += delta;
        }
    }
}

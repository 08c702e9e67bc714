// A proxy-wasm host with the semantics of Kong's ngx_wasm_module (Kong 3.4–3.9) for what the
// Tollgate filter calls, and a trap for every host function Kong lacks. Kong cannot be downloaded
// here; this runs the real filter module the way Kong would, so the paths that differ from Envoy
// are exercised: `:path` is nginx's `$uri` plus `?$args`, setting a `:path` that holds a query
// string traps the VM (ngx_wasm_module: "NYI - cannot set request path with querystring"),
// `:scheme` and `:authority` are read-only, `ngx.*` properties are nginx variables, metrics are
// missing (Kong builds without metrics support), and the response-headers phase cannot pause.
//
// Usage: node kong_host.mjs <filter.wasm> <scenario.json>
// scenario: {"config": "<plugin configuration string>", "shm_kv": ["<zone>", ...],
//            "requests": [{"method": "GET",
//            "uri": "/a", "args": "q=1", "headers": [["x-api-key", "k"]]}]}
// Prints one JSON object: {"configured": bool, "trapped": null or the trap during configuration,
// "logs": [...], "results": [{"action", "trapped",
// "local_response", "uri", "args", "request_headers", "response_headers"}]}.

import { readFileSync } from 'node:fs';
import { WASI } from 'node:wasi';

const [, , wasmPath, scenarioPath] = process.argv;
const scenario = JSON.parse(readFileSync(scenarioPath, 'utf8'));

// Host functions a Kong 3.4–3.9 ngx_wasm_module traps on when called (see filter/tests/kong_host_calls.rs).
const KONG_TRAPS = new Set([
  'proxy_grpc_call', 'proxy_grpc_stream', 'proxy_grpc_send', 'proxy_grpc_cancel', 'proxy_grpc_close',
  'proxy_get_status', 'proxy_resolve_shared_queue', 'proxy_get_log_level', 'proxy_call_foreign_function',
  'proxy_continue_response', 'proxy_resume_downstream', 'proxy_resume_upstream', 'proxy_close_stream',
  'proxy_record_metric', 'proxy_get_metric', 'proxy_done',
  // Missing where Kong is built without metrics support, which is why kong.yml sets `stats: false`.
  'proxy_define_metric', 'proxy_increment_metric',
]);

const OK = 0, NOT_FOUND = 1, BAD_ARGUMENT = 2;
const REQUEST_HEADERS = 0, RESPONSE_HEADERS = 2, PLUGIN_CONFIGURATION = 7;

class Trap extends Error {}

const enc = new TextEncoder();
const dec = new TextDecoder('utf-8', { fatal: false });
let instance;
const mem = () => new Uint8Array(instance.exports.memory.buffer);
const view = () => new DataView(instance.exports.memory.buffer);
const str = (ptr, len) => dec.decode(mem().slice(ptr, ptr + len));

// Copies `bytes` into the module (through its allocator, as every host does) and stores the
// pointer and size where the module asked for them.
function giveBack(bytes, retPtr, retSize) {
  const p = instance.exports.proxy_on_memory_allocate(bytes.length);
  mem().set(bytes, p);
  view().setUint32(retPtr, p, true);
  view().setUint32(retSize, bytes.length, true);
}

function serializePairs(pairs) {
  const parts = pairs.map(([k, v]) => [enc.encode(k), enc.encode(v)]);
  const size = 4 + parts.reduce((n, [k, v]) => n + 8 + k.length + v.length + 2, 0);
  const out = new Uint8Array(size);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, parts.length, true);
  let at = 4;
  for (const [k, v] of parts) {
    dv.setUint32(at, k.length, true);
    dv.setUint32(at + 4, v.length, true);
    at += 8;
  }
  for (const [k, v] of parts) {
    out.set(k, at); at += k.length + 1;
    out.set(v, at); at += v.length + 1;
  }
  return out;
}

function parsePairs(ptr, len) {
  const bytes = mem().slice(ptr, ptr + len);
  const dv = new DataView(bytes.buffer);
  const n = dv.getUint32(0, true);
  const sizes = [];
  for (let i = 0; i < n; i++) sizes.push([dv.getUint32(4 + i * 8, true), dv.getUint32(8 + i * 8, true)]);
  let at = 4 + n * 8;
  const out = [];
  for (const [kl, vl] of sizes) {
    const k = dec.decode(bytes.slice(at, at + kl)); at += kl + 1;
    const v = dec.decode(bytes.slice(at, at + vl)); at += vl + 1;
    out.push([k, v]);
  }
  return out;
}

// The request being processed, nginx-style: $uri, $args and the header list.
let req = null;
const logs = [];
const shared = new Map(); // key -> {value: Uint8Array, cas}
let nextCas = 1;
// ngx_wasm_module keeps shared data only in `shm_kv <name> <size>` zones of the wasm{} block
// (kong.conf: `nginx_wasm_shm_kv_<name> = <size>`; Kong 3.4/3.5: `nginx_wasm_shm_<name>`). A key
// `ns/rest` lives in zone `ns` when one is declared, else in the default zone `*`; with neither,
// proxy_get_shared_data and proxy_set_shared_data trap (ngx_wasm_shm_kv_resolve_key declines).
// None is declared unless the scenario says so: `"shm_kv": ["tg1", "tollgate"]`.
const shmZones = new Set(scenario.shm_kv ?? []);
function shmZone(key, trap) {
  const slash = key.indexOf('/');
  const ns = slash > 0 ? key.slice(0, slash) : '';
  if (ns && shmZones.has(ns)) return ns;
  if (shmZones.has('*')) return '*';
  throw new Trap(trap);
}

function mapOf(type) {
  if (type === REQUEST_HEADERS && req) return req.headers;
  if (type === RESPONSE_HEADERS && req && req.responseHeaders) return req.responseHeaders;
  return null;
}

// ngx_proxy_wasm_maps special keys: computed on read, some settable; listed first in the pairs.
const SPECIAL_KEYS = [':path', ':method', ':scheme', ':authority'];

function special(key) {
  switch (key) {
    case ':path': return req.args ? `${req.uri}?${req.args}` : req.uri;
    case ':method': return req.method;
    case ':scheme': return 'http';
    case ':authority': return 'localhost:8000';
    default: return null;
  }
}

function setHeader(type, key, value) {
  if (type === REQUEST_HEADERS) {
    if (key === ':path') {
      if (value.includes('?')) throw new Trap('NYI - cannot set request path with querystring');
      req.uri = value;
      return OK;
    }
    if (key === ':method') { req.method = value; return OK; }
    if (key === ':scheme' || key === ':authority') {
      logs.push(`[error] cannot set read-only "${key}" header`);
      return BAD_ARGUMENT;
    }
  }
  const map = mapOf(type);
  if (!map) return BAD_ARGUMENT;
  const i = map.findIndex(([k]) => k === key);
  if (i >= 0) {
    map[i] = [key, value];
    for (let j = map.length - 1; j > i; j--) if (map[j][0] === key) map.splice(j, 1);
  } else {
    map.push([key, value]);
  }
  return OK;
}

// Property paths arrive NUL-separated; ngx_wasm_module reads them dotted.
const propertyPath = (ptr, len) => str(ptr, len).split('\0').join('.');

const env = {
  proxy_log(level, ptr, len) { logs.push(`[${level}] ${str(ptr, len)}`); return OK; },
  proxy_get_current_time_nanoseconds(ret) {
    view().setBigUint64(ret, BigInt(Date.now()) * 1000000n, true);
    return OK;
  },
  proxy_set_tick_period_milliseconds() { return OK; },
  proxy_get_buffer_bytes(type, start, max, retPtr, retSize) {
    if (type !== PLUGIN_CONFIGURATION) return NOT_FOUND;
    giveBack(enc.encode(scenario.config).slice(start, start + max), retPtr, retSize);
    return OK;
  },
  proxy_get_header_map_pairs(type, retPtr, retSize) {
    const map = mapOf(type);
    if (!map) return BAD_ARGUMENT;
    // Kong lists the special keys first, then the nginx header list.
    const extras = type === REQUEST_HEADERS ? SPECIAL_KEYS.map((k) => [k, special(k)]) : [];
    giveBack(serializePairs([...extras, ...map]), retPtr, retSize);
    return OK;
  },
  proxy_get_header_map_value(type, kPtr, kLen, retPtr, retSize) {
    const key = str(kPtr, kLen);
    const v = (type === REQUEST_HEADERS ? special(key) : null) ?? mapOf(type)?.find(([k]) => k === key)?.[1];
    if (v === undefined) return NOT_FOUND;
    giveBack(enc.encode(v), retPtr, retSize);
    return OK;
  },
  proxy_replace_header_map_value(type, kPtr, kLen, vPtr, vLen) {
    return setHeader(type, str(kPtr, kLen), str(vPtr, vLen));
  },
  proxy_remove_header_map_value(type, kPtr, kLen) {
    const key = str(kPtr, kLen);
    const map = mapOf(type);
    if (!map) return BAD_ARGUMENT;
    for (let j = map.length - 1; j >= 0; j--) if (map[j][0] === key) map.splice(j, 1);
    return OK;
  },
  proxy_send_local_response(status, _dPtr, _dLen, bPtr, bLen, hPtr, hLen) {
    req.localResponse = { status, headers: parsePairs(hPtr, hLen), body: str(bPtr, bLen) };
    return OK;
  },
  proxy_get_shared_data(kPtr, kLen, retPtr, retSize, retCas) {
    shmZone(str(kPtr, kLen), 'failed getting value from shm (could not resolve namespace)');
    const e = shared.get(str(kPtr, kLen));
    if (!e) return NOT_FOUND;
    giveBack(e.value, retPtr, retSize);
    view().setUint32(retCas, e.cas, true);
    return OK;
  },
  proxy_set_shared_data(kPtr, kLen, vPtr, vLen, cas) {
    const key = str(kPtr, kLen);
    shmZone(key, 'failed setting value to shm (could not resolve namespace)');
    const e = shared.get(key);
    if (cas !== 0 && e && e.cas !== cas) return 8; // CasMismatch
    shared.set(key, { value: mem().slice(vPtr, vPtr + vLen), cas: nextCas++ });
    return OK;
  },
  proxy_get_property(pPtr, pLen, retPtr, retSize) {
    const path = propertyPath(pPtr, pLen);
    let v = null;
    if (path === 'plugin_name') v = 'tollgate';
    else if (path === 'ngx.args' && req) v = req.args;
    else if (path === 'ngx.uri' && req) v = req.uri;
    // plugin_vm_id is NYI in ngx_wasm_module; Envoy-only attributes are "not supported".
    if (v === null) return NOT_FOUND;
    giveBack(enc.encode(v), retPtr, retSize);
    return OK;
  },
  proxy_set_property(pPtr, pLen, vPtr, vLen) {
    const path = propertyPath(pPtr, pLen);
    if (path === 'ngx.args' && req) { req.args = str(vPtr, vLen); return OK; }
    logs.push(`[error] variable "${path}" is not changeable`);
    return BAD_ARGUMENT;
  },
};

const wasi = new WASI({ version: 'preview1', args: [], env: {}, returnOnExit: true });
const module = new WebAssembly.Module(readFileSync(wasmPath));
const imports = wasi.getImportObject();
imports.env = {};
for (const imp of WebAssembly.Module.imports(module)) {
  if (imp.module !== 'env' || imp.kind !== 'function') continue;
  imports.env[imp.name] = env[imp.name] && !KONG_TRAPS.has(imp.name)
    ? env[imp.name]
    : () => { throw new Trap(`${imp.name} is not callable in Kong`); };
}
instance = new WebAssembly.Instance(module, imports);
wasi.initialize(instance);
const x = instance.exports;

const ROOT = 1;
const out = { configured: false, trapped: null, logs, results: [] };
try {
  x.proxy_on_context_create(ROOT, 0);
  x.proxy_on_vm_start(ROOT, 0);
  out.configured = x.proxy_on_configure(ROOT, enc.encode(scenario.config).length) === 1;
} catch (e) {
  out.trapped = String(e.message ?? e);
}
let id = ROOT;
for (const r of out.configured ? scenario.requests : []) {
  id += 1;
  req = { method: r.method ?? 'GET', uri: r.uri, args: r.args ?? '', headers: r.headers.map((h) => [...h]) };
  const result = { action: null, trapped: null, local_response: null };
  try {
    x.proxy_on_context_create(id, ROOT);
    result.action = x.proxy_on_request_headers(id, req.headers.length + 4, 1);
    if (!req.localResponse) {
      req.responseHeaders = [[':status', '200'], ['content-type', 'text/plain']];
      const a = x.proxy_on_response_headers(id, 2, 0);
      if (a !== 0) throw new Trap('paused in the response-headers phase, which Kong cannot resume');
    }
    x.proxy_on_done(id);
    x.proxy_on_log(id);
    x.proxy_on_delete(id);
  } catch (e) {
    // A trap poisons the instance in Kong: report it and stop, as Kong would drop the instance.
    result.trapped = String(e.message ?? e);
    out.results.push(result);
    break;
  }
  Object.assign(result, {
    local_response: req.localResponse ?? null,
    uri: req.uri,
    args: req.args,
    request_headers: req.headers,
    response_headers: req.responseHeaders ?? null,
  });
  out.results.push(result);
}
process.stdout.write(JSON.stringify(out));

// Runs a wasm32-wasip1 test binary under Node's WASI (cargo's target runner for `cargo test
// --target wasm32-wasip1`), so the decision core's tests also run as 32-bit wasm with a wasm clock.
import { readFile } from 'node:fs/promises';
import { WASI } from 'node:wasi';

const [, , wasmPath, ...args] = process.argv;
const wasi = new WASI({ version: 'preview1', args: [wasmPath, ...args], env: {}, returnOnExit: true });
const module = await WebAssembly.compile(await readFile(wasmPath));
// The test binary links the proxy-wasm glue too; its host imports must exist but are never called
// by the tests: any call fails loudly.
const imports = wasi.getImportObject();
for (const imp of WebAssembly.Module.imports(module)) {
  if (imp.module !== 'env' || imp.kind !== 'function') continue;
  imports.env ??= {};
  imports.env[imp.name] = () => {
    throw new Error(`host function ${imp.name} called in a native-logic test`);
  };
}
const instance = await WebAssembly.instantiate(module, imports);
process.exitCode = wasi.start(instance);
